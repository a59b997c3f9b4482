"""What each console page shows, as data: fixed daemon answers in, the view model out, compared with golden files.

Regenerate after an intended change with ``RAILGUARD_UPDATE_GOLDEN=1 pytest tests/console/test_views.py`` and
review the diff like code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from railguard.console import views
from railguard.model.api import (
    AuditEntry,
    AuditVerification,
    EnvironmentStatus,
    Event,
    Incident,
    Operation,
    PlanDetail,
    Release,
    TokenInfo,
)
from railguard.model.principals import Principal, Role

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "console"
AT = "2026-12-02T06:00:00+00:00"
APPROVER = Principal(id="token:alice", role=Role.approver, kind="token")
AGENT = Principal(id="token:claude", role=Role.agent, kind="token")
VIEWER = Principal(id="token:vera", role=Role.viewer, envs=["staging"], kind="token")


def _status(env: str) -> EnvironmentStatus:
    return EnvironmentStatus.model_validate({
        "env": env, "serial": 4, "live_sets": 1,
        "services": [
            {"name": "web", "address": f"{env}/service.web", "release": 3, "status": "healthy", "replicas": [
                {"name": "web-1", "pid": 101, "port": 41001, "health": "healthy", "restarts": 0, "uptime_s": 60},
                {"name": "web-2", "pid": 102, "port": 41002, "health": "failing", "restarts": 2, "uptime_s": 3}],
             "requests": [{"window": "1m", "seconds": 60, "requests": 120, "rate": 2.0, "status_2xx": 118,
                           "status_5xx": 2, "error_ratio": 0.0167, "p50_ms": 3.0, "p95_ms": 20.0, "p99_ms": 42.0}]},
            {"name": "worker", "address": f"{env}/service.worker", "release": 3, "status": "degraded",
             "replicas": [{"name": "worker-1", "health": "down", "restarts": 1}]}],
        "edge": {"port": 18080, "url": "http://127.0.0.1:18080", "running": True, "routes": []},
        "operation": {"id": "op-1", "kind": "apply", "status": "running", "created_at": AT},
        "drift": {"live_differs": True, "details": ["source on disk differs from release 3"]}})


def _plan_detail(state: str = "requested", requested_by: str = "token:claude") -> PlanDetail:
    diff = [{"path": "replicas", "before": 1, "after": 2}, {"path": "env.MODE", "before": "a", "after": "b"},
            {"path": "secrets", "before": [], "after": ["API_TOKEN"]}]
    changes = [
        {"address": "production/service.web", "kind": "service", "action": "update", "reason": "config changed",
         "risk": "disruptive", "diff": diff},
        {"address": "production/service.old", "kind": "service", "action": "delete", "reason": "not in the spec",
         "risk": "destructive", "diff": []},
        {"address": "production/service.api", "kind": "service", "action": "create", "reason": "new",
         "risk": "safe", "diff": []}]
    return PlanDetail.model_validate({
        "plan": {"id": "plan-0a2512907e25", "created_at": AT, "env": "production", "base_serial": 3,
                 "desired_digest": "sha256:" + "d" * 64, "changes": changes, "desired": [],
                 "requested_by": requested_by, "hash": "sha256:f5f975d7" + "0" * 56, "short_hash": "f5f975d7",
                 "verdicts": [{"rule": "guard.agent_in_protected", "effect": "require_approval",
                               "message": "an agent changes protected 'production'", "approvers": ["approver"]},
                              {"rule": "guard.protected_delete", "effect": "require_approval",
                               "address": "production/service.old", "message": "deletes a service",
                               "confirm": "production/service.old"}],
                 "summary": {"id": "plan-0a2512907e25", "env": "production", "hash": "sha256:f5f975d7" + "0" * 56,
                             "base_serial": 3, "errored": False, "applyable": False, "max_risk": "destructive",
                             "counts": {"create": 1, "update": 1, "delete": 1}, "decision": "require_approval",
                             "requested_by": requested_by}},
        "status": "saved", "approvals": [],
        "approval": {"plan_id": "plan-0a2512907e25", "state": state, "required": True,
                     "rules": ["guard.agent_in_protected"], "approvers": ["approver", "admin"],
                     "confirm": ["production/service.old"], "command": "railguard approve plan-0a2512907e25",
                     "requests": [{"at": AT, "by": "token:claude", "message": "token:claude asks: ship it"}],
                     "decisions": []}})


def _operation() -> Operation:
    return Operation.model_validate({
        "id": "op-1", "env": "production", "kind": "apply", "plan_id": "plan-0a2512907e25", "status": "failed",
        "principal": "token:claude", "created_at": AT, "updated_at": AT,
        "error": {"diagnostics": [{"code": "rollout.unhealthy", "summary": "web never became healthy",
                                   "detail": "3 checks failed", "remediation": "read the logs"}]},
        "journal": [{"step": "build web", "phase": "end", "detail": {"digest": "sha256:ab"}, "at": AT},
                    {"step": "start web", "phase": "fail", "detail": {}, "at": AT}]})


def _releases() -> list[Release]:
    return [Release.model_validate(r) for r in [
        {"number": 3, "created_at": AT, "status": "live", "live_at": AT, "plan_id": "plan-3", "operation_id": "op-3"},
        {"number": 2, "created_at": AT, "status": "superseded", "live_at": AT, "rollback_of": None},
        {"number": 1, "created_at": AT, "status": "failed"}]]


CASES: dict[str, Any] = {
    "overview_row": lambda: views.env_row(_status("staging"), protected=False),
    "environment": lambda: views.environment(_status("production"), True, _releases(), [Event(
        id=1, env="production", at=AT, kind="rollout.succeeded", address="production/service.web",
        message="release 3 live")], AGENT, [Incident(
        id="inc-1", env="production", kind="verification_failed", state="mitigated", service="worker", release=3,
        summary="release 3 answered 5xx to 40% of requests; rolled back", opened_at=AT)]),
    "plan_approver": lambda: views.plan(_plan_detail(), APPROVER),
    "plan_own": lambda: views.plan(_plan_detail(requested_by="token:alice"), APPROVER),
    "plan_agent": lambda: views.plan(_plan_detail(), AGENT),
    "plan_decided": lambda: views.plan(_plan_detail(state="approved"), APPROVER),
    "queue": lambda: views.queue([_plan_detail(), _plan_detail(state="approved")]),
    "operation": lambda: views.operation(_operation()),
    "audit": lambda: views.audit([AuditEntry(
        id=7, at=AT, principal="token:alice", action="plans/approve", env="production", plan_id="plan-1",
        outcome="ok", detail={"channel": "console"}, prev_hash="a", hash="b")],
        AuditVerification(ok=True, entries=7, problems=[])),
    "tokens": lambda: views.tokens([TokenInfo(id="tok-1", name="alice", role="approver", envs=None,
                                              created_at=AT, created_by="user:root")]),
}


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return [_dump(v) for v in value]


@pytest.mark.parametrize("case", sorted(CASES))
def test_view_matches_its_golden_file(case: str) -> None:
    got = json.dumps(_dump(CASES[case]()), indent=2, sort_keys=True) + "\n"
    path = GOLDEN / f"{case}.json"
    if os.environ.get("RAILGUARD_UPDATE_GOLDEN"):
        path.write_text(got)
    assert path.exists(), f"no golden file {path.name}: run with RAILGUARD_UPDATE_GOLDEN=1 and review it"
    assert got == path.read_text()
