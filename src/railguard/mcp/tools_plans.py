"""Plan tools: make a plan (from the spec on disk or proposed text), promote, review, and ask for approval.

A plan is computed and saved by the daemon, with policy verdicts for the server's principal. From
proposed text, the daemon reads the text as if it were the spec file (same folder, same app source)
and writes nothing; such a plan can be applied only once the file on disk asks for the same thing
(apply compares the desired state's digest), so the spec file stays the one source of truth.
``request_approval`` only records that someone waits: approving is for a person, with
``railguard approve`` on a terminal or an approver's token, never through this server.
Registered in :mod:`railguard.mcp.catalog`.
"""

from __future__ import annotations

from railguard.mcp import briefs, suggest
from railguard.mcp.catalog import read_tool, tool
from railguard.mcp.inputs import PlanArgs, PlanIdArgs, PlansArgs, PromoteArgs, RequestApprovalArgs, ShowPlanArgs
from railguard.mcp.outputs import ApprovalPayload, PlanPayload, Plans
from railguard.mcp.results import Call, Outcome, act, page
from railguard.model.api import Approval, PlanAnswer, PlanBrief, PlanDetail, PlanStatus
from railguard.model.diagnostics import Diagnostic, RailguardError, Severity, error
from railguard.model.plans import change_diffs
from railguard.model.principals import Permission


def proposed_note(plan_id: str, spec_file: str) -> Diagnostic:
    return Diagnostic(
        code="plan.proposed", severity=Severity.info, summary="Planned from proposed spec text",
        detail=f"Plan {plan_id} shows what the proposed text would change. Apply refuses it while the spec on disk "
               "asks for something else, so what runs is always what the spec file says.",
        remediation=f"Save the proposed text as {spec_file}, then apply_plan (or plan again from the file).",
        address=plan_id)


def plan_outcome(plan: PlanAnswer, status: PlanStatus | None, proposed: bool, spec_file: str, offset: int = 0,
                 limit: int = 25, approval: Approval | None = None) -> Outcome:
    brief = briefs.plan_brief(plan, status, proposed)
    changes = briefs.actionable(plan)
    diffs = change_diffs(plan.format, plan.desired)  # a create's fields are implied (plan format 2)
    shown = [briefs.change_brief(c, diffs(c)) for c in changes[offset:offset + limit]]
    problems = list(plan.diagnostics)
    if proposed:
        problems.append(proposed_note(plan.id, spec_file))
    counts = ", ".join(f"{n} to {a}" for a, n in brief.counts.items() if n and a != "no-op") or "no changes"
    summary = (f"Plan {plan.id} for {plan.env}: {counts}; highest risk {brief.max_risk}; "
               f"policy {brief.decision}" + (f"; status {status}" if status and status != PlanStatus.saved else "")
               + (" (from proposed text)" if proposed else "") + ".")
    if brief.errored:
        summary = f"Plan {plan.id} for {plan.env} has errors and cannot be applied."
    pg = page(offset, limit, len(changes))
    actions = suggest.after_plan(plan, proposed, status)
    if pg.next_offset is not None:
        actions.append(act("show_plan", "Next page of changes.", plan_id=plan.id, offset=pg.next_offset, limit=limit))
    payload = PlanPayload(plan=brief, changes=shown, page=pg, verdicts=list(plan.verdicts))
    if approval is not None:
        payload.approval = approval
    details = [f"- {c.action.value} {c.address} ({c.risk.value}): {c.reason}" for c in shown[:20]]
    details += [f"- policy {v.effect.value} {v.rule}: {v.message}" for v in plan.verdicts[:10] if v.effect != "allow"]
    return Outcome(summary, payload, problems, actions, error=brief.errored, details=details)


async def plan_of(call: Call, plan_id: str, env: str | None = None) -> PlanDetail:
    """The daemon's record of a plan (plan, status, approval); refused when it is for another environment."""
    found = await call.gw.run(lambda c: call.gw.plan_detail(c, plan_id))
    actual = found.plan.env
    if env is not None and actual != env:
        raise RailguardError(error(
            "mcp.env_mismatch", f"Plan {plan_id} is for '{actual}', not '{env}'",
            f"You asked to act on '{env}', but the plan changes '{actual}'. Nothing was done.",
            f"Check which environment you mean; a plan for '{env}' comes from `plan` with env '{env}'.",
            address=plan_id, extra={"plan_env": actual, "requested_env": env}))
    return found


