"""A rollback during a canary: every canary of the environment is aborted first, recorded as ``railguard abort`` is.

Why: observation reports each service's live release (the stable one), never its canary, so a rollback to the
stable release planned nothing and the canary went on taking its share of the requests (on the local runtime as
on a cluster). A rollback means "back, at once": :func:`abort_all` (called by :func:`railguard.engine.rollback.
rollback` once the rollback's target is picked and its policy checked, under the state lock) aborts each canary
through the provider (every request on the stable release, the canary stopped or its Deployment deleted) and
records it exactly as the daemon's canary controller records an abort (:mod:`railguard.daemon.canary`): a line in
the journal of the deploy that started the canary, a ``canary.aborted`` event, the canary's release recorded
``aborted`` and the one before it ``live`` again (``release.aborted``). The rollback's own journal has a
``<address>: abort-canary`` step per canary; then the rollback's plan runs as usual (nothing left to do when its
target is the stable release). An abort needs no approval (toward safety); the rollback's guardrails are checked
before anything moves.

A daemon killed during that step leaves the rollback's journal with the step begun and not ended:
:func:`finish_interrupted` (called by :mod:`railguard.engine.recovery` before it settles the operation) finishes
the abort from what the step recorded, so the records never say a canary's release is live once its canary is
gone (nor the reverse).
"""

from __future__ import annotations

from typing import Any

from railguard.engine.execute import journal
from railguard.model.api import Operation
from railguard.model.diagnostics import RailguardError
from railguard.providers.base import DescribeRequest, Provider
from railguard.state import canaries as canary_store
from railguard.state.store import Store

STEP = "abort-canary"
ABORTED_EVENT = "canary.aborted"  # the kinds the daemon's canary controller writes for an abort
RELEASE_ABORTED_EVENT = "release.aborted"


def abort_all(store: Store, provider: Provider, env: str, by: str, op_id: str) -> list[str]:
    """Abort every canary of ``env`` (journaled in ``op_id``); return the services whose canary was aborted."""
    done = []
    for unit in provider.describe(DescribeRequest(env=env)).services:
        canary = unit.canary
        if canary is None:
            continue
        step = f"{env}/service.{unit.name}: {STEP}"
        detail = {"release": canary.release, "stable": unit.release, "weight": canary.weight,
                  "operation": canary.operation}
        journal(store, op_id, step, "begin", detail)
        _abort(provider, env, unit.name)
        record(store, env, unit.name, canary.release, canary.operation, by, op_id)
        journal(store, op_id, step, "end", {"aborted": canary.release})
        done.append(unit.name)
    return done


def _abort(provider: Provider, env: str, service: str) -> None:
    try:
        provider.abort_canary(env, service)
    except RailguardError as exc:
        if exc.diagnostics[0].code != "canary.none":  # gone already (the controller aborted it meanwhile): done
            raise


def record(store: Store, env: str, service: str, release: int, operation: str | None, by: str, op_id: str) -> None:
    """What the daemon's canary controller records for an abort, and the release records moved at once (no
    operation can be running: a rollback waits for the environment to be idle)."""
    if operation:
        store.journal(operation, f"{env}/service.{service}: canary step", "end",
                      {"weight": 0, "aborted": True, "by": by, "rollback": op_id})
    store.add_event(env, ABORTED_EVENT, f"{env}/{service}: canary aborted ({by}, rollback {op_id}); "
                    "the stable release serves every request",
                    address=f"{env}/service.{service}", data={"by": by, "release": release, "operation": op_id})
    outcome, restored = canary_store.abort_release(store, env, release)
    canary_store.delete(store, env, service)  # the controller's step record: this canary is over
    if outcome == "aborted":
        store.add_event(env, RELEASE_ABORTED_EVENT, f"release {release} aborted (its canary of {service} was): "
                        + (f"release {restored} is live again" if restored is not None else "no release before it"),
                        address=f"{env}/release.{release}", data={"release": release, "service": service,
                                                                  "live": restored})


def finish_interrupted(store: Store, provider: Provider, op: Operation) -> list[str]:
    """Finish the aborts ``op`` (an interrupted rollback) had begun and not recorded; one note per abort."""
    begun: dict[str, dict[str, Any]] = {}
    for entry in op.journal:
        address, _, step = entry.step.rpartition(": ")
        if step != STEP:
            continue
        if entry.phase == "begin":
            begun[address] = dict(entry.detail or {})
        else:
            begun.pop(address, None)
    notes = []
    for address, detail in begun.items():
        service = address.split("/service.", 1)[-1]
        release = detail.get("release")
        if not isinstance(release, int):
            continue
        _abort(provider, op.env, service)  # toward safety: the rollback had decided it
        record(store, op.env, service, release, detail.get("operation"), op.principal, op.id)
        store.journal(op.id, f"{address}: {STEP}", "end", {"aborted": release, "recovered": True})
        notes.append(f"the canary of release {release} of {address} was aborted (interrupted rollback {op.id})")
    return notes
