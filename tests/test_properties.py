"""Property tests that reach the planner: generated valid specs and live states, and what must always hold.

The generator builds specs the way people write them (many services, ``depends_on`` forming a DAG,
several environments with overrides, routes, health checks, freezes) and a test keeps it honest: at
least 95% of what it makes must validate without errors, or every property below would quietly test
nothing. Observed states are variants of the desired resources (missing, stale, degraded, edited
fields, extra resources left to delete). Properties: planning is deterministic; the change order
respects ``depends_on``; applying a plan (to the fake provider, and through the engine's apply) then
planning again yields no changes; adding a field change to a change never lowers its risk, and adding
a change to a plan never lowers its risk or its guardrail decision; validation of mutated spec text
gives diagnostics, never an exception. Example counts come from the Hypothesis profile (tests/conftest.py).
"""

from __future__ import annotations

import random
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from railguard.engine import planner
from railguard.engine.apply import apply_plan
from railguard.engine.observe import observe_into
from railguard.model.canonical import digest
from railguard.model.diagnostics import has_errors
from railguard.model.plans import EFFECT_ORDER, RISK_ORDER, Action, Plan
from railguard.model.principals import Principal, Role
from railguard.model.resources import LiveStatus, ObservedResource, Resource, desired_resources, make_resource
from railguard.model.spec import Spec
from railguard.model.specfile import parse_spec
from railguard.policy.guardrails import Facts, evaluate
from railguard.providers.base import ApplyRequest, ObserveRequest
from railguard.providers.fake import FakeProvider
from railguard.state.store import Store

# -- generators ------------------------------------------------------------------------------------

# Fixed pools rather than regexes: drawing from a regex costs more than planning the spec it ends up in.
_NAME_POOL = ["a", "b", "c", "api", "web", "db", "worker", "cron", "auth", "cart", "z9", "q-1", "front-end",
              "svc-2", "mail", "search", "img", "pay", "ledger", "x", "y0", "edge-cache", "queue", "admin", "m"]
NAMES = st.sampled_from(_NAME_POOL)
VARIABLES = st.sampled_from(["A", "LOG_LEVEL", "MODE", "FEATURE_X", "TZ", "WORKERS", "B2", "API_TOKEN", "DB_PASSWORD",
                             "SENTRY_DSN_OFF", "Q", "_HIDDEN", "lower_ok", "CACHE_TTL", "REGION"])
ARGV = st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=3)
INTERVALS = st.sampled_from(["1s", "2s", "5s", "30s"])
TIMEOUTS = st.sampled_from(["200ms", "500ms", "1s"])  # never longer than an interval
DURATIONS = st.sampled_from(["0s", "500ms", "3s", "10s", "1m", "5m", "1h"])
PATH_PARTS = st.sampled_from(["v1", "v2", "static", "a.b", "x~y", "_int", "img-9", "health", "z"])


# Plain functions taking ``draw`` (not composite strategies): building a strategy object per service and
# environment cost more than everything else together.
def _health_check(draw: st.DrawFn) -> dict[str, Any]:
    mode = draw(st.sampled_from(["http", "tcp", "exec"]))
    check: dict[str, Any] = ({"http": "/" + draw(PATH_PARTS)} if mode == "http" else
                             {"tcp": True} if mode == "tcp" else {"exec": draw(ARGV)})
    if draw(st.booleans()):
        check["interval"], check["timeout"] = draw(INTERVALS), draw(TIMEOUTS)
    if draw(st.booleans()):
        check["start_period"] = draw(DURATIONS)
        check["healthy_threshold"] = draw(st.integers(1, 5))
        check["unhealthy_threshold"] = draw(st.integers(1, 5))
    return check


