"""Planner golden files: each case is desired spec + live spec (+ live status) -> expected plan.

A case lives in tests/golden/plans/<name>.case.toml; the expected plan (actions, reasons,
risks, order, diffs) in <name>.expected.json. Set UPDATE_GOLDEN=1 to rewrite the expected
files after an intended change, then review the diff in git.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest

from railguard.engine.planner import plan
from railguard.model.resources import LiveStatus, ObservedResource, desired_resources
from railguard.model.specfile import parse_spec

GOLDEN = Path(__file__).parent / "golden" / "plans"
CASES = sorted(p.name.removesuffix(".case.toml") for p in GOLDEN.glob("*.case.toml"))


def _resources(text: str, env: str) -> list[Any]:
    spec, diags = parse_spec(text)
    assert spec is not None, [d.summary for d in diags]
    return desired_resources(spec, env)


def run_case(name: str) -> dict[str, Any]:
    case = tomllib.loads((GOLDEN / f"{name}.case.toml").read_text())
    env = case["env"]
    desired = _resources(case["desired"], env)
    status = case.get("live_status", {})
    observed = [
        ObservedResource(address=r.address, kind=r.kind, fingerprint=r.fingerprint, config=r.config,
                         depends_on=r.depends_on, status=LiveStatus(status.get(r.address, "running")))
        for r in (_resources(case["live"], env) if "live" in case else [])
    ]
    result = plan(env, desired, observed, base_serial=7)
    return {
        "errored": result.errored,
        "diagnostics": [d.code for d in result.diagnostics],
        "changes": [
            {"address": c.address, "action": c.action.value, "risk": c.risk.value, "reason": c.reason,
             "diff": [d.model_dump(mode="json") for d in c.diff if c.action.value in ("update", "replace")]}
            for c in result.changes
        ],
    }


@pytest.mark.parametrize("name", CASES)
def test_planner_golden(name: str) -> None:
    got = run_case(name)
    expected_path = GOLDEN / f"{name}.expected.json"
    if os.environ.get("UPDATE_GOLDEN"):
        expected_path.write_text(json.dumps(got, indent=2) + "\n")
    assert got == json.loads(expected_path.read_text())


def test_there_are_cases() -> None:
    assert len(CASES) >= 10
