"""Human renderings of plans, operations and events (rich tables and colours).

Only presentation lives here; the JSON forms are the models' own dumps. Called by
:mod:`railguard.cli.main`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from railguard.cli.output import escape, finish, one_line, out, print_diagnostics
from railguard.model.api import (
    Approval,
    ApprovalState,
    EnvironmentStatus,
    Event,
    Health,
    Logs,
    Operation,
    OperationStatus,
    OperationStep,
    OperationSummary,
    PlanFiles,
    PlanSummary,
    Policies,
    Release,
    ReleaseStatus,
)
from railguard.model.plans import Action, Effect, Plan, Risk

if TYPE_CHECKING:
    from rich.table import Table as RichTable

RISK_STYLE = {Risk.safe: "green", Risk.disruptive: "yellow", Risk.destructive: "bold red"}
ACTION_SYMBOL = {Action.create: "+", Action.update: "~", Action.replace: "-/+", Action.delete: "-",
                 Action.noop: "=", Action.command: "!", Action.restore: "<", Action.canary_step: ">"}
ACTION_ORDER = [Action.restore, Action.delete, Action.replace, Action.update, Action.create, Action.command,
                Action.noop, Action.canary_step]
MAX_DIFF_LINES = 12


def Table(*args: Any, **kwargs: Any) -> RichTable:
    """Rich's table, Rich imported on first use (a command answering --json never loads it)."""
    from rich.table import Table as RichTable

    return RichTable(*args, **kwargs)


def _value(v: Any) -> str:
    text = json.dumps(v, default=str)
    return text if len(text) <= 70 else text[:67] + "..."


def plan(p: Plan, out_file: str | None = None, summary: PlanSummary | None = None, next_step: bool = True) -> None:
    """A plan for people. With ``summary`` (an overview's), ``p`` holds only the first changes of each action:
    the counts, risk and flags come from the summary, and each action says how many more there are.
    ``next_step=False`` (approve) leaves out "Saved... ask them to run railguard approve", said to the approver."""
    counts = dict(summary.counts) if summary else p.counts()
    max_risk = Risk(summary.max_risk) if summary else p.max_risk
    errored, applyable = (summary.errored, summary.applyable) if summary else (p.errored, p.applyable)
    out.print(f"[bold]Plan {p.id}[/] for [bold]{p.env}[/]  (state serial {p.base_serial}, hash {p.hash[:19]}…)")
    if p.source is not None:
        out.print(f"  source: {p.source.files} files, {_size(p.source.bytes)} (snapshot {p.source.digest[:19]}…, "
                  f"stored: apply deploys it whatever changes on disk; list with `railguard show {p.id} --files`)")
    listed = ", ".join(f"{n} command(s) to run" if a == Action.command.value else f"{n} to {a}"
                       for a, n in counts.items() if n and a != Action.noop.value) or "no changes"
    out.print(f"  {listed}; {counts.get(Action.noop.value, 0)} unchanged; highest risk: "
              f"[{RISK_STYLE[max_risk]}]{max_risk.value}[/]")
    hidden = 0
    for action in ACTION_ORDER:
        group = [c for c in p.changes if c.action is action]
        total = counts.get(action.value, len(group))
        if not group:
            continue
        title = f"{action.value} ({total})" if total == len(group) else f"{action.value} ({total}, first {len(group)})"
        table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
        table.add_column("", no_wrap=True)
        table.add_column("address", no_wrap=True)
        table.add_column("risk", no_wrap=True)
        table.add_column("reason")
        for change in group:
            table.add_row(ACTION_SYMBOL[action], escape(change.address),
                          f"[{RISK_STYLE[change.risk]}]{change.risk.value}[/]", escape(one_line(change.reason)))
        out.print()
        out.print(table)
        if total > len(group):
            hidden += total - len(group)
            out.print(f"  [dim]… and {total - len(group)} more to {action.value}[/]")
        for change in group:
            if action in (Action.update, Action.replace) and change.diff:
                out.print(f"  [dim]{escape(change.address)}:[/]")
                for d in change.diff[:MAX_DIFF_LINES]:
                    out.print(f"    {escape(d.path)}: [red]{escape(_value(d.before))}[/] → "
                              f"[green]{escape(_value(d.after))}[/]")
                if len(change.diff) > MAX_DIFF_LINES:
                    out.print(f"    … {len(change.diff) - MAX_DIFF_LINES} more (see --json)")
    if hidden:
        out.print(f"\n{hidden} change(s) not listed: see them all with [bold]railguard show {p.id}[/] or "
                  "`railguard plan --full`, or read `--json`.")
    if p.verdicts:
        out.print()
        colour = {"allow": "green", "warn": "yellow", "require_approval": "yellow", "deny": "bold red"}
        out.print(f"Policy: [{colour[p.decision.value]}]{p.decision.value}[/]")
        for v in p.verdicts:
            out.print(f"  [{colour[v.effect.value]}]{v.effect.value}[/] {escape(one_line(v.rule))}"
                      + (f" on {escape(one_line(v.address))}" if v.address else "")
                      + f": {escape(one_line(v.message))}")
            if v.effect.value in ("require_approval", "deny") and v.remediation:
                out.print(f"    → {escape(one_line(v.remediation))}")
    out.print()
    if errored:
        out.print("[red]The plan has errors and cannot be applied.[/]")
    elif applyable:
        if next_step:
            _next_step(p)
    else:
        out.print("Nothing to do: the live state matches the spec.")
    if out_file:
        out.print(f"Written to {escape(out_file)}")


