"""Enforcing policy: verdicts when a plan is made, approvals, and the checks before apply.

The engine, not the caller, decides: a plan gets its verdicts here (stored in it and
covered by its hash); an approval is recorded only for a principal allowed to give it,
never the requester, with the plan's hash, the addresses it confirms and an expiry;
and before anything is applied the verdicts are evaluated again for the applying
principal and the current time, and every ``require_approval`` must be met by a
standing approval of that exact plan. Called by the daemon.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from railguard.engine.observe import state_protected
from railguard.model.api import Approval, ApprovalDecision, ApprovalRecord, ApprovalState, Decision
from railguard.model.diagnostics import RailguardError, error
from railguard.model.plans import Effect, Plan, Verdict, denial
from railguard.model.principals import Permission, Principal
from railguard.policy.guardrails import Facts, evaluate
from railguard.state import approvals, audit
from railguard.state.store import Store

APPROVAL_TTL_S = 24 * 3600


def _soak_check(store: Store, plan: Plan, now: datetime) -> Callable[[str, str], str | None]:
    config = next((r.config for r in plan.desired if r.kind == "environment"), {})
    source, soak = config.get("promote_from"), timedelta(milliseconds=config.get("soak_ms", 0))

    def soaked(service: str, digest: str) -> str | None:
        if not source:
            return None
        best, seen = timedelta(0), False
        for release in store.healthy_releases(source):
            entry = release.services.get(service)
            if not entry or entry.source != digest or not release.live_at:
                continue
            start = datetime.fromisoformat(release.live_at.replace("Z", "+00:00"))
            end = datetime.fromisoformat(release.ended_at.replace("Z", "+00:00")) if release.ended_at else now
            best, seen = max(best, end - start), True
        if not seen:
            return f"it never ran in '{source}'"
        if best >= soak:
            return None
        return f"it ran {int(best.total_seconds())} s in '{source}', the soak time is {int(soak.total_seconds())} s"

    return soaked


def facts(store: Store, plan: Plan, principal: Principal, now: datetime | None = None) -> Facts:
    moment = now or datetime.now(UTC)
    return Facts(principal=principal, now=moment, protected_in_state=state_protected(store, plan.env),
                 soaked=_soak_check(store, plan, moment))


def with_verdicts(store: Store, plan: Plan, principal: Principal) -> Plan:
    """The plan with its requester and verdicts (before it is sealed: the hash covers them)."""
    named = plan.model_copy(update={"requested_by": principal.id})
    return named.model_copy(update={"verdicts": evaluate(named, facts(store, named, principal))})


def require(principal: Principal, permission: Permission, env: str | None) -> None:
    if not principal.allows(permission, env):
        scope = f" in '{env}'" if env else ""
        raise RailguardError(error(
            "auth.forbidden", f"{principal.id} may not {permission.value}{scope}",
            f"The role '{principal.role.value}'" + (f" (limited to {', '.join(principal.envs)})" if principal.envs
                                                    else "") + f" does not include '{permission.value}'{scope}.",
            "Use a token with a role that allows it (see `railguard token list`), or ask someone who has one.",
            extra={"principal": principal.id, "role": principal.role.value, "permission": permission.value}))


def check_apply(store: Store, plan: Plan, principal: Principal) -> list[Verdict]:
    """Refuse unless every verdict allows the apply now; return the verdicts that were checked."""
    require(principal, Permission.apply, plan.env)
    current = evaluate(plan, facts(store, plan, principal))
    verdicts = [*plan.verdicts, *[v for v in current if v not in plan.verdicts]]
    refused = denial(plan.id, verdicts)
    if refused is not None:
        raise RailguardError(refused)
    needs = [v for v in verdicts if v.effect is Effect.require_approval]
    if not needs:
        return verdicts
    standing = approvals.standing(store, plan.id, plan.hash)
    unlogged = standing is not None and not audit.decision_logged(store, standing.principal, plan.id, plan.hash)
    if unlogged:
        standing = None
    missing_confirm = [v.confirm for v in needs if v.confirm and (standing is None or
                                                                  v.confirm not in standing.confirmed)]
    if standing is None or missing_confirm:
        raise RailguardError(error(
            "policy.approval_required", f"Plan {plan.id} needs an approval",
            "; ".join(f"{v.rule}: {v.message}" for v in needs) + ". "
            + ("The approval found has no matching signed entry in the audit log, so it does not count."
               if unlogged else
               "No standing approval of this exact plan (id and hash) exists." if standing is None else
               f"The approval does not confirm: {', '.join(c for c in missing_confirm if c)}."),
            f"Ask an approver ({', '.join(sorted({a for v in needs for a in v.approvers}))}) to run "
            f"`railguard approve {plan.id}`" + "".join(f" --confirm {c}" for c in missing_confirm if c)
            + " on a terminal, then apply again.",
            address=plan.id, extra={"verdicts": [v.model_dump(mode="json") for v in needs]}))
    return verdicts


def approve(store: Store, plan: Plan, status: str, principal: Principal, *, confirmed: list[str],
            typed: str | None, reason: str, decision: str = "approved") -> ApprovalRecord:
    require(principal, Permission.approve, plan.env)
    if principal.id == plan.requested_by:
        raise RailguardError(error(
            "approval.self", "You cannot approve your own plan",
            f"{principal.id} requested plan {plan.id}; an approval must come from someone else.",
            f"Ask another approver to run `railguard approve {plan.id}`.", address=plan.id))
    if status != "saved" or approvals.rejected(store, plan.id):
        raise RailguardError(error(
            "approval.not_applicable", f"Plan {plan.id} can no longer be {decision}",
            f"The plan is {status if status != 'saved' else 'rejected'}.",
            "Make a new plan with `railguard plan`.", address=plan.id))
    if decision == "approved":
        denied = [v for v in plan.verdicts if v.effect is Effect.deny]
        if denied:
            raise RailguardError(error(
                "approval.not_applicable", f"Plan {plan.id} is denied by policy",
                "Approval cannot lift a deny: " + "; ".join(f"{v.rule}: {v.message}" for v in denied) + ".",
                denied[0].remediation or "Change the spec, then plan again.", address=plan.id))
        wanted = sorted({v.confirm for v in plan.verdicts if v.confirm})
        missing = [c for c in wanted if c not in confirmed]
        if missing:
            raise RailguardError(error(
                "approval.confirm_required", "Deletes in a protected environment must be confirmed",
                f"The plan deletes {', '.join(missing)}; the approver must type each address back.",
                f"Run `railguard approve {plan.id} " + " ".join(f"--confirm {c}" for c in missing) + "`.",
                address=plan.id, extra={"confirm": missing}))
    if principal.kind == "user":
        _terminal_check(principal, plan, typed)
    elif typed is not None and typed != short_hash(plan):
        # A token's approval need not be typed, but a confirmation typed wrong is a person who read another plan.
        raise RailguardError(error(
            "approval.wrong_hash", "The typed confirmation does not match the plan",
            f"The short hash typed back is not plan {plan.id}'s: what was reviewed is not what would be approved.",
            f"Read the plan again (`railguard show {plan.id}`) and type its short hash, or do not approve it.",
            address=plan.id))
    return approvals.record(store, plan.id, plan.hash, decision, principal.id, reason, confirmed, APPROVAL_TTL_S)


def short_hash(plan: Plan) -> str:
    return plan.hash.removeprefix("sha256:")[:8]


def _terminal_check(principal: Principal, plan: Plan, typed: str | None) -> None:
    """Same-user mode: a person at a terminal types the plan's short hash (an agent's subprocess has none)."""
    if not principal.tty or typed != short_hash(plan):
        raise RailguardError(error(
            "auth.needs_terminal", "Approving as the local user needs a terminal",
            "In same-user mode an approval by the OS user must be typed on a terminal (the plan's short hash "
            "typed back), so a command run by an agent without a terminal cannot approve. "
            + ("This request came from a process without a controlling terminal." if not principal.tty
               else "The typed confirmation does not match the plan."),
            f"Run `railguard approve {plan.id}` yourself in a terminal, or use an approver token.",
            address=plan.id))




def approval_state(store: Store, plan: Plan, status: str) -> Approval:
    """Where a plan stands on approval: what it needs, who asked, who decided. Reading only.

    ``state``: ``not_required``, ``needed``, ``requested``, ``approved``, ``expired``, ``rejected``,
    ``denied`` (no approval can lift it) or ``closed`` (the plan was used). Verdicts are evaluated again
    for whoever applies, so a plan made by an admin may still need an approval when an agent applies it.
    """
    needs = [v for v in plan.verdicts if v.effect is Effect.require_approval]
    decisions = approvals.for_plan(store, plan.id)
    asked = approvals.requests(store, plan.id)
    standing = approvals.standing(store, plan.id, plan.hash)
    confirm = sorted({v.confirm for v in needs if v.confirm})
    if any(v.effect is Effect.deny for v in plan.verdicts):
        state = "denied"
    elif status == "rejected" or approvals.rejected(store, plan.id):
        state = "rejected"
    elif status != "saved":
        state = "closed"
    elif standing is not None and all(c in standing.confirmed for c in confirm):
        state = "approved"
    elif not needs:
        state = "not_required"
    elif any(d.decision is Decision.approved and d.expired for d in decisions):
        state = "expired"
    else:
        state = "requested" if asked else "needed"
    return Approval(
        plan_id=plan.id, state=ApprovalState(state), required=bool(needs), rules=sorted({v.rule for v in needs}),
        approvers=sorted({a for v in needs for a in v.approvers}), confirm=confirm,
        command=f"railguard approve {plan.id}" + "".join(f" --confirm {c}" for c in confirm),
        requests=asked,
        decisions=[ApprovalDecision.model_validate(d.model_dump(include=set(ApprovalDecision.model_fields)))
                   for d in decisions],
    )


def request_approval(store: Store, plan: Plan, status: str, principal: Principal, reason: str) -> Approval:
    """Record that ``principal`` waits for a human's approval of ``plan`` (an event), and return the state.

    A request decides nothing: only ``railguard approve`` by someone else records an approval. Asking twice
    is one request; asking for a plan that needs no approval records nothing.
    """
    require(principal, Permission.plan, plan.env)
    found = approval_state(store, plan, status)
    if found.state in (ApprovalState.denied, ApprovalState.rejected, ApprovalState.closed):
        raise RailguardError(error(
            "approval.not_applicable", f"Plan {plan.id} cannot be approved ({found.state})",
            {"denied": "A policy verdict denies it, and no approval can lift a deny.",
             "rejected": "A person rejected it.",
             "closed": f"It was already used (status {status})."}[found.state],
            f"Change the spec if needed and make a new plan with `railguard plan --env {plan.env}`.",
            address=plan.id))
    already = principal.id in {r.by for r in found.requests} and found.state is ApprovalState.requested
    if found.state in (ApprovalState.needed, ApprovalState.expired, ApprovalState.requested) and not already:
        store.add_event(plan.env, approvals.REQUEST_EVENT,
                        f"approval of plan {plan.id} requested by {principal.id}" + (f": {reason}" if reason else ""),
                        address=plan.id, data={"plan": plan.id, "hash": plan.hash, "by": principal.id,
                                               "reason": reason})
        found = approval_state(store, plan, status)
    return found
