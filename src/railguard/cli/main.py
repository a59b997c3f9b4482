"""The ``railguard`` command: every subcommand, each with ``--json``.

Commands parse their arguments, call the engine and render the result; they hold no
logic of their own. Errors arrive as diagnostics (see :mod:`railguard.cli.output`).
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Annotated

import typer

from railguard import __version__
from railguard.cli import render
from railguard.cli.output import emit_json, finish, guarded, out, print_diagnostics
from railguard.engine.apply import apply_plan, verify_plan
from railguard.engine.plan import desired_for, make_plan
from railguard.engine.starter import write_starter
from railguard.engine.targets import provider_for
from railguard.engine.workspace import Workspace, require_env
from railguard.model.diagnostics import RailguardError, error, has_errors
from railguard.model.resources import desired_digest
from railguard.model.spec import Spec, json_schema

app = typer.Typer(
    name="railguard",
    help="Safe deployments for apps written with AI: typed spec, reviewable plans, guarded apply.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document (for agents and scripts).")]
SpecOpt = Annotated[Path | None, typer.Option("--spec", help="Spec file (default ./railguard.toml).")]
EnvOpt = Annotated[str | None, typer.Option("--env", "-e", help="Environment name.")]


def _version(value: bool) -> None:
    if value:
        out.print(f"railguard {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version.")] = False,
) -> None:
    """Railguard: a deployment control plane for AI agents and the people who supervise them."""


def _pick_env(spec: Spec, env: str | None) -> str:
    if env is None:
        if len(spec.environments) == 1:
            return next(iter(spec.environments))
        raise RailguardError(error(
            "spec.unknown_environment", "Which environment?",
            f"The spec defines {len(spec.environments)} environments: {', '.join(sorted(spec.environments))}.",
            "Pass one with --env, e.g. `railguard plan --env staging`.", address="environments",
        ))
    require_env(spec, env)
    return env


@app.command()
@guarded()
def init(
    force: Annotated[bool, typer.Option("--force", help="Replace an existing railguard.toml.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a commented starter railguard.toml for the app in the current folder."""
    path, found = write_starter(Path.cwd(), force=force)
    if as_json:
        finish(True, [], {"path": str(path), "framework": found.framework, "entry": found.entry})
    out.print(f"Wrote {path.name} for a {found.framework} app ({found.entry}).")
    out.print("Next: review it, then `railguard validate` and `railguard plan --env staging`.")


@app.command()
@guarded()
def validate(spec: SpecOpt = None, as_json: JsonOpt = False) -> None:
    """Check the spec and report every problem at once."""
    ws = Workspace.locate(spec)
    parsed, diagnostics = ws.load()
    payload = {"valid": parsed is not None and not has_errors(diagnostics), "file": str(ws.spec_path)}
    if parsed is not None:
        payload["environments"] = sorted(parsed.environments)
        payload["services"] = sorted(parsed.services)
    if not as_json and payload["valid"]:
        print_diagnostics(diagnostics)
        out.print(f"[green]Valid:[/] {len(parsed.services) if parsed else 0} service(s), "
                  f"{len(parsed.environments) if parsed else 0} environment(s).")
        raise typer.Exit(0)
    if not as_json:
        errors = sum(1 for d in diagnostics if d.is_error)
        print_diagnostics(diagnostics)
        out.print(f"[red]Invalid:[/] {errors} error(s).")
        raise typer.Exit(1)
    finish(as_json, diagnostics, payload)


@app.command()
def schema(as_json: JsonOpt = False) -> None:
    """Print the JSON Schema of railguard.toml (for editors and agents)."""
    emit_json(json_schema())


