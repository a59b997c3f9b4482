"""Commands that show what runs: status, releases, logs, events. Read-only; through the daemon."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer

from railguard.cli import render
from railguard.cli.common import OBSERVE, EnvOpt, JsonOpt, SpecOpt, add, connect, env_from_spec
from railguard.cli.output import escape, finish, guarded, out
from railguard.client import Client

FOLLOW_POLL_S = 0.5


@guarded()
def status(env: EnvOpt = None, spec: SpecOpt = None, as_json: JsonOpt = False) -> None:
    """The live state of an environment: releases, replicas, health, edge routes, drift."""
    ws, client = connect(spec)
    name = env_from_spec(ws, env)
    found = client.status(name, str(ws.spec_path))
    if as_json:
        finish(True, [], {"status": found.model_dump(mode="json")})
    render.status(found)

@guarded()
def releases(env: EnvOpt = None, spec: SpecOpt = None,
             limit: Annotated[int, typer.Option(min=1, max=1000)] = 20, as_json: JsonOpt = False) -> None:
    """The numbered releases of an environment, newest first."""
    ws, client = connect(spec)
    rows = client.releases(env_from_spec(ws, env), limit)
    if as_json:  # as the daemon lists them: without their desired resources
        finish(True, [], {"releases": [r.model_dump(mode="json", exclude={"desired"}) for r in rows]})
    render.releases(rows)

@guarded()
def logs(
    service: str, env: EnvOpt = None, spec: SpecOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
    release: Annotated[Optional[int], typer.Option("--release", help="Only this release's replicas.")] = None,
    lines: Annotated[int, typer.Option("--lines", "-n", min=1, max=10_000)] = 100,
    build: Annotated[bool, typer.Option("--build", help="The output of the service's newest build instead.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Recent log lines of a service's replicas (and its release command), or of its newest build."""
    ws, client = connect(spec)
    name = env_from_spec(ws, env)
    if build:
        _build_output(client, name, service, as_json)
        return
    found = client.logs(name, service, release, lines)
    if as_json and not follow:
        finish(True, [], {"logs": found.model_dump(mode="json")})
    render.logs(found, as_json)
    while follow:
        time.sleep(FOLLOW_POLL_S)
        found = client.logs(name, service, release, lines, offsets=found.offsets)
        render.logs(found, as_json)

def _build_output(client: Client, env: str, service: str, as_json: bool) -> None:
    """The build lines the newest operation that built ``service`` journaled (the full log stays in the artifact)."""
    step = f"{env}/service.{service}: build"
    for row in client.call("GET", "operations", params={"env": env})["operations"]:
        record = client.call("GET", f"operations/{row['id']}")["operation"]
        found = [str(e["detail"].get("line", "")) for e in record["journal"]
                 if e["phase"] == "output" and e["step"] == step]
        if found:
            if as_json:
                finish(True, [], {"build": {"operation": record["id"], "service": service, "lines": found}})
            out.print(f"[dim]build of {escape(service)} in operation {record['id']}:[/]")
            for line in found:
                out.print(escape(line), highlight=False)
            return
    if as_json:
        finish(True, [], {"build": {"operation": None, "service": service, "lines": []}})
    out.print(f"No build output recorded for {escape(service)} in {escape(env)}.")


@guarded()
def events(env: EnvOpt = None, spec: SpecOpt = None,
           limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100, as_json: JsonOpt = False) -> None:
    """The events timeline: operations, restarts, recoveries."""
    _, client = connect(spec)
    rows = client.events(env, limit)
    if as_json:
        finish(True, [], {"events": [r.model_dump(mode="json") for r in rows]})
    render.events(rows)


def register(app: typer.Typer) -> None:
    add(app, status, OBSERVE, "railguard status --env staging", "railguard status --env production --json")
    add(app, releases, OBSERVE, "railguard releases --env production --limit 5")
    add(app, logs, OBSERVE, "railguard logs web --env staging -n 50", "railguard logs web --env staging --follow")
    add(app, events, OBSERVE, "railguard events --env production --limit 20")
