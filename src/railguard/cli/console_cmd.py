"""``railguard console``: serve the supervisor's web console (see docs/console.md).

The console is imported only when this command runs, so the other commands do not pay for
Starlette, Jinja2 and uvicorn. It never starts the daemon: a console is a window on a daemon
that runs, started by whoever runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from railguard.cli.common import GUARD, SpecOpt, add
from railguard.cli.output import guarded, out
from railguard.engine.workspace import Workspace

DEFAULT_LISTEN = "127.0.0.1:8790"


@guarded()
def console(
    spec: SpecOpt = None,
    listen: Annotated[str, typer.Option("--listen", metavar="HOST:PORT", help="Where to serve it.")] = DEFAULT_LISTEN,
    tls_cert: Annotated[Optional[Path], typer.Option("--tls-cert", help="TLS certificate (PEM).")] = None,
    tls_key: Annotated[Optional[Path], typer.Option("--tls-key", help="TLS private key (PEM).")] = None,
    allow_plain_http: Annotated[bool, typer.Option(
        "--allow-plain-http", help="Serve beyond loopback without TLS (tokens would cross the network in clear).")
    ] = False,
) -> None:
    """Serve the web console: watch environments, read plans, approve or reject them (sign in with a token)."""
    ws = Workspace.locate(spec)
    from railguard.console.serve import parse_listen, serve

    host, port = parse_listen(listen)
    scheme = "https" if tls_cert else "http"
    out.print(f"Console on {scheme}://{host}:{port}/ (sign in with a token from `railguard token create`). "
              "Ctrl-C stops it.")
    serve(ws, listen, tls_cert, tls_key, allow_plain_http)


def register(app: typer.Typer) -> None:
    add(app, console, GUARD, "railguard console", "railguard console --listen 127.0.0.1:9000")
