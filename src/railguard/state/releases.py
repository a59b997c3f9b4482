"""Releases: what each operation made live (or tried to), numbered per environment.

A release keeps its frozen desired resources, so a rollback runs exactly what ran. Its
status moves only through :data:`railguard.state.lifecycles.RELEASE`: ``pending`` until the
operation ends, then ``live`` (the previous live one becomes ``superseded``) or ``failed``.
The lookups callers need (by number, the live one, the one of an operation, rollback
candidates) are queries, not scans of the whole history. Part of the :class:`Store` facade.
"""

from __future__ import annotations

import json
from typing import Any

from railguard.model.api import Release, ReleaseStatus
from railguard.model.canonical import canonical_json
from railguard.state.db import Database, now
from railguard.state.lifecycles import RELEASE, illegal

_COLUMNS = "number, created_at, plan_id, operation_id, status, body, live_at, ended_at"
_RAN_HEALTHY = tuple(s.value for s in ReleaseStatus if s.ran_healthy)


class ReleaseStore(Database):
    def add_release(self, env: str, plan_id: str | None, operation_id: str | None,
                    body: dict[str, Any]) -> int:  # body: the frozen {services, desired, source, rollback_of}
        with self.transaction():
            row = self._one("SELECT coalesce(max(number), 0) + 1 FROM releases WHERE env = ?", env)
            number = int(row[0])
            RELEASE.check(None, ReleaseStatus.pending, f"{env}/release.{number}")
            self._db.execute(
                "INSERT INTO releases (env, number, created_at, plan_id, operation_id, status, body) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (env, number, now(), plan_id, operation_id, ReleaseStatus.pending.value, canonical_json(body)),
            )
        return number

    def finish_release(self, env: str, number: int, status: ReleaseStatus) -> None:
        """Mark a pending release live (the previous live one becomes superseded) or failed."""
        stamp = now()
        status = ReleaseStatus(status)
        with self.transaction() as db:
            row = db.execute("SELECT status FROM releases WHERE env = ? AND number = ?", (env, number)).fetchone()
            if row is not None and row[0] != ReleaseStatus.pending.value:  # only an operation's end finishes one
                raise illegal(RELEASE, str(row[0]), status.value, f"{env}/release.{number}")
            if status is ReleaseStatus.live:
                for (older,) in db.execute("SELECT number FROM releases WHERE env = ? AND status = ? AND number != ?",
                                           (env, ReleaseStatus.live.value, number)).fetchall():
                    RELEASE.move(db, {"env": env, "number": older}, ReleaseStatus.superseded,
                                 f"{env}/release.{older}", also={"ended_at": stamp})
                RELEASE.move(db, {"env": env, "number": number}, status, f"{env}/release.{number}",
                             also={"live_at": stamp})
            else:
                RELEASE.move(db, {"env": env, "number": number}, status, f"{env}/release.{number}",
                             also={"ended_at": stamp})

    def release(self, env: str, number: int) -> Release | None:
        return self._first("WHERE env = ? AND number = ?", env, number)

    def live_release(self, env: str) -> Release | None:
        return self._first("WHERE env = ? AND status = ? ORDER BY number DESC", env, ReleaseStatus.live.value)

    def release_of_operation(self, env: str, operation_id: str) -> Release | None:
        return self._first("WHERE env = ? AND operation_id = ? ORDER BY number DESC", env, operation_id)

    def releases(self, env: str, limit: int | None = 50, desired: bool = True) -> list[Release]:
        """Newest first; ``limit=None`` for all of them. ``desired=False``: without their frozen desired resources
        (listings: validating 200 resources per release was most of the cost of listing them)."""
        return self._select("WHERE env = ? ORDER BY number DESC LIMIT ?", env, -1 if limit is None else limit,
                            desired=desired)

    def superseded_before(self, env: str, number: int | None, desired: bool = True) -> list[Release]:
        """Superseded releases older than ``number`` (all when None), newest first: rollback candidates.
        ``desired=False``: without their frozen desired resources (see :meth:`releases`)."""
        return self._select("WHERE env = ? AND status = ? AND number < ? ORDER BY number DESC", env,
                            ReleaseStatus.superseded.value, 2**62 if number is None else number, desired=desired)

    def healthy_releases(self, env: str) -> list[Release]:
        """Releases that were live at some point (live or superseded), newest first: proofs for promotion."""
        marks = ", ".join("?" for _ in _RAN_HEALTHY)
        return self._select(f"WHERE env = ? AND status IN ({marks}) AND live_at IS NOT NULL ORDER BY number DESC",
                            env, *_RAN_HEALTHY)

    def _first(self, where: str, *args: Any) -> Release | None:
        found = self._select(where + ("" if "LIMIT" in where else " LIMIT 1"), *args)
        return found[0] if found else None

    def _select(self, where: str, *args: Any, desired: bool = True) -> list[Release]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM releases {where}", args).fetchall()
        out = []
        for n, c, p, o, s, b, la, ea in rows:
            body = json.loads(b)
            if not desired:
                body.pop("desired", None)
            out.append(Release.model_validate({"number": n, "created_at": c, "plan_id": p, "operation_id": o,
                                               "status": s, "live_at": la, "ended_at": ea, **body}))
        return out
