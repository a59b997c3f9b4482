"""The environment's release history, read from the real state folder without writing to it.

The state database is copied into scratch through SQLite's backup API from a read-only connection
(so a daemon writing meanwhile is neither disturbed nor half-copied) and opened there. The "previous
release" is the newest release that ran healthy (live or superseded) whose services differ from what
the working tree would deploy now: the release a rollback from the current one would land on. Used by
migrations-forward (its data) and rollback-drill (its artifact).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from railguard.doctor.context import Context
from railguard.doctor.report import Finding, Status
from railguard.model.diagnostics import RailguardError
from railguard.state.store import DB_NAME, Store


@dataclass(frozen=True)
class History:
    previous: dict[str, Any] | None
    reason: str  # why there is no previous release, or which one it is

    def services(self) -> dict[str, dict[str, Any]]:
        """The previous release's frozen service configs, by name."""
        if self.previous is None:
            return {}
        return {r["name"]: r["config"] for r in self.previous["desired"] if r["kind"] == "service"}

    def nothing_to_roll_back(self, ctx: Context) -> list[Finding]:
        """The rollback drill's answer when there is no previous release (local and cluster drills alike)."""
        return [Finding(status=Status.skipped, summary=f"no previous release to roll back to: {self.reason}",
                        evidence=[f"read the releases of '{ctx.env}' from a copy of {ctx.real_home / 'state.db'}"],
                        remediation="Deploy once; the drill runs before every later deploy.")]


def _copy_store(ctx: Context) -> Store | None:
    real = ctx.real_home / DB_NAME
    if not real.is_file():
        return None
    folder = ctx.scratch.folder("state")
    try:
        source = sqlite3.connect(f"file:{real}?mode=ro", uri=True, timeout=10)
        try:
            with sqlite3.connect(folder / DB_NAME) as copy:
                source.backup(copy)
            copy.close()
        finally:
            source.close()
        return Store.open(folder)
    except (sqlite3.Error, RailguardError):
        return None


def history(ctx: Context) -> History:
    cached = ctx.cache.get("history")
    if isinstance(cached, History):
        return cached
    found = _load(ctx)
    ctx.cache["history"] = found
    return found


def _load(ctx: Context) -> History:
    store = _copy_store(ctx)
    if store is None:
        return History(None, f"no state in {ctx.real_home} (the app was never deployed from here)")
    try:
        ran = [r.model_dump(mode="json") for r in store.healthy_releases(ctx.env)]  # newest first
    finally:
        store.close()
    now = {r.name: r.fingerprint for r in ctx.desired if r.kind == "service"}
    for release in ran:
        then = {r["name"]: r["fingerprint"] for r in release["desired"] if r["kind"] == "service"}
        if then != now:
            return History(release, f"release {release['number']} ({release['status']})")
    if ran:
        return History(None, f"'{ctx.env}' has {len(ran)} release(s), all identical to the working tree: nothing "
                             "earlier to compare with")
    return History(None, f"'{ctx.env}' has no release that ran healthy in {ctx.real_home}")
