"""Which provider serves an environment's ``target``.

The only target today is ``local`` (processes on this machine behind Caddy). Until
the local runtime is wired in, no provider answers and planning works from the
store's inventory alone; applying then stops with ``provider.unavailable``.
"""

from __future__ import annotations

from railguard.engine.workspace import Workspace
from railguard.providers.base import Provider


def provider_for(target: str, ws: Workspace) -> Provider | None:
    return None
