"""Running the changes of an operation: journaled, step by step, with a fault-injection hook.

Shared by apply and rollback. Every change, and every sub-step a provider reports
(build, start, gate, switch, drain...), is written to the journal before and after
it runs, so after a crash the journal says exactly where it stopped. Setting
``RAILGUARD_FAULT_STEP`` makes the process kill itself (SIGKILL) when it reaches a
step, which is how the tests prove recovery at every step: the value is a step name as
journaled ("create staging/service.web", "staging/service.web: switch", or a provider step
alone, "switch", for the first service that reaches it) optionally followed by ":end" to die
right after the step instead of right before it.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from railguard.engine import dataguard
from railguard.engine.observe import ENGINE_KINDS
from railguard.model.diagnostics import Diagnostic
from railguard.model.plans import Change
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


def run_changes(store: Store, op_id: str, env: str, changes: list[Change], desired: list[Resource],
                provider: Provider, release: int | None, ctx: Context,
                allow_data_loss: list[str] | None = None, canary_percent: int | None = None) -> list[Diagnostic]:
    """Carry out ``changes`` in order; stop at the first failure and return its diagnostics.

    ``canary_percent`` overrides a canary service's first step (100: all at once, as a rollback must be).
    """
    wanted = {r.address: r for r in desired}
    for change in changes:
        resource = wanted.get(change.address)
        data_dir = (resource.config.get("data_dir") if resource is not None and resource.kind in ("service", "database")
                    else None)
        step = f"{change.action.value} {change.address}"
        journal(store, op_id, step, "begin", {"risk": change.risk.value})

        def progress(sub: str, phase: str, detail: dict[str, Any], prefix: str = change.address) -> None:
            journal(store, op_id, f"{prefix}: {sub}", phase, detail)
            if phase == "end" and "data" in detail:
                dataguard.record(store, env, release, detail["data"])

        if change.kind in ENGINE_KINDS:  # engine-managed: live once recorded
            store.set_observed(env, None if resource is None else ObservedResource(
                address=resource.address, kind=resource.kind, fingerprint=resource.fingerprint,
                config=resource.config, depends_on=resource.depends_on), change.address)
            journal(store, op_id, step, "end")
            continue
        response = provider.apply_change(ApplyRequest(
            env=env, change=change, desired=resource, operation_id=op_id, release=release,
            source_root=str(ctx.source_root),
            data_dir=str((ctx.spec_root / data_dir).resolve()) if data_dir else None,
            allow_data_loss=list(allow_data_loss or []), backups_keep=ctx.backups_keep,
            app=ctx.app, user=ctx.users.get(env), canary_percent=canary_percent,
        ), progress)
        if not response.ok:
            store.journal(op_id, step, "fail", {"diagnostics": [d.model_dump(mode="json")
                                                                for d in response.diagnostics]})
            if response.observed is not None:
                store.set_observed(env, response.observed, change.address)
            return list(response.diagnostics)
        store.set_observed(env, response.observed, change.address)
        journal(store, op_id, step, "end")
    return []
