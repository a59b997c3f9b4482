"""The pure parts of the MCP server: what a diagnosis concludes, which next actions follow, result bounds, binds."""

from __future__ import annotations

import pytest

from railguard.mcp import catalog, server  # noqa: F401 - importing the server registers every tool
from railguard.mcp.diagnose import assess, fold
from railguard.mcp.http import parse_bind
from railguard.mcp.outputs import Payload
from railguard.mcp.results import MAX_LIST, MAX_STRING, Outcome, act, clip, render
from railguard.mcp.suggest import after_plan
from railguard.model.api import EnvironmentStatus, Operation, PlanAnswer, Release, ReleaseStatus
from railguard.model.diagnostics import RailguardError
from railguard.model.plans import Plan
from railguard.model.principals import Principal, Role
from railguard.model.resources import Resource

AT = "2026-01-01T00:00:00Z"


def _status(release: int, restarts: int = 0, health: str = "healthy", warm: tuple[int, ...] = ()) -> EnvironmentStatus:
    return EnvironmentStatus.model_validate({
        "env": "staging", "serial": 1, "edge": {"running": True}, "operation": None,
        "drift": {"live_differs": False, "details": []},
        "services": [{"name": "web", "address": "staging/service.web", "status": "healthy", "release": release,
                      "replicas": [{"name": "web-1", "health": health, "restarts": restarts}],
                      "warm": [{"release": w, "replicas": 1, "until_s": 60} for w in warm]}]})


def _release(number: int, status: str, op: str | None = None) -> Release:
    return Release(number=number, status=ReleaseStatus(status), operation_id=op, created_at=AT)


def _failed(op_id: str) -> Operation:
    return Operation.model_validate({
        "id": op_id, "env": "staging", "kind": "apply", "status": "failed", "principal": "user:me",
        "created_at": AT, "updated_at": AT, "journal": [
            {"step": "replace staging/service.web", "phase": "begin", "at": AT},
            {"step": "replace staging/service.web", "phase": "fail", "at": AT}],
        "error": {"diagnostics": [{"code": "rollout.crashed", "summary": "crashed", "detail": "d",
                                   "remediation": "r"}]}})


def test_a_rollout_that_failed_before_its_switch_needs_no_rollback() -> None:
    releases = [_release(3, "failed", "op-3"), _release(2, "live"), _release(1, "superseded")]
    found = assess("staging", None, _status(2), releases, _failed("op-3"))
    assert found.verdict == "failed" and found.cause is not None and found.cause.code == "rollout.crashed"
    assert [a.tool for a in found.actions] == ["read_logs", "plan"]
    assert found.actions[0].arguments["release"] == 3 and found.last_good_release == 2


def test_a_half_switched_failure_rolls_back_to_the_last_healthy_release() -> None:
    releases = [_release(3, "failed", "op-3"), _release(2, "live"), _release(1, "superseded")]
    found = assess("staging", None, _status(3), releases, _failed("op-3"))
    assert found.actions[0] == act("rollback", found.actions[0].why, env="staging", to=2)


def test_a_crashing_live_release_rolls_back_to_the_one_before_it() -> None:
    releases = [_release(3, "live"), _release(2, "failed"), _release(1, "superseded")]
    found = assess("staging", "web", _status(3, restarts=2, warm=(1,)), releases, None)
    assert found.verdict == "crashing" and found.cause is not None and found.cause.code == "service.degraded"
    assert found.actions[0].arguments == {"env": "staging", "to": 1} and "warm" in found.actions[0].why
    assert assess("staging", "web", _status(3, health="unknown"), releases, None).verdict == "healthy"
    assert assess("staging", "web", _status(3, health="down"), releases, None).verdict == "degraded"
    assert assess("staging", "api", _status(3), releases, None).verdict == "missing"


def test_log_tails_fold_repeats() -> None:
    assert fold(["a", "b", "b", "b", "c"]) == ["a", "b  [×3]", "c"]


def _plan(decision: str, desired: list[Resource] | None = None, rules: tuple[str, ...] = ()) -> PlanAnswer:
    """A saved plan for production with one create and verdicts that make ``decision`` the strictest."""
    plan = Plan.model_validate({
        "id": "plan-1", "env": "production", "base_serial": 1, "desired_digest": "sha256:0", "hash": "sha256:1",
        "changes": [{"address": "production/service.web", "kind": "service", "action": "create", "reason": "new",
                     "risk": "safe"}], "desired": desired or [],
        "verdicts": [{"rule": r, "effect": decision, "message": "m"} for r in rules or ("guard.x",)]})
    return PlanAnswer.of(plan, "00000001")


def test_next_actions_after_a_plan() -> None:
    assert [a.tool for a in after_plan(_plan("require_approval"), proposed=False)] == ["request_approval",
                                                                                        "approval_status"]
    environment = Resource(address="production/environment", env="production", kind="environment", name="production",
                           config={"promote_from": "staging"}, fingerprint="f")
    denied = _plan("deny", [environment], rules=("guard.promotion",))
    assert after_plan(denied, proposed=False)[0].arguments == {"from_env": "staging", "to_env": "production"}
    assert [a.tool for a in after_plan(_plan("allow"), proposed=True)] == ["show_plan"]  # the file must say it first
    assert [a.tool for a in after_plan(_plan("allow"), proposed=False)] == ["apply_plan"]


