"""Running the changes of an operation: journaled, step by step, with a fault-injection hook.

Shared by apply and rollback. Every change, and every sub-step a provider reports
(build, start, gate, switch, drain...), is written to the journal before and after
it runs, so after a crash the journal says exactly where it stopped. Setting
``RAILGUARD_FAULT_STEP`` makes the process kill itself (SIGKILL) when it reaches a
step, which is how the tests prove recovery at every step: the value is a step name as
journaled ("create staging/service.web", "staging/service.web: switch", or a provider step
alone, "switch", for the first service that reaches it) optionally followed by ":end" to die
right after the step instead of right before it.

A runtime that rolls services out side by side (a cluster: its controllers do the work; the provider says how
many at once with ``parallel_changes``) gets its service changes run several at a time, bounded: each starts once
every change it depends on is done (``depends_on`` order holds); deletes, the edge and the rest run alone with
nothing in flight; a failure stops new starts, and the operation fails once what was in flight finished. The
journal and the inventory are written under one lock, and a fault fires while that lock is held: nothing is
journaled after it.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from railguard.engine import dataguard
from railguard.engine.observe import ENGINE_KINDS
from railguard.model.diagnostics import Diagnostic
from railguard.model.plans import Action, Change
from railguard.model.resources import ObservedResource, Resource
from railguard.providers.base import ApplyRequest, Provider
from railguard.state.store import Store

FAULT_ENV = "RAILGUARD_FAULT_STEP"


@dataclass(frozen=True)
class Context:
    """Facts about the workspace a provider needs to carry out changes."""

    source_root: Path
    spec_root: Path
    backups_keep: int = 10  # the spec's retention.backups_keep
    app: str | None = None  # names the environments' OS users when the runtime isolates them
    users: dict[str, str] = field(default_factory=dict)  # env -> the OS user the spec names


def maybe_fault(step: str, phase: str) -> None:
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    # A provider's step names its address ("staging/service.web: switch"): only a trailing ":end" is a phase.
    name, _, when = wanted.rpartition(":")
    if when not in ("begin", "end"):
        name, when = wanted, "begin"
    short = step.rsplit(": ", 1)[-1]
    if name in (step, short) and when == phase:
        os.kill(os.getpid(), signal.SIGKILL)


def journal(store: Store, op_id: str, step: str, phase: str, detail: dict[str, Any] | None = None) -> None:
    if phase == "begin":
        maybe_fault(step, phase)
    store.journal(op_id, step, phase, detail)
    if phase == "end":
        maybe_fault(step, phase)


def _concurrent(change: Change, resource: Resource | None) -> bool:
    """Whether ``change`` may run beside others: a service's create/update/replace (deletes, the edge, data and the
    engine's own resources run alone, with nothing else in flight)."""
    return resource is not None and change.kind == "service" and change.action in (
        Action.create, Action.update, Action.replace)


def _run_bounded(changes: list[Change], wanted: dict[str, Resource], parallel: int,
                 one: Callable[[Change], list[Diagnostic]]) -> list[Diagnostic]:
    """Run ``changes`` (in dependency order) with at most ``parallel`` at once: a change starts once every change it
    depends on is done; one that may not run beside others waits for all in flight. The first failure stops new
    starts; what is in flight finishes; that failure is returned."""
    ours = {c.address for c in changes}
    done: set[str] = set()
    failure: list[Diagnostic] = []
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="railguard-change") as pool:
        running: dict[Future[list[Diagnostic]], Change] = {}

        def reap(everything: bool) -> None:
            nonlocal failure
            finished, _ = wait(list(running), return_when=ALL_COMPLETED if everything else FIRST_COMPLETED)
            for future in finished:
                change = running.pop(future)
                found = future.result()
                if found and not failure:
                    failure = found
                elif not found:
                    done.add(change.address)

        for change in changes:
            resource = wanted.get(change.address)
            if not _concurrent(change, resource):
                if running:
                    reap(everything=True)
                if failure:
                    break
                failure = one(change)
                if failure:
                    break
                done.add(change.address)
                continue
            assert resource is not None
            while running and (len(running) >= parallel or (set(resource.depends_on) & ours) - done):
                reap(everything=False)
                if failure:
                    break
            if failure:
                break
            running[pool.submit(one, change)] = change
        if running:
            reap(everything=True)
    return failure


def run_changes(store: Store, op_id: str, env: str, changes: list[Change], desired: list[Resource],
                provider: Provider, release: int | None, ctx: Context,
                allow_data_loss: list[str] | None = None, canary_percent: int | None = None) -> list[Diagnostic]:
    """Carry out ``changes`` in order; stop at the first failure and return its diagnostics.

    ``canary_percent`` overrides a canary service's first step (100: all at once, as a rollback must be).
    """
    wanted = {r.address: r for r in desired}
    written = threading.Lock()  # one state connection: its writes (and a fault after one) never interleave

    def write(what: Any, *args: Any) -> None:
        with written:
            what(*args)

    def one(change: Change) -> list[Diagnostic]:
        resource = wanted.get(change.address)
        data_dir = (resource.config.get("data_dir") if resource is not None and resource.kind in ("service", "database")
                    else None)
        step = f"{change.action.value} {change.address}"
        write(journal, store, op_id, step, "begin", {"risk": change.risk.value})

        def progress(sub: str, phase: str, detail: dict[str, Any], prefix: str = change.address) -> None:
            write(journal, store, op_id, f"{prefix}: {sub}", phase, detail)
            if phase == "end" and "data" in detail:
                write(dataguard.record, store, env, release, detail["data"])

        if change.kind in ENGINE_KINDS:  # engine-managed: live once recorded
            write(store.set_observed, env, None if resource is None else ObservedResource(
                address=resource.address, kind=resource.kind, fingerprint=resource.fingerprint,
                config=resource.config, depends_on=resource.depends_on), change.address)
            write(journal, store, op_id, step, "end")
            return []
        response = provider.apply_change(ApplyRequest(
            env=env, change=change, desired=resource, operation_id=op_id, release=release,
            source_root=str(ctx.source_root),
            data_dir=str((ctx.spec_root / data_dir).resolve()) if data_dir else None,
            allow_data_loss=list(allow_data_loss or []), backups_keep=ctx.backups_keep,
            app=ctx.app, user=ctx.users.get(env), canary_percent=canary_percent,
        ), progress)
        if not response.ok:
            write(store.journal, op_id, step, "fail", {"diagnostics": [d.model_dump(mode="json")
                                                                     for d in response.diagnostics]})
            if response.observed is not None:
                write(store.set_observed, env, response.observed, change.address)
            return list(response.diagnostics)
        write(store.set_observed, env, response.observed, change.address)
        write(journal, store, op_id, step, "end")
        return []

    parallel = int(getattr(provider, "parallel_changes", lambda env, desired: 1)(env, desired))
    if parallel > 1:
        return _run_bounded(changes, wanted, parallel, one)
    for change in changes:
        failed = one(change)
        if failed:
            return failed
    return []
