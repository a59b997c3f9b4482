"""The client of the daemon's API, used by the CLI and by the MCP server (:mod:`railguard.mcp.gateway`).

Thin by design: it finds the daemon of a state folder (starting it on demand,
detached, so it outlives the command), sends JSON over the Unix socket and turns
error answers back into :class:`RailguardError` with the daemon's diagnostics. A
daemon that cannot be reached or started is a ``daemon.unavailable`` diagnostic
(a :class:`railguard.model.errors.DeadlineError` when it did not answer in time). Before anything is sent on a
connection (a token especially), the process behind the socket must be one the daemon can run as
(:func:`check_peer`, ``SO_PEERCRED``); a long state folder's socket is trusted only in a folder that passes
:mod:`railguard.model.privatedir`'s checks.
Each route has a typed call that parses the answer into its :mod:`railguard.model.api`
model; callers use those, and :meth:`Client.call` (raw JSON) is what they are built on. The models
(pydantic) are imported inside the typed calls and on the way out of a failed one, never at import:
:mod:`railguard.cli.fastpath` answers the hot commands with raw JSON and loads none of them.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

if TYPE_CHECKING:  # imported where used: a CLI command pays only for what it touches (bench/deploy_timing.py)
    import httpx

    from railguard.engine.workspace import Workspace
    from railguard.model.api import (
        Approval,
        ApprovalRecord,
        AuditEntry,
        AuditVerification,
        CanaryMove,
        CreatedToken,
        DaemonHealth,
        DeployAnswer,
        EnvironmentStatus,
        Event,
        ExecRecord,
        ExecRequest,
        GcResult,
        Incident,
        Logs,
        Operation,
        OperationRequest,
        PlanAnswer,
        PlanDetail,
        PlanFiles,
        PlanOverview,
        PlanRecord,
        Policies,
        Release,
        SecretInfo,
        SecretSet,
        TokenInfo,
        WhoAmI,
    )
    from railguard.model.diagnostics import RailguardError

START_TIMEOUT_S = 20.0
CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 120.0  # the usual wait for an answer; a call that may take longer passes its own
# daemon.out holds only what the daemon's rotating log cannot (a crash before logging starts, an interpreter
# abort); it is rolled once, here, when it grew past this size.
OUT_MAX_BYTES = 1024 * 1024


def _unavailable(detail: str, home: Path, deadline: bool = False) -> RailguardError:
    """``daemon.unavailable`` (a :class:`DeadlineError` with ``deadline``: it did not answer in time). The
    diagnostics' models are imported here, on the way out: a call that succeeds never loads pydantic."""
    from railguard.model.diagnostics import RailguardError, error
    from railguard.model.errors import DeadlineError

    kind = DeadlineError if deadline else RailguardError
    return kind(error(
        "daemon.unavailable", "The Railguard daemon is not available", detail,
        f"Check {home / 'daemon.log'} and {home / 'daemon.out'}, then run `railguard daemon start`.",
        address=str(home)))


def check_peer(sock: socket.socket, path: str, home: Path) -> None:
    """Refuse (``daemon.socket_impostor``) unless the process behind ``sock`` is one a daemon of ``home`` runs as.

    Called right after ``connect``, before anything (a token) is sent. A daemon runs as whoever started it and
    serves only its own user and root (:class:`railguard.daemon.api.Handler`), so the server must be root or
    us; for root, also the state folder's owner, whose daemon it may be calling. One ``getsockopt`` in the usual
    case; the state folder is looked at only for another uid."""
    import struct

    pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    me = os.geteuid()
    if uid in (0, me):
        return
    if me == 0:
        try:
            if os.stat(home).st_uid == uid:
                return
        except OSError:
            pass
    from railguard.model.diagnostics import RailguardError, error

    expected = "root" if me == 0 else f"uid {me} or root"
    raise RailguardError(error(
        "daemon.socket_impostor", "The daemon's socket is served by another OS user",
        f"{path} is served by a process of uid {uid} (pid {pid}), not by {expected}"
        + (" nor the state folder's owner" if me == 0 else "") + ", so it is not this state folder's daemon. "
        "Nothing was sent to it (no token).",
        f"As root, see what that process is (`ps -o user,cmd -p {pid}`), stop it and remove the socket "
        f"(`rm {path}`), then run `railguard daemon start`. Another OS user (a deployed app's) serving there "
        "tried to pass for the daemon: find out how it could create that socket.",
        address=path))


