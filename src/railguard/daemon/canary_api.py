"""The daemon API's canary routes: ``POST /v1/canaries/<env>/<service>/promote-step`` and ``.../abort``.

Kept apart from :mod:`railguard.daemon.api` (which calls :func:`route` for paths it does not know). Moving
traffic is a deploy decision, so both need the ``apply`` permission for the environment. The controller
(:mod:`railguard.daemon.canary`) does the move and records it as an event; the API audits every request.
In an environment protected as applied, a step needs an approval (:mod:`railguard.engine.canarysteps`):
``promote-step`` without ``plan_id`` saves the step as a plan and answers it (``{"plan": ...}``), nothing
moves; with the approved plan's id it applies exactly that step. An abort never needs one (toward safety).
``from_weight`` (optional) is the share the caller saw: a retried or doubled request whose step was made
already moves nothing (``canary.step_moved``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from railguard.engine import canarysteps
from railguard.engine.guard import require, short_hash
from railguard.model.api import CanaryMove, PlanAnswer, PlanStatus
from railguard.model.diagnostics import RailguardError, error
from railguard.model.principals import Permission, Principal

if TYPE_CHECKING:
    from railguard.daemon.service import Daemon


def route(daemon: Daemon, method: str, parts: list[str], who: Principal,
          body: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The answer of a canary route, or None when the path is not one."""
    if method != "POST" or len(parts) != 5 or parts[1] != "canaries" or parts[4] not in ("promote-step", "abort"):
        return None
    env, service = parts[2], parts[3]
    if (body or {}).get("env", env) != env:  # the body's env is what the audit records: it must be the path's
        raise RailguardError(error("daemon.bad_request", "Bad request to the daemon",
                                   "The body names another environment than the path.",
                                   "Use the railguard CLI or a client of the same version as the daemon."))
    canaries = daemon.observer.canaries
    if parts[4] == "abort":
        require(who, Permission.apply, env)
        canaries.abort(env, service, by=who.id)
        return {"canary": CanaryMove(env=env, service=service, action="aborted", weight=0)}
    plan_id = (body or {}).get("plan_id")
    if plan_id is not None and not isinstance(plan_id, str):
        raise RailguardError(error("daemon.bad_request", "Bad request to the daemon", "plan_id must be a string.",
                                   "Pass the id of the approved plan of the step (plan-...)."))
    store = daemon.store()
    if plan_id is None and canarysteps.needs_approval(store, env):
        release, current = canaries.position(env, service)
        plan = canarysteps.step_plan(store, env, service, release, current, canaries.following(env, service, current),
                                     who)
        return {"plan": PlanAnswer.of(plan, short_hash(plan))}
    expect = (body or {}).get("from_weight")
    if expect is not None and (not isinstance(expect, int) or isinstance(expect, bool)):
        raise RailguardError(error("daemon.bad_request", "Bad request to the daemon", "from_weight must be an integer.",
                                   "Pass the share (percent) the canary is at, as status shows it."))
    require(who, Permission.apply, env)
    if plan_id is None:
        weight = canaries.advance(env, service, by=who.id, expect=expect)
    else:
        release, current = canaries.position(env, service)
        target = canarysteps.check_step(store, plan_id, env, service, release, current, who)
        store.mark_plan(plan_id, PlanStatus.applying)
        try:  # from the share checked (the claim above lets one request per plan through; the controller may
            # have moved the canary since the check: then the approval is of a step that is gone, nothing moves)
            weight = canaries.advance(env, service, by=who.id, to=target, plan_id=plan_id, expect=current)
        except BaseException:
            store.mark_plan(plan_id, PlanStatus.failed)
            raise
        store.mark_plan(plan_id, PlanStatus.applied)
    return {"canary": CanaryMove(env=env, service=service, action="promoted" if weight == 100 else "advanced",
                                 weight=weight)}