def _size(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MB"


def plan_files(listed: PlanFiles, as_json: bool) -> None:
    """``railguard show PLAN --files``: the snapshot's files, so anyone can check no secret slipped in."""
    if as_json:
        finish(True, [], {"files": listed.model_dump(mode="json")})
    if not listed.stored:
        out.print(f"Plan {escape(listed.plan_id)} has no stored source snapshot (saved before plans carried their "
                  "source, or freed by retention once the plan could no longer be applied).")
        return
    for f in listed.files:
        out.print(f"{'x' if f.executable else '-'} {f.bytes:>10}  {escape(f.path)}")
    out.print(f"{listed.count} files, {_size(listed.bytes)}; snapshot {listed.digest}")


def _next_step(p: Plan) -> None:
    """What happens to a saved plan with changes: applied as is, approved first, or never (denied)."""
    if p.decision is Effect.deny:
        reasons = "; ".join(one_line(v.message) for v in p.verdicts if v.effect is Effect.deny)
        out.print(f"[bold red]Denied by policy: this plan cannot be applied[/] ({escape(reasons)}). "
                  "Change the spec or the policy, then plan again.")
    elif p.decision is Effect.require_approval:
        roles = sorted({r for v in p.verdicts if v.effect is Effect.require_approval for r in v.approvers})
        who = " or ".join(roles) if roles else "an approver"
        out.print(f"Saved. It needs an approval by {escape(who)} (not by whoever made the plan): ask them to run "
                  f"[bold]railguard approve {p.id}[/], then apply it with [bold]railguard apply {p.id}[/]")
    else:
        out.print(f"Saved. Review it, then apply exactly this plan with: [bold]railguard apply {p.id}[/]")


def approval(found: Approval | None) -> None:
    """Where a plan stands on approval, with who asked (an agent's request is only a note)."""
    if not found or found.state is ApprovalState.not_required:
        return
    out.print(f"Approval: [bold]{found.state}[/]" + (f" (by {', '.join(found.approvers)})" if found.approvers else ""))
    for asked in found.requests:
        out.print(f"  requested by {escape(str(asked.by))} at {asked.at[:19]}"
                  + (f": {escape(one_line(asked.reason))}" if asked.reason else ""))
    for d in found.decisions:
        out.print(f"  {d.decision} by {escape(d.principal)} at {d.created_at[:19]}")
    if found.state in (ApprovalState.needed, ApprovalState.requested, ApprovalState.expired):
        out.print(f"  To approve, on a terminal: [bold]{escape(found.command)}[/]")


def operation(record: Operation) -> None:
    colour = {OperationStatus.succeeded: "green", OperationStatus.failed: "red",
              OperationStatus.running: "yellow"}.get(record.status, "white")
    out.print(f"[bold]Operation {record.id}[/] ({record.kind} on {record.env}): "
              f"[{colour}]{record.status}[/]  by {escape(record.principal)}, {record.created_at}")
    # The journal as `apply` showed it live (✓/✗ per step, the data guard's notes, the build's lines): a table of
    # (at, step, phase) lost its phase column on an 80-column terminal, so a failed step looked like the others.
    for entry in record.journal:
        journal_entry(entry)
    if record.error and record.error.diagnostics:  # why it failed, with the remediation
        print_diagnostics(record.error.diagnostics)


def events(rows: list[Event]) -> None:
    if not rows:
        out.print("No events yet.")
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("at", "env", "kind", "message"):
        table.add_column(column)
    for row in rows:
        table.add_row(row.at, row.env or "-", row.kind, escape(row.message))
    out.print(table)


def journal_entry(entry: OperationStep) -> None:
    if entry.phase == "output":  # a build's output, as it comes
        out.print(f"    [dim]│ {escape(str(entry.detail.get('line', '')))}[/]")
        return
    mark = {"begin": "[dim]…[/]", "end": "[green]✓[/]", "fail": "[red]✗[/]"}[entry.phase]
    if entry.phase == "begin" and ": " in entry.step:
        return  # sub-steps are shown when they end, to keep the live view short
    out.print(f"  {mark} {escape(entry.step)}  [dim]{entry.at[11:23]}[/]")
    _command_output(entry)
    if isinstance(entry.detail.get("note"), str):  # e.g. the data guard's findings
        out.print(f"      [dim]{escape(entry.detail['note'])}[/]")


def _command_output(entry: OperationStep) -> None:
    """An approved one-off command's output (redacted by the runtime), kept in its journal entry."""
    lines = entry.detail.get("output")
    if isinstance(lines, list):
        out.print(f"    [dim]exit {entry.detail.get('exit_code')}; output:[/]")
        for line in lines:
            out.print(f"    [dim]│[/] {escape(str(line))}")


def operation_summary(record: OperationSummary) -> None:
    colour = {OperationStatus.succeeded: "green", OperationStatus.failed: "red"}.get(record.status, "yellow")
    out.print(f"Operation {record.id} ({record.kind} on {record.env}): [{colour}]{record.status}[/]")


def status(found: EnvironmentStatus) -> None:
    edge = found.edge
    out.print(f"[bold]{found.env}[/]  serial {found.serial}  edge "
              + (f"{edge.url} ({'running' if edge.running else '[red]not running[/]'})" if edge.port
                 else "not deployed")
              + (f"  isolation {found.isolation}" + (f" (user {found.user})" if found.user else "")))
    if found.operation:
        op = found.operation
        out.print(f"  operation in flight: {op.id} ({op.kind}, {op.status})")
    if found.security_refused:
        out.print(f"  [red]security: {found.security_refused} refused attempt(s) recorded[/], newest: "
                  f"{escape(found.security_last or '')}  (railguard events --env {found.env})")
    # Fits 80 columns: no rules (two spaces between columns, underlined headings), the replica by its name within the
    # service ("r1.0" of "staging.web.r1.0": the environment and service are on the line already), and
    # uptimes like "3h12m" rather than a count of seconds.
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold underline")
    for column in ("service", "release", "status", "replica", "pid", "port", "health", "restarts", "up"):
        table.add_column(column, overflow="fold")  # narrow terminals fold cells instead of cutting pids
    for svc in found.services:
        colour = {Health.healthy: "green", Health.degraded: "red"}.get(svc.status, "yellow")
        head = [svc.name, str(svc.release), f"[{colour}]{svc.status}[/]"]
        if not svc.replicas:
            table.add_row(*head, *["-"] * 6)
        prefix = f"{found.env}.{svc.name}."
        for i, rep in enumerate(svc.replicas):
            table.add_row(*(head if i == 0 else ["", "", ""]), rep.name.removeprefix(prefix),
                          str(rep.pid or "-"), str(rep.port or "-"), rep.health, str(rep.restarts),
                          short_duration(rep.uptime_s))
    out.print(table)
    for svc in found.services:
        for warm in svc.warm:  # under the table: a sentence would widen its columns
            out.print(f"  {svc.name} release {warm.release}: [dim]warm[/], {warm.replicas} replica(s), stops in "
                      f"{short_duration(warm.until_s)} (instant rollback)")
        if svc.requests:
            from railguard.cli.incidents_cmd import request_line  # the observation renderers live there

            out.print(f"  requests {svc.name}: {request_line(svc.requests)}")
        for rep in svc.replicas:
            if rep.last_exit:
                out.print(f"  {rep.name} last exit: {escape(rep.last_exit)}; {rep.recent_restarts} restart(s) in the "
                          "last 10 min")
        if svc.verifying_s is not None:
            out.print(f"  {svc.name} release {svc.release}: verifying, {svc.verifying_s:.0f}s left")
        if svc.canary is not None:
            c = svc.canary
            out.print(f"  {svc.name} canary release {c.release}: {c.weight}% of requests (steps {c.steps}, pause "
                      f"{c.pause}, {c.step_s:.0f}s into the step), {c.requests} requests {c.status_5xx} 5xx; "
                      f"{escape(c.analysis)}")
    for db in found.databases:
        colour = "green" if db.status is Health.healthy else "red"
        out.print(f"  database {db.name} ({db.engine}): [{colour}]{db.status}[/] {escape(db.message)}")
    for route in edge.routes:
        out.print(f"  route {route.host or '*'}{route.path} → {', '.join(route.upstreams) or '(none: 503)'}")
    drift = found.drift
    if drift.live_differs:
        out.print("[yellow]Live state differs from the last applied spec:[/]")
        for line in drift.details:
            out.print(f"  - {escape(line)}")
    if drift.spec_changed_since_apply:
        out.print("[yellow]The spec on disk asks for changes: run `railguard plan`.[/]")


def short_duration(seconds: float) -> str:
    """``42s``, ``12m5s``, ``3h12m``, ``2d4h``: two units at most, so a week-old replica fits its column."""
    s = max(int(seconds), 0)
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if s >= size:
            rest = (s % size) // sub_size
            return f"{s // size}{unit}" + (f"{rest}{sub}" if rest else "")
    return f"{s}s"


def releases(rows: list[Release]) -> None:
    if not rows:
        out.print("No releases yet.")
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("release", "status", "created", "source", "git", "plan / rollback of"):
        table.add_column(column, overflow="fold")
    for row in rows:
        source = row.source
        git = (source.get("git_commit") or "")[:10] + ("+dirty" if source.get("git_dirty") else "")
        origin = f"rollback of {row.rollback_of}" if row.rollback_of else (row.plan_id or "")
        colour = {ReleaseStatus.live: "green", ReleaseStatus.failed: "red"}.get(row.status, "white")
        table.add_row(str(row.number), f"[{colour}]{row.status}[/]", row.created_at,
                      (source.get("digest") or "")[7:19], git or "-", origin)
    out.print(table)


def logs(found: Logs, as_json: bool) -> None:
    for item in found.files:
        for line in item.lines:
            if as_json:
                out.print(json.dumps({"replica": item.name, "line": line}), markup=False, highlight=False)
            else:
                out.print(f"[dim]{escape(item.name)}[/] {escape(line)}")


def policies(found: Policies) -> None:
    out.print(f"[bold]{found.env}[/]: " + ("[yellow]protected[/]" if found.protected else "not protected")
              + (f", promotes from {found.promote_from} after {found.soak_ms // 1000}s"
                 if found.promote_from else "")
              + f", at most {found.max_disruptive_changes} disruptive changes without approval")
    for freeze in found.freezes:
        out.print(f"  freeze {freeze.start} → {freeze.end}: {escape(one_line(freeze.reason))}")
    for built_in in found.built_in:
        out.print(f"  {built_in.rule:<26} {built_in.effect:<17} {escape(built_in.applies_to)}")
    for rule in found.rules:
        out.print(f"  policy:{rule.name:<19} {rule.effect:<17} {escape(rule.expression)}: "
                  f"{escape(rule.message)}")
