"""Opening and moving incidents from the daemon, with their next actions, and alerting each transition.

The observation loop (and anything else in the daemon that sees trouble) calls :class:`Incidents`:
it writes through :mod:`railguard.state.incidents` (dedup, lifecycle, redaction) and hands every
transition (opened, mitigated, reopened, resolved) to the alert deliverer, which never blocks.
The next actions name the MCP tool and the CLI command, so an agent and a person follow the same
path; they never point back at a known-bad release (docs/observe.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from railguard.daemon.alerts import Deliverer
from railguard.model.api import Evidence, Incident, IncidentAction, IncidentKind, IncidentState
from railguard.model.spec import Alerts
from railguard.state import incidents
from railguard.state.store import Store

log = logging.getLogger("railguard.daemon")


def action(tool: str, command: str, why: str, **args: str | int) -> IncidentAction:
    return IncidentAction(tool=tool, command=command, why=why, args=args)


def after_rollback(env: str, service: str, bad: int, incident_id: str) -> list[IncidentAction]:
    return [
        action("read_logs", f"railguard logs {service} --env {env} --release {bad}",
               f"See why release {bad} failed (the evidence is on the incident).", env=env, service=service,
               release=bad),
        action("plan", f"railguard plan --env {env}",
               f"Change the code or config of '{service}' first, then plan: a plan of the rolled-back source "
               f"(release {bad}) is refused until it changes.", env=env),
        action("get_incident", f"railguard incident {incident_id} --ack",
               "Only if that source must ship anyway, a person acknowledges the incident (`--ack`, needs the "
               "approve permission) so plans accept it again.", incident_id=incident_id),
    ]


def alert_only(env: str, service: str, incident_id: str) -> list[IncidentAction]:
    return [
        action("rollback", f"railguard rollback --env {env}",
               "Put the previous release back (on_regression = \"alert\" left the new one live).", env=env),
        action("read_logs", f"railguard logs {service} --env {env}", "See what the release wrote.", env=env,
               service=service),
        action("get_incident", f"railguard incident {incident_id}", "Read the evidence.", incident_id=incident_id),
    ]


class Incidents:
    def __init__(self, store: Callable[[], Store], deliverer: Deliverer, alerts: Callable[[], Alerts | None]) -> None:
        self.store = store
        self.deliverer = deliverer
        self.alerts = alerts

    def open(self, kind: IncidentKind, env: str, summary: str, *, service: str | None = None,
             release: int | None = None, evidence: list[Evidence] | None = None,
             next_actions: list[IncidentAction] | None = None) -> Incident:
        store = self.store()
        found, new = incidents.open_or_add(store, kind, env, summary, service=service, release=release,
                                           evidence=evidence, next_actions=next_actions)
        if new:
            store.add_event(env, "incident.opened", f"incident {found.id}: {found.summary}",
                            data={"incident": found.id, "kind": kind.value})
            self.deliverer.send(found, "opened", self.alerts())
        elif found.state is IncidentState.mitigated:  # the same trouble again after the mitigation
            found = self.move(found.id, IncidentState.open, "reopened", summary)
        return found

    def move(self, incident_id: str, state: IncidentState | None, kind: str, message: str, *,
             operation: str | None = None, next_actions: list[IncidentAction] | None = None) -> Incident:
        store = self.store()
        before = incidents.get(store, incident_id)
        found = incidents.note(store, incident_id, kind, message, state=state, operation=operation,
                               next_actions=next_actions)
        if before is not None and found.state is not before.state:
            store.add_event(found.env, f"incident.{found.state.value}", f"incident {found.id}: {message}",
                            data={"incident": found.id})
            self.deliverer.send(found, kind, self.alerts())
        return found
