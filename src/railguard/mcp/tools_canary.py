"""Canary tools: ``canary_promote`` and ``canary_abort``, ``railguard promote-step`` and ``abort`` for agents.

Both go through the daemon's API as the server's token (the daemon checks the ``apply`` permission and audits
each request). ``canary_promote`` moves a canary to its next step; in a protected environment nothing moves:
the daemon saves the step as a plan that needs a person's approval, and the agent calls ``canary_promote``
again with that ``plan_id`` once it is approved (the daemon applies exactly that step, or refuses it if the
canary has moved since); ``from_weight`` makes a step conditional on the share the agent saw, so a retried
call moves nothing twice. ``canary_abort`` needs no approval: it sends every request back to the stable
release. ``get_status`` shows the current step and its analysis. Registered in :mod:`railguard.mcp.catalog`.
"""

from __future__ import annotations

from pydantic import Field

from railguard.mcp import briefs
from railguard.mcp.catalog import tool
from railguard.mcp.inputs import Args, Env, PlanId, Service
from railguard.mcp.outputs import CanaryPayload
from railguard.mcp.results import Call, Outcome, act
from railguard.model.api import PlanAnswer, PlanStatus
from railguard.model.principals import Permission


class CanaryArgs(Args):
    env: Env
    service: Service


class CanaryPromoteArgs(CanaryArgs):
    plan_id: PlanId | None = Field(default=None, description="In a protected environment: the approved plan of "
                                   "this step (the previous canary_promote answered it).")
    from_weight: int | None = Field(default=None, ge=0, le=100, description="The share (percent) the canary is at, as "
                                    "get_status showed it: the step moves only from there, so a retried call whose "
                                    "step was made already moves nothing (canary.step_moved).")


@tool("canary_promote", title="Promote a canary to its next step", inputs=CanaryPromoteArgs, outputs=CanaryPayload,
      permission=Permission.apply, destructive=True)
async def canary_promote(call: Call, args: CanaryPromoteArgs) -> Outcome:
    """Move the canary of `service` in `env` to its next step (more of the requests to the new release; the step
    to 100% makes it the live release). Check its analysis with get_status first. In a protected environment
    nothing moves: the step is saved as a plan needing a person's approval; once approved, call again with
    `plan_id` (refused if the canary moved since). Pass `from_weight` (the share get_status shows) so a retry
    never moves a second step."""
    moved = await call.gw.run(lambda c: c.canary_move(args.env, args.service, "promote-step", args.plan_id,
                                                      args.from_weight))
    if isinstance(moved, PlanAnswer):
        return Outcome(f"{args.env} is protected: nothing moved; the step ({moved.changes[0].reason}) is saved as "
                       f"plan {moved.id}, which needs a person's approval.",
                       CanaryPayload(plan=briefs.plan_brief(moved, PlanStatus.saved, False)), next_actions=[
                           act("request_approval", "Ask a person to approve the step.", plan_id=moved.id),
                           act("approval_status", "See whether it was approved.", plan_id=moved.id),
                           act("canary_promote", "Once approved: apply exactly this step.", env=args.env,
                               service=args.service, plan_id=moved.id)])
    what = "is the live release now" if moved.action == "promoted" else f"takes {moved.weight}% of the requests"
    return Outcome(f"The canary of {args.env}/{args.service} {what}.", CanaryPayload(canary=moved),
                   next_actions=[act("get_status", "Watch the step's analysis.", env=args.env)])


@tool("canary_abort", title="Abort a canary", inputs=CanaryArgs, outputs=CanaryPayload,
      permission=Permission.apply, destructive=True, idempotent=False)
async def canary_abort(call: Call, args: CanaryArgs) -> Outcome:
    """Abort the canary of `service` in `env`: every request back on the stable release, the canary's replicas
    stopped, its release recorded as aborted. Needs no approval (it moves toward safety); it is audited."""
    moved = await call.gw.run(lambda c: c.canary_move(args.env, args.service, "abort"))
    return Outcome(f"The canary of {args.env}/{args.service} is aborted: the stable release serves every request.",
                   CanaryPayload(canary=moved if not isinstance(moved, PlanAnswer) else None),
                   next_actions=[act("get_status", "Check the stable release serves.", env=args.env),
                                 act("list_incidents", "See why, if the analysis found something.", env=args.env)])
