"""``railguard daemon start|stop|status|run``: the control-plane daemon of a state folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from railguard.cli.common import ADMIN, JsonOpt, SpecOpt, add, connect
from railguard.cli.output import finish, guarded, out
from railguard.engine.workspace import Workspace
from railguard.model.diagnostics import RailguardError, error
from railguard.model.principals import Principal, Role

if TYPE_CHECKING:
    from railguard.daemon.lifecycle import Companion
    from railguard.daemon.service import Daemon

app = typer.Typer(help="Start, stop and inspect the daemon (it also starts on demand).", no_args_is_help=True)


ConsoleOpt = Annotated[Optional[str], typer.Option(
    "--console", metavar="HOST:PORT", help="Also serve the web console from the daemon's process (loopback).")]


@guarded()
def start(
    spec: SpecOpt = None,
    require_token: Annotated[bool, typer.Option(
        "--require-token", help="Token-only mode: every request must carry a token; OS identity grants nothing.")
    ] = False,
    console: ConsoleOpt = None,
    allow_shared_user: Annotated[bool, typer.Option(
        "--allow-shared-user", help="Run without workload isolation even in token-only mode (app code then runs "
        "as the daemon's user; see docs/guardrails.md).")] = False,
    same_user: Annotated[bool, typer.Option(
        "--same-user", help="Leave token-only mode recorded for this state folder (it is kept across restarts).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Start the daemon in the background (no-op when it runs). Its mode is kept across restarts."""
    ws, client = connect(spec)
    if console is not None:
        from railguard.console.serve import loopback, parse_listen

        host, _ = parse_listen(console)
        if not loopback(host):
            raise RailguardError(error(
                "console.needs_tls", f"The daemon serves its console on loopback only, not {host}",
                "Beyond loopback, tokens typed at sign-in would cross the network in clear.",
                "Use `railguard console --listen HOST:PORT --tls-cert F --tls-key F` beside the daemon, or an "
                "SSH tunnel to a loopback address."))
        if client.alive():
            raise RailguardError(error(
                "console.bad_listen", "The daemon already runs without this console",
                "A console is started with the daemon's process; the running daemon was started without it.",
                "Run `railguard console` beside it, or `railguard daemon stop` then start it again with --console."))
    extra = ["--console", console, "--spec", str(ws.spec_path)] if console else []
    pid = client.start_daemon(require_token, extra, allow_shared_user=allow_shared_user, same_user=same_user)
    if as_json:
        finish(True, [], {"pid": pid, "home": str(ws.home)})
    out.print(f"Daemon running (pid {pid}) for {ws.home}")


@guarded()
def stop(
    spec: SpecOpt = None,
    everything: Annotated[bool, typer.Option(
        "--everything", help="Also stop every app replica and the edge (by default they keep serving).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Stop the daemon. Apps and the edge keep serving unless --everything."""
    ws, client = connect(spec)
    client.autostart = False
    stopped = client.stop_daemon(everything)
    if as_json:
        finish(True, [], {"stopped": stopped, "everything": everything})
    out.print("Daemon stopped." if stopped else "The daemon was not running.")


@guarded()
def status(spec: SpecOpt = None, as_json: JsonOpt = False) -> None:
    """Whether the daemon runs, its pid, the edge and the number of supervised replicas."""
    ws, client = connect(spec)
    client.autostart = False
    info = client.health() if client.alive() else None
    if as_json:
        finish(True, [], {"running": info is not None, "daemon": info.model_dump(mode="json") if info else None,
                          "home": str(ws.home)})
    if info is None:
        out.print(f"Not running for {ws.home}. It starts on demand, or with `railguard daemon start`.")
        return
    edges = ", ".join(f"{env} (pid {e.pid})" if e.running else f"{env} (stopped)"
                      for env, e in sorted(info.edges.items())) or "none yet"
    out.print(f"Running: pid {info.pid}, {info.replicas} replica(s) supervised, edges: {edges}; state {info.home}; "
              f"{info.isolation}" + (", token-only" if info.require_token else "")
              + (" (shared user allowed: app code runs as the daemon's user)" if info.shared_user_allowed else ""))
    if info.kernel_audit:
        out.print(info.kernel_audit[:1].upper() + info.kernel_audit[1:] + ".")


@guarded()
def run(home: Annotated[Path, typer.Option("--home", help="State folder.")],
        require_token: Annotated[bool, typer.Option("--require-token")] = False,
        allow_shared_user: Annotated[bool, typer.Option("--allow-shared-user")] = False,
        same_user: Annotated[bool, typer.Option("--same-user")] = False,
        console: ConsoleOpt = None, spec: SpecOpt = None) -> None:
    """Run the daemon in the foreground (what `daemon start` launches)."""
    from railguard.daemon.lifecycle import AlreadyRunning
    from railguard.daemon.lifecycle import run as run_daemon

    companions = [_console(home.absolute(), spec, console)] if console else []
    try:
        run_daemon(home.absolute(), require_token, allow_shared_user, same_user, companions)
    except AlreadyRunning as exc:
        raise RailguardError(error("daemon.unavailable", "A daemon already runs for this state folder", str(exc),
                                   "Use it (`railguard daemon status`), or stop it first.")) from exc


def _console(home: Path, spec: Path | None, listen: str) -> Companion:
    """The web console on a thread of the daemon's process, reaching the API in process."""
    def start(daemon: Daemon) -> Callable[[], None]:
        from railguard.console.serve import start_in_thread
        from railguard.daemon.api import LocalTransport

        ws = Workspace(spec_path=(spec or Workspace.locate().spec_path).absolute(), home=home)
        # Before anyone signs in, a refusal (a forged form, an ended session) is reported under this name.
        anonymous = Principal(id="console:anonymous", role=Role.viewer, kind="service")
        return start_in_thread(ws, listen, LocalTransport(daemon, anonymous))
    return start


add(app, start, ADMIN, "railguard daemon start", "railguard daemon start --require-token")
add(app, stop, ADMIN, "railguard daemon stop", "railguard daemon stop --everything")
add(app, status, ADMIN, "railguard daemon status --json")
add(app, run, ADMIN, hidden=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="daemon", rich_help_panel=ADMIN)
