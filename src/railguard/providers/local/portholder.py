"""Who holds a port: named in the ``edge.port_in_use`` diagnostic when the system lets us see it.

psutil lists listening sockets with their owning pid; another user's process may be hidden (no
permission), in which case nothing is named rather than guessing. Called by
:mod:`railguard.providers.local.edge` when Caddy cannot bind an environment's port.
"""

from __future__ import annotations

import psutil


def holder(port: int) -> str | None:
    """'pid 1234 (python -m http.server 8080)' for the process listening on ``port``, or None if not visible."""
    try:
        connections = psutil.net_connections(kind="inet")
    except (psutil.Error, OSError):
        return None
    for conn in connections:
        if conn.status != psutil.CONN_LISTEN or not conn.laddr or conn.laddr.port != port or conn.pid is None:
            continue
        try:
            command = " ".join(psutil.Process(conn.pid).cmdline())[:200]
        except (psutil.Error, OSError):
            command = ""
        return f"pid {conn.pid}" + (f" ({command})" if command else "")
    return None
