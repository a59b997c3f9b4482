"""Streamable HTTP for ``railguard mcp --http HOST:PORT``: a bearer token always, TLS off loopback.

Over HTTP the server still acts as the token it was started with (``RAILGUARD_TOKEN``), and every
request must carry that same token as ``Authorization: Bearer``, compared in constant time: only a
client that holds the token's power can use it. Without a token the server refuses to listen over
HTTP (same-user mode would hand the local user's admin role to anything that can reach the port).
A bind address that is not loopback is refused unless TLS is configured (``--tls-cert``/``--tls-key``).
On loopback the SDK's DNS-rebinding protection checks the Host and Origin headers. Started by
:mod:`railguard.cli.mcp_cmd`.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
from pathlib import Path
from typing import Any

from railguard.engine.workspace import Workspace
from railguard.model.diagnostics import Diagnostic, RailguardError, error


def _bad_address(address: str, why: str) -> RailguardError:
    return RailguardError(error("mcp.invalid_arguments", f"Cannot listen on {address!r}", why,
                                "Pass --http HOST:PORT, e.g. --http 127.0.0.1:8765."))


def parse_bind(address: str, tls: bool, token: str | None) -> tuple[str, int]:
    """The host and port to listen on, or the diagnostic that says why not."""
    host, sep, port_text = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _bad_address(address, "The port must be a number from 1 to 65535.")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not token:
        raise RailguardError(error(
            "mcp.token_required", "Serving MCP over HTTP needs a token",
            "Over HTTP the server acts as the token it is started with, and clients must present the same token. "
            "Without one it would act as the local user (admin) for anything that can reach the port.",
            "Create one (`railguard token create --name claude --role agent`) and start the server with "
            "RAILGUARD_TOKEN set; clients send it as `Authorization: Bearer <token>`."))
    if not loopback and not tls:
        raise RailguardError(error(
            "mcp.insecure_bind", f"Refusing to serve MCP on {host} without TLS",
            f"{host} is not a loopback address, so the bearer token would cross the network in clear text.",
            "Listen on 127.0.0.1 (and reach it through an SSH tunnel), or pass --tls-cert and --tls-key.",
            address=address))
    return host, int(port_text)


def unauthorized() -> Diagnostic:
    return error("mcp.unauthorized", "Missing or wrong bearer token",
                 "This MCP endpoint needs `Authorization: Bearer <token>` with the token the server was started with.",
                 "Configure your MCP client with the token's header (see docs/agents.md).")


class BearerGuard:
    """ASGI middleware: every HTTP request must carry the server's token; lifespan events pass through."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.token = token.encode()
        self.refusal = json.dumps({"ok": False, "diagnostics": [unauthorized().model_dump(mode="json")]}).encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:  # ASGI's own raw scope
        if scope["type"] == "http":
            header = dict(scope.get("headers") or []).get(b"authorization", b"")
            given = header[7:].strip() if header[:7].lower() == b"bearer " else b""
            if not hmac.compare_digest(given, self.token):
                await send({"type": "http.response.start", "status": 401, "headers": [
                    (b"content-type", b"application/json"), (b"www-authenticate", b'Bearer realm="railguard"'),
                    (b"content-length", str(len(self.refusal)).encode())]})
                await send({"type": "http.response.body", "body": self.refusal})
                return
        await self.app(scope, receive, send)


def serve_http(ws: Workspace, address: str, tls_cert: Path | None, tls_key: Path | None) -> None:
    """Listen for MCP clients on ``address`` until interrupted (SIGINT/SIGTERM)."""
    import sys

    import uvicorn

    from railguard.mcp.gateway import Gateway
    from railguard.mcp.server import build

    token = os.environ.get("RAILGUARD_TOKEN") or None
    if (tls_cert is None) != (tls_key is None):
        raise _bad_address(address, "TLS needs both --tls-cert and --tls-key.")
    host, port = parse_bind(address, tls_cert is not None, token)
    assert token is not None
    gw = Gateway(ws)
    app = build(gw).streamable_http_app(host=host)
    config = uvicorn.Config(BearerGuard(app, token), host=host, port=port, log_level="warning", lifespan="on",
                            ssl_certfile=str(tls_cert) if tls_cert else None,
                            ssl_keyfile=str(tls_key) if tls_key else None)
    scheme = "https" if tls_cert else "http"
    print(f"railguard mcp listening on {scheme}://{host}:{port}/mcp", file=sys.stderr, flush=True)
    from railguard.engine import gcpause

    gcpause.settle(freeze=False)  # as over stdio: a tool call's temporaries die young
    try:
        uvicorn.Server(config).run()
    finally:
        gw.close()
