"""Known-bad configs in plans: a plan never quietly leads back to a release rolled back for an incident.

When verification rolled a release back, the service config it ran (its fingerprint: source digest and
resolved config) was marked in the store (:mod:`railguard.state.incidents`). A plan that would deploy
that exact config again gets an error diagnostic ``plan.known_bad`` naming the release and the incident,
so it is not applyable; the way forward is to change the code or config, or to acknowledge the
incident (``railguard incident ID --ack``), which lifts the mark. Called by :func:`railguard.engine.usecases.plan`.
"""

from __future__ import annotations

from railguard.model.diagnostics import Diagnostic, error
from railguard.model.plans import Plan
from railguard.state import incidents
from railguard.state.store import Store


def diagnostics(store: Store, plan: Plan) -> list[Diagnostic]:
    marks = incidents.known_bad(store, plan.env)
    if not marks:
        return []
    found: list[Diagnostic] = []
    for change in plan.changes:
        if change.kind != "service" or change.after_fingerprint is None:
            continue
        name = change.address.split("/service.", 1)[-1]
        mark = marks.get((name, change.after_fingerprint))
        if mark is None:
            continue
        release, incident = mark
        found.append(error(
            "plan.known_bad", f"This is the source of release {release}, rolled back for incident {incident}",
            f"{change.address} would run exactly the code and config of release {release}, which failed its "
            f"verification and was rolled back automatically (incident {incident}). Deploying it again would "
            "bring the same failure back.",
            f"Change the code or config of '{name}' (see `railguard incident {incident}` for the evidence), then "
            f"plan again; or, if it must ship as is, acknowledge it with `railguard incident {incident} --ack`.",
            address=change.address, extra={"release": release, "incident": incident}))
    return found
