"""Incidents that do not need request metrics: failed rollouts, health regressions, audit tampering.

Called by :class:`railguard.daemon.observation.Observer` on each pass (the audit chain only every
``AUDIT_EVERY_S``). A failed apply opens ``rollout_failed`` (resolved by the next apply that succeeds in
the environment); a live service whose replicas stay unhealthy or down for ``HEALTH_GRACE_S`` outside
a verification window opens ``health_regression`` (resolved when it is healthy again); an audit chain
that no longer verifies opens ``audit_tamper`` (environment ``state``: it is about the whole folder).
Drift (every ``DRIFT_EVERY_S``): what runs is compared with what was applied (the last applied spec
snapshot): a resource applied but not running, one running another config, one running that was never
applied, an edge that no longer serves the environment. Drift that lasts ``DRIFT_GRACE_S`` while no
operation runs (a rollout or a supervisor restart in progress is not drift) opens one ``drift`` incident
per environment with the differences as evidence; it is resolved when they are gone. A service with a
canary in progress is left out (two releases run on purpose). Replicas down (a crash loop in its backoff) are
the health watcher's and the crash-loop check's, not drift.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from railguard.daemon.incidents import Incidents, action
from railguard.engine.observe import observed
from railguard.model.api import Evidence, IncidentKind, IncidentState, OperationKind, OperationStatus
from railguard.model.diagnostics import RailguardError
from railguard.model.resources import LiveStatus, ObservedResource
from railguard.providers.base import ServiceUnit
from railguard.state import incidents as incident_store

if TYPE_CHECKING:
    from railguard.daemon.service import Daemon

HEALTH_GRACE_S = 5.0
DRIFT_EVERY_S = 5.0
DRIFT_GRACE_S = 10.0
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
    next_drift: float = 0.0
    drift_since: dict[str, tuple[float, list[str]]] = field(default_factory=dict)  # env -> (first seen, details)
    drift_incident: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # env -> (incident, details)
    applied: dict[str, tuple[str, list[dict[str, object]]]] = field(default_factory=dict)  # env -> (digest, body)

    def drift(self, now: float, canaries: set[tuple[str, str]] | None = None) -> None:
        """Open, extend or resolve each environment's drift incident (every ``DRIFT_EVERY_S``)."""
        if now < self.next_drift:
            return
        self.next_drift = now + DRIFT_EVERY_S
        store, provider = self.daemon.store(), self.daemon.provider
        for env in sorted(set(provider.summary().edges)):
            if store.in_flight(env) is not None:  # a rollout moves things on purpose: look again after it
                self.drift_since.pop(env, None)
                continue
            skip = {f"{env}/service.{name}" for e, name in (canaries or set()) if e == env}
            # Read-only, as status: a background pass must not move the serial (approved plans would go stale).
            # Fresh: what the provider keeps in memory between its own changes (whether the edge still serves the
            # environment) is what someone else's change makes wrong.
            details = live_drift(self._applied(env), observed(store, provider, env, fresh=True), skip)
            self._drift_env(env, details, now)

    def _applied(self, env: str) -> list[dict[str, object]] | None:
        """The last applied spec snapshot, parsed again only when its digest moved (a 200-service snapshot is a
        few hundred KB of JSON: parsing it every pass held the GIL for milliseconds, for the same answer)."""
        store = self.daemon.store()
        digest = store.last_spec_digest(env)
        if digest is None:
            self.applied.pop(env, None)
            return None
        found = self.applied.get(env)
        if found is None or found[0] != digest:
            # Read after the digest: a snapshot written in between is kept under the older digest and read
            # again on the next pass, never the other way round.
            found = self.applied[env] = (digest, store.last_spec(env) or [])
        return found[1]

    def _drift_env(self, env: str, details: list[str], now: float) -> None:
        open_one = self.drift_incident.get(env)
        if not details:
            self.drift_since.pop(env, None)
            if open_one is not None:
                del self.drift_incident[env]
                self.incidents.move(open_one[0], IncidentState.resolved, "resolved",
                                    f"what runs in {env} is what was applied again", next_actions=[])
            return
        since = self.drift_since.setdefault(env, (now, details))[0]
        if now - since < DRIFT_GRACE_S or (open_one is not None and open_one[1] == details):
            return
        summary = f"{env} drifted from what was applied: " + "; ".join(details[:3]) + (
            f" (+{len(details) - 3} more)" if len(details) > 3 else "")
        found = self.incidents.open(
            IncidentKind.drift, env, summary[:500],
            evidence=[Evidence(kind="drift", summary=f"{len(details)} difference(s) between what runs and the "
                               "last applied spec", lines=details[:50])],
            next_actions=[action("get_status", f"railguard status --env {env}", "See what differs.", env=env),
                          action("plan", f"railguard plan --env {env}", "A plan shows what brings it back to the "
                                 "spec; apply it (or change the spec to what runs).", env=env)])
        self.drift_incident[env] = (found.id, details)

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


def live_drift(applied: list[dict[str, object]] | None, observed: list[ObservedResource], skip: set[str]) -> list[str]:
    """What runs that differs from the applied snapshot (None: nothing applied yet, so no drift)."""
    if applied is None:
        return []
    live = {o.address: o for o in observed if o.address not in skip}
    details: list[str] = []
    for resource in applied:
        address = str(resource["address"])
        if address in skip or resource.get("kind") == "database":
            continue
        found = live.get(address)
        if found is None:
            details.append(f"{address} is in the applied spec but not running")
        elif found.fingerprint != resource["fingerprint"]:
            details.append(f"{address} runs another config than the applied spec")
        elif found.status is LiveStatus.missing and found.kind != "service":  # replicas down: health's incident
            details.append(f"{address} is missing: {found.message}")
    applied_addresses = {str(r["address"]) for r in applied}
    details += [f"{a} runs but is not in the applied spec" for a, o in live.items()
                if a not in applied_addresses and o.kind not in ("database", "environment")]
    return details
