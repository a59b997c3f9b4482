"""The ``railguard`` command: every subcommand, each with ``--json``.

Commands parse their arguments, call the engine (for purely local work: init,
validate, schema) or the daemon through the client, and render the result; they
hold no logic of their own. Errors arrive as diagnostics (see
:mod:`railguard.cli.output`). Subcommands live in the modules named for what they do.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer._click.exceptions import ClickException, UsageError  # typer vendors click; not re-exported

from railguard import __version__
from railguard.cli.common import ADMIN, DEPLOY, JsonOpt, SpecOpt, add
from railguard.cli.output import emit_json, escape, finish, guarded, out, print_diagnostics, usage_error

# Each command's module, in the order of `railguard --help` ("" for the commands defined here). A command line
# imports only the module of the command it names (see _command): importing all of them loaded every model and
# helper of every command, a good part of a command's start-up (bench/deploy_timing.py). A test checks that the
# table names exactly the commands each module registers.
MODULES = ("", "deploy", "exec_cmd", "data_cmd", "observe", "incidents_cmd", "canary_cmd", "guard_cmd",
           "doctor_cmd", "mcp_cmd", "console_cmd", "daemon_cmd", "gc_cmd", "edge_cmd", "k8s_cmd")
COMMANDS = {
    "init": "", "validate": "", "schema": "",
    "plan": "deploy", "show": "deploy", "plans": "deploy", "apply": "deploy", "deploy": "deploy",
    "rollback": "deploy", "operations": "deploy",
    "exec": "exec_cmd",
    "backups": "data_cmd", "restore": "data_cmd",
    "status": "observe", "releases": "observe", "logs": "observe", "events": "observe",
    "incidents": "incidents_cmd", "incident": "incidents_cmd",
    "promote-step": "canary_cmd", "abort": "canary_cmd",
    "approve": "guard_cmd", "reject": "guard_cmd", "promote": "guard_cmd", "policies": "guard_cmd",
    "whoami": "guard_cmd", "token": "guard_cmd", "secret": "guard_cmd", "audit": "guard_cmd",
    "doctor": "doctor_cmd", "ci": "doctor_cmd",
    "mcp": "mcp_cmd", "console": "console_cmd", "daemon": "daemon_cmd", "gc": "gc_cmd", "edge-ca": "edge_cmd",
    "k8s": "k8s_cmd",
}


def _new_app() -> typer.Typer:
    return typer.Typer(
        name="railguard",
        help="Safe deployments for apps written with AI: typed spec, reviewable plans, guarded apply.",
        no_args_is_help=True,
        add_completion=True,
        pretty_exceptions_enable=False,
        epilog="Exit codes: 0 ok, 1 failed, 2 changes (plan --detailed-exitcode) or a failed doctor check, "
        "64 bad command line, 70 a bug in Railguard, 130 interrupted.",
    )


def _version(value: bool) -> None:
    if value:
        out.print(f"railguard {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version.")] = False,
) -> None:
    """Railguard: a deployment control plane for AI agents and the people who supervise them."""


@guarded()
def init(
    force: Annotated[bool, typer.Option("--force", help="Replace an existing railguard.toml.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a commented starter railguard.toml for the app in the current folder."""
    from railguard.engine.starter import write_starter  # app detection: only init pays for it
    path, found = write_starter(Path.cwd(), force=force)
    c = found.choices
    if as_json:
        finish(True, [], {"path": str(path), "framework": found.framework, "entry": found.entry, "run": c.run,
                          "build": c.build, "release": c.release, "server": c.server, "server_added": c.server_added,
                          "health": c.health, "env": {k: v for k, (v, _) in c.env.items()}, "secrets": c.secrets,
                          "required": c.required, "warnings": c.warnings, "dotenv": c.dotenv,
                          "optional_secrets": c.optional_secrets,
                          "code_changes": c.changes})
    out.print(f"Wrote {path.name} for a {found.framework} app ({found.entry}): run with "
              f"[bold]{escape(' '.join(c.run))}[/]")
    if c.server_added:
        out.print(f"  {c.server} is not among the app's dependencies: the build installs it "
                  "(declare it in requirements.txt to pin its version).")
    if c.release:
        out.print(f"  Release command: {escape(' '.join(c.release))}")
    if c.secrets:
        out.print(f"  Secrets it reads: {', '.join(c.secrets)}; set each with "
                  "`railguard secret set NAME --env staging` before deploying.")
    if c.dotenv:
        out.print(f"  .env is not deployed (it is named like a secret); it sets {', '.join(c.dotenv)}: give the "
                  "release each of them in env or secrets.")
    for warning in c.warnings:
        out.print(f"  [yellow]Warning[/]: {escape(warning)}")
    if c.required:
        out.print(f"  Variables it reads without a default: {', '.join(c.required)}; give each a value in "
                  + escape("[services.web.env]") + " before deploying.")
    if c.changes:
        out.print("  Change these lines of the app (its data into $RAILGUARD_DATA_DIR, its settings from variables):")
        for change in c.changes:
            out.print(f"    {escape(change)}")
    out.print("Next: review it, then `railguard validate` and `railguard plan --env staging`.")


