"""``railguard exec SERVICE --env E [--release N] -- CMD...``: a one-off command in an environment's context.

The daemon starts the command with the release's exact variables, secrets, data folder and artifact (the
values never leave it); this process lends it its terminal: it passes its stdin, stdout and stderr
descriptors over the one-shot socket the daemon names, forwards the signals it gets (Ctrl-C, a window
resize) and exits with the command's own status, so ``railguard exec web -- python manage.py shell`` is
interactive on a terminal and ``railguard exec ... > out.txt`` writes the command's output, not
Railguard's. With ``--json`` the daemon captures the output instead (redacted) and it comes back in the
JSON document. In a protected environment the daemon answers with a plan instead (one ``command``
change, risk ``--risk``), which runs once approved and applied. See :mod:`railguard.daemon.execs`.
"""

from __future__ import annotations

import array
import signal
import socket
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated, Optional

import typer

from railguard.cli import render
from railguard.cli.common import DEPLOY, EnvOpt, JsonOpt, SpecOpt, add, connect, env_from_spec
from railguard.cli.output import emit_json, escape, finish, guarded, out
from railguard.client import check_peer
from railguard.model.api import ExecRecord, ExecRequest, PlanAnswer
from railguard.model.diagnostics import RailguardError, error

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGWINCH)


@guarded()
def exec_(
    service: Annotated[str, typer.Argument(help="The service whose release runs the command.")],
    command: Annotated[list[str], typer.Argument(help="The command and its arguments, after `--`.")],
    env: EnvOpt = None,
    release: Annotated[Optional[int], typer.Option("--release", help="Release number (default: the live one).")]
    = None,
    timeout: Annotated[Optional[float], typer.Option(
        "--timeout", help="With --json: seconds before the command is killed (default 600).")] = None,
    risk: Annotated[str, typer.Option(
        "--risk", help="In a protected environment: the risk of the plan it becomes (disruptive, destructive).")]
    = "disruptive",
    spec: SpecOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a one-off command with an environment's variables, secrets, data folder and release (audited)."""
    ws, client = connect(spec)
    name = env_from_spec(ws, env)
    answer = client.exec(ExecRequest(spec=str(ws.spec_path), env=name, service=service, argv=command,
                                     release=release, attach=not as_json, timeout_s=timeout, risk=risk))
    if isinstance(answer, PlanAnswer):  # a protected environment: the command became a plan that needs approval
        saved = answer.as_plan()
        if as_json:
            finish(True, list(saved.diagnostics), {"plan": {**saved.summary(), **answer.model_dump(mode="json")},
                                                   "exec": None})
        out.print(f"[bold]{escape(name)}[/] is protected: the command runs once this plan is approved and applied.")
        render.plan(saved)
        raise typer.Exit(0)
    record = answer
    if as_json:
        emit_json({"ok": record.exit_code == 0, "diagnostics": [], "exec": record.model_dump(mode="json")})
        raise typer.Exit(_status(record.exit_code))
    raise typer.Exit(_attach(record, ws.home))


def _status(code: int | None) -> int:
    """The command's exit status as a shell reports it: 128+N when signal N killed it."""
    if code is None:
        return 1
    return 128 - code if code < 0 else code


def _attach(record: ExecRecord, home: Path) -> int:
    path, _, nonce = (record.socket or "").partition("#")
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        # The terminal goes only to the daemon's own process (the same check as the API socket's): the path came
        # from the daemon, but the socket behind it is checked, not trusted.
        try:
            check_peer(conn, path, home)
        except RailguardError:
            conn.close()
            raise
        fds = array.array("i", [sys.stdin.fileno(), sys.stdout.fileno(), sys.stderr.fileno()])
        sys.stdout.flush()
        conn.sendmsg([nonce.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])
    except OSError as exc:
        conn.close()
        raise RailguardError(error(
            "exec.detached", "Could not hand the terminal to the command",
            f"Connecting to the daemon's session socket for {record.id} failed: {exc}.",
            "Retry; with --json the command runs without a terminal and its output comes back captured.")) from exc

    def forward(signum: int, _frame: FrameType | None) -> None:
        try:
            conn.sendall(f"signal {signum}\n".encode())
        except OSError:
            pass

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        buffer = b""
        while b"\n" not in buffer:
            chunk = conn.recv(64)
            if not chunk:
                return 1  # the daemon went away: the command's end is unknown
            buffer += chunk
        words = buffer.split(b"\n", 1)[0].split()
        return _status(int(words[1])) if len(words) == 2 and words[0] == b"exit" else 1
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        conn.close()


def register(app: typer.Typer) -> None:
    add(app, exec_, DEPLOY, "railguard exec web --env staging -- python manage.py migrate --noinput",
        "railguard exec web --env staging -- python manage.py shell        # interactive on a terminal",
        "railguard exec web --env staging --release 4 --json -- python -c 'import app; print(app.VERSION)'",
        name="exec")
