"""Human renderings of plans, operations and events (rich tables and colours).

Only presentation lives here; the JSON forms are the models' own dumps. Called by
:mod:`railguard.cli.main`.
"""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape
from rich.table import Table

from railguard.cli.output import out
from railguard.model.plans import Action, Plan, Risk

RISK_STYLE = {Risk.safe: "green", Risk.disruptive: "yellow", Risk.destructive: "bold red"}
ACTION_SYMBOL = {Action.create: "+", Action.update: "~", Action.replace: "-/+", Action.delete: "-",
                 Action.noop: "="}
ACTION_ORDER = [Action.delete, Action.replace, Action.update, Action.create, Action.noop]
MAX_DIFF_LINES = 12


def _value(v: Any) -> str:
    text = json.dumps(v, default=str)
    return text if len(text) <= 70 else text[:67] + "..."


def plan(p: Plan, out_file: str | None = None) -> None:
    counts = p.counts()
    out.print(f"[bold]Plan {p.id}[/] for [bold]{p.env}[/]  (state serial {p.base_serial}, hash {p.hash[:19]}…)")
    summary = ", ".join(f"{n} to {a}" for a, n in counts.items() if n and a != Action.noop.value) or "no changes"
    out.print(f"  {summary}; {counts[Action.noop.value]} unchanged; highest risk: "
              f"[{RISK_STYLE[p.max_risk]}]{p.max_risk.value}[/]")
    for action in ACTION_ORDER:
        group = [c for c in p.changes if c.action is action]
        if not group:
            continue
        table = Table(title=f"{action.value} ({len(group)})", title_justify="left", show_edge=False, pad_edge=False)
        table.add_column("", no_wrap=True)
        table.add_column("address", no_wrap=True)
        table.add_column("risk", no_wrap=True)
        table.add_column("reason")
        for change in group:
            table.add_row(ACTION_SYMBOL[action], escape(change.address),
                          f"[{RISK_STYLE[change.risk]}]{change.risk.value}[/]", escape(change.reason))
        out.print()
        out.print(table)
        for change in group:
            if action in (Action.update, Action.replace) and change.diff:
                out.print(f"  [dim]{escape(change.address)}:[/]")
                for d in change.diff[:MAX_DIFF_LINES]:
                    out.print(f"    {escape(d.path)}: [red]{escape(_value(d.before))}[/] → "
                              f"[green]{escape(_value(d.after))}[/]")
                if len(change.diff) > MAX_DIFF_LINES:
                    out.print(f"    … {len(change.diff) - MAX_DIFF_LINES} more (see --json)")
    out.print()
    if p.errored:
        out.print("[red]The plan has errors and cannot be applied.[/]")
    elif p.applyable:
        out.print(f"Saved. Review it, then apply exactly this plan with: [bold]railguard apply {p.id}[/]")
    else:
        out.print("Nothing to do: the live state matches the spec.")
    if out_file:
        out.print(f"Written to {escape(out_file)}")


def operation(record: dict[str, Any]) -> None:
    colour = {"succeeded": "green", "failed": "red", "running": "yellow"}.get(record["status"], "white")
    out.print(f"[bold]Operation {record['id']}[/] ({record['kind']} on {record['env']}): "
              f"[{colour}]{record['status']}[/]  by {escape(record['principal'])}, {record['created_at']}")
    table = Table(show_edge=False, pad_edge=False)
    for column in ("at", "step", "phase"):
        table.add_column(column, no_wrap=True)
    for entry in record["journal"]:
        style = {"end": "green", "fail": "red"}.get(entry["phase"], "dim")
        table.add_row(entry["at"], escape(entry["step"]), f"[{style}]{entry['phase']}[/]")
    if record["journal"]:
        out.print(table)


def events(rows: list[dict[str, Any]]) -> None:
    if not rows:
        out.print("No events yet.")
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("at", "env", "kind", "message"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["at"], row["env"] or "-", row["kind"], escape(row["message"]))
    out.print(table)