@tool("plan", title="Compute a plan", inputs=PlanArgs, outputs=PlanPayload, permission=Permission.plan)
async def plan(call: Call, args: PlanArgs) -> Outcome:
    """Observe the live state and compute what would change, as a saved, reviewable plan: each change with its
    action, reason, risk and diff, and the policy verdicts (allow, require_approval, deny). Uses the spec on
    disk, or `spec_text` (a complete proposed railguard.toml, read as if it were the spec file). Changes
    nothing that runs."""
    spec = call.gw.spec_path()
    found = await call.gw.run(lambda c: c.plan(spec, args.env, text=args.spec_text,
                                               allow_data_loss=args.allow_data_loss or None))
    return plan_outcome(found, PlanStatus.saved, args.spec_text is not None, call.gw.ws.spec_path.name)


@tool("promote", title="Plan a promotion", inputs=PromoteArgs, outputs=PlanPayload, permission=Permission.plan)
async def promote(call: Call, args: PromoteArgs) -> Outcome:
    """Plan `to_env` with exactly the artifact live in `from_env` (the way code reaches a protected
    environment). Saves a plan; changes nothing that runs."""
    spec = call.gw.spec_path()
    found = await call.gw.run(lambda c: c.promote(spec, args.from_env, args.to_env))
    return plan_outcome(found, PlanStatus.saved, False, call.gw.ws.spec_path.name)


@read_tool("show_plan", title="Show a saved plan", inputs=ShowPlanArgs, outputs=PlanPayload)
async def show_plan(call: Call, args: ShowPlanArgs) -> Outcome:
    """A saved plan: its flags, changes (paged), verdicts, status and where it stands on approval."""
    found = await plan_of(call, args.plan_id)
    return plan_outcome(found.plan, found.status, False, call.gw.ws.spec_path.name, args.offset, args.limit,
                        found.approval)


@read_tool("list_plans", title="Saved plans", inputs=PlansArgs, outputs=Plans)
async def list_plans(call: Call, args: PlansArgs) -> Outcome:
    """Saved plans, newest first, with their environment and status (saved, applied, failed, rejected)."""
    rows = (await call.gw.run(lambda c: c.plans(args.env)))[:args.limit]
    return Outcome(f"{len(rows)} plan(s)" + (f" for {args.env}." if args.env else "."), Plans(plans=rows))


@tool("request_approval", title="Ask a person to approve a plan", inputs=RequestApprovalArgs,
      outputs=ApprovalPayload, permission=Permission.plan, idempotent=True)
async def request_approval(call: Call, args: RequestApprovalArgs) -> Outcome:
    """Record that you wait for a person to approve this exact plan (shown in `railguard show` and the events
    timeline). It approves nothing: an approver runs `railguard approve PLAN_ID` on a terminal. Then check
    `approval_status`."""
    found = await plan_of(call, args.plan_id, args.env)
    approval = await call.gw.run(lambda c: c.request_approval(args.plan_id, args.reason))
    return _approval_outcome(approval, briefs.plan_brief(found.plan, found.status))


@read_tool("approval_status", title="Approval state of a plan", inputs=PlanIdArgs, outputs=ApprovalPayload)
async def approval_status(call: Call, args: PlanIdArgs) -> Outcome:
    """Where a plan stands on approval: not_required, needed, requested, approved, expired, rejected, denied or
    closed; who may approve, who asked and who decided."""
    found = await plan_of(call, args.plan_id)
    return _approval_outcome(found.approval, briefs.plan_brief(found.plan, found.status))


def _approval_outcome(approval: Approval, brief: PlanBrief) -> Outcome:
    state, plan_id, env = approval.state.value, brief.id, brief.env
    who = " or ".join(approval.approvers) or "an approver"
    text = {
        "not_required": "needs no approval",
        "needed": f"needs an approval by {who}; nobody asked yet",
        "requested": f"waits for an approval by {who}: a person runs `{approval.command}` on a terminal",
        "approved": "is approved",
        "expired": "had an approval that expired",
        "rejected": "was rejected",
        "denied": "is denied by policy; no approval can lift that",
        "closed": f"was already used ({brief.status})",
    }[state]
    actions = {
        "not_required": [act("apply_plan", "Apply it.", plan_id=plan_id, env=env)],
        "needed": [act("request_approval", "Ask a person to approve it.", plan_id=plan_id, env=env)],
        "requested": [act("approval_status", "Check again later; approving is for a person.", plan_id=plan_id)],
        "approved": [act("apply_plan", "Apply exactly the approved plan.", plan_id=plan_id, env=env)],
        "expired": [act("request_approval", "Ask again.", plan_id=plan_id, env=env)],
    }.get(state, [act("plan", "Make a new plan.", env=env)])
    return Outcome(f"Plan {plan_id} ({env}) {text}.", ApprovalPayload(approval=approval, plan=brief),
                   next_actions=actions)