def _service(draw: st.DrawFn, name: str, earlier: list[str], root: bool) -> dict[str, Any]:
    service: dict[str, Any] = {"run": draw(ARGV), "replicas": draw(st.integers(0, 6))}
    for key in ("build", "release"):
        if draw(st.booleans()):
            service[key] = draw(ARGV)
    env = draw(st.dictionaries(VARIABLES, st.text(max_size=10), max_size=4))
    secrets = [s for s in draw(st.lists(VARIABLES, unique=True, max_size=3)) if s not in env]
    if env:
        service["env"] = env
    if secrets:
        service["secrets"] = secrets
    if earlier:
        deps = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3))
        if deps:
            service["depends_on"] = deps
    routes = [{"path": "/"}] if root else []
    routes += [{"path": f"/{name}" + ("" if i == 0 else f"/{part}")}
               for i, part in enumerate(draw(st.lists(PATH_PARTS, unique=True, max_size=3)))]
    if routes:
        service["routes"] = routes
    elif draw(st.booleans()):
        service["listen"] = False
    if draw(st.booleans()):
        service["health"] = _health_check(draw)
    for key in ("start_timeout", "stop_timeout", "drain_timeout"):
        if draw(st.booleans()):
            service[key] = draw(DURATIONS)
    return service


def _override(draw: st.DrawFn, env: str, name: str, base: dict[str, Any], earlier: list[str]) -> dict[str, Any]:
    """What an environment changes of one service: each field optional, all of them consistent."""
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out["replicas"] = draw(st.integers(0, 6))
    if draw(st.booleans()):
        taken = set(base.get("secrets", []))
        out["env"] = {k: v for k, v in draw(st.dictionaries(VARIABLES, st.text(max_size=10), max_size=3)).items()
                      if k not in taken}
    if draw(st.booleans()):
        out["run"] = draw(ARGV)
    if draw(st.booleans()):
        out["health"] = _health_check(draw)
    if base.get("listen", True) and draw(st.booleans()):  # an environment's own host: never shared with another
        out["routes"] = [{"host": f"{name}.{env}.example.test", "path": f"/{name}"}]
    if earlier and draw(st.booleans()):
        out["depends_on"] = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=2))
    if draw(st.booleans()):
        out["drain_timeout"] = draw(DURATIONS)
    return out


@st.composite
def spec_documents(draw: st.DrawFn, max_services: int = 10, max_envs: int = 4) -> dict[str, Any]:
    names = draw(st.lists(NAMES, unique=True, min_size=1, max_size=max_services))
    # depends_on only points to services earlier in this (random) order: a DAG whatever the names sort to.
    root = draw(st.integers(-1, len(names) - 1))
    service_docs = {name: _service(draw, name, names[:i], root == i) for i, name in enumerate(names)}
    env_names = draw(st.lists(NAMES, unique=True, min_size=1, max_size=max_envs))
    ports = draw(st.lists(st.integers(1024, 65535), unique=True, min_size=len(env_names), max_size=len(env_names)))
    environments: dict[str, Any] = {}
    for env, port in zip(env_names, ports, strict=True):
        environment: dict[str, Any] = {"edge_port": port, "protected": draw(st.booleans())}
        if draw(st.booleans()):
            environment["rollback_window"] = draw(DURATIONS)
            environment["max_disruptive_changes"] = draw(st.integers(0, 8))
        if draw(st.booleans()):
            environment["data_dir"] = f"data/{env}"
        others = [e for e in env_names if e != env]
        if others and draw(st.booleans()):
            environment["promote_from"] = draw(st.sampled_from(others))
            environment["soak"] = draw(DURATIONS)
        if draw(st.booleans()):
            start = datetime(draw(st.integers(2020, 2030)), draw(st.integers(1, 12)), 1, tzinfo=UTC)
            environment["freezes"] = [{"start": start, "end": start.replace(day=draw(st.integers(2, 28))),
                                       "reason": draw(st.text(max_size=10))}]
        chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names)))
        services_override = {n: _override(draw, env, n, service_docs[n], names[:names.index(n)]) for n in chosen}
        if services_override:
            environment["services"] = services_override
        environments[env] = environment
    doc: dict[str, Any] = {"app": {"name": draw(NAMES)}, "environments": environments, "services": service_docs}
    if draw(st.booleans()):
        doc["alerts"] = {"webhook": "https://hooks.example.test/" + draw(PATH_PARTS)}
    return doc


