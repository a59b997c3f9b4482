"""Incidents that do not need request metrics: failed rollouts, health regressions, audit tampering.

Called by :class:`railguard.daemon.observation.Observer` on each pass (the audit chain only every
``AUDIT_EVERY_S``). A failed apply opens ``rollout_failed`` (resolved by the next apply that succeeds in
the environment); a live service whose replicas stay unhealthy or down for ``HEALTH_GRACE_S`` outside
a verification window opens ``health_regression`` (resolved when it is healthy again); an audit chain
that no longer verifies opens ``audit_tamper`` (environment ``state``: it is about the whole folder).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from railguard.daemon.incidents import Incidents, action
from railguard.model.api import Evidence, IncidentKind, IncidentState, OperationKind, OperationStatus
from railguard.model.diagnostics import RailguardError
from railguard.providers.base import ServiceUnit
from railguard.state import incidents as incident_store

if TYPE_CHECKING:
    from railguard.daemon.service import Daemon

HEALTH_GRACE_S = 5.0
AUDIT_EVERY_S = 300.0
BAD = ("unhealthy", "down")


@dataclass
class Watchers:
    daemon: Daemon
    incidents: Incidents
    seen_ops: set[str] | None = None  # finished operations already looked at (None: not primed yet)
    unhealthy_since: dict[tuple[str, str], float] = field(default_factory=dict)
    health_incident: dict[tuple[str, str], str] = field(default_factory=dict)
    next_audit: float = 0.0

    def operations(self) -> None:
        store = self.daemon.store()
        finished = [op for op in store.operations(None, limit=50, journals=False) if not op.status.in_flight]
        if self.seen_ops is None:  # history before this daemon is not news
            self.seen_ops = {op.id for op in finished}
            return
        for op in reversed(finished):  # oldest first
            if op.id in self.seen_ops:
                continue
            self.seen_ops.add(op.id)
            if op.kind is not OperationKind.apply:
                continue
            if op.status is OperationStatus.failed:
                problems = op.error.diagnostics if op.error else []
                summary = f"apply {op.id} in {op.env} failed" + (f": {problems[0].summary}" if problems else "")
                self.incidents.open(IncidentKind.rollout_failed, op.env, summary, evidence=[Evidence(
                    kind="release", summary=f"operation {op.id} by {op.principal}",
                    lines=[f"{d.code}: {d.summary} — {d.detail}" for d in problems][:10])], next_actions=[
                    action("diagnose", f"railguard operations {op.id}", "See the failed step and its cause.",
                           env=op.env, operation_id=op.id),
                    action("plan", f"railguard plan --env {op.env}", "Fix the cause (see the remediation), then "
                           "plan again.", env=op.env)])
            elif op.status is OperationStatus.succeeded:
                for found in incident_store.listed(store, op.env, include_resolved=False):
                    if found.kind is IncidentKind.rollout_failed:
                        self.incidents.move(found.id, IncidentState.resolved, "resolved",
                                            f"apply {op.id} succeeded in {op.env}", next_actions=[])
        if len(self.seen_ops) > 1000:  # bounded: only the newest matter
            self.seen_ops = {op.id for op in finished}

    def health(self, env: str, unit: ServiceUnit, watched: bool, now: float) -> None:
        key = (env, unit.name)
        bad = [r for r in unit.replicas if r.health.value in BAD]
        if not bad or unit.release is None:
            self.unhealthy_since.pop(key, None)
            incident_id = self.health_incident.pop(key, None)
            if incident_id is not None:
                self.incidents.move(incident_id, IncidentState.resolved, "resolved",
                                    f"{env}/{unit.name} is healthy again", next_actions=[])
            return
        if watched:  # the verification window judges a new release; the grace starts after it
            self.unhealthy_since.pop(key, None)
            return
        since = self.unhealthy_since.setdefault(key, now)
        if key in self.health_incident or now - since < HEALTH_GRACE_S:
            return
        summary = (f"{env}/{unit.name} release {unit.release}: {len(bad)} of {len(unit.replicas)} replica(s) "
                   f"unhealthy for {now - since:.0f} s")
        found = self.incidents.open(IncidentKind.health_regression, env, summary, service=unit.name,
                                    release=unit.release, evidence=[Evidence(kind="health", summary="replicas: " + (
                                        ", ".join(f"{r.name} {r.health.value}" + (f" ({r.last_exit})" if r.last_exit
                                                                                   else "") for r in unit.replicas)))],
                                    next_actions=[action("diagnose", f"railguard status --env {env}",
                                                         "See why, and whether to roll back.", env=env,
                                                         service=unit.name)])
        self.health_incident[key] = found.id

    def audit(self) -> None:
        if time.monotonic() < self.next_audit:
            return
        self.next_audit = time.monotonic() + AUDIT_EVERY_S
        try:
            self.daemon.audit_verify()
        except RailguardError as exc:
            diag = exc.diagnostics[0]
            self.incidents.open(IncidentKind.audit_tamper, "state", f"{diag.summary}: {diag.detail}"[:500],
                                evidence=[Evidence(kind="audit", summary=diag.detail[:500])],
                                next_actions=[action("list_events", "railguard audit verify", diag.remediation)])
