"""The daemon API's observation routes: incidents (list, show, acknowledge) and request metrics.

Kept apart from :mod:`railguard.daemon.api` (which calls :func:`route` for paths it does not know),
with the same rules: every route checks the principal's permission for the environment it touches,
answers are typed models. Acknowledging an incident resolves it and lifts its known-bad marks, so a
plan of that source is accepted again (a decision, so it needs the ``apply`` permission).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from railguard.engine.guard import require
from railguard.model.api import Incident, IncidentState, TrafficAnswer
from railguard.model.diagnostics import RailguardError, error
from railguard.model.principals import Permission, Principal
from railguard.state import incidents

if TYPE_CHECKING:
    from railguard.daemon.service import Daemon


def not_found(incident_id: str) -> RailguardError:
    return RailguardError(error("incident.not_found", f"No incident '{incident_id}'",
                                "The state has no incident with that id.",
                                "List incidents with `railguard incidents`.", address=incident_id))


def incident(daemon: Daemon, incident_id: str, who: Principal) -> Incident:
    found = incidents.get(daemon.store(), incident_id)
    if found is None:
        raise not_found(incident_id)
    require(who, Permission.read, found.env)
    return found


def acknowledge(daemon: Daemon, incident_id: str, who: Principal, reason: str) -> Incident:
    found = incident(daemon, incident_id, who)
    require(who, Permission.apply, found.env)
    store = daemon.store()
    lifted = incidents.acknowledge_bad(store, found.env, incident_id, who.id)
    message = f"acknowledged by {who.id}" + (f": {reason}" if reason else "") + (
        f"; {lifted} known-bad mark(s) lifted" if lifted else "")
    state = None if found.state is IncidentState.resolved else IncidentState.resolved
    return daemon.observer.incidents.move(incident_id, state, "resolved", message, next_actions=[])


def route(daemon: Daemon, method: str, parts: list[str], query: dict[str, str], body: dict[str, Any],
          who: Principal) -> dict[str, Any] | None:
    """The answer of an observation route, or None when the path is not one."""
    read = Permission.read
    match (method, parts[1] if len(parts) > 1 else "", len(parts)):
        case ("GET", "incidents", 2):
            require(who, read, query.get("env"))
            rows = incidents.listed(daemon.store(), query.get("env"), include_resolved=query.get("open") != "1")
            return {"incidents": [r for r in rows if who.allows(read, r.env)]}
        case ("GET", "incidents", 3):
            return {"incident": incident(daemon, parts[2], who)}
        case ("POST", "incidents", 4) if parts[3] == "ack":
            reason = body.get("reason")
            return {"incident": acknowledge(daemon, parts[2], who, reason if isinstance(reason, str) else "")}
        case ("GET", "metrics", 2):
            env = query.get("env") or ""
            require(who, read, env or None)
            return {"traffic": TrafficAnswer(env=env, releases=[
                r for r in daemon.observer.metrics.releases(env or None) if who.allows(read, r.env)])}
    return None