def spec_text(doc: dict[str, Any]) -> str:
    return tomli_w.dumps(doc)


def parsed(doc: dict[str, Any]) -> Spec:
    spec, diagnostics = parse_spec(spec_text(doc), file="railguard.toml")
    assume(spec is not None and not has_errors(diagnostics))
    assert spec is not None
    return spec


# Field edits of an observed resource, one per top-level key (so edits on distinct keys compose).
SERVICE_EDITS: dict[str, st.SearchStrategy[Any]] = {
    "replicas": st.integers(0, 6),
    "env": st.dictionaries(VARIABLES, st.text(max_size=4), max_size=2),
    "run": ARGV,
    "build": st.none() | ARGV,
    "release": st.none() | ARGV,
    "health": st.none() | st.just({"mode": "tcp", "http": None, "exec": None, "interval_ms": 1000,
                                   "timeout_ms": 500, "start_period_ms": 0, "healthy_threshold": 1,
                                   "unhealthy_threshold": 3}),
    "routes": st.lists(st.fixed_dictionaries({"host": st.none(), "path": st.sampled_from(["/", "/a", "/b"])}),
                       max_size=2),
    "source": st.sampled_from([None, "sha256:old", "sha256:older"]),
    "secrets": st.lists(VARIABLES, unique=True, max_size=2),
    "listen": st.booleans(),
    "drain_timeout_ms": st.integers(0, 60_000),
    "start_timeout_ms": st.integers(0, 60_000),
}
EDGE_EDITS: dict[str, st.SearchStrategy[Any]] = {
    "port": st.integers(1024, 65535),
    "routes": st.lists(st.fixed_dictionaries({"host": st.none(), "path": st.sampled_from(["/", "/a"]),
                                              "service": st.sampled_from(["a", "b"])}), max_size=2),
    "bind": st.sampled_from(["127.0.0.1", "0.0.0.0"]),
}
ENVIRONMENT_EDITS: dict[str, st.SearchStrategy[Any]] = {
    "protected": st.booleans(),
    "max_disruptive_changes": st.integers(0, 8),
    "soak_ms": st.integers(0, 10**6),
    "promote_from": st.none() | NAMES,
    "freezes": st.just([]),
}
EDITS = {"service": SERVICE_EDITS, "edge": EDGE_EDITS, "environment": ENVIRONMENT_EDITS}


@st.composite
def edited(draw: st.DrawFn, config: dict[str, Any], kind: str) -> dict[str, Any]:
    catalog = EDITS[kind]
    keys = draw(st.lists(st.sampled_from(sorted(catalog)), unique=True, min_size=1, max_size=3))
    return {**config, **{key: draw(catalog[key]) for key in keys}}


@st.composite
def observed_states(draw: st.DrawFn, desired: list[Resource]) -> list[ObservedResource]:
    """What could be live: each desired resource absent, matching, stale or edited; plus leftovers to delete."""
    out = []
    for resource in desired:
        how = draw(st.sampled_from(["absent", "same", "edited", "edited", "missing"]))
        if how == "absent":
            continue
        config = resource.config if how != "edited" else draw(edited(resource.config, resource.kind))
        status = LiveStatus.missing if how == "missing" else draw(st.sampled_from(list(LiveStatus)))
        out.append(ObservedResource(address=resource.address, kind=resource.kind, fingerprint=digest(config),
                                    config=config, depends_on=resource.depends_on, status=status,
                                    release=draw(st.none() | st.integers(1, 9))))
    env = desired[0].env
    wanted = {r.address for r in desired}
    gone = [n for n in draw(st.lists(NAMES, unique=True, max_size=4)) if f"{env}/service.{n}" not in wanted]
    for i, name in enumerate(gone):  # leftovers depend on earlier leftovers, and maybe on a desired service
        deps = [f"{env}/service.{d}" for d in draw(st.lists(st.sampled_from(gone[:i]), unique=True))] if i else []
        deps += draw(st.lists(st.sampled_from(sorted(wanted)), max_size=1))
        config = {"replicas": draw(st.integers(0, 3)), "run": ["python", name]}
        out.append(ObservedResource(address=f"{env}/service.{name}", kind="service", fingerprint=digest(config),
                                    config=config, depends_on=sorted(set(deps)), release=1))
    return out


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Spec, str, list[Resource], list[ObservedResource]]:
    spec = parsed(draw(spec_documents()))
    env = draw(st.sampled_from(sorted(spec.environments)))
    desired = desired_resources(spec, env, source_digest=draw(st.sampled_from([None, "sha256:src1"])))
    return spec, env, desired, draw(observed_states(desired))


