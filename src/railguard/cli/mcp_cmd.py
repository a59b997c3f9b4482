"""``railguard mcp``: run the MCP server for coding agents (stdio, or Streamable HTTP with a token).

The server itself lives in :mod:`railguard.mcp`; it is imported only when this command runs, so the
other commands do not pay for the MCP SDK. Bad options (an insecure bind, HTTP without a token) are
diagnostics on stderr, never on stdout, which belongs to the protocol in stdio mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from railguard.cli.common import ADMIN, SpecOpt, add
from railguard.cli.output import guarded
from railguard.engine.workspace import Workspace


@guarded()
def mcp_server(
    spec: SpecOpt = None,
    http: Annotated[Optional[str], typer.Option(
        "--http", metavar="HOST:PORT", help="Serve Streamable HTTP here (needs RAILGUARD_TOKEN).")] = None,
    tls_cert: Annotated[Optional[Path], typer.Option("--tls-cert", help="TLS certificate (PEM).")] = None,
    tls_key: Annotated[Optional[Path], typer.Option("--tls-key", help="TLS private key (PEM).")] = None,
) -> None:
    """Run the MCP server for agents: stdio by default; acts as RAILGUARD_TOKEN (or the local user)."""
    ws = Workspace.locate(spec)
    if http is not None:
        from railguard.mcp.http import serve_http

        serve_http(ws, http, tls_cert, tls_key)
        return
    from railguard.mcp.server import serve_stdio

    serve_stdio(ws)


def register(app: typer.Typer) -> None:
    add(app, mcp_server, ADMIN, "railguard mcp", "RAILGUARD_TOKEN=... railguard mcp --http 127.0.0.1:8765",
        name="mcp")
