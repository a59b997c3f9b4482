"""Options and helpers shared by the CLI's command modules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from railguard.client import Client
from railguard.engine.workspace import Workspace
from railguard.engine.workspace import pick_env as pick_env  # the commands' import of it (it lived here)

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


def connect(spec: Path | None) -> tuple[Workspace, Client]:
    ws = Workspace.locate(spec)
    return ws, Client(ws)


def env_from_spec(ws: Workspace, env: str | None) -> str:
    parsed, _ = ws.load_valid()
    return pick_env(parsed, env)


def env_for_daemon(ws: Workspace, client: Client, env: str | None) -> str:
    """The environment to name in a request the daemon checks against the spec itself (it parses it anyway).

    A named environment with a running daemon is sent as it is, and the spec is not parsed here too: parsing
    it costs a command's start-up more than the request. Otherwise the spec is read here: for its only
    environment when none is named, and so that a bad spec starts no daemon and creates no state folder."""
    return env if env is not None and client.listening() else env_from_spec(ws, env)