def _dump(plan: Plan) -> dict[str, Any]:
    return plan.model_dump(mode="json")


# -- the generator does not rot ----------------------------------------------------------------------

def test_generated_specs_are_valid() -> None:
    outcomes: list[list[str]] = []

    @settings(database=None)
    @given(spec_documents())
    def collect(doc: dict[str, Any]) -> None:
        spec, diagnostics = parse_spec(spec_text(doc), file="railguard.toml")
        outcomes.append([d.code for d in diagnostics if d.is_error] + ([] if spec is not None else ["(no spec)"]))

    collect()
    invalid = [codes for codes in outcomes if codes]
    assert len(outcomes) >= 10
    assert len(invalid) <= 0.05 * len(outcomes), f"{len(invalid)} of {len(outcomes)} invalid: {invalid[:5]}"


def test_generated_specs_are_not_trivial() -> None:
    """The generator reaches what the properties are about: dependencies, overrides, several environments."""
    seen = {"depends_on": 0, "overrides": 0, "envs>1": 0, "services>3": 0, "routes": 0, "health": 0}

    @settings(database=None)
    @given(spec_documents())
    def collect(doc: dict[str, Any]) -> None:
        services_ = doc["services"].values()
        seen["depends_on"] += any("depends_on" in s for s in services_)
        seen["overrides"] += any("services" in e for e in doc["environments"].values())
        seen["envs>1"] += len(doc["environments"]) > 1
        seen["services>3"] += len(doc["services"]) > 3
        seen["routes"] += any("routes" in s for s in services_)
        seen["health"] += any("health" in s for s in services_)

    collect()
    assert all(count > 0 for count in seen.values()), seen


# -- properties of the planner ----------------------------------------------------------------------

@given(spec_documents(), st.randoms(use_true_random=False))
def test_planning_the_same_text_twice_gives_the_same_plan(doc: dict[str, Any], rnd: random.Random) -> None:
    text = spec_text(doc)
    first, again = parse_spec(text)[0], parse_spec(text)[0]
    assume(first is not None and again is not None)
    assert first is not None and again is not None
    for env in sorted(first.environments):
        one = planner.plan(env, desired_resources(first, env), [], 3).sealed("plan-x", "t")
        two = planner.plan(env, desired_resources(again, env), [], 3).sealed("plan-x", "t")
        assert _dump(one) == _dump(two)
        assert one.hash == two.hash


@given(scenarios(), st.randoms(use_true_random=False))
def test_planning_is_deterministic(scenario: tuple[Spec, str, list[Resource], list[ObservedResource]],
                                   rnd: random.Random) -> None:
    _, env, desired, observed = scenario
    plan = planner.plan(env, desired, observed, 7)
    assert _dump(planner.plan(env, desired, observed, 7)) == _dump(plan)
    # The order in which a provider reports live resources, or resources are listed, changes nothing.
    shuffled_observed, shuffled_desired = list(observed), list(desired)
    rnd.shuffle(shuffled_observed)
    rnd.shuffle(shuffled_desired)
    other = planner.plan(env, shuffled_desired, shuffled_observed, 7)
    assert [c.model_dump(mode="json") for c in other.changes] == [c.model_dump(mode="json") for c in plan.changes]
    assert other.desired_digest == plan.desired_digest


