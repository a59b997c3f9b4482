"""The daemon's local API: JSON over HTTP on a Unix socket only its user can open.

The socket file is created with mode 0600 inside the state folder (or a private
0700 folder under /tmp when that path is too long), so only the owning user can
connect; the caller's identity comes from the kernel (SO_PEERCRED), not from
anything the client says. Every response is ``{"ok", "diagnostics", ...payload}``;
a RailguardError becomes its diagnostics with a 4xx status, never a traceback.
Used by :mod:`railguard.client`; started by :func:`railguard.daemon.lifecycle.run`.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import socket
import socketserver
import struct
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from railguard.daemon.service import Daemon
from railguard.model.diagnostics import RailguardError, error

log = logging.getLogger("railguard.daemon.api")
MAX_BODY = 2_000_000
_STATUS_BY_CODE = {"plan.not_found": 404, "operation.not_found": 404,
                   "operation.busy": 409, "state.locked": 409}


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
        os.chmod(path, 0o600)


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug(format, *args)

    def _principal(self) -> str:
        creds = self.request.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", creds)
        try:
            return f"user:{pwd.getpwuid(uid).pw_name}"
        except KeyError:
            return f"uid:{uid}"

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise _bad(f"the request body is larger than {MAX_BODY} bytes")
        if not length:
            return {}
        try:
            parsed = json.loads(self.rfile.read(length))
        except ValueError as exc:
            raise _bad(f"the request body is not JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise _bad("the request body must be a JSON object")
        return parsed

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = [p for p in url.path.split("/") if p]
        try:
            body = self._body() if method == "POST" else {}
            payload = route(self.server.daemon, method, parts, query, body, self._principal())
            self._send(200, {"ok": True, "diagnostics": [], **payload})
        except RailguardError as exc:
            status = max((_STATUS_BY_CODE.get(d.code, 422) for d in exc.diagnostics), default=422)
            self._send(status, {"ok": False, "diagnostics": [d.model_dump(mode="json") for d in exc.diagnostics]})
        except Exception as exc:  # noqa: BLE001 - the API answers every request with a diagnostic
            log.exception("API %s %s failed", method, self.path)
            diag = error("internal.error", "The daemon hit an internal error", f"{type(exc).__name__}: {exc}",
                         "Re-run the command; if it persists, report it with the daemon log (daemon.log).")
            self._send(500, {"ok": False, "diagnostics": [diag.model_dump(mode="json")]})


def _bad(detail: str) -> RailguardError:
    return RailguardError(error("daemon.bad_request", "Bad request to the daemon", detail,
                                "Use the railguard CLI or a client of the same version as the daemon."))


def _need(source: dict[str, Any], key: str) -> str:
    value = source.get(key)
    if not isinstance(value, str) or not value:
        raise _bad(f"'{key}' is required")
    return value


def _int(source: dict[str, Any], key: str, default: int | None) -> int | None:
    value = source.get(key)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise _bad(f"'{key}' must be a number") from exc


def route(daemon: Daemon, method: str, parts: list[str], query: dict[str, str], body: dict[str, Any],
          principal: str) -> dict[str, Any]:
    """Map a request to the daemon's behaviour. Paths are versioned: /v1/..."""
    if not parts or parts[0] != "v1":
        raise _bad(f"unknown path /{'/'.join(parts)}")
    key = (method, parts[1] if len(parts) > 1 else "", len(parts))
    store = daemon.store  # opened lazily: shutdown must work even when the state file is damaged
    match key:
        case ("GET", "health", 2):
            return {"daemon": daemon.health()}
        case ("POST", "plans", 2):
            return {"plan": daemon.plan(_need(body, "spec"), _need(body, "env"))}
        case ("GET", "plans", 2):
            return {"plans": store().plans(query.get("env"))}
        case ("GET", "plans", 3):
            plan, _, status = store().load_plan(parts[2])
            return {"plan": plan.model_dump(mode="json"), "status": status}
        case ("POST", "operations", 2):
            kind = _need(body, "kind")
            if kind == "apply":
                op_id = daemon.submit_apply(_need(body, "spec"), _need(body, "plan_id"), principal)
            elif kind == "rollback":
                op_id = daemon.submit_rollback(_need(body, "spec"), _need(body, "env"), _int(body, "to", None),
                                               principal)
            else:
                raise _bad(f"unknown operation kind {kind!r}")
            return {"operation": daemon.operation(op_id)}
        case ("GET", "operations", 2):
            return {"operations": store().operations(query.get("env"), _int(query, "limit", 50) or 50)}
        case ("GET", "operations", 3):
            return {"operation": daemon.operation(parts[2])}
        case ("GET", "status", 2):
            return {"status": daemon.status(_need(query, "env"), query.get("spec"))}
        case ("GET", "releases", 2):
            return {"releases": [{k: v for k, v in r.items() if k != "desired"}
                                 for r in store().releases(_need(query, "env"), _int(query, "limit", 50) or 50)]}
        case ("GET", "logs", 2):
            offsets = json.loads(query["offsets"]) if query.get("offsets") else None
            return {"logs": daemon.logs(_need(query, "env"), _need(query, "service"), _int(query, "release", None),
                                        _int(query, "lines", 100) or 100, offsets)}
        case ("GET", "events", 2):
            return {"events": store().events(query.get("env"), _int(query, "limit", 100) or 100)}
        case ("POST", "shutdown", 2):
            daemon.request_shutdown(bool(body.get("everything")))
            return {"stopping": True}
    raise _bad(f"unknown endpoint {method} /{'/'.join(parts)}")
