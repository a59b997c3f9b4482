"""Garbage collection of the state database: old plans, operations with their journals, and events.

The policy is the spec's ``[retention]`` table (:class:`railguard.model.spec.Retention`): a row goes once
it is older than its kind's days and is not among the newest ``*_keep`` of its kind. Never removed,
whatever their age: an operation that is queued or running, the plan such an operation applies, a plan
being applied, releases (the numbered history stays; only artifacts of old releases are deleted, by the
provider), approvals and the audit chain. :func:`kept_releases` tells the provider which releases' artifacts
must stay. Called by the daemon's housekeeping (at boot, hourly, and for ``railguard gc``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from railguard.model.api import KeptRelease
from railguard.model.spec import Retention
from railguard.state.store import Store

_ACTIVE = ("queued", "running")


@dataclass(frozen=True)
class Swept:
    """What a pass removed (or, in a dry run, would remove)."""

    plans: list[str]
    operations: list[str]
    journal: int
    events: int

    def counts(self) -> dict[str, int]:
        return {"plans": len(self.plans), "operations": len(self.operations), "journal": self.journal,
                "events": self.events}


def _cutoff(now: datetime, days: int) -> str:
    # Same shape as store.now(): ISO text compares in time order.
    return (now - timedelta(days=days)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sweep(store: Store, policy: Retention, *, dry_run: bool = False, now: datetime | None = None) -> Swept:
    """Remove the rows ``policy`` lets go, in one transaction; return what went."""
    moment = now or datetime.now(UTC)
    db = store.db
    with store.transaction():
        plans = [r[0] for r in db.execute(
            "SELECT id FROM plans WHERE created_at < ? AND status != 'applying' "
            "AND id NOT IN (SELECT id FROM plans ORDER BY created_at DESC LIMIT ?) "
            "AND id NOT IN (SELECT plan_id FROM operations WHERE plan_id IS NOT NULL AND status IN (?, ?)) "
            "ORDER BY created_at", (_cutoff(moment, policy.plans_days), policy.plans_keep, *_ACTIVE))]
        operations = [r[0] for r in db.execute(
            "SELECT id FROM operations WHERE updated_at < ? AND status NOT IN (?, ?) "
            "AND id NOT IN (SELECT id FROM operations ORDER BY created_at DESC LIMIT ?) ORDER BY created_at",
            (_cutoff(moment, policy.operations_days), *_ACTIVE, policy.operations_keep))]
        event_filter = ("FROM events WHERE at < ? "
                        "AND id NOT IN (SELECT id FROM events ORDER BY at DESC, id DESC LIMIT ?)")
        event_args = (_cutoff(moment, policy.events_days), policy.events_keep)
        events = int(db.execute(f"SELECT count(*) {event_filter}", event_args).fetchone()[0])
        journal = 0
        for chunk in _chunks(operations):
            marks = ", ".join("?" * len(chunk))
            journal += int(db.execute(f"SELECT count(*) FROM journal WHERE operation_id IN ({marks})",
                                      chunk).fetchone()[0])
            if not dry_run:
                db.execute(f"DELETE FROM journal WHERE operation_id IN ({marks})", chunk)
                db.execute(f"DELETE FROM operations WHERE id IN ({marks})", chunk)
        if not dry_run:
            for chunk in _chunks(plans):
                db.execute(f"DELETE FROM plans WHERE id IN ({', '.join('?' * len(chunk))})", chunk)
            db.execute(f"DELETE {event_filter}", event_args)
    return Swept(plans=plans, operations=operations, journal=journal, events=events)


def kept_releases(store: Store, keep: int) -> list[KeptRelease]:
    """The releases whose artifacts must stay: per environment the live ones, any still pending, the newest ``keep``."""
    rows = store.db.execute(
        "SELECT env, number, body FROM releases r WHERE status IN ('live', 'pending') "
        "OR number > (SELECT max(number) FROM releases WHERE env = r.env) - ? ORDER BY env, number",
        (keep,)).fetchall()
    return [KeptRelease(env=env, number=number, desired=json.loads(body).get("desired", []))
            for env, number, body in rows]


def kept_sources(store: Store, kept: list[KeptRelease]) -> set[str]:
    """The source snapshots and spec texts that must stay: those of plans that can still be applied (saved at
    the environment's current serial, or being applied) and the sources the ``kept`` releases run.

    A plan that went stale, was applied, rejected or swept frees its snapshot unless a release uses it.
    """
    found: set[str] = set()
    serials: dict[str, int] = {}
    for env, base_serial, status, body in store.db.execute(
            "SELECT env, base_serial, status, body FROM plans WHERE status IN ('saved', 'applying')"):
        if env not in serials:
            serials[env] = store.serial(env)
        if status == "saved" and base_serial != serials[env]:
            continue
        try:
            plan = json.loads(body)
        except ValueError:
            continue
        source = plan.get("source") or {}
        found.update(d for d in (source.get("digest"), source.get("spec_digest")) if isinstance(d, str))
        found.update(_service_sources(plan.get("desired") or []))
    for release in kept:
        found.update(str(r.config["source"]) for r in release.desired if r.kind == "service" and r.config.get("source"))
    return found


def _service_sources(desired: list[Any]) -> set[str]:
    return {r["config"]["source"] for r in desired if isinstance(r, dict) and r.get("kind") == "service"
            and isinstance(r.get("config"), dict) and isinstance(r["config"].get("source"), str)}


def _chunks(ids: list[str], size: int = 500) -> list[list[str]]:
    # SQLite caps the number of bound parameters in one statement.
    return [ids[i:i + size] for i in range(0, len(ids), size)]