@given(scenarios())
def test_every_resource_gets_one_change_in_dependency_order(
        scenario: tuple[Spec, str, list[Resource], list[ObservedResource]]) -> None:
    _, env, desired, observed = scenario
    plan = planner.plan(env, desired, observed, 0)
    assert not plan.errored, plan.diagnostics
    index = {c.address: i for i, c in enumerate(plan.changes)}
    wanted = {r.address for r in desired}
    assert len(index) == len(plan.changes)  # one change per address
    assert set(index) == wanted | {o.address for o in observed}
    for change in plan.changes:
        assert (change.action is Action.delete) == (change.address not in wanted)
    for resource in desired:  # creates and updates come after what they need
        for dep in resource.depends_on:
            assert index[dep] < index[resource.address], (resource.address, dep)
    for old in observed:  # deletes come before what they needed, and after every desired change
        if old.address in wanted:
            continue
        assert index[old.address] >= len(desired)
        for dep in old.depends_on:
            if dep not in wanted:
                assert index[old.address] < index[dep], (old.address, dep)


def _fake_with(env: str, observed: list[ObservedResource]) -> FakeProvider:
    provider = FakeProvider()
    provider.live[env] = {o.address: o for o in observed}
    return provider


@given(scenarios())
def test_applying_a_plan_to_the_fake_provider_then_replanning_changes_nothing(
        scenario: tuple[Spec, str, list[Resource], list[ObservedResource]]) -> None:
    _, env, desired, observed = scenario
    provider = _fake_with(env, observed)
    plan = planner.plan(env, desired, observed, 0)
    wanted = {r.address: r for r in desired}
    for change in plan.actionable:
        response = provider.apply_change(ApplyRequest(env=env, change=change, desired=wanted.get(change.address),
                                                      operation_id="op-1"))
        assert response.ok
    again = planner.plan(env, desired, provider.observe(ObserveRequest(env=env)).resources, 1)
    assert again.actionable == [], [(c.address, c.action.value, c.reason) for c in again.actionable]
    assert [c.address for c in again.changes] == [c.address for c in plan.changes if c.action is not Action.delete]


