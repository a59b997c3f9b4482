"""The engine's use cases: plan, submit an apply, roll back, promote — each gathering its facts once.

The daemon is routing, authentication and a queue; what a request *means* is here. Each use case
makes one :class:`~railguard.engine.facts.Facts` for the request, so the spec is parsed, the source
digested and the plan loaded and verified once before anything is queued. ``submit_apply`` and
``rollback`` return a :class:`Submission`: the environment to claim and the job the daemon's runner
calls with the operation id. The job re-checks under the state lock what can move while it waits
(the plan's stored hash and status, the serial after a fresh observation, policy and approvals),
reusing the request's facts about the spec and the source.

A pre-check reads the store and never observes: observing can bump an environment's serial, and
nothing must move before an operation is queued. Called by :class:`railguard.daemon.service.Daemon`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from railguard.engine import canarysteps, capture, guard, knownbad, planner, restore
from railguard.engine.apply import apply_plan, check_plan
from railguard.engine.execute import Context
from railguard.engine.facts import Facts
from railguard.engine.gcpause import paused_gc
from railguard.engine.observe import observe_for_plan
from railguard.engine.plan import missing_secrets
from railguard.engine.rollback import check_rollback, rollback_plan
from railguard.engine.rollback import rollback as run_rollback
from railguard.engine.workspace import Workspace, pick_env, refuse_protected_deploy, require_env
from railguard.model.api import Operation, OperationKind, Release, ReleaseStatus
from railguard.model.diagnostics import Diagnostic, RailguardError, error
from railguard.model.errors import TemporaryError
from railguard.model.plans import Plan
from railguard.model.principals import Permission, Principal
from railguard.providers.base import Provider
from railguard.sources.store import SnapshotStore
from railguard.state.store import Store, new_id


@dataclass(frozen=True)
class Submission:
    """An operation ready to queue: claim ``env``, record the operation, then call ``run``."""

    env: str
    kind: OperationKind
    plan_id: str | None
    run: Callable[[Store, str], Operation]  # (the runner thread's store, operation id) -> record


def plan(ws: Workspace, env: str, store: Store, provider: Provider | None, principal: Principal | None = None,
         overrides: dict[str, str] | None = None, facts: Facts | None = None,
         allow_data_loss: list[str] | None = None) -> Plan:
    """Observe through ``provider`` (when given) into ``store``, plan, evaluate policy, and save the plan."""
    with paused_gc():  # a large plan is millions of short-lived, acyclic objects (engine/gcpause.py)
        return _plan(ws, env, store, provider, principal, overrides, facts, allow_data_loss)


def _plan(ws: Workspace, env: str, store: Store, provider: Provider | None, principal: Principal | None,
          overrides: dict[str, str] | None, facts: Facts | None, allow_data_loss: list[str] | None) -> Plan:
    facts = facts or Facts(ws)
    spec, warnings = facts.parsed()
    require_env(spec, env)
    # Held until the plan is saved: retention must not prune the snapshot before a plan records it.
    with SnapshotStore.of(ws.home).holding():
        promoted = sorted(set((overrides or {}).values()))
        # A promotion deploys the artifact live in the source environment, not the working tree.
        promoting = len(promoted) == 1
        source = facts.promoted_source(promoted[0]) if promoting else facts.plan_source()
        versions = facts.versions(store, env)
        desired = facts.desired(env, versions, overrides)
        observed_problems: list[Diagnostic] = []  # what the runtime found checking the desired state (dry-runs)
        inventory, serial = observe_for_plan(store, provider, env, desired, observed_problems)
        computed = planner.plan(env, desired, inventory, serial)
        if provider is not None:  # never a plan that replaces a running canary as a side effect
            observed_problems += canarysteps.in_progress(store, provider, computed, desired, inventory)
        del inventory  # not in the plan: a large one is given back before the plan is saved (its peak)
        problems = [*warnings, *observed_problems, *([] if promoting else facts.source_warnings()),
                    *missing_secrets(spec, env, versions),
                    *computed.diagnostics, *knownbad.diagnostics(store, computed),
                    *capture.changed_files(ws, _live(store, env), source.digest)]
        computed = restore.acknowledge(computed.model_copy(update={"diagnostics": problems, "id": new_id("plan"),
                                                                   "source": source}), allow_data_loss or [])
        if principal is not None:
            computed = guard.with_verdicts(store, computed, principal)
        return store.save_plan(computed)


def _live(store: Store, env: str) -> Release | None:
    """The live release without its frozen resources (a 10k-service release would be validated for nothing)."""
    return next((r for r in store.releases(env, 20, desired=False) if r.status is ReleaseStatus.live), None)


def deploy_plan(ws: Workspace, env: str | None, store: Store, provider: Provider, principal: Principal,
                will_apply: bool, allow_data_loss: list[str] | None = None) -> tuple[Plan, int | None]:
    """``railguard deploy``'s plan: of ``env`` (the spec's only environment when none is named), refused for a
    protected environment, saved as any plan; with the edge port of the environment. ``will_apply``: the caller
    submits the plan next, so a principal that may not apply there is refused before anything is planned."""
    facts = Facts(ws)
    spec = facts.spec
    name = pick_env(spec, env)
    guard.require(principal, Permission.plan, name)
    if will_apply:
        guard.require(principal, Permission.apply, name)
    refuse_protected_deploy(spec, name)
    saved = plan(ws, name, store, provider, principal, facts=facts, allow_data_loss=allow_data_loss)
    return saved, spec.environments[name].edge_port


def promote(ws: Workspace, source: str, target: str, store: Store, provider: Provider,
            principal: Principal) -> Plan:
    """Plan ``target`` with the artifacts that run live in ``source`` (the spec's config, source's code)."""
    live = store.live_release(source)
    if live is None:
        raise RailguardError(error(
            "rollback.no_target", f"Nothing runs in '{source}' to promote",
            f"'{source}' has no live release, so there is no proven artifact to send to '{target}'.",
            f"Deploy to {source} first (`railguard deploy --env {source}`)."))
    overrides = {name: entry.source for name, entry in live.services.items() if entry.source}
    return plan(ws, target, store, provider, principal, overrides)


def busy(env: str, op_id: str) -> TemporaryError:
    """``operation.busy``: what a caller gets while another operation holds ``env``."""
    return TemporaryError(error(
        "operation.busy", f"An operation is already running in '{env}'",
        f"Operation {op_id} is in progress; two operations at once could fight over the same replicas and edge.",
        f"Wait for it with `railguard operations {op_id}`, then try again.",
        address=env, extra={"operation": op_id}), delay=1.0)


def _require_idle(store: Store, env: str) -> None:
    # Checked before staleness: an operation in flight moves the serial, and "wait for it" is the useful answer.
    running = store.in_flight(env)
    if running is not None:
        raise busy(env, running.id)


def restore_plan(ws: Workspace, env: str, store: Store, principal: Principal, release: int | None,
                 backup_id: str | None, databases: list[str] | None = None) -> Plan:
    """Save the reviewed plan that restores a snapshot (``railguard restore``)."""
    computed = restore.restore_plan(Facts(ws), store, env, release, backup_id, databases)
    return store.save_plan(guard.with_verdicts(store, computed.model_copy(update={"requested_by": principal.id}),
                                               principal))


def submit_apply(ws: Workspace, plan_id: str, store: Store, provider: Provider, principal: Principal,
                 confirm: list[str] | None = None) -> Submission:
    """Check a saved plan once (fail fast), and return the job that applies it under the lock.

    A plan that carries its source applies that snapshot: the spec and source on disk are not read, so edits
    made since the plan (or a source folder that vanished) change nothing. Only a plan made from a proposed
    spec waits until the file on disk says the same; a plan saved before plans carried their source is checked
    against the disk as it always was. A restore must be confirmed by typing its addresses (``confirm``).
    """
    saved, stored_hash, status = store.load_plan(plan_id)
    guard.require(principal, Permission.apply, saved.env)  # before anything about the plan is revealed
    canarysteps.refuse_apply(saved)  # promote-step --plan applies it, against the canary's step as it is then
    _require_idle(store, saved.env)
    recorded = saved.source
    if recorded is None:
        facts = Facts(ws)
        require_env(facts.spec, saved.env)
        current: str | None = facts.desired_digest(saved.env, facts.versions(store, saved.env))
        source, ctx = facts.source_record(), facts.context()
    else:
        current = None
        if recorded.proposed and capture.spec_digest_on_disk(ws) != recorded.spec_digest:
            raise RailguardError(error(
                "plan.spec_changed", f"Plan {plan_id} was made from a proposed spec",
                "A plan made from a proposed spec (the MCP `plan` tool) applies only once the spec file on disk "
                "says exactly the same, so the file stays the source of truth.",
                f"Write the proposed spec to {ws.spec_path}, or plan again from the file with "
                f"`railguard plan --env {saved.env}`.", address=plan_id))
        source = {"digest": recorded.digest, "git_commit": recorded.git_commit, "git_dirty": recorded.git_dirty,
                  "files": recorded.files}
        app, users = capture.identity(ws, recorded)
        ctx = Context(source_root=Path(recorded.root or "."), spec_root=ws.root, app=app, users=users)
    check_plan(plan_id, saved, stored_hash, status, store.serial(saved.env), current)
    guard.check_apply(store, saved, principal)
    # Protection as the plan froze it (its environment resource), not as the file on disk says now.
    protected = any(r.kind == "environment" and r.config.get("protected") for r in saved.desired)
    restore.require_confirmed(saved, confirm or [], protected)
    env = saved.env

    def run(runner_store: Store, op_id: str) -> Operation:
        return apply_plan(runner_store, plan_id, provider, principal.id, current, ctx, source, op_id=op_id,
                          check=lambda p: guard.check_apply(runner_store, p, principal), env=env)

    return Submission(env=env, kind=OperationKind.apply, plan_id=plan_id, run=run)


def rollback(ws: Workspace, env: str, to: int | None, store: Store, provider: Provider,
             principal: Principal) -> Submission:
    """Check that a rollback has a target and needs no review (reading the store only); return its job."""
    facts = Facts(ws)
    require_env(facts.spec, env)
    _require_idle(store, env)
    check_rollback(store, rollback_plan(store, env, None, to)[1], principal)
    ctx = facts.context()

    def run(runner_store: Store, op_id: str) -> Operation:
        return run_rollback(runner_store, env, provider, principal, ctx, to, op_id=op_id)

    return Submission(env=env, kind=OperationKind.rollback, plan_id=None, run=run)
