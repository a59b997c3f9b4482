"""Incident tools: what observation found (failed verifications, crash loops), with evidence and next steps.

``list_incidents`` and ``get_incident`` are read tools (every role), and ``railguard://incidents`` is the
resource of the unresolved ones; the incident's own next actions
(read the failing release's logs, change the code, or acknowledge) come back as tool calls, so an agent
that follows them never re-deploys a release that was rolled back. ``incident_ack`` acknowledges one (the
``apply`` permission, like ``railguard incident ID --ack``): it resolves it and lifts its known-bad marks.
Registered in :mod:`railguard.mcp.catalog`.
"""

from __future__ import annotations

import json
from typing import Annotated

import mcp_types as types
from pydantic import Field

from railguard.mcp.catalog import read_tool, tool
from railguard.mcp.gateway import Gateway
from railguard.mcp.inputs import Args, Env
from railguard.mcp.outputs import IncidentBrief, IncidentPayload, Incidents, NextAction
from railguard.mcp.results import Call, Outcome, act
from railguard.model.api import Incident
from railguard.model.principals import Permission

RESOURCE_URI = "railguard://incidents"
RESOURCE = types.Resource(uri=RESOURCE_URI, name="incidents", title="Incidents not resolved",
                          description="Every open or mitigated incident the token may read, newest first, with "
                          "evidence and next actions (JSON).", mime_type="application/json")


async def read_resource(gw: Gateway) -> types.ReadResourceResult:
    """The resource's content: what ``list_incidents`` shows unresolved, in full."""
    rows = (await gw.run(lambda c: c.incidents()))[:50]
    text = json.dumps({"incidents": [r.model_dump(mode="json") for r in rows]}, indent=2)
    return types.ReadResourceResult(contents=[types.TextResourceContents(
        uri=RESOURCE_URI, mime_type="application/json", text=text)])


IncidentId = Annotated[str, Field(min_length=4, max_length=64, pattern=r"^inc-[A-Za-z0-9]+$",
                                  description="An incident id (inc-...).")]


class IncidentsArgs(Args):
    env: Env | None = None
    open_only: bool = Field(default=True, description="Only incidents not resolved.")


class IncidentArgs(Args):
    incident_id: IncidentId


def _actions(incident: Incident) -> list[NextAction]:
    return [act(a.tool, a.why, **a.args) for a in incident.next_actions]


@read_tool("list_incidents", title="Incidents", inputs=IncidentsArgs, outputs=Incidents)
async def list_incidents(call: Call, args: IncidentsArgs) -> Outcome:
    """Incidents newest first (failed verifications and their automatic rollbacks, crash loops), unresolved only
    unless open_only is false. Each names its service, release and state (open, mitigated, resolved)."""
    rows = (await call.gw.run(lambda c: c.incidents(args.env, args.open_only)))[:50]
    shown = [IncidentBrief(id=i.id, env=i.env, kind=i.kind.value, state=i.state.value, service=i.service,
                           release=i.release, summary=i.summary, opened_at=i.opened_at, operation=i.operation)
             for i in rows]
    actions = [act("get_incident", "Read its evidence and next steps.", incident_id=shown[0].id)] if shown else []
    return Outcome(f"{len(shown)} incident(s)" + (f" in {args.env}" if args.env else "") + ".",
                   Incidents(incidents=shown), details=[f"{i.id} {i.state} {i.kind}: {i.summary}" for i in shown],
                   next_actions=actions)


@read_tool("get_incident", title="One incident", inputs=IncidentArgs, outputs=IncidentPayload)
async def get_incident(call: Call, args: IncidentArgs) -> Outcome:
    """One incident: evidence (request metrics of the release against the previous one, log lines, restarts),
    timeline, alert deliveries, and the next actions to take."""
    found = await call.gw.run(lambda c: c.incident(args.incident_id))
    details = [f"{e.kind}: {e.summary}" for e in found.evidence]
    details += [f"  | {line}" for e in found.evidence for line in e.lines[-10:]]
    return Outcome(f"{found.id} ({found.state.value}): {found.summary}", IncidentPayload(incident=found),
                   details=details, next_actions=_actions(found))


class IncidentAckArgs(IncidentArgs):
    reason: str = Field(default="", max_length=500, description="Why it is acknowledged (on its timeline).")


@tool("incident_ack", title="Acknowledge an incident", inputs=IncidentAckArgs, outputs=IncidentPayload,
      permission=Permission.apply, idempotent=True)
async def incident_ack(call: Call, args: IncidentAckArgs) -> Outcome:
    """Acknowledge an incident: it is resolved and the release source it marked known-bad may be planned again.
    Only when that source must ship anyway (a person decided); otherwise change the code and plan."""
    found = await call.gw.run(lambda c: c.acknowledge(args.incident_id, args.reason))
    return Outcome(f"{found.id} acknowledged ({found.state.value}).", IncidentPayload(incident=found),
                   next_actions=[act("plan", "Plan the environment again.", env=found.env)])
