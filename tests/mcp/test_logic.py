"""The pure parts of the MCP server: what a diagnosis concludes, which next actions follow, result bounds, binds."""

from __future__ import annotations

from typing import Any

import pytest

from railguard.mcp import catalog, server  # noqa: F401 - importing the server registers every tool
from railguard.mcp.diagnose import assess, fold
from railguard.mcp.http import parse_bind
from railguard.mcp.results import MAX_LIST, MAX_STRING, Outcome, clip, render
from railguard.mcp.suggest import after_plan
from railguard.model.diagnostics import RailguardError
from railguard.model.principals import Principal, Role


def _status(release: int, restarts: int = 0, health: str = "healthy", warm: tuple[int, ...] = ()) -> dict[str, Any]:
    return {"services": [{"name": "web", "address": "staging/service.web", "status": "healthy", "release": release,
                          "replicas": [{"health": health, "restarts": restarts}],
                          "warm": [{"release": w} for w in warm]}], "operation": None}


def _release(number: int, status: str, op: str | None = None) -> dict[str, Any]:
    return {"number": number, "status": status, "operation_id": op}


def _failed(op_id: str) -> dict[str, Any]:
    return {"id": op_id, "env": "staging", "kind": "apply", "status": "failed", "journal": [
        {"step": "replace staging/service.web", "phase": "begin"},
        {"step": "replace staging/service.web", "phase": "fail"}],
        "error": {"diagnostics": [{"code": "rollout.crashed", "summary": "crashed", "detail": "d",
                                   "remediation": "r"}]}}


def test_a_rollout_that_failed_before_its_switch_needs_no_rollback() -> None:
    releases = [_release(3, "failed", "op-3"), _release(2, "live"), _release(1, "superseded")]
    found = assess("staging", None, _status(2), releases, _failed("op-3"))
    assert found["verdict"] == "failed" and found["cause"].code == "rollout.crashed"
    assert [a["tool"] for a in found["actions"]] == ["read_logs", "plan"]
    assert found["actions"][0]["arguments"]["release"] == 3 and found["last_good_release"] == 2


def test_a_half_switched_failure_rolls_back_to_the_last_healthy_release() -> None:
    releases = [_release(3, "failed", "op-3"), _release(2, "live"), _release(1, "superseded")]
    found = assess("staging", None, _status(3), releases, _failed("op-3"))
    assert found["actions"][0] == {"tool": "rollback", "arguments": {"env": "staging", "to": 2},
                                   "why": found["actions"][0]["why"]}


def test_a_crashing_live_release_rolls_back_to_the_one_before_it() -> None:
    releases = [_release(3, "live"), _release(2, "failed"), _release(1, "superseded")]
    found = assess("staging", "web", _status(3, restarts=2, warm=(1,)), releases, None)
    assert found["verdict"] == "crashing" and found["cause"].code == "service.degraded"
    assert found["actions"][0]["arguments"] == {"env": "staging", "to": 1} and "warm" in found["actions"][0]["why"]
    assert assess("staging", "web", _status(3, health="unknown"), releases, None)["verdict"] == "healthy"
    assert assess("staging", "web", _status(3, health="down"), releases, None)["verdict"] == "degraded"
    assert assess("staging", "api", _status(3), releases, None)["verdict"] == "missing"


def test_log_tails_fold_repeats() -> None:
    assert fold(["a", "b", "b", "b", "c"]) == ["a", "b  [×3]", "c"]


def test_next_actions_after_a_plan() -> None:
    plan = {"id": "plan-1", "env": "production", "summary": {"applyable": True, "decision": "require_approval"},
            "verdicts": [], "desired": []}
    assert [a["tool"] for a in after_plan(plan, proposed=False)] == ["request_approval", "approval_status"]
    denied = {**plan, "summary": {"applyable": True, "decision": "deny"}, "verdicts": [{"rule": "guard.promotion"}],
              "desired": [{"kind": "environment", "config": {"promote_from": "staging"}}]}
    assert after_plan(denied, proposed=False)[0]["arguments"] == {"from_env": "staging", "to_env": "production"}
    allowed = {**plan, "summary": {"applyable": True, "decision": "allow"}}
    assert [a["tool"] for a in after_plan(allowed, proposed=True)] == ["show_plan"]  # the file must say it first
    assert [a["tool"] for a in after_plan(allowed, proposed=False)] == ["apply_plan"]


def test_results_are_bounded_and_next_actions_only_name_allowed_tools() -> None:
    outcome = Outcome("s", {"big": "x" * (MAX_STRING * 3), "many": list(range(MAX_LIST * 2))},
                      next_actions=[{"tool": "rollback", "arguments": {}, "why": "w"},
                                    {"tool": "get_status", "arguments": {"env": "staging"}, "why": "w"}])
    result = render(outcome, frozenset({"get_status"}))
    data = result.structured_content
    assert isinstance(data, dict) and len(data["big"]) < MAX_STRING + 50 and len(data["many"]) == MAX_LIST
    assert [a["tool"] for a in data["next_actions"]] == ["get_status"]
    assert clip({"a": ("x",)}) == {"a": ["x"]}


def test_tools_by_role_and_annotations() -> None:
    def names(role: Role) -> set[str]:
        return {t.name for t in catalog.visible(Principal(id="t", role=role, kind="token"))}

    assert names(Role.viewer) == names(Role.approver) == {t.name for t in catalog.visible(None)}
    assert names(Role.agent) == names(Role.deployer) == names(Role.admin) == set(catalog.TOOLS)
    assert len(catalog.TOOLS) == 22 and set(catalog.ORDER) == set(catalog.TOOLS)
    for spec in catalog.TOOLS.values():
        hints = spec.definition().annotations
        assert hints is not None and not (hints.read_only_hint and hints.destructive_hint)
        assert spec.description and spec.definition().output_schema


@pytest.mark.parametrize(("address", "tls", "token", "code"), [
    ("0.0.0.0:8765", False, "t", "mcp.insecure_bind"),
    ("example.com:8765", False, "t", "mcp.insecure_bind"),
    ("127.0.0.1:8765", False, None, "mcp.token_required"),
    ("127.0.0.1:99999", False, "t", "mcp.invalid_arguments"),
    ("8765", False, "t", "mcp.invalid_arguments"),
])
def test_binds_that_are_refused(address: str, tls: bool, token: str | None, code: str) -> None:
    with pytest.raises(RailguardError) as caught:
        parse_bind(address, tls, token)
    assert caught.value.diagnostics[0].code == code


def test_binds_that_are_accepted() -> None:
    assert parse_bind("127.0.0.1:8765", False, "t") == ("127.0.0.1", 8765)
    assert parse_bind("[::1]:8765", False, "t") == ("::1", 8765)
    assert parse_bind("localhost:8765", False, "t") == ("localhost", 8765)
    assert parse_bind("0.0.0.0:8765", True, "t") == ("0.0.0.0", 8765)
