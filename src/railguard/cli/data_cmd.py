"""Commands about an environment's data: ``railguard backups`` (the snapshots) and ``railguard restore``.

``restore`` never writes data by itself: it saves a reviewed plan (``restore database.<name>``, risk
destructive). In a protected environment an approver types the address when approving; elsewhere the
address is typed back here (or given with ``--confirm``) before the plan is applied.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer

from railguard.cli import render
from railguard.cli.common import DEPLOY, OBSERVE, EnvOpt, JsonOpt, SpecOpt, add, connect, env_from_spec
from railguard.cli.deploy import NoWaitOpt, _submit
from railguard.cli.output import escape, finish, guarded, out, print_diagnostics
from railguard.model.api import OperationKind, OperationRequest
from railguard.model.data import Backup
from railguard.model.diagnostics import RailguardError, error
from railguard.model.plans import Action, Effect, Plan


@guarded()
def backups(env: EnvOpt = None, spec: SpecOpt = None, as_json: JsonOpt = False) -> None:
    """List the snapshots of an environment's databases (one is taken before every release command)."""
    ws, client = connect(spec)
    name = env_from_spec(ws, env)
    rows = [Backup.model_validate(b) for b in client.call("GET", "backups", params={"env": name})["backups"]]
    if as_json:
        finish(True, [], {"backups": [b.model_dump(mode="json") for b in rows]})
    for b in rows:
        dbs = ", ".join(f"{f.path} ({sum(f.tables.values())} rows)" for f in b.files)
        out.print(f"{b.id}  before release {b.release}  {b.created_at}  {escape(dbs)}")
    if not rows:
        out.print(f"No snapshots in {name} yet: one is taken before each release command once a database exists.")


@guarded()
def restore(
    env: EnvOpt = None, spec: SpecOpt = None,
    release: Annotated[Optional[int], typer.Option("--release", help="The data as release N left it.")] = None,
    backup: Annotated[Optional[str], typer.Option("--backup", help="A snapshot id (railguard backups).")] = None,
    database: Annotated[Optional[list[str]], typer.Option("--database", help="Only this database; repeatable.")]
    = None,
    confirm: Annotated[Optional[list[str]], typer.Option(
        "--confirm", metavar="ADDRESS", help="Type back each database address to apply at once.")] = None,
    no_wait: NoWaitOpt = False, as_json: JsonOpt = False,
) -> None:
    """Plan the restore of a snapshot (destructive, reviewed); apply it once its addresses are typed back."""
    if (release is None) == (backup is None):
        raise RailguardError(error("restore.backup_missing", "Say what to restore",
                                   "Give exactly one of --release N or --backup ID.",
                                   "List the snapshots with `railguard backups --env ENV`."))
    ws, client = connect(spec)
    name = env_from_spec(ws, env)
    body: dict[str, Any] = {"spec": str(ws.spec_path), "env": name, "release": release, "backup": backup,
                            "databases": database or []}
    saved = Plan.model_validate(client.call("POST", "restores", body)["plan"])
    addresses = [c.address for c in saved.changes if c.action is Action.restore]
    needs_approval = saved.decision in (Effect.require_approval, Effect.deny)
    if not as_json:
        render.plan(saved)
    if needs_approval or (not confirm and (as_json or not sys.stdin.isatty())):
        steps = (f"An approver runs `railguard approve {saved.id} --confirm {' --confirm '.join(addresses)}`, "
                 f"then `railguard apply {saved.id}`" if needs_approval
                 else f"Apply it with `railguard apply {saved.id} --confirm {' --confirm '.join(addresses)}`")
        if as_json:
            finish(True, list(saved.diagnostics), {"plan": {**saved.summary(), **saved.model_dump(mode="json")},
                                                   "next": steps})
        print_diagnostics(saved.diagnostics)
        out.print(steps + ".")
        raise typer.Exit(0)
    typed = list(confirm or [])
    if not typed:
        for address in addresses:
            typed.append(typer.prompt(f"Type {address} to overwrite it with the snapshot"))
    _submit(client, OperationRequest(kind=OperationKind.apply, plan_id=saved.id, spec=str(ws.spec_path),
                                     confirm=typed), f"restoring {escape(name)}", no_wait, as_json)


def register(app: typer.Typer) -> None:
    add(app, backups, OBSERVE, "railguard backups --env staging", "railguard backups --env production --json")
    add(app, restore, DEPLOY, "railguard restore --env staging --release 4",
        "railguard restore --env staging --backup bk-20261202070000-a1b2c3 --confirm staging/database.notes")