@guarded()
def validate(spec: SpecOpt = None, as_json: JsonOpt = False) -> None:
    """Check the spec and report every problem at once."""
    from railguard.engine.workspace import Workspace
    from railguard.model.diagnostics import has_errors

    ws = Workspace.locate(spec)
    parsed, diagnostics = ws.load()
    valid = parsed is not None and not has_errors(diagnostics)
    payload: dict[str, object] = {"valid": valid, "file": str(ws.spec_path)}
    if parsed is not None:
        payload["environments"] = sorted(parsed.environments)
        payload["services"] = sorted(parsed.services)
    if as_json:
        finish(True, diagnostics, payload)
    print_diagnostics(diagnostics)
    if valid and parsed is not None:
        out.print(f"[green]Valid:[/] {len(parsed.services)} service(s), {len(parsed.environments)} environment(s).")
        raise typer.Exit(0)
    out.print(f"[red]Invalid:[/] {sum(1 for d in diagnostics if d.is_error)} error(s).")
    raise typer.Exit(1)


def schema(as_json: JsonOpt = False) -> None:
    """Print the JSON Schema of railguard.toml (for editors and agents)."""
    from railguard.model.spec import json_schema

    emit_json(json_schema())


def _register(app: typer.Typer, module: str) -> None:
    """Register the commands of one module of :data:`MODULES` (importing it)."""
    if module:
        importlib.import_module(f"railguard.cli.{module}").register(app)
        return
    add(app, init, DEPLOY, "railguard init", "railguard init --force --json")
    add(app, validate, DEPLOY, "railguard validate", "railguard validate --spec deploy/railguard.toml --json")


def _full() -> typer.Typer:
    """Every command, in the order of `railguard --help`."""
    full = _new_app()
    full.callback()(_root)
    for module in MODULES:
        _register(full, module)
    add(full, schema, ADMIN, "railguard schema > railguard.schema.json")
    return full


def _name(info: Any) -> str:
    return str(info.name or typer.main.get_command_name(info.callback.__name__ if info.callback else ""))


def __getattr__(name: str) -> Any:
    """``app``: the full command tree, built on first use (tests and docs walk it; the command line does not)."""
    if name == "app":
        built = globals()["app"] = _full()
        return built
    raise AttributeError(name)


def _command(args: list[str]) -> typer.core.TyperGroup | typer.core.TyperCommand:
    """The command tree to run ``args`` with: the root and only the command they name.

    Typer builds a command's options by inspecting its function's signature and annotations; building all
    fifty commands to run one cost more than a tenth of `railguard deploy`'s start-up (bench/deploy_timing.py),
    and importing their modules more. The tree holds the root (its options and callback) and the named command,
    from its module alone, so parsing, help and errors of that command are exactly those of the full tree.
    Anything else (no command, a root option first, a name that is not a command: its "No such command" suggests
    the others) gets the full tree.
    """
    module = COMMANDS.get(args[0]) if args and not args[0].startswith("-") else None
    if module is None:
        return typer.main.get_command(_full())  # type: ignore[return-value]
    one = _new_app()
    one.callback()(_root)
    if args[0] == "schema":
        add(one, schema, ADMIN, "railguard schema > railguard.schema.json")
    else:
        _register(one, module)
    one.registered_commands = [c for c in one.registered_commands if _name(c) == args[0]]
    one.registered_groups = [g for g in one.registered_groups if g.name == args[0]]
    return typer.main.get_command(one)  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> None:
    """The entry point: run one command, exiting with its code (64 for a command line that does not parse)."""
    args = sys.argv[1:] if argv is None else argv
    command = _command(args)
    try:
        code = command.main(args=args, prog_name="railguard", standalone_mode=False)
    except UsageError as exc:  # unknown option, missing argument, bad value, no command
        usage_error(exc, "--json" in args)
    except ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("Aborted.\n")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
