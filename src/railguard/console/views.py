"""What each console page shows, computed from the daemon's answers: pure functions, no I/O.

Every page is a template over one of these view models, so what a supervisor sees is tested as
data (golden files of the rendered context in tests/golden/console) without a browser. The models
arrive already redacted by the daemon; nothing here can add a secret. Used by
:mod:`railguard.console.app`.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict

from railguard.model.api import (
    ApprovalState,
    AuditEntry,
    AuditVerification,
    EnvironmentStatus,
    Event,
    Health,
    Incident,
    Operation,
    PlanDetail,
    Release,
    RequestWindow,
    TokenInfo,
)
from railguard.model.plans import RISK_ORDER, Action, Effect, Risk, change_diffs
from railguard.model.principals import Permission, Principal

ACTION_ORDER = [Action.delete, Action.replace, Action.update, Action.create, Action.noop, Action.canary_step]
WAITING = (ApprovalState.needed, ApprovalState.requested)


class View(BaseModel):
    model_config = ConfigDict(frozen=True)


# -- environments ------------------------------------------------------------------------------


class EnvRow(View):
    env: str
    protected: bool
    health: Health
    live_release: int | None
    replicas_healthy: int
    replicas_total: int
    edge_url: str | None
    operation_id: str | None
    operation: str | None
    drift: bool
    incidents_open: int | None  # None: this daemon does not report incidents


def env_row(status: EnvironmentStatus, protected: bool, incidents_open: int | None = None) -> EnvRow:
    replicas = [r for s in status.services for r in s.replicas]
    releases = sorted({s.release for s in status.services if s.release is not None})
    op = status.operation
    return EnvRow(
        env=status.env, protected=protected,
        health=Health.worst([s.status for s in status.services], default=Health.missing),
        live_release=releases[-1] if releases else None,
        replicas_healthy=sum(1 for r in replicas if r.health == "healthy"), replicas_total=len(replicas),
        edge_url=status.edge.url if status.edge.running else None,
        operation_id=op.id if op else None, operation=f"{op.kind} {op.status}" if op else None,
        drift=status.drift.live_differs, incidents_open=incidents_open)


class ServiceRow(View):
    name: str
    address: str
    release: int | None
    health: Health
    replicas: list[str]  # "web-1: healthy, pid 123, 2 restarts"
    requests: str  # the last minute at the edge: "4.2 req/s, 0.0% 5xx, p99 12 ms", or "" when none


class IncidentRow(View):
    id: str
    kind: str
    state: str
    service: str | None
    summary: str
    opened_at: str


class ReleaseRow(View):
    number: int
    status: str
    created_at: str
    live_at: str | None
    plan_id: str | None
    operation_id: str | None
    rollback_target: bool  # a release that ran healthy and is not the live one
    rollback_of: int | None


class EventRow(View):
    at: str
    kind: str
    address: str | None
    message: str


class EnvironmentView(View):
    env: str
    protected: bool
    health: Health
    edge_url: str | None
    drift: list[str]
    operation_id: str | None
    services: list[ServiceRow]
    releases: list[ReleaseRow]
    events: list[EventRow]
    incidents: list[IncidentRow]
    can_rollback: bool


def _minute(windows: list[RequestWindow]) -> str:
    found = next((w for w in windows if w.window == "1m" and w.requests), None)
    if found is None:
        return ""
    p99 = f", p99 {found.p99_ms:.0f} ms" if found.p99_ms is not None else ""
    return f"{found.rate:.1f} req/s, {found.error_ratio:.1%} 5xx{p99} (last minute)"


def environment(status: EnvironmentStatus, protected: bool, releases: list[Release], events: list[Event],
                viewer: Principal, incidents: list[Incident] | None = None) -> EnvironmentView:
    live = {s.release for s in status.services if s.release is not None}
    services = [ServiceRow(
        name=s.name, address=s.address, release=s.release, health=s.status,
        replicas=[f"{r.name}: {r.health}" + (f", pid {r.pid}" if r.pid else "")
                  + (f", {r.restarts} restart{'s' if r.restarts != 1 else ''}" if r.restarts else "")
                  for r in s.replicas], requests=_minute(s.requests)) for s in status.services]
    rows = [ReleaseRow(number=r.number, status=str(r.status), created_at=r.created_at, live_at=r.live_at,
                       plan_id=r.plan_id, operation_id=r.operation_id,
                       rollback_target=r.status.ran_healthy and r.number not in live, rollback_of=r.rollback_of)
            for r in releases]
    return EnvironmentView(
        env=status.env, protected=protected,
        health=Health.worst([s.status for s in status.services], default=Health.missing),
        edge_url=status.edge.url if status.edge.running else None,
        drift=status.drift.details if status.drift.live_differs else [],
        operation_id=status.operation.id if status.operation else None,
        services=services, releases=rows, events=[event_row(e) for e in events],
        incidents=[IncidentRow(id=i.id, kind=str(i.kind), state=str(i.state), service=i.service, summary=i.summary,
                               opened_at=i.opened_at) for i in incidents or []],
        can_rollback=viewer.allows(Permission.apply, status.env))


def event_row(e: Event) -> EventRow:
    return EventRow(at=e.at, kind=e.kind, address=e.address, message=e.message)


# -- plans and approvals -----------------------------------------------------------------------


class DiffRow(View):
    path: str
    before: str
    after: str


class ChangeRow(View):
    address: str
    risk: Risk
    reason: str
    diff: list[DiffRow]


class ActionGroup(View):
    action: Action
    changes: list[ChangeRow]


class VerdictRow(View):
    rule: str
    effect: Effect
    address: str | None
    message: str
    remediation: str


class DecisionRow(View):
    principal: str
    decision: str
    reason: str
    created_at: str
    expired: bool


class PlanView(View):
    id: str
    env: str
    status: str
    hash: str
    short_hash: str
    created_at: str
    requested_by: str
    max_risk: str
    decision: str
    applyable: bool
    counts: dict[str, int]
    groups: list[ActionGroup]
    verdicts: list[VerdictRow]
    diagnostics: list[str]
    approval_state: ApprovalState
    approvers: list[str]
    confirm: list[str]
    decisions: list[DecisionRow]
    requests: list[str]
    may_decide: bool  # the viewer may approve or reject this plan now
    why_not: str  # why the viewer may not, shown instead of the form


def _text(value: object) -> str:
    """A diff value as a reader expects it: strings bare, everything else as JSON (never Python's repr)."""
    return "" if value is None else value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def plan(detail: PlanDetail, viewer: Principal) -> PlanView:
    p, approval = detail.plan, detail.approval
    groups = []
    diffs = change_diffs(p.format, p.desired)  # a create's fields are implied by its desired config (plan format 2)
    for action in ACTION_ORDER:
        changes = sorted((c for c in p.changes if c.action == action),
                         key=lambda c: (-RISK_ORDER[c.risk], c.address))
        if changes:
            groups.append(ActionGroup(action=action, changes=[ChangeRow(
                address=c.address, risk=c.risk, reason=c.reason,
                diff=[DiffRow(path=d.path, before=_text(d.before), after=_text(d.after)) for d in diffs(c)])
                for c in changes]))
    may, why = _may_decide(detail, viewer)
    return PlanView(
        id=p.id, env=p.env, status=str(detail.status), hash=p.hash, short_hash=p.short_hash,
        created_at=p.created_at, requested_by=p.requested_by, max_risk=p.summary.max_risk,
        decision=p.summary.decision, applyable=p.summary.applyable, counts=p.summary.counts, groups=groups,
        verdicts=[VerdictRow(rule=v.rule, effect=v.effect, address=v.address, message=v.message,
                             remediation=v.remediation) for v in p.verdicts],
        diagnostics=[f"{d.code}: {d.summary}" for d in p.diagnostics],
        approval_state=approval.state, approvers=approval.approvers, confirm=approval.confirm,
        decisions=[DecisionRow(principal=d.principal, decision=str(d.decision), reason=d.reason,
                               created_at=d.created_at, expired=d.expired) for d in approval.decisions],
        requests=[r.message for r in approval.requests], may_decide=may, why_not=why)


def _may_decide(detail: PlanDetail, viewer: Principal) -> tuple[bool, str]:
    """The same rules the daemon enforces, used only to show or hide the form (the daemon decides)."""
    p = detail.plan
    if not viewer.allows(Permission.approve, p.env):
        return False, f"Your role ({viewer.role}) cannot approve plans for {p.env}."
    if viewer.id == p.requested_by:
        return False, "You requested this plan: an approval must come from someone else."
    if detail.approval.state not in WAITING and detail.approval.state is not ApprovalState.expired:
        return False, f"Approval state: {detail.approval.state}."
    return True, ""


class QueueRow(View):
    plan_id: str
    env: str
    created_at: str
    requested_by: str
    state: ApprovalState
    max_risk: str
    counts: dict[str, int]


def queue(details: list[PlanDetail]) -> list[QueueRow]:
    """Plans waiting for a decision, oldest first (the one waiting longest is on top)."""
    rows = [QueueRow(plan_id=d.plan.id, env=d.plan.env, created_at=d.plan.created_at,
                     requested_by=d.plan.requested_by, state=d.approval.state, max_risk=d.plan.summary.max_risk,
                     counts=d.plan.summary.counts) for d in details if d.approval.state in WAITING]
    return sorted(rows, key=lambda r: r.created_at)


# -- operations, audit, tokens -----------------------------------------------------------------


class StepRow(View):
    step: str
    phase: str
    at: str
    detail: str


class OperationView(View):
    id: str
    env: str
    kind: str
    status: str
    plan_id: str | None
    principal: str
    created_at: str
    updated_at: str
    running: bool
    steps: list[StepRow]
    errors: list[str]


def operation(op: Operation) -> OperationView:
    return OperationView(
        id=op.id, env=op.env, kind=str(op.kind), status=str(op.status), plan_id=op.plan_id, principal=op.principal,
        created_at=op.created_at, updated_at=op.updated_at, running=op.status.in_flight,
        steps=[StepRow(step=s.step, phase=s.phase, at=s.at,
                       detail=", ".join(f"{k}={_text(v)}" for k, v in sorted(s.detail.items())))
               for s in op.journal],
        errors=[f"{d.code}: {d.summary} {d.detail}".strip() for d in (op.error.diagnostics if op.error else [])])


class AuditRow(View):
    id: int
    at: str
    principal: str
    action: str
    env: str | None
    plan_id: str | None
    outcome: str
    channel: str


class AuditView(View):
    intact: bool
    entries_checked: int
    problems: list[str]
    rows: list[AuditRow]


def audit(entries: list[AuditEntry], verified: AuditVerification) -> AuditView:
    return AuditView(intact=verified.ok, entries_checked=verified.entries, problems=verified.problems, rows=[
        AuditRow(id=e.id, at=e.at, principal=e.principal, action=e.action, env=e.env, plan_id=e.plan_id,
                 outcome=e.outcome, channel=_text(e.detail.get("channel")) or "cli/api") for e in entries])


class TokenRow(View):
    id: str
    name: str
    role: str
    envs: str
    created_at: str
    created_by: str
    expires_at: str | None
    revoked: bool
    last_used_at: str | None


def tokens(found: list[TokenInfo]) -> list[TokenRow]:
    """Never a token value: :class:`TokenInfo` has none (only creation returns it, and the console never creates)."""
    return [TokenRow(id=t.id, name=t.name, role=t.role, envs=", ".join(t.envs) if t.envs else "all",
                     created_at=t.created_at, created_by=t.created_by, expires_at=t.expires_at,
                     revoked=t.revoked_at is not None, last_used_at=t.last_used_at) for t in found]
