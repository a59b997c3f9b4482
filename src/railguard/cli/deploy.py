"""Commands that change what runs: plan, apply, deploy, rollback, and reading plans and operations.

All of them go through the daemon (started on demand). ``apply`` and ``rollback``
submit an operation and follow its journal live, or return at once with
``--no-wait``; ``--json`` prints the final operation record.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from railguard.cli import render
from railguard.cli.common import (
    DEPLOY,
    OBSERVE,
    EnvOpt,
    JsonOpt,
    SpecOpt,
    add,
    connect,
    env_for_daemon,
    pick_env,
)
from railguard.cli.fastpath import (
    FOLLOW_FIRST_S,
    FOLLOW_LIMIT_S,
    FOLLOW_MAX_S,
    FOLLOW_WAIT_S,
    PLAN_FLAGS,
    stream_plan_json,
)
from railguard.cli.output import emit_json, escape, finish, guarded, out, print_diagnostics
from railguard.client import Client
from railguard.engine.workspace import Workspace, refuse_protected_deploy
from railguard.model.api import DeployAnswer, Operation, OperationKind, OperationRequest, OperationStatus, PlanOverview
from railguard.model.diagnostics import RailguardError, error
from railguard.model.plans import Action, Plan, denial

PER_ACTION = 20  # changes of each action a plan lists for people without --full
NoWaitOpt = Annotated[bool, typer.Option("--no-wait", help="Return the operation id at once.")]


def follow(client: Client, op_id: str, as_json: bool) -> Operation:
    """Follow the operation until it ends, printing journal entries as they are written (for people).

    Each request asks for the entries after those seen and the daemon holds it until one is written or the
    operation ends (a long-poll woken by the journal's writer), so a step shows, and the command returns, the
    moment it happens rather than at the next poll.
    """
    shown = 0
    deadline = time.monotonic() + FOLLOW_LIMIT_S
    pause = FOLLOW_FIRST_S
    while True:
        # --json prints the final record only: one request waits for the end, rather than one per step (each
        # answering the whole journal so far) competing for the CPU with the replicas starting.
        record = client.operation(op_id, after=shown, wait_s=FOLLOW_WAIT_S, until_end=as_json)
        news = len(record.journal) > shown
        if not as_json:
            for entry in record.journal[shown:]:
                render.journal_entry(entry)
        shown = len(record.journal)
        if not record.status.in_flight or time.monotonic() > deadline:
            return record
        if news:
            pause = FOLLOW_FIRST_S
        else:  # the wait ran out, or a daemon that does not wait: do not ask again at once
            time.sleep(pause)
            pause = min(pause * 1.5, FOLLOW_MAX_S)


def _finish_operation(record: Operation, as_json: bool, url: str | None = None) -> None:
    problems = list(record.error.diagnostics) if record.error else []
    ok = record.status is OperationStatus.succeeded
    if as_json:
        emit_json({"ok": ok, "diagnostics": [d.model_dump(mode="json") for d in problems],
                   "operation": record.model_dump(mode="json"), **({"url": url} if url and ok else {})})
        raise typer.Exit(0 if ok else 1)
    print_diagnostics(problems)
    render.operation_summary(record)
    if url and ok:
        out.print(f"Live at [bold]{url}[/]")
    raise typer.Exit(0 if ok else 1)


def _say_live(client: Client, spec_path: Path, env: str, url: str) -> None:
    found = client.status(env, str(spec_path))
    if found.edge.running and any(route.upstreams for route in found.edge.routes):
        out.print(f"Live at [bold]{url}[/]")
    else:
        out.print(f"Nothing is live in {escape(env)} yet: no route of its edge reaches a replica "
                  f"(`railguard status --env {escape(env)}`).")


AllowLossOpt = Annotated[Optional[list[str]], typer.Option(
    "--allow-data-loss", metavar="TABLE",
    help="Acknowledge that the release command may lose data in TABLE (as its rehearsal found); repeatable. "
         "The plan becomes destructive.")]


def _plan_via_daemon(client: Client, spec_path: Path, env: str, allow: list[str] | None = None) -> Plan:
    return client.plan(str(spec_path), env, allow_data_loss=allow).as_plan()


@guarded()
def plan(
    env: EnvOpt = None,
    spec: SpecOpt = None,
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Also write the plan as JSON here.")] = None,
    detailed_exitcode: Annotated[bool, typer.Option(
        "--detailed-exitcode", help="Exit 0: no changes, 2: changes, 1: error (for CI).")] = False,
    full: Annotated[bool, typer.Option(
        "--full", help=f"List every change (default: the first {PER_ACTION} of each action, and counts).")] = False,
    allow_data_loss: AllowLossOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Observe the live state, compute what would change, and save it as a plan for review."""
    ws, client = connect(spec)
    # A running daemon checks the spec and the name itself (it parses the spec anyway), so a large spec is parsed
    # once, not twice. Without one, check here first: a bad spec must not start a daemon or create a state folder.
    name = env_for_daemon(ws, client, env)
    overview = client.plan_overview(str(ws.spec_path), name, 0 if as_json or full else PER_ACTION,
                                   allow_data_loss)
    planned(client, overview, out_file, detailed_exitcode, full, as_json)


def planned(client: Client, overview: PlanOverview, out_file: Path | None, detailed_exitcode: bool, full: bool,
            as_json: bool) -> None:
    """What ``plan`` prints once the daemon answered (also :mod:`railguard.cli.fastpath`'s, for a denied plan);
    exits (typer.Exit) with the command's code."""
    if out_file is not None:
        _write_body(client, overview.id, out_file)
    refused = denial(overview.id, overview.verdicts)  # saved for the record, but nothing may apply it
    if refused is not None:
        overview = overview.model_copy(update={"diagnostics": [*overview.diagnostics, refused]})
    failed = any(d.is_error for d in overview.diagnostics)
    changes = sum(n for a, n in overview.summary.counts.items() if a != Action.noop.value)
    code = 1 if failed else (2 if detailed_exitcode and changes > 0 else 0)
    if as_json:
        _emit_plan_json(client, overview, failed)
        raise typer.Exit(code)
    shown = str(out_file) if out_file else None
    if full:
        with client.plan_body(overview.id) as chunks:
            saved = Plan.model_validate_json(b"".join(chunks))
        print_diagnostics(saved.diagnostics)
        render.plan(saved, shown)
    else:
        print_diagnostics(overview.diagnostics)
        first = Plan.model_construct(id=overview.id, env=overview.env, base_serial=overview.base_serial,
                                     desired_digest="", hash=overview.hash, changes=overview.changes, desired=[],
                                     verdicts=overview.verdicts, diagnostics=overview.diagnostics,
                                     source=overview.source)
        render.plan(first, shown, overview.summary)
    raise typer.Exit(code)


def _write_body(client: Client, plan_id: str, path: Path) -> None:
    try:
        with path.open("wb") as f, client.plan_body(plan_id) as chunks:
            for chunk in chunks:
                f.write(chunk)
            f.write(b"\n")
    except OSError as exc:
        raise RailguardError(error(
            "state.unwritable", f"Cannot write {path}", f"Writing the plan file failed: {exc}.",
            "Choose a writable path for --out. The plan itself is saved in the store.", address=str(path))) from exc


def _emit_plan_json(client: Client, overview: PlanOverview, failed: bool) -> None:
    """``{ok, diagnostics, plan: {summary flags, ...the stored plan}}``: see
    :func:`railguard.cli.fastpath.stream_plan_json` (the fast path calls it with the daemon's answer as it came)."""
    flags = overview.summary.model_dump(mode="json", include=set(PLAN_FLAGS))
    flags["short_hash"] = overview.short_hash
    stream_plan_json(client, overview.id, not failed, [d.model_dump(mode="json") for d in overview.diagnostics], flags)


@guarded()
def show(plan_id: str, spec: SpecOpt = None, as_json: JsonOpt = False, files: Annotated[bool, typer.Option(
        "--files", help="List the files of the plan's source snapshot (what apply deploys).")] = False) -> None:
    """Show a saved plan."""
    _, client = connect(spec)
    if files:
        render.plan_files(client.plan_files(plan_id), as_json)
        return
    found = client.plan_record(plan_id)
    saved = found.plan.as_plan()
    if as_json:
        body = found.plan.model_dump(mode="json")
        finish(True, [], {"status": found.status.value, "plan": {**saved.summary(), **body},
                          "approval": found.approval.model_dump(mode="json")})
    out.print(f"Status: {found.status}")
    render.plan(saved)
    render.approval(found.approval)

@guarded()
def plans(env: EnvOpt = None, spec: SpecOpt = None, as_json: JsonOpt = False) -> None:
    """List saved plans, newest first."""
    _, client = connect(spec)
    rows = client.plans(env)
    if as_json:
        finish(True, [], {"plans": [r.model_dump(mode="json") for r in rows]})
    for row in rows:
        out.print(f"{row.id}  {row.env:<12} {row.status:<9} serial {row.base_serial:<4} {row.created_at}")
    if not rows:
        out.print("No plans yet. Make one with `railguard plan --env <env>`.")

@guarded()
def apply(plan_id: str, spec: SpecOpt = None, no_wait: NoWaitOpt = False,
          confirm: Annotated[Optional[list[str]], typer.Option(
              "--confirm", metavar="ADDRESS", help="Type back the address of each restored database.")] = None,
          as_json: JsonOpt = False) -> None:
    """Apply exactly a saved plan; refused if it was tampered with or the state moved since."""
    ws, client = connect(spec)
    _submit(client, OperationRequest(kind=OperationKind.apply, plan_id=plan_id, spec=str(ws.spec_path),
                                     confirm=confirm or []), f"applying {plan_id}", no_wait, as_json)

@guarded()
def deploy(
    env: EnvOpt = None, spec: SpecOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking (unprotected only).")] = False,
    allow_data_loss: AllowLossOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Plan and apply in one step, for unprotected environments (shows the plan first)."""
    ws, client = connect(spec)
    if not client.listening():  # no daemon yet: a bad spec or a protected environment must not start one
        parsed, _ = ws.load_valid()
        env = pick_env(parsed, env)
        refuse_protected_deploy(parsed, env)
    # One request plans (saved, hashed and policy-checked as any plan) and, with --yes, submits the plan when it
    # is applyable; the daemon refuses a protected environment itself.
    deployed(client, ws, client.deploy(str(ws.spec_path), env, allow_data_loss, apply=yes), as_json)


def deployed(client: Client, ws: Workspace, answer: DeployAnswer, as_json: bool) -> None:
    """What ``deploy`` prints once the daemon answered (also for :mod:`railguard.cli.fastpath`): the plan, and
    the operation followed to its end, or why nothing was applied."""
    saved, name = answer.plan.as_plan(), answer.env
    url = f"http://127.0.0.1:{answer.edge_port}/"
    if not as_json:
        print_diagnostics(saved.diagnostics)
        render.plan(saved)
    if not saved.applyable:
        if as_json:
            finish(True, list(saved.diagnostics), {"plan": saved.summary(), "operation": None, "url": url})
        if not saved.errored:  # nothing to do: say "Live" only when the edge really routes somewhere
            _say_live(client, ws.spec_path, name, url)
        raise typer.Exit(1 if saved.errored else 0)
    record = answer.operation
    if record is None:  # not confirmed with --yes: the plan is saved, nothing was submitted
        if as_json or not sys.stdin.isatty():
            raise RailguardError(error(
                "spec.invalid_value", "Confirmation needed",
                f"deploy applies plan {saved.id} right away, and no one confirmed it.",
                f"Review the plan, then re-run with --yes, or apply it with `railguard apply {saved.id}`."))
        typer.confirm(f"Apply plan {saved.id} to {name}?", abort=True)
        record = client.apply(str(ws.spec_path), saved.id)
    _finish_operation(follow(client, record.id, as_json), as_json, url)

@guarded()
def rollback(
    env: EnvOpt = None, spec: SpecOpt = None,
    to: Annotated[Optional[int], typer.Option("--to", help="Release number (default: the previous one).")] = None,
    no_wait: NoWaitOpt = False, as_json: JsonOpt = False,
) -> None:
    """Restore an earlier release: its artifact, config and env; instant while it is still warm."""
    ws, client = connect(spec)
    name = env_for_daemon(ws, client, env)
    _submit(client, OperationRequest(kind=OperationKind.rollback, env=name, to=to, spec=str(ws.spec_path)),
            f"rolling back {escape(name)}", no_wait, as_json)

@guarded()
def operations(
    operation_id: Annotated[Optional[str], typer.Argument(help="Show one operation's steps.")] = None,
    env: EnvOpt = None, spec: SpecOpt = None, as_json: JsonOpt = False,
) -> None:
    """List operations, or show one operation's journal."""
    _, client = connect(spec)
    if operation_id:
        record = client.operation(operation_id)
        if as_json:
            finish(True, [], {"operation": record.model_dump(mode="json")})
        render.operation(record)
        return
    rows = client.operations(env)
    if as_json:
        finish(True, [], {"operations": [r.model_dump(mode="json") for r in rows]})
    for row in rows:
        out.print(f"{row.id}  {row.env:<12} {row.kind:<9} {row.status:<10} {row.created_at}")
    if not rows:
        out.print("No operations yet.")


def _submit(client: Client, request: OperationRequest, doing: str, no_wait: bool, as_json: bool) -> None:
    """Submit an operation, then return its id at once (--no-wait) or follow it to the end."""
    record = client.submit(request)
    if no_wait:
        _queued(record, as_json)
    if not as_json:
        out.print(f"Operation [bold]{record.id}[/] {doing}")
    _finish_operation(follow(client, record.id, as_json), as_json)


def _queued(record: Operation, as_json: bool) -> None:
    if as_json:
        finish(True, [], {"operation": record.model_dump(mode="json")})
    out.print(record.id)
    raise typer.Exit(0)


def register(app: typer.Typer) -> None:
    add(app, plan, DEPLOY, "railguard plan --env staging",
        "railguard plan --env production --out plan.json --detailed-exitcode   # in CI: exit 2 means changes")
    add(app, show, DEPLOY, "railguard show plan-3f2a9c1d7e04", "railguard show plan-3f2a9c1d7e04 --json")
    add(app, plans, DEPLOY, "railguard plans --env production")
    add(app, apply, DEPLOY, "railguard apply plan-3f2a9c1d7e04", "railguard apply plan-3f2a9c1d7e04 --no-wait --json")
    add(app, deploy, DEPLOY, "railguard deploy --env staging", "railguard deploy --env staging --yes --json")
    add(app, rollback, DEPLOY, "railguard rollback --env staging", "railguard rollback --env staging --to 4")
    add(app, operations, OBSERVE, "railguard operations --env staging", "railguard operations op-5d1c0e2b9a7f")
