"""Commands that change what runs: plan, apply, deploy, rollback, and reading plans and operations.

All of them go through the daemon (started on demand). ``apply`` and ``rollback``
submit an operation and follow its journal live, or return at once with
``--no-wait``; ``--json`` prints the final operation record.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape

from railguard.cli import render
from railguard.cli.common import DEPLOY, OBSERVE, EnvOpt, JsonOpt, SpecOpt, add, connect, env_from_spec, pick_env
from railguard.cli.output import emit_json, finish, guarded, out, print_diagnostics
from railguard.client import Client
from railguard.model.api import OperationStatus
from railguard.model.diagnostics import Diagnostic, RailguardError, error
from railguard.model.plans import Plan

NoWaitOpt = Annotated[bool, typer.Option("--no-wait", help="Return the operation id at once.")]
FOLLOW_LIMIT_S = 3600.0


def follow(client: Client, op_id: str, as_json: bool) -> dict[str, Any]:
    """Poll the operation until it ends, printing journal entries as they arrive (for people)."""
    shown = 0
    deadline = time.monotonic() + FOLLOW_LIMIT_S
    while True:
        record: dict[str, Any] = client.call("GET", f"operations/{op_id}")["operation"]
        if not as_json:
            for entry in record["journal"][shown:]:
                render.journal_entry(entry)
            shown = len(record["journal"])
        if not OperationStatus(record["status"]).in_flight or time.monotonic() > deadline:
            return record
        time.sleep(0.15)


def _finish_operation(record: dict[str, Any], as_json: bool, url: str | None = None) -> None:
    problems = [Diagnostic.model_validate(d) for d in (record.get("error") or {}).get("diagnostics", [])]
    ok = record["status"] == OperationStatus.succeeded
    if as_json:
        emit_json({"ok": ok, "diagnostics": [d.model_dump(mode="json") for d in problems], "operation": record,
                   **({"url": url} if url and ok else {})})
        raise typer.Exit(0 if ok else 1)
    print_diagnostics(problems)
    render.operation_summary(record)
    if url and ok:
        out.print(f"Live at [bold]{url}[/]")
    raise typer.Exit(0 if ok else 1)


AllowLossOpt = Annotated[Optional[list[str]], typer.Option(
    "--allow-data-loss", metavar="TABLE",
    help="Acknowledge that the release command may lose data in TABLE (as its rehearsal found); repeatable. "
         "The plan becomes destructive.")]


def _plan_via_daemon(client: Client, spec_path: Path, env: str, allow: list[str] | None = None) -> Plan:
    body: dict[str, Any] = {"spec": str(spec_path), "env": env}
    if allow:
        body["allow_data_loss"] = allow
    return Plan.model_validate(client.call("POST", "plans", body)["plan"])


@guarded()
def plan(
    env: EnvOpt = None,
    spec: SpecOpt = None,
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Also write the plan as JSON here.")] = None,
    detailed_exitcode: Annotated[bool, typer.Option(
        "--detailed-exitcode", help="Exit 0: no changes, 2: changes, 1: error (for CI).")] = False,
    allow_data_loss: AllowLossOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Observe the live state, compute what would change, and save it as a plan for review."""
    ws, client = connect(spec)
    saved = _plan_via_daemon(client, ws.spec_path, env_from_spec(ws, env), allow_data_loss)
    body = saved.model_dump(mode="json")
    if out_file is not None:
        try:
            out_file.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise RailguardError(error(
                "state.unwritable", f"Cannot write {out_file}", f"Writing the plan file failed: {exc}.",
                "Choose a writable path for --out. The plan itself is saved in the store.",
                address=str(out_file))) from exc
    code = 2 if detailed_exitcode and saved.actionable else 0
    if as_json:
        finish(True, list(saved.diagnostics), {"plan": {**saved.summary(), **body}}, code=code)
    print_diagnostics(saved.diagnostics)
    render.plan(saved, str(out_file) if out_file else None)
    raise typer.Exit(1 if saved.errored else code)

@guarded()
def show(plan_id: str, spec: SpecOpt = None, as_json: JsonOpt = False) -> None:
    """Show a saved plan."""
    _, client = connect(spec)
    answer = client.call("GET", f"plans/{plan_id}")
    saved = Plan.model_validate(answer["plan"])
    if as_json:
        finish(True, [], {"status": answer["status"], "plan": {**saved.summary(), **answer["plan"]},
                          "approval": answer.get("approval")})
    out.print(f"Status: {answer['status']}")
    render.plan(saved)
    render.approval(answer.get("approval"))

@guarded()
def plans(env: EnvOpt = None, spec: SpecOpt = None, as_json: JsonOpt = False) -> None:
    """List saved plans, newest first."""
    _, client = connect(spec)
    rows = client.call("GET", "plans", params={"env": env})["plans"]
    if as_json:
        finish(True, [], {"plans": rows})
    for row in rows:
        out.print(f"{row['id']}  {row['env']:<12} {row['status']:<9} serial {row['base_serial']:<4} "
                  f"{row['created_at']}")
    if not rows:
        out.print("No plans yet. Make one with `railguard plan --env <env>`.")

