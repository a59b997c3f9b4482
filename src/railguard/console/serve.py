"""Serving the console: uvicorn on a loopback address by default, optionally with TLS.

Two ways: ``railguard console`` runs it as a process beside the daemon, a client of its socket
like the MCP server; ``railguard daemon start --console HOST:PORT`` runs it on a thread of the
daemon's own process (the pages then reach the API through an in-process transport, and the
console costs only the memory of its libraries). Either way it holds sessions in memory, so
stopping it signs everyone out. Binding beyond loopback without TLS is refused unless asked for
explicitly, because the session cookie and the token typed at sign-in would cross the network in
clear. Called by :mod:`railguard.cli.console_cmd` and :mod:`railguard.cli.daemon_cmd`.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
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


def _config(ws: Workspace, listen: str, certfile: Path | None, keyfile: Path | None, allow_plain_http: bool,
            transport: httpx.BaseTransport | None) -> uvicorn.Config:
    host, port = parse_listen(listen)
    if not loopback(host) and certfile is None and not allow_plain_http:
        raise RailguardError(error(
            "console.needs_tls", f"Refusing to serve the console on {host} without TLS",
            "Beyond loopback, tokens typed at sign-in and session cookies would cross the network in clear.",
            "Pass --tls-cert and --tls-key, or keep the default loopback address and use an SSH tunnel."))
    return uvicorn.Config(create_app(ws, transport=transport), host=host, port=port, log_level="warning",
                          access_log=False, ssl_certfile=str(certfile) if certfile else None,
                          ssl_keyfile=str(keyfile) if keyfile else None, server_header=False)


def serve(ws: Workspace, listen: str, certfile: Path | None = None, keyfile: Path | None = None,
          allow_plain_http: bool = False) -> None:
    """In the foreground, as its own process (Ctrl-C stops it)."""
    uvicorn.Server(_config(ws, listen, certfile, keyfile, allow_plain_http, None)).run()


class _Threaded(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the daemon owns its process's signals
        pass


def start_in_thread(ws: Workspace, listen: str, transport: httpx.BaseTransport,
                    certfile: Path | None = None, keyfile: Path | None = None) -> Callable[[], None]:
    """On a thread of the calling process (the daemon's); returns the function that stops it.

    The listen address is checked, and the port bound, before this returns: a bad address or a taken
    port is a diagnostic of ``daemon start``, not a console that silently is not there."""
    server = _Threaded(_config(ws, listen, certfile, keyfile, False, transport))
    thread = threading.Thread(target=server.run, name="console", daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        thread.join(0.02)
    if not server.started:
        host, port = parse_listen(listen)
        raise RailguardError(error(
            "console.bad_listen", f"The console could not listen on {host}:{port}",
            "The address is not local to this machine, or another program holds the port.",
            "Pick another --console HOST:PORT (a free port on 127.0.0.1)."))

    def stop() -> None:
        server.should_exit = True
        thread.join(10)
    return stop