@app.command()
@guarded()
def plan(
    env: EnvOpt = None,
    spec: SpecOpt = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Also write the plan as JSON here.")] = None,
    detailed_exitcode: Annotated[bool, typer.Option(
        "--detailed-exitcode", help="Exit 0: no changes, 2: changes, 1: error (for CI).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Compute what would change in an environment and save it as a plan for review."""
    ws = Workspace.locate(spec)
    parsed, _ = ws.load_valid()
    saved = make_plan(ws, _pick_env(parsed, env))
    body = saved.model_dump(mode="json")
    if out_file is not None:
        try:
            out_file.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise RailguardError(error(
                "state.unwritable", f"Cannot write {out_file}", f"Writing the plan file failed: {exc}.",
                "Choose a writable path for --out. The plan itself is saved in the store.", address=str(out_file),
            )) from exc
    code = 2 if detailed_exitcode and saved.actionable else 0
    if as_json:
        finish(True, list(saved.diagnostics), {"plan": {**saved.summary(), **body}}, code=code)
    print_diagnostics(saved.diagnostics)
    render.plan(saved, str(out_file) if out_file else None)
    raise typer.Exit(1 if saved.errored else code)


@app.command()
@guarded()
def show(plan_id: str, spec: SpecOpt = None, as_json: JsonOpt = False) -> None:
    """Show a saved plan."""
    store = Workspace.locate(spec).open_store()
    saved, _, status = store.load_plan(plan_id)
    if as_json:
        finish(True, [], {"status": status, "plan": {**saved.summary(), **saved.model_dump(mode="json")}})
    out.print(f"Status: {status}")
    render.plan(saved)


@app.command()
@guarded()
def plans(env: EnvOpt = None, spec: SpecOpt = None, as_json: JsonOpt = False) -> None:
    """List saved plans, newest first."""
    rows = Workspace.locate(spec).open_store().plans(env)
    if as_json:
        finish(True, [], {"plans": rows})
    for row in rows:
        out.print(f"{row['id']}  {row['env']:<12} {row['status']:<9} "
                  f"serial {row['base_serial']:<4} {row['created_at']}")
    if not rows:
        out.print("No plans yet. Make one with `railguard plan --env <env>`.")


@app.command()
@guarded()
def apply(plan_id: str, spec: SpecOpt = None, as_json: JsonOpt = False) -> None:
    """Apply exactly a saved plan; refused if it was tampered with or the state moved since."""
    ws = Workspace.locate(spec)
    parsed, _ = ws.load_valid()
    store = ws.open_store()
    try:
        saved, _, _ = store.load_plan(plan_id)
        require_env(parsed, saved.env)
        current = desired_digest(desired_for(ws, parsed, saved.env))
        verify_plan(store, plan_id, current)
        provider = provider_for(parsed.environments[saved.env].target, ws)
        if provider is None:
            raise RailguardError(error(
                "provider.unavailable", f"No runtime for target '{parsed.environments[saved.env].target}'",
                "This Railguard build has no provider for the environment's target yet, so nothing can be "
                "applied. The plan is still saved and valid.",
                "Use a Railguard version with the local runtime, or review the plan with `railguard show`.",
                address=f"environments.{saved.env}.target",
            ))
        record = apply_plan(store, plan_id, provider, f"user:{getpass.getuser()}", current)
    finally:
        store.close()
    problems = [d for d in (record.get("error") or {}).get("diagnostics", [])]
    if as_json:
        emit_json({"ok": record["status"] == "succeeded", "diagnostics": problems, "operation": record})
        raise typer.Exit(0 if record["status"] == "succeeded" else 1)
    render.operation(record)
    raise typer.Exit(0 if record["status"] == "succeeded" else 1)


@app.command()
@guarded()
def operations(
    operation_id: Annotated[str | None, typer.Argument(help="Show one operation's steps.")] = None,
    env: EnvOpt = None, spec: SpecOpt = None, as_json: JsonOpt = False,
) -> None:
    """List operations, or show one operation's journal."""
    store = Workspace.locate(spec).open_store()
    if operation_id:
        record = store.operation(operation_id)
        if record is None:
            raise RailguardError(error(
                "plan.not_found", f"No operation '{operation_id}'", "The state has no operation with that id.",
                "List operations with `railguard operations`.", address=operation_id))
        if as_json:
            finish(True, [], {"operation": record})
        render.operation(record)
        return
    rows = store.operations(env)
    if as_json:
        finish(True, [], {"operations": rows})
    for row in rows:
        out.print(f"{row['id']}  {row['env']:<12} {row['kind']:<9} {row['status']:<10} {row['created_at']}")
    if not rows:
        out.print("No operations yet.")


@app.command()
@guarded()
def events(env: EnvOpt = None, spec: SpecOpt = None,
           limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100, as_json: JsonOpt = False) -> None:
    """Show the events timeline."""
    rows = Workspace.locate(spec).open_store().events(env, limit)
    if as_json:
        finish(True, [], {"events": rows})
    render.events(rows)


def main() -> None:
    app()
