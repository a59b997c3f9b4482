"""Plan formats: a format-2 create carries no diff (its desired config implies it), a stored format-1 plan keeps
its diffs, its hash and its meaning, and whoever reads a change's fields (policies, the MCP brief, the console)
sees the same fields in both formats. The pinned hashes were computed before the format change and before the
hash was made faster: they must never move, or every stored plan would stop verifying."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from railguard.engine import planner
from railguard.mcp.briefs import change_brief
from railguard.model.canonical import canonical_json, digest
from railguard.model.plans import (
    PLAN_FORMAT,
    Action,
    Change,
    Effect,
    Plan,
    PlanSource,
    Risk,
    Verdict,
    canonical_change,
    change_diffs,
    diff_configs,
)
from railguard.model.principals import Principal, Role
from railguard.model.resources import (
    ObservedResource,
    Resource,
    canonical_resource,
    desired_digest,
    desired_resources,
    make_resource,
)
from railguard.model.sensitivity import REDACTED
from railguard.model.specfile import parse_spec
from railguard.policy.guardrails import Facts, evaluate
from railguard.state.store import Store

CONFIG = {"run": ["python", "app.py"], "replicas": 2, "env": {"API_TOKEN": "t0ps3cret", "MODE": "x"},
          "health": {"http": "/h", "interval_ms": 1000}, "routes": [{"host": "a.test", "path": "/"}], "secrets": []}
WEB = make_resource("staging", "service", "web", CONFIG, [])
EDGE = make_resource("staging", "edge", "edge", {"port": 8080, "routes": [{"host": "a.test", "path": "/",
                                                                          "service": "web"}]},
                     ["staging/service.web"])
UPDATE = Change(address=EDGE.address, kind="edge", action=Action.update, reason="routes are added to the edge",
                risk=Risk.safe, diff=diff_configs({"port": 8080, "routes": []}, EDGE.config),
                before_fingerprint="sha256:old", after_fingerprint=EDGE.fingerprint)


def _plan(plan_format: int) -> Plan:
    create = Change(address=WEB.address, kind="service", action=Action.create, reason="not live yet", risk=Risk.safe,
                    diff=diff_configs(None, CONFIG) if plan_format == 1 else [], after_fingerprint=WEB.fingerprint)
    return Plan(format=plan_format, env="staging", base_serial=3, desired_digest="sha256:d", changes=[create, UPDATE],
                desired=[WEB, EDGE], verdicts=[Verdict(rule="guard.freeze", effect=Effect.warn, message="m")],
                requested_by="user:test",
                source=PlanSource(digest="sha256:src", files=1, bytes=10, spec_digest="sha256:spec"))


def test_hashes_of_both_formats_are_pinned() -> None:
    assert _plan(1).content_hash() == "sha256:61d81591847c8d57b2775d0abb67ef0d820ae184f7b3bf07ec79cb203951e693"
    assert _plan(2).content_hash() == "sha256:e990256e8fb03ce58053324d7649c2dd6616bc8919dfca1d8565196a577fa37e"


def test_the_planner_makes_format_2_creates_whose_fields_are_implied_by_the_desired_config() -> None:
    made = planner.plan("staging", [WEB, EDGE], [], 0)
    assert made.format == PLAN_FORMAT == 2
    create = made.changes[0]
    assert (create.action, create.diff) == (Action.create, [])
    implied = made.diffs()(create)
    assert implied == diff_configs(None, CONFIG) == _plan(1).changes[0].diff
    assert {d.path: d.after for d in implied}["env.API_TOKEN"] == REDACTED  # redacted as a stored diff is
    edge = made.changes[1]  # a create too: its own config's fields
    assert edge.diff == [] and [d.path for d in made.diffs()(edge)] == ["port", "routes"]


def test_a_stored_format_1_plan_loads_verifies_and_shows_its_own_diffs(tmp_path: Path) -> None:
    store = Store.open(tmp_path / ".railguard")
    old = _plan(1)
    saved = store.save_plan(old)
    loaded, stored_hash, _ = store.load_plan(saved.id)
    assert loaded.format == 1 and loaded.content_hash() == stored_hash == saved.hash == old.content_hash()
    diffs = loaded.diffs()
    assert diffs(loaded.changes[0]) == old.changes[0].diff and diffs(loaded.changes[1]) == UPDATE.diff
    # A format-1 create's fields are what it stored, never recomputed from desired.
    assert change_diffs(1, [])(loaded.changes[0]) == old.changes[0].diff


def test_the_format_is_covered_by_the_hash_and_a_create_cannot_drop_its_diff_in_format_1(tmp_path: Path) -> None:
    store = Store.open(tmp_path / ".railguard")
    saved = store.save_plan(_plan(2))
    relabelled = saved.model_copy(update={"format": 1})
    assert relabelled.content_hash() != saved.hash
    # A format-1 plan whose create lost its diff is another plan (another hash), and shows no fields.
    stripped = _plan(1).model_copy(update={"changes": _plan(2).changes})
    assert stripped.content_hash() != _plan(1).content_hash()
    assert stripped.diffs()(stripped.changes[0]) == []


def test_policies_the_mcp_brief_and_both_formats_see_the_same_fields_of_a_create() -> None:
    rule = {"name": "no-debug", "expression": 'change.action == "create" && "env.API_TOKEN" in change.paths',
            "effect": "deny", "message": "no", "environments": None}
    env = make_resource("staging", "environment", "environment",
                        {"protected": False, "promote_from": None, "soak_ms": 0, "max_disruptive_changes": 5,
                         "freezes": [], "policies": [rule]}, [])
    facts = Facts(principal=Principal(id="user:test", role=Role.admin), now=None,  # type: ignore[arg-type]
                  protected_in_state=False, soaked=lambda service, source: None)
    for plan_format in (1, 2):
        plan = _plan(plan_format)
        plan = plan.model_copy(update={"desired": [*plan.desired, env]})
        found = [(v.rule, v.effect, v.address) for v in evaluate(plan, facts)]
        assert found == [("policy:no-debug", Effect.deny, WEB.address)], plan_format
        brief = change_brief(plan.changes[0], plan.diffs()(plan.changes[0]))
        assert [d.path for d in brief.diff][:3] == ["env.API_TOKEN", "env.MODE", "health.http"]


def _golden_desired() -> list[Resource]:
    import tomllib

    found = []
    for case in sorted((Path(__file__).parent / "golden" / "plans").glob("*.case.toml")):
        data = tomllib.loads(case.read_text())
        for text in (data["desired"], data.get("live")):
            spec, _ = parse_spec(text) if text else (None, [])
            if spec is not None:
                found += desired_resources(spec, data["env"], "sha256:src", {"S": 2})
    return found


def test_the_hash_reuses_each_configs_canonical_text_exactly() -> None:
    desired = _golden_desired()
    assert len(desired) > 40
    for resource in desired:
        assert "_canonical_config" in resource.__dict__  # the fast path is the one checked here
        assert canonical_resource(resource) == canonical_json(resource.model_dump(mode="json"))
        assert resource.fingerprint == digest(resource.config)


def test_a_config_that_is_not_plain_json_or_was_replaced_is_encoded_again() -> None:
    odd = make_resource("staging", "service", "web", {"at": datetime(2026, 1, 1, tzinfo=UTC), "x": float("nan")}, [])
    assert "_canonical_config" not in odd.__dict__ and odd.fingerprint == digest(odd.config)
    assert canonical_resource(odd) == canonical_json(odd.model_dump(mode="json"))
    copied = WEB.model_copy(update={"config": {**CONFIG, "replicas": 3}})
    assert canonical_resource(copied) == canonical_json(copied.model_dump(mode="json"))
    assert '"replicas":3' in canonical_resource(copied)
    plan = _plan(2)
    assert plan.model_copy(update={"desired": [copied, EDGE]}).content_hash() != plan.content_hash()


def test_each_changes_canonical_text_is_exactly_its_dumps() -> None:
    desired = _golden_desired()
    live = [ObservedResource(address=r.address, kind=r.kind, fingerprint="sha256:old", depends_on=r.depends_on,
                             config={**r.config, "replicas": 1, "run": ["old"]}) for r in desired[::2]]
    gone = [ObservedResource(address="staging/service.gone", kind="service", fingerprint="x",
                             config={"env": {"API_KEY": "k"}, "n": 1.5})]
    changes = [*planner.plan("staging", desired, [*live, *gone], 1).changes, *_plan(1).changes,
               Change(address="a", kind="service", action=Action.command, reason='quotes " and é', risk=Risk.safe)]
    assert {c.action for c in changes} >= {Action.create, Action.update, Action.replace, Action.delete}
    for change in changes:
        assert canonical_change(change) == canonical_json(change.model_dump(mode="json"))


def test_the_cycle_search_skipped_for_an_ordered_graph_still_finds_a_resource_naming_itself() -> None:
    selfish = make_resource("staging", "service", "a", {}, ["staging/service.a"])
    fine = make_resource("staging", "service", "b", {}, [])
    assert [(d.code, d.extra.get("cycle")) for d in planner.plan("staging", [selfish, fine], [], 0).diagnostics] == [
        ("spec.dependency_cycle", ["staging/service.a"])]
    assert planner.plan("staging", [fine], [], 0).diagnostics == []


def test_the_stored_body_is_the_sealed_plans_canonical_json_and_hashes_as_it_always_did(tmp_path: Path) -> None:
    desired = _golden_desired()
    live = [ObservedResource(address=r.address, kind=r.kind, fingerprint="sha256:old", depends_on=r.depends_on,
                             config={**r.config, "replicas": 1}) for r in desired[::3]]
    planned = planner.plan("staging", desired, live, 4)
    plans = [planned, planned.model_copy(update={"allow_data_loss": ["t"], "requested_by": "é \" x"}), _plan(1),
             _plan(2)]
    for plan in plans:
        sealed, body = plan.sealed_with_body("plan-1", "2026-12-03T00:00:00Z")
        assert sealed == plan.sealed("plan-1", "2026-12-03T00:00:00Z")
        assert body == canonical_json(sealed.model_dump(mode="json"))
        assert Plan.model_validate_json(body) == sealed
        assert Plan.model_validate_json(body).content_hash() == sealed.hash
    store = Store.open(tmp_path)
    saved = store.save_plan(planned)
    assert store.plan_body(saved.id) == canonical_json(saved.model_dump(mode="json"))
    assert store.load_plan(saved.id)[0] == saved


def test_the_desired_digest_is_the_digest_of_the_address_ordered_triples() -> None:
    desired = [*_golden_desired(), make_resource("staging", "service", "é\"\\x", {}, ["staging/service.ü"])]
    for resources in (desired, desired[::-1], desired[:1], []):
        ordered = sorted(resources, key=lambda r: r.address)
        assert desired_digest(resources) == digest([(r.address, r.fingerprint, r.depends_on) for r in ordered])


def test_a_desired_digest_of_fields_that_are_not_str_is_the_digest_itself() -> None:
    odd = make_resource("staging", "service", "w", {}, []).model_copy(update={"depends_on": [1]})
    assert desired_digest([odd]) == digest([(odd.address, odd.fingerprint, [1])])