@guarded()
def apply(plan_id: str, spec: SpecOpt = None, no_wait: NoWaitOpt = False,
          confirm: Annotated[Optional[list[str]], typer.Option(
              "--confirm", metavar="ADDRESS", help="Type back the address of each restored database.")] = None,
          as_json: JsonOpt = False) -> None:
    """Apply exactly a saved plan; refused if it was tampered with or the state moved since."""
    ws, client = connect(spec)
    body: dict[str, Any] = {"kind": "apply", "plan_id": plan_id, "spec": str(ws.spec_path)}
    if confirm:
        body["confirm"] = confirm
    _submit(client, body, f"applying {plan_id}", no_wait, as_json)

@guarded()
def deploy(
    env: EnvOpt = None, spec: SpecOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking (unprotected only).")] = False,
    allow_data_loss: AllowLossOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Plan and apply in one step, for unprotected environments (shows the plan first)."""
    ws, client = connect(spec)
    parsed, _ = ws.load_valid()
    name = pick_env(parsed, env)  # the parsed spec again: parsing once per command
    if parsed.environments[name].protected:
        raise RailguardError(error(
            "spec.invalid_value", f"'{name}' is protected",
            "Protected environments only run plans that were reviewed on their own; deploy skips that.",
            f"Run `railguard plan --env {name}`, review it, then `railguard apply PLAN_ID`.",
            address=f"environments.{name}.protected"))
    saved = _plan_via_daemon(client, ws.spec_path, name, allow_data_loss)
    port = parsed.environments[name].edge_port
    url = f"http://127.0.0.1:{port}/"
    if not as_json:
        print_diagnostics(saved.diagnostics)
        render.plan(saved)
    if not saved.applyable:
        if as_json:
            finish(True, list(saved.diagnostics), {"plan": saved.summary(), "operation": None, "url": url})
        if not saved.errored:  # nothing to do: what is live already matches the spec
            out.print(f"Live at [bold]{url}[/]")
        raise typer.Exit(1 if saved.errored else 0)
    if not yes:
        if as_json or not sys.stdin.isatty():
            raise RailguardError(error(
                "spec.invalid_value", "Confirmation needed",
                f"deploy applies plan {saved.id} right away, and no one confirmed it.",
                f"Review the plan, then re-run with --yes, or apply it with `railguard apply {saved.id}`."))
        typer.confirm(f"Apply plan {saved.id} to {name}?", abort=True)
    record = client.call("POST", "operations", {"kind": "apply", "plan_id": saved.id,
                                                "spec": str(ws.spec_path)})["operation"]
    _finish_operation(follow(client, record["id"], as_json), as_json, url)

@guarded()
def rollback(
    env: EnvOpt = None, spec: SpecOpt = None,
    to: Annotated[Optional[int], typer.Option("--to", help="Release number (default: the previous one).")] = None,
    no_wait: NoWaitOpt = False, as_json: JsonOpt = False,
) -> None:
    """Restore an earlier release: its artifact, config and env; instant while it is still warm."""
    ws, client = connect(spec)
    name = env_from_spec(ws, env)
    _submit(client, {"kind": "rollback", "env": name, "to": to, "spec": str(ws.spec_path)},
            f"rolling back {escape(name)}", no_wait, as_json)

@guarded()
def operations(
    operation_id: Annotated[Optional[str], typer.Argument(help="Show one operation's steps.")] = None,
    env: EnvOpt = None, spec: SpecOpt = None, as_json: JsonOpt = False,
) -> None:
    """List operations, or show one operation's journal."""
    _, client = connect(spec)
    if operation_id:
        record = client.call("GET", f"operations/{operation_id}")["operation"]
        if as_json:
            finish(True, [], {"operation": record})
        render.operation(record)
        return
    rows = client.call("GET", "operations", params={"env": env})["operations"]
    if as_json:
        finish(True, [], {"operations": rows})
    for row in rows:
        out.print(f"{row['id']}  {row['env']:<12} {row['kind']:<9} {row['status']:<10} {row['created_at']}")
    if not rows:
        out.print("No operations yet.")


def _submit(client: Client, body: dict[str, Any], doing: str, no_wait: bool, as_json: bool) -> None:
    """Submit an operation, then return its id at once (--no-wait) or follow it to the end."""
    record = client.call("POST", "operations", body)["operation"]
    if no_wait:
        _queued(record, as_json)
    if not as_json:
        out.print(f"Operation [bold]{record['id']}[/] {doing}")
    _finish_operation(follow(client, record["id"], as_json), as_json)


def _queued(record: dict[str, Any], as_json: bool) -> None:
    if as_json:
        finish(True, [], {"operation": record})
    out.print(record["id"])
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
