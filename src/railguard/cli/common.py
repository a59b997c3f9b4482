"""Options and helpers shared by the CLI's command modules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from railguard.client import Client
from railguard.engine.workspace import Workspace, require_env
from railguard.model.diagnostics import RailguardError, error
from railguard.model.spec import Spec

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document (for agents and scripts).")]
SpecOpt = Annotated[Optional[Path], typer.Option("--spec", help="Spec file (default ./railguard.toml).")]  # noqa: UP045
EnvOpt = Annotated[Optional[str], typer.Option("--env", "-e", help="Environment name.")]  # noqa: UP045


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
