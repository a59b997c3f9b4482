"""Serving the console: uvicorn on a loopback address by default, optionally with TLS.

The console is a process beside the daemon (like the MCP server), a client of its API; it holds
sessions in memory, so stopping it signs everyone out. Binding beyond loopback without TLS is
refused unless asked for explicitly, because the session cookie and the token typed at sign-in
would cross the network in clear. Called by ``railguard console`` (:mod:`railguard.cli.console_cmd`).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import uvicorn

from railguard.console.app import create_app
from railguard.engine.workspace import Workspace
from railguard.model.diagnostics import RailguardError, error


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
        if not 0 < number < 65536:
            raise ValueError
    except ValueError as exc:
        raise RailguardError(error(
            "console.bad_listen", f"Cannot listen on {listen!r}", "Expected HOST:PORT with a port from 1 to 65535.",
            "Pass --listen 127.0.0.1:8790 (or another free port).")) from exc
    return host, number


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(ws: Workspace, listen: str, certfile: Path | None = None, keyfile: Path | None = None,
          allow_plain_http: bool = False) -> None:
    host, port = parse_listen(listen)
    if not loopback(host) and certfile is None and not allow_plain_http:
        raise RailguardError(error(
            "console.needs_tls", f"Refusing to serve the console on {host} without TLS",
            "Beyond loopback, tokens typed at sign-in and session cookies would cross the network in clear.",
            "Pass --tls-cert and --tls-key, or keep the default loopback address and use an SSH tunnel."))
    uvicorn.run(create_app(ws), host=host, port=port, log_level="warning", access_log=False,
                ssl_certfile=str(certfile) if certfile else None, ssl_keyfile=str(keyfile) if keyfile else None,
                server_header=False)
