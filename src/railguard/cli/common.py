"""Options and helpers shared by the CLI's command modules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from railguard.client import Client
from railguard.engine.workspace import Workspace, require_env
from railguard.model.diagnostics import RailguardError, error
from railguard.model.spec import Spec

# Help panels of `railguard --help`: what a command is for, in the order a newcomer meets them.
DEPLOY = "Deploy"
OBSERVE = "Observe"
GUARD = "Guard"
ADMIN = "Admin"

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document (for agents and scripts).")]
SpecOpt = Annotated[Optional[Path], typer.Option("--spec", help="Spec file (default ./railguard.toml).")]
EnvOpt = Annotated[Optional[str], typer.Option("--env", "-e", help="Environment name.")]


def add(app: typer.Typer, fn: Callable[..., Any], panel: str, *examples: str, name: str | None = None,
        hidden: bool = False) -> None:
    """Register a module-level command in its help panel, with examples shown under its help."""
    epilog = "Examples:\n\n" + "\n\n".join(f"  $ {e}" for e in examples) if examples else None
    app.command(name, rich_help_panel=panel, epilog=epilog, hidden=hidden)(fn)


def pick_env(spec: Spec, env: str | None) -> str:
    if env is None:
        if len(spec.environments) == 1:
            return next(iter(spec.environments))
        raise RailguardError(error(
            "spec.unknown_environment", "Which environment?",
            f"The spec defines {len(spec.environments)} environments: {', '.join(sorted(spec.environments))}.",
            "Pass one with --env, e.g. `--env staging`.", address="environments",
        ))
    require_env(spec, env)
    return env


def connect(spec: Path | None) -> tuple[Workspace, Client]:
    ws = Workspace.locate(spec)
    return ws, Client(ws)


def env_from_spec(ws: Workspace, env: str | None) -> str:
    parsed, _ = ws.load_valid()
    return pick_env(parsed, env)
