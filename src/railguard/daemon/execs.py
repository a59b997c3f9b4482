"""The daemon's side of ``railguard exec``: start a one-off command, attach it to the caller's terminal, record it.

The command needs the environment's secret values, and those never leave the daemon (every API answer is
redacted). So the daemon starts the command itself, and the caller lends it its terminal: the answer to
``POST /v1/exec`` names a one-shot Unix socket (mode 0600 in a private folder) on which the CLI passes
its stdin, stdout and stderr descriptors (SCM_RIGHTS) with the session's nonce. The command then reads
and writes the user's terminal directly (interactive when that is a TTY; the output never passes through
Railguard, so it is never in Railguard's logs), the CLI forwards the signals it receives (Ctrl-C) as
lines on the socket, and the daemon writes the exit status back. A caller that goes away takes the
command with it (SIGHUP, then SIGKILL). Without a terminal to lend (``--json``, the MCP tool) the output
is captured in memory, redacted, and returned. Either way the start and the end are audited and recorded
as events. Called by :mod:`railguard.daemon.api`.
"""

from __future__ import annotations

import array
import logging
import os
import secrets
import select
import shutil
import signal
import socket
import struct
import tempfile
import threading
import time
from pathlib import Path

from railguard.daemon.secrets_ops import Secrets
from railguard.engine.commands import command_plan, command_target, is_protected
from railguard.engine.workspace import Workspace
from railguard.model.api import ExecRecord, ExecRequest, PlanAnswer
from railguard.model.diagnostics import RailguardError
from railguard.model.plans import Plan
from railguard.model.principals import Principal
from railguard.providers.base import CommandProcess, CommandRequest, Provider
from railguard.state import audit
from railguard.state.store import Store, new_id

log = logging.getLogger("railguard.daemon.execs")
ATTACH_WAIT_S = 30.0  # how long the one-shot socket waits for the caller's terminal
CAPTURE_TIMEOUT_S = 600.0  # a captured run's default limit (the request waits for it)
HANGUP_GRACE_S = 5.0
OUTPUT_LINES = 200  # of a captured run, in the answer
STARTED_EVENT = "exec.started"
FINISHED_EVENT = "exec.finished"
FORWARDED = {int(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGWINCH)}


