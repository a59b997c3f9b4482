"""The daemon API's observation routes: incidents (list, show, acknowledge) and request metrics.

Kept apart from :mod:`railguard.daemon.api` (which calls :func:`route` for paths it does not know),
with the same rules: every route checks the principal's permission for the environment it touches,
answers are typed models. Acknowledging an incident resolves it and lifts its known-bad marks, so a
plan of that source is accepted again (a decision, so it needs the ``apply`` permission; one that marks a source
known-bad or records refused attempts against the control plane may be about the caller's own code, so it
needs the ``approve`` permission instead, and a terminal for the local user).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from railguard.engine.guard import require
from railguard.model.api import Incident, IncidentKind, IncidentState, TrafficAnswer
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
    store = daemon.store()
    marks = any(inc == incident_id for _, inc in incidents.known_bad(store, found.env).values())
    if found.kind is not IncidentKind.security_refused and not marks:
        require(who, Permission.apply, found.env)
    else:
        # The code these are about may be the agent's own: clearing them is a person's decision, as approving is.
        why = "marks a release source known-bad" if marks else "records refused attempts against the control plane"
        if not who.allows(Permission.approve, found.env):
            raise RailguardError(error(
                "auth.forbidden", f"{who.id} may not acknowledge {incident_id}",
                f"Incident {incident_id} {why}; acknowledging it needs the 'approve' permission in '{found.env}' "
                f"(the role '{who.role.value}' does not include it), since the code it is about may be the caller's "
                "own.", f"Ask an approver to review it and run `railguard incident {incident_id} --ack`, or "
                "change the code and plan again.", address=incident_id,
                extra={"principal": who.id, "role": who.role.value, "permission": Permission.approve.value}))
        daemon.terminal_check(who, f"acknowledge {incident_id}, which {why}")
    lifted = incidents.acknowledge_bad(store, found.env, incident_id, who.id)
    message = f"acknowledged by {who.id}" + (f": {reason}" if reason else "") + (
        f"; {lifted} known-bad mark(s) lifted" if lifted else "")
    state = None if found.state is IncidentState.resolved else IncidentState.resolved
    return daemon.observer.incidents.move(incident_id, state, "resolved", message, next_actions=[])


def _listed(daemon: Daemon, env: str | None, who: Principal, include_resolved: bool) -> list[Incident]:
    rows = incidents.listed(daemon.store(), env, include_resolved=include_resolved)
    return [r for r in rows if who.allows(Permission.read, r.env)]


def open_incidents(daemon: Daemon, env: str, who: Principal) -> list[Incident]:
    """The unresolved incidents of ``env`` (``GET /v1/incidents?env=ENV&open=1``; also ``GET /v1/status?with=``)."""
    return _listed(daemon, env, who, include_resolved=False)


def route(daemon: Daemon, method: str, parts: list[str], query: dict[str, str], body: dict[str, Any],
          who: Principal) -> dict[str, Any] | None:
    """The answer of an observation route, or None when the path is not one."""
    read = Permission.read
    match (method, parts[1] if len(parts) > 1 else "", len(parts)):
        case ("GET", "incidents", 2):
            require(who, read, query.get("env"))
            return {"incidents": _listed(daemon, query.get("env"), who, include_resolved=query.get("open") != "1")}
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
