"""Canary rollouts in the state database: the step each one is at, and the record of an aborted one.

The daemon's canary controller (:mod:`railguard.daemon.canary`) writes a :class:`CanaryRun` at each step
(release, share, when the step started, the operation that started it, the analysis so far), so a
restarted daemon resumes the step where it was (its pause keeps counting from the step's start) instead
of starting it again. An abort leaves the row in state ``aborted`` until :func:`abort_release` could move
the release record: the aborted release becomes ``aborted`` and the release that was live before it is
``live`` again, with its desired resources as the applied spec (the release may still be ``pending``
when the analysis aborts during its own deploy: the row waits for the operation to end).
"""

from __future__ import annotations

from dataclasses import dataclass

from railguard.model.api import ReleaseStatus
from railguard.model.resources import desired_digest
from railguard.state.lifecycles import RELEASE
from railguard.state.store import Store, now

RUNNING, ABORTED = "running", "aborted"
_COLUMNS = "env, service, release, stable, weight, step_started, operation, analysis, state"


@dataclass(frozen=True)
class CanaryRun:
    env: str
    service: str
    release: int
    stable: int | None
    weight: int
    step_started: float  # wall clock
    operation: str | None
    analysis: str
    state: str = RUNNING


def save(store: Store, run: CanaryRun) -> None:
    with store.transaction() as db:
        db.execute(f"INSERT OR REPLACE INTO canary_runs ({_COLUMNS}, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (run.env, run.service, run.release, run.stable, run.weight, run.step_started, run.operation,
                    store.redact(run.analysis)[:1000], run.state, now()))


def get(store: Store, env: str, service: str) -> CanaryRun | None:
    row = store.db.execute(f"SELECT {_COLUMNS} FROM canary_runs WHERE env = ? AND service = ?",
                           (env, service)).fetchone()
    return None if row is None else CanaryRun(*row)


def listed(store: Store, state: str | None = None) -> list[CanaryRun]:
    rows = store.db.execute(f"SELECT {_COLUMNS} FROM canary_runs" + (" WHERE state = ?" if state else "")
                            + " ORDER BY env, service", (state,) if state else ()).fetchall()
    return [CanaryRun(*r) for r in rows]


def delete(store: Store, env: str, service: str) -> None:
    with store.transaction() as db:
        db.execute("DELETE FROM canary_runs WHERE env = ? AND service = ?", (env, service))


def abort_release(store: Store, env: str, number: int) -> tuple[str, int | None]:
    """Record that the canary of release ``number`` was aborted; return (what happened, the release live now).

    ``pending``: its operation has not ended, try again later. ``aborted``: moved now (the one before it, if
    any, is live again). Anything else (``failed``, ``superseded``, ``aborted``, ``gone``): nothing to move.
    """
    restored = None
    with store.transaction() as db:
        row = db.execute("SELECT status FROM releases WHERE env = ? AND number = ?", (env, number)).fetchone()
        if row is None:
            return "gone", None
        if row[0] != ReleaseStatus.live.value:
            return str(row[0]), None
        stamp = now()
        RELEASE.move(db, {"env": env, "number": number}, ReleaseStatus.aborted.value, f"{env}/release.{number}",
                     also={"ended_at": stamp})
        before = db.execute("SELECT number FROM releases WHERE env = ? AND status = ? AND number < ? "
                            "AND live_at IS NOT NULL ORDER BY number DESC LIMIT 1",
                            (env, ReleaseStatus.superseded.value, number)).fetchone()
        if before is not None:
            restored = int(before[0])
            RELEASE.move(db, {"env": env, "number": restored}, ReleaseStatus.live.value,
                         f"{env}/release.{restored}", also={"ended_at": None})
    if restored is not None:
        release = store.release(env, restored)
        if release is not None:  # what is applied now: the release that serves again (drift is measured to it)
            desired = [r for r in release.desired if r.kind != "database"]
            store.add_spec_snapshot(env, desired_digest(desired), [r.model_dump(mode="json") for r in desired])
    return ReleaseStatus.aborted.value, restored

