"""Retention in the daemon: the garbage-collection pass run at boot, hourly, and by ``railguard gc``.

It reads the ``[retention]`` table of the spec the daemon serves (defaults when it serves none yet),
takes the daemon's work lock (so no operation runs meanwhile: an artifact is never pulled from under a
rollout) and the store's state lock, removes old rows (:mod:`railguard.state.retention`), the artifacts
no live, warm or kept release uses (the provider), the source snapshots no applicable plan or kept
release uses, and old resolved incidents (never an open one), and records what went as one ``retention.collected``
event. Called by :class:`railguard.daemon.service.Daemon` and the API's ``POST /v1/gc``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Protocol

from railguard.engine.workspace import Workspace
from railguard.model.api import GcResult, KeptRelease
from railguard.model.diagnostics import RailguardError, error
from railguard.model.errors import TemporaryError
from railguard.model.spec import Retention
from railguard.sources.store import SnapshotStore
from railguard.state import incidents, meta, retention
from railguard.state.store import Store

log = logging.getLogger("railguard.daemon")
INTERVAL_S = 3600.0
RETRY_S = 60.0  # when an operation runs: the pass is tried again this much later
COLLECTED_EVENT = "retention.collected"


class Pruner(Protocol):
    def prune_artifacts(self, kept: list[KeptRelease], dry_run: bool = False) -> list[str]: ...


def policy(home: Path, spec_path: str | None) -> Retention:
    """The retention of the spec at ``spec_path``; the defaults when there is none. An invalid spec raises."""
    if spec_path is None:
        return Retention()
    spec, _ = Workspace(Path(spec_path), home).load_valid()
    return spec.retention


def served_spec(store: Store) -> str | None:
    return meta.get(store, "spec_path")


def collect(store: Store, provider: Pruner, work: threading.Lock, rules: Retention,
            dry_run: bool = False) -> GcResult:
    """One pass: remove what ``rules`` lets go (or only report it, with ``dry_run``); return what went."""
    if not work.acquire(blocking=False):
        raise TemporaryError(error(
            "operation.busy", "An operation is running",
            "Garbage collection waits until no operation runs, so that no artifact is removed under a rollout.",
            "Try again when the operation has finished (`railguard operations`); the daemon also collects hourly."),
            delay=RETRY_S)
    try:
        with store.lock(operation="gc"):
            swept = retention.sweep(store, rules, dry_run=dry_run)
            old_incidents = incidents.sweep_resolved(store, rules.incidents_days, rules.incidents_keep,
                                                     dry_run=dry_run)
            kept = retention.kept_releases(store, rules.releases_keep)
            artifacts = provider.prune_artifacts(kept, dry_run)
            # None: a plan is capturing right now; its snapshots wait for the next pass.
            snapshots = SnapshotStore.of(store.home).prune(retention.kept_sources(store, kept), dry_run) or []
    finally:
        work.release()
    removed = {**swept.counts(), "artifacts": len(artifacts), "snapshots": len(snapshots),
               "incidents": len(old_incidents)}
    result = GcResult(dry_run=dry_run, removed=removed, artifacts=artifacts, policy=rules)
    if not dry_run and any(removed.values()):
        store.add_event(None, COLLECTED_EVENT, "retention removed " + ", ".join(
            f"{n} {what}" for what, n in removed.items() if n), data={"removed": removed, "artifacts": artifacts})
    return result


def periodic(store: Store, provider: Pruner, work: threading.Lock, home: Path) -> float:
    """The background pass; returns the seconds until the next one. Never raises."""
    try:
        rules = policy(home, served_spec(store))
    except RailguardError as exc:  # an invalid or missing spec: nothing to retry until someone fixes it
        # Never fall back to the defaults here: they may keep less than the spec someone broke asks for.
        log.warning("retention skipped: the served spec does not load (%s)", exc)
        return INTERVAL_S
    try:
        done = collect(store, provider, work, rules)
    except TemporaryError as exc:  # an operation or another process holds the state: soon again
        log.info("retention postponed: %s", exc)
        return exc.delay
    except Exception:  # a failed pass waits for the next one, it must not spin or stop the loop
        log.exception("retention failed")
        return INTERVAL_S
    log.info("retention pass: %s", done.removed)
    return INTERVAL_S