class _NotListening(Exception):
    """Nothing accepts connections on the socket (no file, or no daemon behind it): the request was never sent."""


class _Timeout(Exception):
    pass


class _Failed(Exception):
    pass


class _Socket:
    """HTTP/1.1 to the daemon's Unix socket: one connection per request (``Connection: close``), so a client may
    be shared by threads (the console's sessions, the MCP server's tool calls); a connection is cheap there.

    Written on the socket module rather than an HTTP library: importing httpx, or http.client (which brings ssl
    and the email package), is a good part of a CLI command's start-up, and the peer is always the daemon's own
    server (:mod:`railguard.daemon.api`), which answers every request with a Content-Length. Connecting waits at
    most ``CONNECT_TIMEOUT_S``; every read and write then the call's timeout."""

    def __init__(self, ws: Workspace, headers: dict[str, str]) -> None:
        self.ws = ws
        self.headers = headers

    @property
    def path(self) -> str:
        """Looked up at each connection, not once: a long state folder's socket is in a private folder that is
        checked every time (``daemon.unsafe_socket_folder``) and that the daemon makes only when it starts."""
        return str(self.ws.socket_path)

    def _open(self, method: str, target: str, data: bytes | None,
              timeout: float) -> tuple[socket.socket, int, int | None, bytes]:
        """Send the request; answer the socket, the status, the body's length (if given) and the body read so far."""
        path = self.path
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(CONNECT_TIMEOUT_S)
            try:
                sock.connect(path)
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise _NotListening(str(exc)) from exc
            check_peer(sock, path, self.ws.home)  # before the token goes out
            sock.settimeout(timeout)
            body = data or b""
            head = [f"{method} {target} HTTP/1.1", "Host: railguard", "Connection: close",
                    f"Content-Length: {len(body)}", *(["Content-Type: application/json"] if data is not None else []),
                    *(f"{name}: {value}" for name, value in self.headers.items())]
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            buf = b""
            while b"\r\n\r\n" not in buf:
                if len(buf) > 65536:
                    raise _Failed("the answer's header is longer than 64 KiB")
                chunk = sock.recv(65536)
                if not chunk:
                    raise _Failed("Server disconnected without sending a response.")
                buf += chunk
            header, rest = buf.split(b"\r\n\r\n", 1)
            lines = header.decode("latin-1").split("\r\n")
            status = lines[0].split(" ", 2)
            if len(status) < 2 or not status[0].startswith("HTTP/1.") or not status[1].isdigit():
                raise _Failed(f"not an HTTP answer: {lines[0][:80]!r}")
            fields = {name.strip().lower(): value.strip()
                      for name, _, value in (line.partition(":") for line in lines[1:])}
            if "chunked" in fields.get("transfer-encoding", "").lower():
                raise _Failed("a chunked answer (the daemon always sends a Content-Length)")
            length = fields.get("content-length")
            if length is not None and not length.isdigit():
                raise _Failed(f"Content-Length is not a number: {length[:40]!r}")
            return sock, int(status[1]), None if length is None else int(length), rest
        except TimeoutError as exc:
            sock.close()
            raise _Timeout(str(exc) or "timed out") from exc
        except OSError as exc:
            sock.close()
            raise _Failed(str(exc) or type(exc).__name__) from exc
        except BaseException:
            sock.close()
            raise

    @staticmethod
    def _chunks(sock: socket.socket, length: int | None, rest: bytes, size: int) -> Iterator[bytes]:
        """The body: ``length`` bytes (``rest`` first), or up to the end of the connection without a length."""
        left = length
        try:
            if rest:
                rest = rest if left is None else rest[:left]
                left = None if left is None else left - len(rest)
                yield rest
            while left is None or left > 0:
                chunk = sock.recv(size if left is None else min(size, left))
                if not chunk:
                    if left is not None:
                        raise _Failed(f"the answer ended {left} bytes before its Content-Length")
                    return
                left = None if left is None else left - len(chunk)
                yield chunk
        except TimeoutError as exc:
            raise _Timeout(str(exc) or "timed out") from exc
        except OSError as exc:
            raise _Failed(str(exc) or type(exc).__name__) from exc

    def request(self, method: str, target: str, data: bytes | None, timeout: float) -> tuple[int, bytes]:
        sock, status, length, rest = self._open(method, target, data, timeout)
        with sock:
            return status, b"".join(self._chunks(sock, length, rest, 1 << 16))

    @contextmanager
    def stream(self, target: str) -> Iterator[tuple[int, Iterator[bytes]]]:
        sock, status, length, rest = self._open("GET", target, None, READ_TIMEOUT_S)
        with sock:
            yield status, self._chunks(sock, length, rest, 1 << 20)

    def close(self) -> None:
        pass


