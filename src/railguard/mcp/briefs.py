"""Daemon answers shaped into the bounded briefs a model reads: services, plans, operations.

The daemon's records are complete (a plan carries every frozen desired resource; an operation its
whole journal); a model needs the decision-relevant part, in a stable shape. These functions are
pure: they take the contract's models (:mod:`railguard.model.api`, as the client parses them) and
return the briefs of :mod:`railguard.mcp.outputs`. Used by the tool modules.
"""

from __future__ import annotations

from typing import Any

from railguard.mcp.outputs import ChangeBrief, EventBrief, MinuteBrief, ReleaseBrief, ServiceBrief
from railguard.model.api import (
    Event,
    Health,
    Operation,
    OperationBrief,
    OperationSummary,
    PlanAnswer,
    PlanBrief,
    PlanStatus,
    Release,
    ReplicaHealth,
    RequestWindow,
    ServiceStatus,
    StepBrief,
)
from railguard.model.plans import Action, Change, FieldDiff

MAX_DIFF = 10
MAX_STEPS = 30
# Problems first: the worst health sorts first (unknown, unlisted, with degraded).
STATUS_ORDER = {Health.degraded: 0, Health.missing: 1, Health.progressing: 2, Health.healthy: 4}


def recent_restarts(entry: ServiceStatus) -> int:
    """Restarts in the decaying window (10 min) when the daemon reports it: an old kill is not news forever."""
    return sum(r.recent_restarts if "recent_restarts" in r.model_fields_set else r.restarts for r in entry.replicas)


def service_brief(entry: ServiceStatus) -> ServiceBrief:
    health = [r.health.value for r in entry.replicas]
    recent = recent_restarts(entry)
    return ServiceBrief(name=entry.name, address=entry.address, status=entry.status, release=entry.release,
                        replicas=len(entry.replicas), healthy=sum(1 for h in health if h == ReplicaHealth.healthy),
                        restarts=recent, restarts_total=sum(r.restarts for r in entry.replicas), health=health,
                        last_exit=[r.last_exit for r in entry.replicas if r.last_exit],
                        requests=minute(entry.requests), warm=[w.release for w in entry.warm], canary=entry.canary,
                        replica_sets=list(entry.replica_sets))


def minute(windows: list[RequestWindow]) -> MinuteBrief | None:
    """The last minute of what the edge saw of the live release: requests, 5xx ratio, p99."""
    found = next((w for w in windows if w.window == "1m"), None)
    if found is None:
        return None
    return MinuteBrief(requests=found.requests, rate=found.rate, status_5xx=found.status_5xx,
                       error_ratio=found.error_ratio, p99_ms=found.p99_ms)


def problems_first(services: list[ServiceBrief]) -> list[ServiceBrief]:
    return sorted(services, key=lambda s: (STATUS_ORDER.get(s.status, 0) if s.restarts == 0 else -1, s.name))


def statuses_problems_first(services: list[ServiceStatus]) -> list[tuple[ServiceStatus, int]]:
    """The order of :func:`problems_first`, over the daemon's records (with their recent restarts), so a page
    briefs only the services it shows (briefing all 200 of an environment was a tenth of a ``get_status``)."""
    found = [(s, recent_restarts(s)) for s in services]
    return sorted(found, key=lambda p: (STATUS_ORDER.get(p[0].status, 0) if p[1] == 0 else -1, p[0].name))


def _short(value: Any) -> Any:  # a diff's before/after: any JSON value
    if isinstance(value, str) and len(value) > 200:
        return value[:200] + "…"
    if isinstance(value, list | dict) and len(str(value)) > 200:
        return str(value)[:200] + "…"
    return value


def change_brief(change: Change, diff: list[FieldDiff] | None = None) -> ChangeBrief:
    """A change as an agent reads it; ``diff`` is its fields when not stored in it (a create, plan format 2)."""
    diff = change.diff if diff is None else diff
    return ChangeBrief(address=change.address, action=change.action, risk=change.risk, reason=change.reason,
                       diff=[FieldDiff(path=d.path, before=_short(d.before), after=_short(d.after))
                             for d in diff[:MAX_DIFF]],
                       diff_more=len(diff) - MAX_DIFF if len(diff) > MAX_DIFF else None)


def plan_brief(plan: PlanAnswer, status: PlanStatus | None = None, proposed: bool = False) -> PlanBrief:
    summary = plan.summary
    return PlanBrief(id=plan.id, env=plan.env, status=status, hash=plan.hash, short_hash=plan.short_hash,
                     base_serial=plan.base_serial, errored=summary.errored, applyable=summary.applyable,
                     max_risk=summary.max_risk, decision=summary.decision, counts=dict(summary.counts),
                     requested_by=plan.requested_by, proposed=proposed,
                     source=plan.source)


def actionable(plan: PlanAnswer) -> list[Change]:
    return [c for c in plan.changes if c.action is not Action.noop]


def promote_from(plan: PlanAnswer) -> str | None:
    """The environment a protected environment's artifacts must come from (from the frozen desired state)."""
    for resource in plan.desired:
        if resource.kind == "environment":
            found = resource.config.get("promote_from")
            return str(found) if found else None
    return None


def failed_step(record: Operation) -> str | None:
    fails = [e.step for e in record.journal if e.phase == "fail"]
    return fails[0] if fails else None


def operation_brief(record: OperationSummary) -> OperationBrief:
    """The brief of an operation; a summary without a journal (a listing's) has no steps."""
    # build output lines are in `operations`, not in the brief
    journal = [e for e in record.journal if e.phase != "output"] if isinstance(record, Operation) else []
    return OperationBrief(
        id=record.id, env=record.env, kind=record.kind, status=record.status, plan_id=record.plan_id,
        principal=record.principal, created_at=record.created_at, updated_at=record.updated_at,
        failed_step=failed_step(record) if isinstance(record, Operation) else None,
        steps=[StepBrief(step=e.step, phase=e.phase, at=e.at) for e in journal[-MAX_STEPS:]],
        # A journal asked for in short (gateway.operation_in_short) says how long the whole one is.
        steps_total=record.journal_total if isinstance(record, Operation) and record.journal_total is not None
        else len(journal))


def release_brief(release: Release) -> ReleaseBrief:
    commit = release.source.get("git_commit")
    return ReleaseBrief(number=release.number, status=release.status, created_at=release.created_at,
                        live_at=release.live_at, ended_at=release.ended_at, plan_id=release.plan_id,
                        operation_id=release.operation_id, rollback_of=release.rollback_of,
                        git_commit=str(commit) if commit else None,
                        services={name: (entry.source or "")[:19] for name, entry in release.services.items()})


def event_brief(event: Event, max_message: int = 500) -> EventBrief:
    return EventBrief(id=event.id, at=event.at, env=event.env, kind=event.kind, address=event.address,
                      message=event.message[:max_message])


def last_good(releases: list[Release], before: int | None = None) -> Release | None:
    """The newest release that ran healthy (live or superseded), optionally older than ``before``."""
    for release in releases:  # newest first
        if release.status.ran_healthy and (before is None or release.number < before):
            return release
    return None
