"""``railguard incidents`` and ``railguard incident ID``: what observation found, with evidence and next steps.

Read-only unless ``--ack`` (acknowledge: resolve it and let plans use its known-bad source again).
Also renders the request line status shows per service. Through the daemon, like every command.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from railguard.cli.common import OBSERVE, JsonOpt, SpecOpt, add, connect
from railguard.cli.output import escape, finish, guarded, out
from railguard.model.api import Incident, IncidentState, RequestWindow

EnvFilter = Annotated[Optional[str], typer.Option("--env", "-e", help="Only this environment.")]


def request_line(windows: list[RequestWindow]) -> str:
    """One line per service for `railguard status`: the 1 m window, then since the switch."""
    by = {w.window: w for w in windows}
    parts = []
    for name in ("1m", "since_switch"):
        w = by.get(name)
        if w is None:
            continue
        p = "/".join("-" if v is None else f"{v:.0f}" for v in (w.p50_ms, w.p95_ms, w.p99_ms))
        parts.append(f"{name.replace('_', ' ')}: {w.rate:.1f} req/s, 2xx {w.status_2xx} 4xx {w.status_4xx} "
                     f"5xx {w.status_5xx} ({w.error_ratio:.1%}), p50/95/99 {p} ms")
    return "; ".join(parts)


def _row(i: Incident) -> str:
    colour = {IncidentState.open: "red", IncidentState.mitigated: "yellow"}.get(i.state, "green")
    where = f"{i.env}/{i.service}" if i.service else i.env
    release = f" release {i.release}" if i.release is not None else ""
    return f"{i.id}  [{colour}]{i.state.value}[/]  {i.kind.value}  {where}{release}  {escape(i.summary)}"


@guarded()
def incidents(env: EnvFilter = None,
              open_only: Annotated[bool, typer.Option("--open", help="Only incidents not resolved.")] = False,
              spec: SpecOpt = None, as_json: JsonOpt = False) -> None:
    """Incidents (failed verifications, crash loops, ...), newest first."""
    _, client = connect(spec)
    rows = [Incident.model_validate(r) for r in client.call(
        "GET", "incidents", params={"env": env, "open": "1" if open_only else None})["incidents"]]
    if as_json:
        finish(True, [], {"incidents": [r.model_dump(mode="json") for r in rows]})
    if not rows:
        out.print("No incidents.")
    for row in rows:
        out.print(_row(row))


@guarded()
def incident(incident_id: str, ack: Annotated[bool, typer.Option(
        "--ack", help="Acknowledge: resolve it, and let plans deploy its rolled-back source again.")] = False,
        reason: Annotated[str, typer.Option("--reason", help="Why (recorded on the timeline).")] = "",
        spec: SpecOpt = None, as_json: JsonOpt = False) -> None:
    """One incident: its evidence, timeline, alert deliveries and next actions."""
    _, client = connect(spec)
    if ack:
        answer = client.call("POST", f"incidents/{incident_id}/ack", {"reason": reason})
    else:
        answer = client.call("GET", f"incidents/{incident_id}")
    found = Incident.model_validate(answer["incident"])
    if as_json:
        finish(True, [], {"incident": found.model_dump(mode="json")})
    out.print(_row(found))
    if found.operation:
        out.print(f"  operation: {found.operation}")
    for evidence in found.evidence:
        out.print(f"  [bold]{evidence.kind}[/]: {escape(evidence.summary)}")
        for m in evidence.metrics:
            out.print(f"    release {m.release} {m.window}: {m.requests} requests, {m.status_5xx} 5xx "
                      f"({m.error_ratio:.1%}), p99 {m.p99_ms if m.p99_ms is not None else '-'} ms")
        for line in evidence.lines[-10:]:
            out.print(f"    | {escape(line)}")
    out.print("  timeline:")
    for entry in found.timeline:
        out.print(f"    {entry.at}  {entry.kind}: {escape(entry.message)}")
    for d in found.deliveries:
        out.print(f"  alert {d.channel} ({d.transition}): {'delivered' if d.ok else '[red]failed[/]'} after "
                  f"{d.attempts} attempt(s)" + (f": {escape(d.error)}" if d.error else ""))
    for action in found.next_actions:
        out.print(f"  next: {action.command}  — {escape(action.why)}")


def register(app: typer.Typer) -> None:
    add(app, incidents, OBSERVE, "railguard incidents --env production", "railguard incidents --open --json")
    add(app, incident, OBSERVE, "railguard incident inc-0123456789", "railguard incident inc-0123456789 --ack")
