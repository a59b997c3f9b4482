"""Tools that change what runs: apply a saved plan, roll back. Both return an operation id at once.

The daemon checks everything again (hash, serial, spec on disk, policy verdicts for this principal,
approvals) and queues an operation; ``get_operation`` follows it with a bounded wait. Neither tool can
do more than the server's token allows, and neither takes a shortcut: a protected environment's plan
without its approval is refused with ``policy.approval_required``, and a rollback that would need a
review is refused too. Registered in :mod:`railguard.mcp.catalog`.
"""

from __future__ import annotations

from railguard.mcp import briefs, suggest
from railguard.mcp.catalog import tool
from railguard.mcp.inputs import ApplyArgs, RollbackArgs
from railguard.mcp.outputs import OperationPayload
from railguard.mcp.results import Call, Outcome
from railguard.mcp.tools_plans import plan_of
from railguard.model.principals import Permission


@tool("apply_plan", title="Apply a saved plan", inputs=ApplyArgs, outputs=OperationPayload, permission=Permission.apply,
      destructive=True, idempotent=True)
async def apply_plan(call: Call, args: ApplyArgs) -> Outcome:
    """Apply exactly a saved plan to `env` and return its operation id at once (follow it with
    `get_operation`). Refused if the plan is for another environment, was tampered with, is stale, the spec on
    disk asks for something else, policy denies it, or it needs an approval it does not have. A plan runs at
    most once. Replacing services is blue-green: traffic moves only to healthy replicas."""
    await plan_of(call, args.plan_id, args.env)
    spec = call.gw.spec_path()
    record = await call.gw.run(lambda c: c.apply(spec, args.plan_id))
    return Outcome(f"Operation {record.id} applies plan {args.plan_id} to {args.env}; follow it with get_operation.",
                   OperationPayload(operation=briefs.operation_brief(record)), next_actions=[suggest.follow(record.id)])


@tool("rollback", title="Roll back to an earlier release", inputs=RollbackArgs, outputs=OperationPayload,
      permission=Permission.apply, destructive=True)
async def rollback(call: Call, args: RollbackArgs) -> Outcome:
    """Restore an earlier release of `env` (`to`, default the previous one) exactly as it ran, and return the
    operation id at once. Instant while that release is still warm; nothing is rebuilt from the working tree.
    In a protected environment, a rollback that would delete a service or needs review is refused."""
    spec = call.gw.spec_path()
    record = await call.gw.run(lambda c: c.rollback(spec, args.env, args.to))
    target = f"release {args.to}" if args.to else "the previous release"
    return Outcome(f"Operation {record.id} rolls {args.env} back to {target}; follow it with get_operation.",
                   OperationPayload(operation=briefs.operation_brief(record)), next_actions=[suggest.follow(record.id)])