class _Big(Payload):
    big: str | None = None
    many: list[int] | None = None


def test_results_are_bounded_and_next_actions_only_name_allowed_tools() -> None:
    outcome = Outcome("s", _Big(big="x" * (MAX_STRING * 3), many=list(range(MAX_LIST * 2))),
                      next_actions=[act("rollback", "w"), act("get_status", "w", env="staging")])
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
    assert len(catalog.TOOLS) == 26 and set(catalog.ORDER) == set(catalog.TOOLS)
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


def test_a_result_carries_the_fields_its_tool_set_and_its_schema_is_the_payload_model() -> None:
    from railguard.mcp.briefs import change_brief, operation_brief
    from railguard.mcp.outputs import Operations, PlanPayload, result_model
    from railguard.model.plans import Change

    listing = render(Outcome("s", Operations(operations=[operation_brief(_failed("op-3"))])), frozenset())
    data = listing.structured_content
    assert isinstance(data, dict) and data["operations"][0]["failed_step"] == "replace staging/service.web"
    assert "steps" not in data["operations"][0] and data["operations"][0]["steps_total"] == 2  # get_operation has them
    change = Change(address="staging/service.web", kind="service", action="update", reason="r", risk="safe",
                    diff=[{"path": f"env.K{i}", "before": "x" * 300, "after": i} for i in range(12)])
    brief = change_brief(change).model_dump(mode="json")
    assert brief["diff_more"] == 2 and len(brief["diff"]) == 10 and len(brief["diff"][0]["before"]) == 201
    assert "diff_more" not in change_brief(change.model_copy(update={"diff": []})).model_dump(mode="json")
    plan = render(Outcome("s", PlanPayload(changes=[change_brief(change)])), frozenset()).structured_content
    assert isinstance(plan, dict) and set(plan) == {"ok", "summary", "diagnostics", "next_actions", "changes"}
    schema = catalog.TOOLS["plan"].definition().output_schema
    assert schema is not None and set(result_model(PlanPayload).model_fields) <= set(schema["properties"])
    assert set(schema["required"]) == {"ok", "summary", "diagnostics", "next_actions"}


def test_a_status_page_is_ordered_as_the_briefs_of_every_service_would_be() -> None:
    """``get_status`` orders the daemon's records and briefs only the page: the order (problems first, recent
    restarts before all, then by name) and each brief are those of briefing every service first."""
    from railguard.mcp import briefs
    from railguard.model.api import ServiceStatus

    def svc(name: str, status: str, restarts: int = 0, recent: int | None = None) -> ServiceStatus:
        replica = {"name": f"{name}.0", "health": "healthy", "restarts": restarts}
        if recent is not None:  # an older daemon does not send it: the total counts
            replica["recent_restarts"] = recent
        return ServiceStatus.model_validate({"name": name, "address": f"staging/service.{name}", "release": 1,
                                             "status": status, "replicas": [replica]})

    services = [svc("a", "healthy"), svc("b", "degraded"), svc("c", "healthy", 3, recent=0),
                svc("d", "healthy", 2, recent=1), svc("e", "missing"), svc("f", "progressing", 1),
                svc("g", "unknown")]
    every = briefs.problems_first([briefs.service_brief(s) for s in services])
    ordered = briefs.statuses_problems_first(services)
    assert [briefs.service_brief(s) for s, _ in ordered] == every
    assert [r for _, r in ordered] == [b.restarts for b in every]
    assert [s.name for s, _ in ordered][:3] == ["d", "f", "b"]


def test_status_with_asks_an_older_daemon_for_each_read_on_its_own() -> None:
    """A daemon that does not know ``status?with=`` answers the status alone: the reads asked along are then made
    one request each, as before; a daemon that knows it is asked once."""
    from typing import Any, cast

    from railguard.client import Client
    from railguard.mcp.gateway import status_with

    status = _status(1).model_dump(mode="json")

    class Daemon:  # the two answers of GET /v1/status, and the routes of their own
        def __init__(self, knows_with: bool) -> None:
            self.knows_with, self.asked = knows_with, []

        def call(self, method: str, path: str, params: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:
            self.asked.append(path)
            if path == "status" and self.knows_with:
                return {"status": status, "releases": [], "events": [], "incidents": [], "operations": []}
            return {"status": status} if path == "status" else {"operations": []}

        def releases(self, env: str, limit: int) -> list[Release]:
            self.asked.append("releases")
            return [_release(1, "live")]

        def events(self, env: str, limit: int) -> list[Any]:
            self.asked.append("events")
            return []

        def incidents(self, env: str) -> list[Any]:
            self.asked.append("incidents")
            return []

    old, new = Daemon(False), Daemon(True)
    found = status_with(cast(Client, old), "staging", None, releases=50, events=40, operations=1, incidents=True)
    assert old.asked == ["status", "releases", "events", "operations", "incidents"]
    assert [r.number for r in found.releases or []] == [1] and found.status.env == status["env"]
    found = status_with(cast(Client, new), "staging", None, releases=50, events=40, operations=1, incidents=True)
    assert new.asked == ["status"] and found.releases == [] and found.incidents == []
