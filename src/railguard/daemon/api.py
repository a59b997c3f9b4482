"""The daemon's local API: JSON over HTTP on a Unix socket only its user (and root) is served on.

The socket file is created with mode 0600 inside the state folder (or a private
0700 folder under /tmp when that path is too long). On an isolated install it is then
opened to all (0666) so that an app's connection reaches the daemon: any peer that is
not the daemon's user or root (SO_PEERCRED) is refused before anything is served and
recorded (:mod:`railguard.daemon.intrusions`). Each request is authenticated
(a bearer token, or the OS user from SO_PEERCRED in same-user mode) and every route
checks the principal's permission for the environment it touches. Every answer is
``{"ok", "diagnostics", ...payload}`` and passes through the secret redactor; a
RailguardError becomes its diagnostics with a 4xx status, never a traceback. Changes
and refusals are appended to the audit log. Used by :mod:`railguard.client`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlparse

import httpx
from pydantic import ValidationError
from pydantic_core import to_jsonable_python

from railguard.daemon import canary_api, memory, observe_api
from railguard.daemon.access import authenticate
from railguard.daemon.databases import backups_answer
from railguard.daemon.intrusions import clean
from railguard.daemon.service import Daemon
from railguard.engine.guard import require
from railguard.model.api import (
    ApprovalRequestBody,
    DecisionRequest,
    DeployRequest,
    Event,
    ExecRequest,
    Operation,
    OperationKind,
    OperationRequest,
    PlanAnswer,
    PlanRequest,
    PromoteRequest,
    RefusalReport,
    Request,
    RestoreRequest,
    SecretSetRequest,
    ShutdownRequest,
    TokenCreateRequest,
    WhoAmI,
)
from railguard.model.diagnostics import RailguardError, error
from railguard.model.principals import Permission, Principal
from railguard.model.spec import NAME_PATTERN
from railguard.state.store import Store

log = logging.getLogger("railguard.daemon.api")
R = TypeVar("R", bound=Request)
MAX_BODY = 2_000_000
READ_TIMEOUT_S = 30.0
FOREIGN_READ_S = 2.0  # how long a refused OS user's request line is waited for (to record what it tried)
_FOREIGN = threading.BoundedSemaphore(8)  # refused connections read at once; beyond, closed unread
_STATUS_BY_CODE = {"plan.not_found": 404, "operation.not_found": 404, "operation.busy": 409, "state.locked": 409,
                   "auth.unknown_token": 401, "auth.token_revoked": 401, "auth.token_expired": 401,
                   "auth.token_required": 401, "auth.forbidden": 403, "auth.needs_terminal": 403,
                   "incident.not_found": 404, "canary.none": 404}


class Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, daemon: Daemon) -> None:
        self.daemon = daemon
        if path.exists():
            path.unlink()
        old_umask = os.umask(0o177)  # the socket is born 0600: no window where others could connect
        try:
            super().__init__(str(path), Handler)
        finally:
            os.umask(old_umask)
        # Isolated, the apps run as other OS users: a 0600 socket would refuse their connections in the kernel,
        # unseen. Open to all, every connection from a user that is not ours nor root is refused here (the same
        # set of users as 0600) and recorded (daemon.intrusions), so an app probing the daemon is visible.
        self.observed = daemon.provider.summary().isolation == "isolated"
        os.chmod(path, 0o666 if self.observed else 0o600)


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    # Every read from the socket (request line, headers, body) gives up after this long, so a client that
    # stops sending (a "Content-Length" it never fills) holds only its own thread, and only for a while.
    timeout = READ_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)

    def handle(self) -> None:
        pid, uid = self._peer()
        if uid in (os.geteuid(), 0):
            super().handle()
            return
        self._foreign(pid, uid)

    def _foreign(self, pid: int, uid: int) -> None:
        """A process of another OS user (an isolated app): say what it tried, refuse it, answer nothing else."""
        if not _FOREIGN.acquire(blocking=False):  # many at once: not read, still counted
            self.server.daemon.intrusions.peer_refused(uid, pid, "(connection not read: too many at once)")
            return
        try:
            head = _read_head(self.request, FOREIGN_READ_S)
            lines = head.split(b"\r\n")
            line = lines[0].decode("latin-1").strip()
            # Header names only: a value (a token) is never kept.
            bearer = any(h.lower().startswith(b"authorization:") for h in lines[1:])
            tried = clean(line or "(no request sent)") + (" with a token" if bearer else "")
            self.server.daemon.intrusions.peer_refused(uid, pid, tried)
            diag = error("auth.foreign_user", "This daemon does not serve other OS users",
                         f"uid {uid} is neither the daemon's user nor root; the attempt was recorded.",
                         "Run railguard as the daemon's user (root on an isolated install).")
            data = json.dumps({"ok": False, "diagnostics": [diag.model_dump(mode="json")]}).encode()
            status = (f"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                      "Connection: close\r\n\r\n").encode()
            try:
                self.request.settimeout(FOREIGN_READ_S)  # a peer that never reads does not hold the thread either
                self.wfile.write(status + data)
            except OSError:
                pass
        finally:
            _FOREIGN.release()

    def _peer(self) -> tuple[int, int]:
        creds = self.request.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _ = struct.unpack("3i", creds)
        return pid, uid

    def _send(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:  # a refused body was never read: nothing after it can be trusted
            self.send_header("Connection", "close")
        self.end_headers()
        view = memoryview(data)  # a large answer (a 10k-service plan's body) goes out in 1 MiB writes
        for start in range(0, len(data), 1 << 20):
            self.wfile.write(view[start:start + (1 << 20)])

    def _body(self) -> bytes:
        declared = (self.headers.get("Content-Length") or "0").strip()
        if not declared.isdigit():  # "abc", "-1", "1e3": refused before reading anything
            self.close_connection = True
            raise _bad(f"Content-Length must be a non-negative integer, not {declared[:40]!r}")
        length = int(declared)
        if length > MAX_BODY:
            self.close_connection = True
            raise _bad(f"the request body is larger than {MAX_BODY} bytes")
        if not length:
            return b""
        try:
            raw = self.rfile.read(length)
        except TimeoutError as exc:
            self.close_connection = True
            raise _bad(f"the request body did not arrive within {READ_TIMEOUT_S:.0f} s") from exc
        if len(raw) < length:
            self.close_connection = True
            raise _bad(f"the request body ended after {len(raw)} of {length} bytes")
        return raw

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        daemon = self.server.daemon
        before = memory.resident()
        try:
            raw = self._body() if method == "POST" else b""
        except RailguardError as exc:
            self._send(*_refusal(daemon, exc))
            return
        bearer = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip() or None
        try:
            self._send(*respond(daemon, method, self.path, bearer, raw, self._peer, release_jobs=False))
        finally:
            # Only once the answer is written may a job this request queued start: a job that ends the daemon at
            # its first step (a fault, a crash) must not cut off the answer that says it was queued.
            daemon.answered()
            memory.give_back(before)  # after a large request (a 10k-service plan), once its answer is out


def respond(daemon: Daemon, method: str, target: str, bearer: str | None, raw: bytes,
            peer: Callable[[], tuple[int, int]] | None, anonymous: Principal | None = None,
            release_jobs: bool = True) -> tuple[int, bytes]:
    """One request, whatever carried it (the socket, or :class:`LocalTransport` in the daemon's own process):
    authenticate, route, audit, and answer the envelope as redacted JSON.

    ``peer`` gives the caller's (pid, uid) on the socket; without it (in process) only a bearer authenticates,
    except that ``anonymous`` may report a refusal (``POST /v1/audit/refusals``) and nothing else.
    """
    url = urlparse(target)
    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
    parts = [p for p in url.path.split("/") if p]
    who = "(unauthenticated)"
    principal: Principal | None = None
    body: dict[str, Any] = {}  # raw JSON, read before the route knows which request model it is
    try:
        body = _json_body(raw) if method == "POST" else {}
        if parts == ["v1", "health"]:  # liveness needs no identity
            return _envelope(daemon, 200, {"ok": True, "diagnostics": [],
                                           "daemon": daemon.health().model_dump(mode="json")})
        if peer is not None:
            pid, uid = peer()
            principal = authenticate(daemon.store, daemon.home, bearer, uid, pid, daemon.require_token)
        elif bearer:
            principal = authenticate(daemon.store, daemon.home, bearer, -1, -1, True)
        elif anonymous is not None and method == "POST" and parts == ["v1", "audit", "refusals"]:
            principal = anonymous
        else:
            raise RailguardError(error(
                "auth.token_required", "This call needs a token",
                "A request from inside the daemon's process carries no OS identity.",
                "Sign in with a token made by `railguard token create`."))
        who = principal.id
        if method == "GET" and len(parts) == 4 and parts[1] == "plans" and parts[3] == "body":
            # A stored plan as it is: redacted like every answer, never parsed and re-encoded.
            return 200, daemon.secrets.redactor(daemon.plan_body(parts[2], principal)).encode()
        # Models become their JSON here, once: the wire is the models' field names (fallback as json.dumps did).
        payload = to_jsonable_python(route(daemon, method, parts, query, body, principal), fallback=str)
        if method == "POST" and parts[1:] != ["audit", "refusals"]:  # a refusal report is its own entry
            daemon.audit(who, _action(parts, body), "ok", _audited(parts, body), payload)
        return _envelope(daemon, 200, {"ok": True, "diagnostics": [], **payload})
    except RailguardError as exc:
        status = max((_STATUS_BY_CODE.get(d.code, 422) for d in exc.diagnostics), default=422)
        if method == "POST" or status in (401, 403):
            daemon.audit(who, _action(parts, body), f"refused: {exc.diagnostics[0].code}", _audited(parts, body),
                         None)
        code = exc.diagnostics[0].code
        if status in (401, 403) and code != "auth.needs_terminal":
            # A bad, foreign or missing token, or a right it lacks: on the timeline too (a confirmation the local
            # user must type on a terminal is a mistake, not an intrusion). The environment the request names is
            # the caller's word: it is the timeline's only for a token limited to exactly that environment (any
            # other refusal is the daemon's, as an unknown one), so no token puts events on another's timeline.
            env = body.get("env") or body.get("to") or query.get("env")
            scoped = principal is not None and principal.envs is not None and principal.envs == [env]
            daemon.intrusions.request_refused(who, clean(f"{method} {url.path}"), code,
                                              env if scoped and isinstance(env, str)
                                              and re.fullmatch(NAME_PATTERN, env) else None)
        return _envelope(daemon, status, {"ok": False,
                                          "diagnostics": [d.model_dump(mode="json") for d in exc.diagnostics]})
    except Exception as exc:  # the API answers every request with a diagnostic
        log.exception("API %s %s failed", method, target)
        diag = error("internal.error", "The daemon hit an internal error", f"{type(exc).__name__}: {exc}",
                     "Re-run the command; if it persists, report it with the daemon log (daemon.log).")
        return _envelope(daemon, 500, {"ok": False, "diagnostics": [diag.model_dump(mode="json")]})
    finally:
        if release_jobs:  # the caller has the answer once this returns (in process); the socket releases later
            daemon.answered()  # an operation this request queued starts only now (see Daemon._queue)


def _read_head(sock: socket.socket, within: float, limit: int = 8192) -> bytes:
    """What a refused peer sent first (its request line and headers), read for ``within`` seconds at most in all:
    a peer that sends slowly holds the reading thread no longer than that."""
    deadline = time.monotonic() + within
    head = b""
    while len(head) < limit and b"\r\n\r\n" not in head:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            sock.settimeout(remaining)
            chunk = sock.recv(limit - len(head))
        except OSError:
            break
        if not chunk:
            break
        head += chunk
    return head.split(b"\r\n\r\n", 1)[0]


def _envelope(daemon: Daemon, status: int, body: dict[str, Any]) -> tuple[int, bytes]:  # already JSON-able
    # Last line of defence: no secret value leaves the daemon, whatever produced the text.
    return status, daemon.secrets.redactor(json.dumps(body, default=str)).encode()


def _refusal(daemon: Daemon, exc: RailguardError) -> tuple[int, bytes]:
    return _envelope(daemon, 422, {"ok": False, "diagnostics": [d.model_dump(mode="json") for d in exc.diagnostics]})


def _json_body(raw: bytes) -> dict[str, Any]:  # raw JSON: _parse turns it into the route's request model
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise _bad(f"the request body is not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise _bad("the request body must be a JSON object")
    return parsed


class LocalTransport(httpx.BaseTransport):
    """The API without the socket, for a server running in the daemon's own process (the web console):
    the same authentication (a bearer token), routes, audit and redaction as a request on the socket."""

    def __init__(self, daemon: Daemon, anonymous: Principal | None = None) -> None:
        self.daemon = daemon
        self.anonymous = anonymous

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        bearer = (request.headers.get("Authorization") or "").removeprefix("Bearer ").strip() or None
        target = request.url.raw_path.decode("ascii")
        status, data = respond(self.daemon, request.method, target, bearer, request.read(), None, self.anonymous)
        return httpx.Response(status, content=data, headers={"Content-Type": "application/json"})


def _audited(parts: list[str], body: dict[str, Any]) -> dict[str, Any]:  # raw body in, its audited subset out
    """The request body plus the ids named in the path (plan-..., op-...)."""
    named = [p for p in parts if p.startswith("plan-")]
    return {**body, "plan_id": named[0]} if named else body


def _action(parts: list[str], body: dict[str, Any]) -> str:  # raw body: also for refused, unparsable requests
    name = "/".join(p for p in parts[1:] if not p.startswith(("plan-", "op-")))
    return f"{name}:{body['kind']}" if isinstance(body.get("kind"), str) else name


def _bad(detail: str) -> RailguardError:
    return RailguardError(error("daemon.bad_request", "Bad request to the daemon", detail,
                                "Use the railguard CLI or a client of the same version as the daemon."))


def _need(source: dict[str, Any], key: str) -> str:  # a raw body or the query string
    value = source.get(key)
    if not isinstance(value, str) or not value:
        raise _bad(f"'{key}' is required")
    return value


def _int(source: dict[str, Any], key: str, default: int | None) -> int | None:  # a raw body or the query
    value = source.get(key)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise _bad(f"'{key}' must be a number") from exc


def _float(source: dict[str, Any], key: str, default: float) -> float:  # the query
    value = source.get(key)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise _bad(f"'{key}' must be a number") from exc
    if not 0 <= number < float("inf"):
        raise _bad(f"'{key}' must be a number of seconds, 0 or more")
    return number


def _parse(model: type[R], body: dict[str, Any]) -> R:  # raw JSON in, the request model out
    """The body as ``model``: unknown fields and wrong types are a bad request, never a 500."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        # Only the location and message of each error: the input (a secret value, say) is never echoed.
        raise _bad("; ".join(f"'{'.'.join(str(p) for p in e['loc']) or 'body'}': {e['msg']}"
                             for e in exc.errors())) from exc


def _releases(store: Store, env: str, limit: int, short: bool = False) -> list[dict[str, Any]]:
    # In short (``status?with=releases``): what a release is and how it went, without its per-service artifacts,
    # source facts and data guard (200 entries each with 200 services, which the reader parsed and never used).
    left_out = {"desired", "services", "source", "data"} if short else {"desired"}
    return [r.model_dump(mode="json", exclude=left_out) for r in store.releases(env, limit, desired=False)]


def _events(store: Store, env: str | None, limit: int, who: Principal) -> list[Event]:
    return [r for r in store.events(env, limit) if r.env is None or who.allows(Permission.read, r.env)]


def _operations(store: Store, env: str | None, limit: int, steps: int | None, who: Principal) -> list[Operation]:
    return [r for r in store.operations(env, limit, steps=steps) if who.allows(Permission.read, r.env)]


STATUS_WITH = ("releases", "events", "operations", "incidents")


def _status_with(daemon: Daemon, query: dict[str, str], who: Principal) -> Callable[[], dict[str, Any]]:
    """The reads ``GET /v1/status?with=...`` adds, each answered as its own route would for the same environment
    (the caller may read it: checked before): ``releases`` (newest ``releases``, default 50, in short: number,
    status, plan, operation, times, rollback_of; not their services, source or data), ``events`` (newest
    ``events``, default 100), ``operations`` (newest ``operations``, default 50, journals in short with ``steps``)
    and ``incidents`` (the unresolved ones). Checked before the status is built, read after it (as a caller making
    the requests one after the other would)."""
    wanted = [w for w in (query.get("with") or "").split(",") if w]
    unknown = [w for w in wanted if w not in STATUS_WITH]
    if unknown:
        raise _bad(f"'with' takes {', '.join(STATUS_WITH)}, not {', '.join(unknown)}")
    env = _need(query, "env")
    limits = {name: _int(query, name, default) or default
              for name, default in (("releases", 50), ("events", 100), ("operations", 50))}
    steps = _int(query, "steps", None)

    def read() -> dict[str, Any]:
        store = daemon.store()
        parts: dict[str, Any] = {}
        for name in wanted:
            if name == "releases":
                parts[name] = _releases(store, env, limits[name], short=True)
            elif name == "events":
                parts[name] = _events(store, env, limits[name], who)
            elif name == "operations":
                parts[name] = _operations(store, env, limits[name], steps, who)
            else:
                parts[name] = observe_api.open_incidents(daemon, env, who)
        return parts

    return read


def route(daemon: Daemon, method: str, parts: list[str], query: dict[str, str], body: dict[str, Any],
          who: Principal) -> dict[str, Any]:  # raw body in; out: payload key -> model(s), dumped once by the handler
    """Map a request to the daemon's behaviour, after checking the principal may do it. Paths: /v1/...

    ``body`` is the raw JSON (each route parses it into its request model); the answer maps the payload's
    top-level keys to models (or lists of them), which the handler dumps once.
    """
    if not parts or parts[0] != "v1":
        raise _bad(f"unknown path /{'/'.join(parts)}")
    key = (method, parts[1] if len(parts) > 1 else "", len(parts))
    for named in (body.get("spec"), query.get("spec")):
        if isinstance(named, str) and named:
            daemon.check_spec(named, who)
    store = daemon.store  # opened lazily: shutdown must work even when the state file is damaged
    read = Permission.read
    match key:
        case ("POST", "plans", 2):
            wanted = _parse(PlanRequest, body)
            require(who, Permission.plan, wanted.env)
            if wanted.view == "overview":
                return {"plan": daemon.plan_overview(wanted.spec, wanted.env, who, wanted.per_action, wanted.text,
                                                     allow_data_loss=wanted.allow_data_loss)}
            return {"plan": daemon.plan(wanted.spec, wanted.env, who, text=wanted.text,
                                        allow_data_loss=wanted.allow_data_loss)}
        case ("POST", "deploys", 2):
            deploying = _parse(DeployRequest, body)
            if deploying.env is not None:  # named: refused before the spec is read; else once it names the one
                require(who, Permission.plan, deploying.env)
            done = daemon.deploy(deploying.spec, deploying.env, who, deploying.allow_data_loss, deploying.apply)
            # Top-level keys, as POST /v1/plans and /v1/operations answer them (the audit reads plan and operation).
            return {"env": done.env, "plan": done.plan, "edge_port": done.edge_port,
                    **({"operation": done.operation} if done.operation is not None else {})}
        case ("POST", "restores", 2):
            restoring = _parse(RestoreRequest, body)
            require(who, Permission.plan, restoring.env)
            return {"plan": daemon.restore_plan(restoring.spec, restoring.env, who, restoring.release,
                                                restoring.backup, restoring.databases)}
        case ("GET", "backups", 2):
            require(who, read, _need(query, "env"))
            return {"backups": backups_answer(store(), _need(query, "env"))}
        case ("GET", "plans", 2):
            require(who, read, query.get("env"))
            return {"plans": [p for p in store().plans(query.get("env")) if who.allows(read, p.env)]}
        case ("GET", "plans", 3):
            found = daemon.plan_record(parts[2])
            require(who, read, found.plan.env)
            if query.get("view") == "state":  # where it stands, without its body (a reader that holds it: MCP)
                return {"hash": found.plan.hash, "env": found.plan.env, "status": found.status,
                        "approvals": found.approvals, "approval": found.approval}
            return dict(found)  # its fields are the payload's top-level keys (plan, status, approvals, approval)
        case ("GET", "plans", 4) if parts[3] == "files":
            return {"files": daemon.plan_files(parts[2], who)}
        case ("POST", "plans", 4) if parts[3] == "request-approval":
            asked = _parse(ApprovalRequestBody, body)
            return {"approval": daemon.request_approval(parts[2], who, asked.reason or "")}
        case ("POST", "plans", 4) if parts[3] in ("approve", "reject"):
            decided = _parse(DecisionRequest, body)
            return {"approval": daemon.decide(parts[2], parts[3], who, confirmed=decided.confirm,
                                              typed=decided.typed, reason=decided.reason or "")}
        case ("POST", "promote", 2):
            promotion = _parse(PromoteRequest, body)
            require(who, Permission.plan, promotion.to)
            require(who, read, promotion.from_)
            return {"plan": daemon.promote(promotion.spec, promotion.from_, promotion.to, who)}
        case ("POST", "operations", 2):
            submitted = _parse(OperationRequest, body)
            if submitted.kind is OperationKind.apply:
                op_id = daemon.submit_apply(submitted.spec, _need(body, "plan_id"), who, submitted.confirm)
            else:
                env = _need(body, "env")
                require(who, Permission.apply, env)
                op_id = daemon.submit_rollback(submitted.spec, env, submitted.to, who)
            return {"operation": daemon.operation(op_id)}
        case ("GET", "operations", 2):
            require(who, read, query.get("env"))
            # ``steps``: each journal in short (its newest steps and first failure, with journal_total).
            return {"operations": _operations(store(), query.get("env"), _int(query, "limit", 50) or 50,
                                              _int(query, "steps", None), who)}
        case ("GET", "operations", 3):
            steps = _int(query, "steps", None)
            record = daemon.operation(parts[2], steps)
            require(who, read, record.env)
            if query.get("until") == "end":  # a follower of the final record only: answer when it ends
                record = daemon.operation_end(parts[2], _float(query, "wait", 0.0))
            elif query.get("after") is not None:  # a follower: answer when the journal grows past it, or it ends
                record = daemon.operation_after(parts[2], _int(query, "after", 0) or 0, _float(query, "wait", 0.0),
                                                steps)
            return {"operation": record}
        case ("GET", "status", 2):
            require(who, read, _need(query, "env"))
            # ``with``: more reads of the same environment in the same answer (MCP ``get_status`` and ``diagnose``
            # asked for them one request each, and each request costs both processes more than the read itself).
            also = _status_with(daemon, query, who)
            return {"status": daemon.status(_need(query, "env"), query.get("spec")), **also()}
        case ("GET", "releases", 2):
            require(who, read, _need(query, "env"))
            return {"releases": _releases(store(), _need(query, "env"), _int(query, "limit", 50) or 50)}
        case ("GET", "logs", 2):
            require(who, read, _need(query, "env"))
            try:
                offsets = json.loads(query["offsets"]) if query.get("offsets") else None
            except ValueError as exc:
                raise _bad("'offsets' must be a JSON object of file name to offset") from exc
            if offsets is not None and not (isinstance(offsets, dict) and all(
                    isinstance(k, str) and isinstance(v, int) for k, v in offsets.items())):
                raise _bad("'offsets' must be a JSON object of file name to offset")
            return {"logs": daemon.logs(_need(query, "env"), _need(query, "service"), _int(query, "release", None),
                                        _int(query, "lines", 100) or 100, offsets)}
        case ("GET", "events", 2):
            require(who, read, query.get("env"))
            return {"events": _events(store(), query.get("env"), _int(query, "limit", 100) or 100, who)}
        case ("POST", "tokens", 2):
            token = _parse(TokenCreateRequest, body)
            return {"token": daemon.create_token(who, token.name, token.role, token.envs or None,
                                                 token.expires_in_s, token.typed)}
        case ("GET", "tokens", 2):
            require(who, Permission.admin, None)
            return {"tokens": daemon.list_tokens()}
        case ("POST", "tokens", 4) if parts[3] == "revoke":
            require(who, Permission.admin, None)
            return {"token": daemon.revoke_token(parts[2], who)}
        case ("POST", "kubeconfigs", 2):
            return {"kubeconfig": daemon.kubeconfig_trust(who, (body or {}).get("path"),
                                                          bool((body or {}).get("forget")))}
        case ("GET", "kubeconfigs", 2):
            return {"kubeconfigs": daemon.trusted_kubeconfigs(who)}
        case ("POST", "secrets", 2):
            secret = _parse(SecretSetRequest, body)
            require(who, Permission.secret, secret.env)
            return {"secret": daemon.secrets.set(store(), secret.env, secret.name, secret.value, who.id)}
        case ("GET", "secrets", 2):
            require(who, read, query.get("env"))
            return {"secrets": daemon.list_secrets(query.get("env"), who)}
        case ("GET", "audit", 2):
            require(who, read, query.get("env"))
            entries = daemon.audit_entries(query.get("env"), _int(query, "limit", 200) or 200)
            return {"audit": [r for r in entries if r.env is None or who.allows(read, r.env)]}
        case ("POST", "audit", 3) if parts[2] == "refusals":
            # The console refused a change before it reached here (forged form, ended session): it lands in
            # the audit log like a refusal of the daemon's own, under whoever reports it.
            refused = _parse(RefusalReport, body)
            daemon.audit(who.id, f"console:{refused.action}", f"refused: {refused.code}",
                         {"channel": refused.channel, "env": refused.env, "plan_id": refused.plan_id}, None)
            return {"recorded": True}
        case ("GET", "audit", 3) if parts[2] == "verify":
            require(who, read, None)
            return {"verify": daemon.audit_verify()}
        case ("GET", "policies", 2):
            require(who, read, _need(query, "env"))
            return {"policies": daemon.policies(_need(query, "spec"), _need(query, "env"))}
        case ("GET", "whoami", 2):
            return dict(WhoAmI(principal=who, require_token=daemon.require_token,
                               isolation=daemon.provider.summary().isolation,
                               shared_user_allowed=daemon.mode.allow_shared_user))
        case ("POST", "gc", 2):
            dry_run = body.get("dry_run", False)
            if not isinstance(dry_run, bool):
                raise _bad("'dry_run' must be true or false")
            require(who, read if dry_run else Permission.admin, None)
            spec = body.get("spec")
            return {"gc": daemon.gc(spec if isinstance(spec, str) and spec else None, dry_run)}
        case ("POST", "exec", 2):
            ran = daemon.exec_command(_parse(ExecRequest, body), who)
            return {"plan": ran} if isinstance(ran, PlanAnswer) else {"exec": ran}
        case ("POST", "shutdown", 2):
            require(who, Permission.admin, None)
            everything = _parse(ShutdownRequest, body).everything
            running = daemon.protected_running() if everything else []
            if running:
                daemon.terminal_check(who, f"stop everything while protected {', '.join(running)} runs")
            daemon.request_shutdown(everything)
            return {"stopping": True}
    observed = observe_api.route(daemon, method, parts, query, body, who)  # incidents, metrics
    if observed is not None:
        return observed
    moved = canary_api.route(daemon, method, parts, who, body)  # promote-step, abort
    if moved is not None:
        return moved
    raise _bad(f"unknown endpoint {method} /{'/'.join(parts)}")