class ExecSessions:
    home: Path
    anchor: Path
    provider: Provider

    def store(self) -> Store:
        raise NotImplementedError

    def _workspace(self, spec_path: str, text: str | None = None) -> Workspace:
        raise NotImplementedError

    secrets: Secrets

    def _redact(self, text: str) -> str:
        return self.secrets.redactor(text)

    @staticmethod
    def _plan_answer(plan: Plan) -> PlanAnswer:
        raise NotImplementedError

    def exec_command(self, request: ExecRequest, who: Principal) -> ExecRecord | PlanAnswer:
        """Run the command now, or (in a protected environment) save it as a plan that needs approval."""
        ws = self._workspace(request.spec)
        if is_protected(ws, self.store(), request.env):
            return self._plan_answer(command_plan(ws, request, self.store(), self.provider, who))
        target = command_target(ws, request, self.store(), who)
        record = ExecRecord(id=new_id("exec"), env=target.env, service=target.service, release=target.release,
                            argv=[self._redact(a) for a in target.argv], principal=who.id)
        self._record(record, STARTED_EVENT, f"{who.id} runs {' '.join(record.argv)} in {target.service} "
                                             f"(release {target.release})")
        if not request.attach:
            return self._captured(target, record, who, request.timeout_s or CAPTURE_TIMEOUT_S)
        folder = Path(tempfile.mkdtemp(prefix="rg-exec-"))  # 0700, short enough for a socket path
        path = folder / "s"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            listener.bind(str(path))
        finally:
            os.umask(old)
        listener.listen(1)
        nonce = secrets.token_hex(16)
        threading.Thread(target=self._attached, args=(listener, folder, nonce, target, record, who),
                         name=f"exec-{record.id}", daemon=True).start()
        return record.model_copy(update={"socket": f"{path}#{nonce}"})

    def _captured(self, target: CommandRequest, record: ExecRecord, who: Principal, timeout: float) -> ExecRecord:
        try:
            process = self.provider.start_command(target, None)
        except Exception:
            self._finished(record, who)  # "not run": every start has its end in the record
            raise
        code = process.wait(timeout)
        timed_out = code is None
        if timed_out:
            process.signal(signal.SIGKILL)
            code = process.wait(10.0)
        lines = self._redact(process.output()).splitlines()[-OUTPUT_LINES:]
        done = record.model_copy(update={"exit_code": code, "timed_out": timed_out, "output": lines})
        self._finished(done, who)
        return done

    def _attached(self, listener: socket.socket, folder: Path, nonce: str, target: CommandRequest,
                  record: ExecRecord, who: Principal) -> None:
        code: int | None = None
        try:
            listener.settimeout(ATTACH_WAIT_S)
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                log.info("exec %s: nobody attached within %.0f s", record.id, ATTACH_WAIT_S)
                return
            finally:
                listener.close()
                shutil.rmtree(folder, ignore_errors=True)
            with conn:
                fds = _receive(conn, nonce)
                if fds is None:
                    return
                try:
                    process = self.provider.start_command(target, (fds[0], fds[1], fds[2]))
                except Exception as exc:  # a diagnostic the CLI cannot receive any more: print it on its stderr
                    os.write(fds[2], self._redact(_describe(exc)).encode())
                    conn.sendall(b"exit 127\n")
                    code = 127
                    return
                finally:
                    for fd in fds:
                        os.close(fd)  # the command holds its own copies
                code = _supervise(conn, process)
                conn.sendall(f"exit {code}\n".encode())
        except OSError as exc:
            log.info("exec %s: the caller went away: %s", record.id, exc)
        finally:
            self._finished(record.model_copy(update={"exit_code": code}), who)

    def _finished(self, record: ExecRecord, who: Principal) -> None:
        outcome = "timed out" if record.timed_out else (
            f"exit {record.exit_code}" if record.exit_code is not None else "not run")
        self._record(record, FINISHED_EVENT, f"{' '.join(record.argv)} in {record.service} (release "
                                              f"{record.release}): {outcome}", outcome)

    def _record(self, record: ExecRecord, kind: str, message: str, outcome: str = "started") -> None:
        store = self.store()
        store.add_event(record.env, kind, self._redact(message), f"{record.env}/service.{record.service}")
        try:
            audit.append(store, self.anchor, principal=record.principal, action=kind, outcome=outcome, env=record.env,
                         detail={"id": record.id, "service": record.service, "release": record.release,
                                 "argv": record.argv})
        except Exception:  # the event is recorded; an audit problem is reported by `railguard audit --verify`
            log.exception("exec %s: audit append failed", record.id)


def _describe(exc: Exception) -> str:
    if isinstance(exc, RailguardError):
        return "".join(f"Error: {d.summary}  ({d.code})\n  {d.detail}\n  → {d.remediation}\n" for d in exc.diagnostics)
    return f"Error: the command could not be started: {type(exc).__name__}: {exc}\n"


def _receive(conn: socket.socket, nonce: str) -> list[int] | None:
    """The caller's three descriptors, sent with the nonce; None (and nothing kept open) for anything else."""
    conn.settimeout(10.0)
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    if struct.unpack("3i", creds)[1] != os.getuid():
        return None
    fds = array.array("i")
    msg, ancdata, _, _ = conn.recvmsg(64, socket.CMSG_LEN(3 * fds.itemsize))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - (len(data) % fds.itemsize)])
    if msg.decode(errors="replace").strip() != nonce or len(fds) != 3:
        for fd in fds:
            os.close(fd)
        return None
    conn.settimeout(None)
    return list(fds)


def _supervise(conn: socket.socket, process: CommandProcess) -> int:
    """Forward the caller's signals until the command exits; a caller that hangs up takes it down."""
    buffer = b""
    while True:
        code = process.wait(0.05)
        if code is not None:
            return code
        ready, _, _ = select.select([conn], [], [], 0.2)
        if not ready:
            continue
        chunk = conn.recv(1024)
        if not chunk:  # the CLI is gone: so is the user at the terminal
            process.signal(signal.SIGHUP)
            deadline = time.monotonic() + HANGUP_GRACE_S
            while (code := process.wait(0.1)) is None and time.monotonic() < deadline:
                pass
            if code is None:
                process.signal(signal.SIGKILL)
                code = process.wait(5.0)
            return code if code is not None else -int(signal.SIGKILL)
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            parts = line.split()
            if len(parts) == 2 and parts[0] == b"signal" and parts[1].isdigit() and int(parts[1]) in FORWARDED:
                process.signal(int(parts[1]))
