"""Fuzzing: random documents, near-valid specs and edits of a fixed spec never crash validate or plan.

Whatever the text, ``parse_spec`` returns diagnostics (never raises), and every spec it
accepts can be planned against any mix of live resources without an exception. Almost none
of these inputs is valid: the properties of valid specs and of the planner live in
tests/test_properties.py. Example counts come from the Hypothesis profile (tests/conftest.py).
"""

from __future__ import annotations

from typing import Any

import tomli_w
from hypothesis import given
from hypothesis import strategies as st

from railguard.engine import planner
from railguard.model.diagnostics import has_errors
from railguard.model.resources import LiveStatus, ObservedResource, desired_resources
from railguard.model.specfile import parse_spec

from .conftest import BASE_SPEC

FIELD_NAMES = ["app", "name", "source", "environments", "services", "edge_port", "protected", "target", "run",
               "build", "release", "replicas", "health", "http", "tcp", "exec", "interval", "timeout", "env",
               "secrets", "depends_on", "routes", "host", "path", "listen", "port_env", "start_timeout",
               "staging", "web", "api", "../x", "a b", "PORT", "stop_timeout", "drain_timeout", "data_dir"]
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(min_size=1, max_size=8))
scalars = st.one_of(
    st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.text(max_size=12),
    st.sampled_from(["2s", "5m", "1h30m", "0s", "/", "/api", "web", "api", "x;rm", "$PORT"]),
    st.floats(allow_nan=False, allow_infinity=False),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)), max_leaves=30)
documents = st.dictionaries(keys, values, max_size=6)


def _check_never_raises(text: str) -> None:
    spec, diagnostics = parse_spec(text, file="fuzz.toml")
    assert spec is not None or has_errors(diagnostics)
    if spec is None or has_errors(diagnostics):
        return
    for env in spec.environments:
        desired = desired_resources(spec, env)
        observed = [ObservedResource(address=r.address, kind=r.kind, fingerprint="sha256:old", config={},
                                     depends_on=r.depends_on, status=LiveStatus.degraded) for r in desired[::2]]
        observed.append(ObservedResource(address=f"{env}/service.gone", kind="service", fingerprint="x",
                                         config={"replicas": 2}, depends_on=[f"{env}/service.ghost"]))
        planner.plan(env, desired, observed, 0)


@given(documents)
def test_random_documents_never_crash(doc: dict[str, Any]) -> None:
    _check_never_raises(tomli_w.dumps(doc))


def _valid_like() -> st.SearchStrategy[dict[str, Any]]:
    service = st.fixed_dictionaries(
        {"run": st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=3)},
        optional={"replicas": st.integers(-1, 101), "depends_on": st.lists(st.sampled_from(["web", "api", "db"])),
                  "routes": st.lists(st.fixed_dictionaries({"path": st.sampled_from(["/", "/api", "bad"])}),
                                     max_size=2),
                  "health": st.fixed_dictionaries({"http": st.sampled_from(["/h", "x"])},
                                                  optional={"interval": st.sampled_from(["1s", "9x"])}),
                  "env": st.dictionaries(st.sampled_from(["A", "PORT", "DB_PASSWORD", "b c"]), st.text(max_size=4))})
    envs = st.dictionaries(st.sampled_from(["staging", "production", "Bad"]),
                           st.fixed_dictionaries({"edge_port": st.integers(0, 70000)},
                                                 optional={"protected": st.booleans()}), max_size=3)
    return st.fixed_dictionaries({"app": st.fixed_dictionaries({"name": st.sampled_from(["shop", "Shop!"])}),
                                  "environments": envs,
                                  "services": st.dictionaries(st.sampled_from(["web", "api", "db"]), service)})


@given(_valid_like())
def test_near_valid_specs_never_crash(doc: dict[str, Any]) -> None:
    _check_never_raises(tomli_w.dumps(doc))


@given(st.data())
def test_mutated_spec_text_never_crashes(data: st.DataObject) -> None:
    text = BASE_SPEC
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(text)))
        op = data.draw(st.sampled_from(["delete", "insert", "duplicate_line"]))
        if op == "delete":
            text = text[:pos] + text[pos + data.draw(st.integers(1, 10)):]
        elif op == "insert":
            text = text[:pos] + data.draw(st.text(max_size=6)) + text[pos:]
        else:
            lines = text.splitlines()
            i = data.draw(st.integers(0, len(lines) - 1))
            text = "\n".join(lines[: i + 1] + [lines[i]] + lines[i + 1:])
    _check_never_raises(text)
