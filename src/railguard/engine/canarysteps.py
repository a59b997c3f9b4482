"""Promoting a canary step where changes need approval: a plan of exactly one step, approved like any change.

Sending more of the requests to a new release changes what users are served. In an environment protected
as applied (its environment resource, :func:`railguard.engine.observe.state_protected`), ``promote-step``
moves nothing by itself: :func:`step_plan` saves a plan of one ``canary-step`` change (the release, the
share it has now and the share it would get), whose verdicts policy gives like any plan's (an approval in a
protected environment; never the requester's own). Once approved, ``promote-step --plan ID`` applies exactly
that step: :func:`check_step` refuses the plan unless it is intact and unused, names this service and
release and the share the canary has NOW (an approval for 10 -> 50 % cannot move 50 -> 100 %), and
:func:`railguard.engine.guard.check_apply` finds its standing approval. The engine decides, not the caller.
Aborting needs no approval (traffic goes back to the stable release: toward safety); the daemon audits it.
``railguard apply`` refuses such a plan (:func:`refuse_apply`). Called by the daemon's canary API.

A plan that would change a service while its canary runs is refused (:func:`in_progress`, called by
:func:`railguard.engine.usecases.plan`): a new release, an update in place or a delete would replace or delete
the canary as a side effect — its replicas gone, its share of the requests moved, its release recorded
``superseded`` as if it had been promoted (and an abort after that put back the wrong release). Promote or
abort the canary first: each of those is recorded, then the next plan starts from the release that serves.
A rollback is not refused: it aborts every canary itself, recorded (:mod:`railguard.engine.canaryabort`).
"""

from __future__ import annotations

from railguard.engine import guard
from railguard.engine.observe import state_protected
from railguard.model.api import PlanStatus
from railguard.model.diagnostics import Diagnostic, RailguardError, error
from railguard.model.plans import Action, Change, FieldDiff, Plan, Risk
from railguard.model.principals import Permission, Principal
from railguard.model.resources import ObservedResource, Resource, desired_digest, service_address
from railguard.providers.base import DescribeRequest, Provider
from railguard.state import canaries as canary_store
from railguard.state.store import Store, new_id


def needs_approval(store: Store, env: str) -> bool:
    return state_protected(store, env)


def step_plan(store: Store, env: str, service: str, release: int, current: int, following: int,
              principal: Principal) -> Plan:
    """Save the step ``current`` -> ``following`` percent of ``release``'s canary as a plan needing approval."""
    guard.require(principal, Permission.plan, env)
    record = store.release(env, release)
    desired = [r for r in record.desired if r.kind != "database"] if record is not None else []
    change = Change(
        address=service_address(env, service), kind="service", action=Action.canary_step,
        reason=f"canary of release {release}: from {current}% to {following}% of the requests"
        + (" (it becomes the live release)" if following == 100 else ""), risk=Risk.disruptive,
        diff=[FieldDiff(path="canary_release", after=release),
              FieldDiff(path="canary_weight", before=current, after=following)])
    computed = Plan(env=env, base_serial=store.serial(env), desired_digest=desired_digest(desired),
                    changes=[change], desired=desired, id=new_id("plan"))
    return store.save_plan(guard.with_verdicts(store, computed, principal))


def check_step(store: Store, plan_id: str, env: str, service: str, release: int, current: int,
               principal: Principal) -> int:
    """The share the approved plan ``plan_id`` moves the canary to; refused unless it is exactly this step."""
    plan, stored_hash, status = store.load_plan(plan_id)
    guard.require(principal, Permission.apply, plan.env)
    steps = [c for c in plan.changes if c.action is Action.canary_step]
    diff = {d.path: d for d in steps[0].diff} if len(steps) == 1 and len(plan.changes) == 1 else {}
    weight = diff.get("canary_weight")
    if (plan.content_hash() != stored_hash or plan.hash != stored_hash or plan.id != plan_id or weight is None
            or "canary_release" not in diff):
        raise _refused(plan_id, env, service, "it is not an intact plan of one canary step")
    if status is not PlanStatus.saved:
        raise _refused(plan_id, env, service, f"it was already used ({status})")
    what = (plan.env, steps[0].address, diff["canary_release"].after, weight.before)
    if what != (env, service_address(env, service), release, current):
        raise _refused(plan_id, env, service, f"it moves {steps[0].address} release {diff['canary_release'].after} "
                       f"from {weight.before}%, and the canary of {env}/{service} is release {release} at {current}%")
    guard.check_apply(store, plan, principal)  # its approval (and any deny) as for every plan
    return int(weight.after)


def refuse_apply(plan: Plan) -> None:
    """A canary step is applied by ``promote-step --plan``, where its step is checked, never by ``apply``."""
    if any(c.action is Action.canary_step for c in plan.changes):
        change = next(c for c in plan.changes if c.action is Action.canary_step)
        service = change.address.split("/service.", 1)[-1]
        raise RailguardError(error(
            "canary.step_plan", f"Plan {plan.id} is a canary step",
            "A plan of a canary step moves a share of the requests; it is applied where the canary's current "
            "step is checked against it, not as a deploy.",
            f"Once approved, run `railguard promote-step {service} --env {plan.env} --plan {plan.id}`.",
            address=plan.id))


def _refused(plan_id: str, env: str, service: str, why: str) -> RailguardError:
    return RailguardError(error(
        "canary.step_mismatch", f"Plan {plan_id} is not this canary step", f"Plan {plan_id} cannot move the canary "
        f"of {env}/{service}: {why}.",
        f"Make a plan of the step as it is now: `railguard promote-step {service} --env {env}`, and have it approved.",
        address=plan_id))


def in_progress(store: Store, provider: Provider, plan: Plan, desired: list[Resource],
                observed: list[ObservedResource]) -> list[Diagnostic]:
    """``canary.in_progress`` for each service the plan changes while a canary of it runs (the runtime says so)."""
    changed = {c.address: c for c in plan.changes if c.kind == "service" and c.action is not Action.noop}
    if not changed:
        return []
    # Asking the runtime costs a describe: only where a canary can be (a canary service, or one the controller
    # recorded); a plan of services that never had a canary strategy stays as cheap as it was.
    known = {f"{r.env}/service.{r.service}" for r in canary_store.listed(store) if r.env == plan.env}
    maybe = known or any("canary" in r.config for r in desired if r.kind == "service") or any(
        "canary" in r.config for r in observed if r.kind == "service")
    if not maybe:
        return []
    found = []
    for unit in provider.describe(DescribeRequest(env=plan.env)).services:
        change = changed.get(unit.address)
        if unit.canary is None or change is None:
            continue
        env, service, canary = plan.env, unit.name, unit.canary
        found.append(error(
            "canary.in_progress", f"'{service}' in '{env}' has a canary in progress: this plan would replace it",
            f"Release {canary.release} runs as a canary of {unit.address} with {canary.weight}% of the requests "
            f"beside release {unit.release}. This plan would {change.action.value} the service ({change.reason}), "
            "which removes the canary as a side effect: its replicas stopped or deleted, its requests moved, its "
            "release recorded as replaced instead of promoted or aborted. Nothing was changed.",
            f"Decide the canary first: `railguard promote-step {service} --env {env}` until it is the live release, "
            f"or `railguard abort {service} --env {env}` (every request back on release {unit.release}); then plan "
            f"again. `railguard rollback --env {env}` also aborts it.",
            address=unit.address, extra={"canary_release": canary.release, "weight": canary.weight,
                                         "stable": unit.release, "action": change.action.value}))
    return found