class _Transported:
    """Requests through an httpx transport (the console inside the daemon's process passes
    :class:`railguard.daemon.api.LocalTransport`): the same calls without a socket."""

    def __init__(self, transport: httpx.BaseTransport, headers: dict[str, str]) -> None:
        import httpx

        self._httpx = httpx
        self._http = httpx.Client(transport=transport, headers=headers, base_url="http://railguard",
                                  timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S))

    def request(self, method: str, target: str, data: bytes | None, timeout: float) -> tuple[int, bytes]:
        httpx = self._httpx
        try:
            response = self._http.request(method, target, content=data,
                                          headers={"Content-Type": "application/json"} if data is not None else None,
                                          timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT_S))
            return response.status_code, response.read()
        except httpx.TimeoutException as exc:
            raise _Timeout(str(exc)) from exc
        except httpx.HTTPError as exc:
            raise _Failed(str(exc)) from exc

    @contextmanager
    def stream(self, target: str) -> Iterator[tuple[int, Iterator[bytes]]]:
        httpx = self._httpx
        try:
            with self._http.stream("GET", target) as response:
                yield response.status_code, response.iter_bytes(1 << 20)
        except httpx.TimeoutException as exc:
            raise _Timeout(str(exc)) from exc
        except httpx.HTTPError as exc:
            raise _Failed(str(exc)) from exc

    def close(self) -> None:
        self._http.close()