@settings(max_examples=max(10, settings().max_examples // 5))
@given(scenarios())
def test_applying_through_the_engine_then_replanning_changes_nothing(
        scenario: tuple[Spec, str, list[Resource], list[ObservedResource]]) -> None:
    """The same through the engine's apply: saved plan, lock, journal, store inventory, engine-kept resources."""
    _, env, desired, observed = scenario
    engine_kept = [o for o in observed if o.kind == "environment"]
    provider = _fake_with(env, [o for o in observed if o.kind != "environment"])
    with tempfile.TemporaryDirectory() as home:
        store = Store.open(Path(home))
        try:
            store.record_observed(env, engine_kept)
            observe_into(store, provider, env)
            plan = store.save_plan(planner.plan(env, desired, store.inventory(env), store.serial(env)))
            apply_plan(store, plan.id, provider, "user:test", plan.desired_digest)
            observe_into(store, provider, env)
            again = planner.plan(env, desired, store.inventory(env), store.serial(env))
            assert again.actionable == [], [(c.address, c.action.value, c.reason) for c in again.actionable]
        finally:
            store.close()


def _risk(observed: ObservedResource, want: Resource) -> int:
    change = planner.plan(want.env, [want], [observed], 0).changes[0]
    return RISK_ORDER[change.risk]


@given(scenarios(), st.data())
def test_adding_a_field_change_never_lowers_a_changes_risk(
        scenario: tuple[Spec, str, list[Resource], list[ObservedResource]], data: st.DataObject) -> None:
    _, env, desired, _ = scenario
    resource = data.draw(st.sampled_from(desired))
    live = data.draw(edited(resource.config, resource.kind)) if data.draw(st.booleans()) else resource.config
    observed = ObservedResource(address=resource.address, kind=resource.kind, fingerprint=digest(live),
                                config=live, depends_on=resource.depends_on)
    catalog = EDITS[resource.kind]
    keys = data.draw(st.lists(st.sampled_from(sorted(catalog)), unique=True, min_size=2, max_size=len(catalog)))
    config, risks = dict(live), []
    for key in keys:  # each step changes one more top-level field than the step before
        config[key] = data.draw(catalog[key].filter(lambda value, key=key: value != live.get(key)))
        risks.append(_risk(observed, make_resource(env, resource.kind, resource.name, dict(config),
                                                   resource.depends_on)))
    assert risks == sorted(risks), list(zip(keys, risks, strict=True))


@given(scenarios(), st.data())
def test_adding_a_change_to_a_plan_never_lowers_its_risk_or_decision(
        scenario: tuple[Spec, str, list[Resource], list[ObservedResource]], data: st.DataObject) -> None:
    _, env, desired, observed = scenario
    full = planner.plan(env, desired, observed, 0)
    keep = data.draw(st.lists(st.booleans(), min_size=len(full.changes), max_size=len(full.changes)))
    part = full.model_copy(update={"changes": [c for c, k in zip(full.changes, keep, strict=True) if k]})
    assert RISK_ORDER[part.max_risk] <= RISK_ORDER[full.max_risk]
    facts = Facts(principal=Principal(id="token:x", role=data.draw(st.sampled_from(list(Role))), kind="token"),
                  now=datetime(data.draw(st.integers(2020, 2030)), 6, 1, tzinfo=UTC),
                  protected_in_state=data.draw(st.booleans()),
                  soaked=lambda service, source: None if source.endswith("1") else "it never ran there")
    smaller = max((EFFECT_ORDER[v.effect] for v in evaluate(part, facts)), default=0)
    larger = max((EFFECT_ORDER[v.effect] for v in evaluate(full, facts)), default=0)
    assert smaller <= larger


# -- validation of mutated text ---------------------------------------------------------------------

TOML_BITS = st.sampled_from(['"', "'", "[", "]", "[[", "=", "\n", "#", ",", "{", "}", ".", "\\", "0x", "-", " "])


@given(spec_documents(max_services=5, max_envs=2), st.data())
def test_validating_mutated_text_gives_diagnostics_never_an_exception(doc: dict[str, Any],
                                                                      data: st.DataObject) -> None:
    text = spec_text(doc)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(text)))
        op = data.draw(st.sampled_from(["delete", "insert", "toml", "duplicate_line", "swap_lines", "drop_line"]))
        lines = text.splitlines()
        i, j = data.draw(st.integers(0, len(lines) - 1)), data.draw(st.integers(0, len(lines) - 1))
        if op == "delete":
            text = text[:pos] + text[pos + data.draw(st.integers(1, 12)):]
        elif op == "insert":
            text = text[:pos] + data.draw(st.text(max_size=6)) + text[pos:]
        elif op == "toml":
            text = text[:pos] + data.draw(TOML_BITS) + text[pos:]
        elif op == "duplicate_line":
            text = "\n".join(lines[: i + 1] + [lines[i]] + lines[i + 1:])
        elif op == "swap_lines":
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        else:
            text = "\n".join(lines[:i] + lines[i + 1:])
    spec, diagnostics = parse_spec(text, file="railguard.toml")
    assert spec is not None or has_errors(diagnostics)
    for diagnostic in diagnostics:
        assert diagnostic.code and diagnostic.summary
        assert diagnostic.line is None or 1 <= diagnostic.line <= text.count("\n") + 1
    if spec is None or has_errors(diagnostics):
        return
    for env in spec.environments:  # whatever still validates can be planned against what was generated
        desired = desired_resources(spec, env)
        planner.plan(env, desired, data.draw(observed_states(desired)), 0)
