"""The daemon API's canary routes: ``POST /v1/canaries/<env>/<service>/promote-step`` and ``.../abort``.

Kept apart from :mod:`railguard.daemon.api` (which calls :func:`route` for paths it does not know). Moving
traffic is a deploy decision, so both need the ``apply`` permission for the environment. The controller
(:mod:`railguard.daemon.canary`) does the move and records it as an event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from railguard.engine.guard import require
from railguard.model.api import CanaryMove
from railguard.model.principals import Permission, Principal

if TYPE_CHECKING:
    from railguard.daemon.service import Daemon


def route(daemon: Daemon, method: str, parts: list[str], who: Principal) -> dict[str, Any] | None:
    """The answer of a canary route, or None when the path is not one."""
    if method != "POST" or len(parts) != 5 or parts[1] != "canaries" or parts[4] not in ("promote-step", "abort"):
        return None
    env, service = parts[2], parts[3]
    require(who, Permission.apply, env)
    canaries = daemon.observer.canaries
    if parts[4] == "abort":
        canaries.abort(env, service, by=who.id)
        return {"canary": CanaryMove(env=env, service=service, action="aborted", weight=0)}
    weight = canaries.advance(env, service, by=who.id)
    return {"canary": CanaryMove(env=env, service=service, action="promoted" if weight == 100 else "advanced",
                                 weight=weight)}