class Client:
    def __init__(self, ws: Workspace, autostart: bool = True, token: str | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        """``token``: the bearer to send (the console's signed-in user); by default ``RAILGUARD_TOKEN``.
        ``transport``: how requests reach the daemon; by default its Unix socket (the console inside the
        daemon's process passes :class:`railguard.daemon.api.LocalTransport`)."""
        self.ws = ws
        self.autostart = autostart
        token = token or os.environ.get("RAILGUARD_TOKEN")
        # The token in the environment always wins over the OS identity (an agent's shell acts as the agent).
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http: _Socket | _Transported = (_Transported(transport, headers) if transport is not None
                                              else _Socket(ws, headers))

    def close(self) -> None:
        self._http.close()

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None,
              timeout: float = READ_TIMEOUT_S) -> dict[str, Any]:
        """One request, its answer's JSON; raises _NotListening, _Timeout, _Failed or ValueError."""
        data = None if body is None else json.dumps(body).encode()
        _, answer = self._http.request(method, path, data, timeout)
        payload = json.loads(answer)
        if not isinstance(payload, dict):
            raise ValueError(f"expected a JSON object, got {type(payload).__name__}")
        return payload

    # -- the daemon process ------------------------------------------------------------------
    def daemon_pid(self) -> int | None:
        from railguard.state.pidfile import read_pid  # psutil: only the commands that manage the daemon

        return read_pid(self.ws.home)

    def listening(self) -> bool:
        """Whether a daemon accepts connections on the socket (nothing is sent; an in-process transport always
        reaches one)."""
        if not isinstance(self._http, _Socket):
            return True
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(CONNECT_TIMEOUT_S)
            try:
                sock.connect(self._http.path)
            except OSError:
                return False
        return True

    def alive(self) -> bool:
        try:
            return bool(self._json("GET", "/v1/health").get("ok"))
        except (_NotListening, _Timeout, _Failed, ValueError):
            return False

    def start_daemon(self, require_token: bool = False, extra: list[str] | None = None, *,
                     allow_shared_user: bool = False, same_user: bool = False) -> int:
        """Start the daemon detached; without flags it runs in the mode recorded for the state folder (never
        weaker). ``extra``: more arguments of ``daemon run`` (``--console``, ``--spec``)."""
        if self.alive():
            return self.daemon_pid() or 0
        # Open the store here first: a corrupt, too new or unwritable state folder is reported
        # with its own diagnostic instead of a daemon that dies at boot.
        import subprocess  # only when a daemon is started (a command's start-up pays for what it uses)

        from railguard.state.store import Store

        Store.open(self.ws.home).close()
        out_path = self.ws.home / "daemon.out"
        if out_path.exists() and out_path.stat().st_size > OUT_MAX_BYTES:
            out_path.replace(out_path.with_name("daemon.out.1"))
        out = open(out_path, "ab")  # handed to the child
        proc = subprocess.Popen(
            [sys.executable, "-m", "railguard", "daemon", "run", "--home", str(self.ws.home)]
            + (["--require-token"] if require_token else []) + (["--allow-shared-user"] if allow_shared_user else [])
            + (["--same-user"] if same_user else []) + (extra or []),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=str(self.ws.home))
        out.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.alive():
                return proc.pid
            code = proc.poll()
            if code is not None:
                if self.alive():  # another client started it first
                    pid = self.daemon_pid()
                    return pid if pid is not None else proc.pid
                log = out_path.read_text(errors="replace").strip().splitlines()[-5:]
                raise _unavailable(f"The daemon exited with status {code} while starting: {' | '.join(log)}",
                                   self.ws.home)
            time.sleep(0.05)
        raise _unavailable(f"The daemon did not answer within {START_TIMEOUT_S:.0f} s.", self.ws.home, deadline=True)

    def stop_daemon(self, everything: bool = False, timeout: float = 30.0) -> bool:
        """Ask the daemon to stop (and, with ``everything``, to stop the apps and the edge too)."""
        from railguard.model.diagnostics import Diagnostic, RailguardError

        pid = self.daemon_pid()
        if pid is None and not self.alive():
            return False
        try:
            answer = self._json("POST", "/v1/shutdown", {"everything": everything})
        except (_NotListening, _Timeout, _Failed, ValueError):
            if pid is not None:
                import signal

                os.kill(pid, signal.SIGTERM)
        else:
            if not answer.get("ok"):  # e.g. token-only mode without an admin token
                raise RailguardError(*[Diagnostic.model_validate(d) for d in answer.get("diagnostics", [])])
        import psutil

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if pid is None or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    return True
            except psutil.Error:
                return True
            time.sleep(0.05)
        raise _unavailable(f"The daemon (pid {pid}) did not stop within {timeout:.0f} s.", self.ws.home,
                           deadline=True)

    # -- calls -------------------------------------------------------------------------------
    def call(self, method: str, path: str, body: dict[str, Any] | None = None,  # JSON out, raw JSON answered
             params: dict[str, Any] | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Any call, answered as raw JSON (the envelope's payload keys); the typed calls below parse it.

        ``timeout``: seconds to wait for the answer when the call may take longer than the usual 120 s.
        """
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        target = f"/v1/{path}" + (f"?{urlencode(clean)}" if clean else "")
        try:
            try:
                payload = self._json(method, target, body, timeout or READ_TIMEOUT_S)
            except _NotListening:
                if not self.autostart:
                    raise
                # Nothing listens (no socket, or a stale one): the request never reached a daemon, so it is sent
                # again once one runs. A running daemon costs no extra round trip (no health check first).
                self.start_daemon()
                payload = self._json(method, target, body, timeout or READ_TIMEOUT_S)
        except _Timeout as exc:
            raise _unavailable(f"The daemon did not answer {method} /v1/{path} in time: {exc}.", self.ws.home,
                               deadline=True) from exc
        except (_NotListening, _Failed) as exc:
            raise _unavailable(f"The daemon did not answer {method} /v1/{path}: {exc}.", self.ws.home) from exc
        except ValueError as exc:
            raise _unavailable(f"The daemon sent an answer that is not JSON: {exc}.", self.ws.home) from exc
        if not payload.get("ok"):
            from railguard.model.diagnostics import Diagnostic, RailguardError, error  # only a refusal parses

            found = [Diagnostic.model_validate(d) for d in payload.get("diagnostics", [])]
            raise RailguardError(*(found or [error(
                "daemon.bad_request", "The daemon refused the request without saying why",
                f"{method} /v1/{path} answered ok=false with no diagnostics.",
                "Check that the CLI and the daemon are the same version (`railguard daemon stop`, then retry).")]))
        return payload

    # -- typed calls: the answers parsed into the contract (:mod:`railguard.model.api`) -----------------
    # Each returns what the daemon answered under its payload key; ``call`` stays for everything else.
    def health(self) -> DaemonHealth:
        from railguard.model.api import DaemonHealth
        return DaemonHealth.model_validate(self.call("GET", "health")["daemon"])

    def whoami(self) -> WhoAmI:
        from railguard.model.api import WhoAmI
        return WhoAmI.model_validate(self.call("GET", "whoami"))

    def status(self, env: str, spec: str | None = None) -> EnvironmentStatus:
        from railguard.model.api import EnvironmentStatus
        return EnvironmentStatus.model_validate(self.call("GET", "status", params={"env": env, "spec": spec})["status"])

    def operation(self, op_id: str, after: int | None = None, wait_s: float = 0.0,
                  until_end: bool = False) -> Operation:
        """The operation; with ``after``, once its journal has more entries than that or it ended (the daemon
        holds the request up to ``wait_s`` seconds and answers the moment a step is written); with ``until_end``,
        once it ended (or ``wait_s`` ran out)."""
        from railguard.model.api import Operation
        params = ({"until": "end", "wait": wait_s} if until_end else
                  None if after is None else {"after": after, "wait": wait_s})
        return Operation.model_validate(self.call("GET", f"operations/{op_id}", params=params)["operation"])

    def operations(self, env: str | None = None, limit: int | None = None) -> list[Operation]:
        """Newest first, with their journals."""
        from railguard.model.api import Operation
        rows = self.call("GET", "operations", params={"env": env, "limit": limit})["operations"]
        return [Operation.model_validate(r) for r in rows]

    def releases(self, env: str, limit: int | None = None) -> list[Release]:
        """Newest first, WITHOUT their desired resources (the daemon leaves them out of lists)."""
        from railguard.model.api import Release
        rows = self.call("GET", "releases", params={"env": env, "limit": limit})["releases"]
        return [Release.model_validate(r) for r in rows]

    def events(self, env: str | None = None, limit: int | None = None) -> list[Event]:
        from railguard.model.api import Event
        rows = self.call("GET", "events", params={"env": env, "limit": limit})["events"]
        return [Event.model_validate(r) for r in rows]

    def logs(self, env: str, service: str, release: int | None = None, lines: int | None = None,
             offsets: dict[str, int] | None = None) -> Logs:
        from railguard.model.api import Logs
        params = {"env": env, "service": service, "release": release, "lines": lines,
                  "offsets": json.dumps(offsets) if offsets is not None else None}
        return Logs.model_validate(self.call("GET", "logs", params=params)["logs"])

    def plans(self, env: str | None = None) -> list[PlanRecord]:
        from railguard.model.api import PlanRecord
        return [PlanRecord.model_validate(r) for r in self.call("GET", "plans", params={"env": env})["plans"]]

    def plan_record(self, plan_id: str) -> PlanDetail:
        from railguard.model.api import PlanDetail
        return PlanDetail.model_validate(self.call("GET", f"plans/{plan_id}"))

    def plan_files(self, plan_id: str) -> PlanFiles:
        from railguard.model.api import PlanFiles
        return PlanFiles.model_validate(self.call("GET", f"plans/{plan_id}/files")["files"])

    def policies(self, spec: str, env: str) -> Policies:
        from railguard.model.api import Policies
        return Policies.model_validate(self.call("GET", "policies", params={"env": env, "spec": spec})["policies"])

    def plan(self, spec: str, env: str, text: str | None = None,
             allow_data_loss: list[str] | None = None) -> PlanAnswer:
        from railguard.model.api import PlanAnswer
        body: dict[str, Any] = {"spec": spec, "env": env, **({"text": text} if text is not None else {})}
        if allow_data_loss:
            body["allow_data_loss"] = allow_data_loss
        return PlanAnswer.model_validate(self.call("POST", "plans", body)["plan"])

    def plan_overview(self, spec: str, env: str, per_action: int,
                      allow_data_loss: list[str] | None = None) -> PlanOverview:
        """Plan, answered as its summary and the first ``per_action`` changes of each action (large plans)."""
        from railguard.model.api import PlanOverview
        body: dict[str, Any] = {"spec": spec, "env": env, "view": "overview", "per_action": per_action}
        if allow_data_loss:
            body["allow_data_loss"] = allow_data_loss
        return PlanOverview.model_validate(self.call("POST", "plans", body)["plan"])

    @contextmanager
    def plan_body(self, plan_id: str) -> Iterator[Iterator[bytes]]:
        """The saved plan's JSON as the daemon stored it, in chunks (never parsed or re-encoded on the way)."""
        try:
            with self._http.stream(f"/v1/plans/{plan_id}/body") as (status, chunks):
                if status != 200:
                    # Here only: a plan's --json on the CLI's fast path streams the body without the models.
                    from railguard.model.diagnostics import Diagnostic, RailguardError, error

                    answer = b"".join(chunks)
                    try:
                        found = [Diagnostic.model_validate(d) for d in json.loads(answer).get("diagnostics", [])]
                    except (ValueError, AttributeError):
                        found = []
                    raise RailguardError(*(found or [error(
                        "daemon.bad_request", "The daemon refused to send the plan",
                        f"GET /v1/plans/{plan_id}/body answered {status}.",
                        "Check that the CLI and the daemon are the same version.")]))
                yield chunks
        except (_NotListening, _Timeout, _Failed) as exc:
            raise _unavailable(f"The daemon did not send plan {plan_id}: {exc}.", self.ws.home) from exc

    def promote(self, spec: str, source: str, target: str) -> PlanAnswer:
        from railguard.model.api import PlanAnswer
        return PlanAnswer.model_validate(self.call("POST", "promote", {"spec": spec, "from": source,
                                                                       "to": target})["plan"])

    def deploy(self, spec: str, env: str | None, allow_data_loss: list[str] | None = None,
               apply: bool = True) -> DeployAnswer:
        """Plan ``env`` (unprotected) and, with ``apply``, submit its plan in the same request when it is applyable;
        the operation is answered as queued (follow it with ``operation``)."""
        from railguard.model.api import DeployAnswer
        body: dict[str, Any] = {"spec": spec, "apply": apply, **({"env": env} if env is not None else {})}
        if allow_data_loss:
            body["allow_data_loss"] = allow_data_loss
        return DeployAnswer.model_validate(self.call("POST", "deploys", body))

    def submit(self, request: OperationRequest) -> Operation:
        """Queue an apply or a rollback; the answer is the operation as queued (follow it with ``operation``)."""
        from railguard.model.api import Operation
        body = request.model_dump(mode="json", by_alias=True, exclude_none=True)
        return Operation.model_validate(self.call("POST", "operations", body)["operation"])

    def incidents(self, env: str | None = None, open_only: bool = True) -> list[Incident]:
        from railguard.model.api import Incident
        params = {"env": env, "open": "1" if open_only else None}
        return [Incident.model_validate(r) for r in self.call("GET", "incidents", params=params)["incidents"]]

    def incident(self, incident_id: str) -> Incident:
        from railguard.model.api import Incident
        return Incident.model_validate(self.call("GET", f"incidents/{incident_id}")["incident"])

    def exec(self, request: ExecRequest) -> ExecRecord | PlanAnswer:
        """Run a one-off command (or, in a protected environment, save it as a plan needing approval)."""
        from railguard.model.api import ExecRecord, PlanAnswer
        wait = (request.timeout_s or 600.0) + 30.0 if not request.attach else None  # a captured run takes its time
        answer = self.call("POST", "exec", request.model_dump(mode="json"), timeout=wait)
        if answer.get("plan"):
            return PlanAnswer.model_validate(answer["plan"])
        return ExecRecord.model_validate(answer["exec"])

    def apply(self, spec: str, plan_id: str) -> Operation:
        from railguard.model.api import OperationKind, OperationRequest
        return self.submit(OperationRequest(kind=OperationKind.apply, spec=spec, plan_id=plan_id))

    def rollback(self, spec: str, env: str, to: int | None = None) -> Operation:
        from railguard.model.api import OperationKind, OperationRequest
        return self.submit(OperationRequest(kind=OperationKind.rollback, spec=spec, env=env, to=to))

    def request_approval(self, plan_id: str, reason: str | None = None) -> Approval:
        from railguard.model.api import Approval
        return Approval.model_validate(self.call("POST", f"plans/{plan_id}/request-approval",
                                                 {"reason": reason})["approval"])

    def decide(self, plan_id: str, decision: str, *, typed: str | None, reason: str,
               confirm: list[str] | None = None) -> ApprovalRecord:
        """``decision`` is ``approve`` or ``reject`` (the path the daemon routes)."""
        from railguard.model.api import ApprovalRecord
        body = {"typed": typed, "reason": reason, **({"confirm": confirm} if confirm is not None else {})}
        return ApprovalRecord.model_validate(self.call("POST", f"plans/{plan_id}/{decision}", body)["approval"])

    def create_token(self, name: str, role: str, envs: list[str], expires_in_s: float | None,
                     typed: str | None) -> CreatedToken:
        from railguard.model.api import CreatedToken
        body = {"name": name, "role": role, "envs": envs, "expires_in_s": expires_in_s, "typed": typed}
        return CreatedToken.model_validate(self.call("POST", "tokens", body)["token"])

    def tokens(self) -> list[TokenInfo]:
        from railguard.model.api import TokenInfo
        return [TokenInfo.model_validate(r) for r in self.call("GET", "tokens")["tokens"]]

    def revoke_token(self, name_or_id: str) -> TokenInfo:
        from railguard.model.api import TokenInfo
        return TokenInfo.model_validate(self.call("POST", f"tokens/{name_or_id}/revoke")["token"])

    def set_secret(self, env: str, name: str, value: str) -> SecretSet:
        from railguard.model.api import SecretSet
        return SecretSet.model_validate(self.call("POST", "secrets", {"env": env, "name": name,
                                                                      "value": value})["secret"])

    def secrets(self, env: str | None = None) -> list[SecretInfo]:
        from railguard.model.api import SecretInfo
        return [SecretInfo.model_validate(r) for r in self.call("GET", "secrets", params={"env": env})["secrets"]]

    def audit(self, env: str | None = None, limit: int | None = None) -> list[AuditEntry]:
        from railguard.model.api import AuditEntry
        rows = self.call("GET", "audit", params={"env": env, "limit": limit})["audit"]
        return [AuditEntry.model_validate(r) for r in rows]

    def audit_verify(self) -> AuditVerification:
        from railguard.model.api import AuditVerification
        return AuditVerification.model_validate(self.call("GET", "audit/verify")["verify"])

    def gc(self, spec: str, dry_run: bool) -> GcResult:
        from railguard.model.api import GcResult
        return GcResult.model_validate(self.call("POST", "gc", {"spec": spec, "dry_run": dry_run})["gc"])

    def canary_move(self, env: str, service: str, verb: str, plan_id: str | None = None,
                    from_weight: int | None = None) -> CanaryMove | PlanAnswer:
        """``promote-step`` or ``abort`` a canary; in a protected environment a step without ``plan_id`` answers the
        plan that needs approval instead (nothing moved). ``from_weight``: the step moves only from that share."""
        from railguard.model.api import CanaryMove, PlanAnswer
        body: dict[str, Any] = {"env": env, **({"plan_id": plan_id} if plan_id else {}),
                                **({"from_weight": from_weight} if from_weight is not None else {})}
        answer = self.call("POST", f"canaries/{env}/{service}/{verb}", body)
        if answer.get("plan"):
            return PlanAnswer.model_validate(answer["plan"])
        return CanaryMove.model_validate(answer["canary"])

    def acknowledge(self, incident_id: str, reason: str = "") -> Incident:
        """Resolve an incident and lift its known-bad marks (needs the apply permission)."""
        from railguard.model.api import Incident
        answer = self.call("POST", f"incidents/{incident_id}/ack", {"reason": reason})
        return Incident.model_validate(answer["incident"])
