"""Operations and their step journal.

An operation is one apply or rollback; its journal records each step's begin, end or
failure so a crash shows exactly where it stopped. Its status moves only through
:data:`railguard.state.lifecycles.OPERATION`: created ``queued`` (the daemon) or ``running``,
``running`` at its first journal entry, then ``succeeded`` or ``failed``, once.
Listing reads all operations in one query and all their journals in a second one.
Part of the :class:`Store` facade.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from railguard.model.api import IN_FLIGHT, InFlight, Operation, OperationKind, OperationStatus, OperationStep
from railguard.model.canonical import canonical_json
from railguard.state.db import Database, new_id, now
from railguard.state.lifecycles import OPERATION

_COLUMNS = "id, env, kind, plan_id, status, principal, created_at, updated_at, error"

# Wakes whoever waits for an operation to move (the daemon's long-poll of an operation, which the CLI follows)
# the moment this process journals or ends one, instead of them polling the store. Only the daemon writes
# operations, so an in-process signal sees every move.
_moved = threading.Condition()
_moves = 0


def progress_mark() -> int:
    """A count of journal entries and endings written by this process so far (see :func:`wait_for_progress`)."""
    return _moves


def wait_for_progress(mark: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for an operation to move after ``mark``; whether one did."""
    with _moved:
        return _moved.wait_for(lambda: _moves != mark, timeout=max(0.0, timeout))


def _progressed() -> None:
    global _moves
    with _moved:
        _moves += 1
        _moved.notify_all()


class OperationStore(Database):
    def create_operation(self, env: str, kind: OperationKind | str, plan_id: str | None, principal: str,
                         status: OperationStatus = OperationStatus.running) -> str:
        op_id = new_id("op")
        OPERATION.check(None, OperationStatus(status), op_id)
        stamp = now()
        with self.transaction():
            self._db.execute(
                "INSERT INTO operations (id, env, kind, plan_id, status, principal, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (op_id, env, OperationKind(kind).value, plan_id, OperationStatus(status).value, principal, stamp,
                 stamp),
            )
        return op_id

    def journal(self, operation_id: str, step: str, phase: str,
                detail: dict[str, Any] | None = None) -> None:  # detail: the provider's progress context, as given
        """Record a step; the first entry of a queued operation moves it to running."""
        with self.transaction() as db:
            row = db.execute("SELECT status FROM operations WHERE id = ?", (operation_id,)).fetchone()
            if row is not None and row[0] == OperationStatus.queued:
                OPERATION.move(db, {"id": operation_id}, OperationStatus.running, operation_id,
                               also={"updated_at": now()})
            db.execute(
                "INSERT INTO journal (operation_id, step, phase, detail, at) VALUES (?, ?, ?, ?, ?)",
                (operation_id, step, phase, self._redact(canonical_json(detail or {})), now()),
            )
        _progressed()

    def finish_operation(self, operation_id: str, status: OperationStatus,
                         problem: dict[str, Any] | None = None) -> None:  # OperationError's JSON, redacted as text
        """End an operation (succeeded or failed); ending it twice is refused (state.illegal_transition)."""
        with self.transaction() as db:
            OPERATION.move(db, {"id": operation_id}, OperationStatus(status), operation_id, also={
                "updated_at": now(), "error": self._redact(canonical_json(problem)) if problem else None})
        _progressed()

    def operation(self, operation_id: str, steps: int | None = None) -> Operation | None:
        """The operation with its whole journal, or with ``steps``: its short journal (see :meth:`operations`)."""
        found = self._operations(f"SELECT {_COLUMNS} FROM operations WHERE id = ?", (operation_id,), True, steps)
        return found[0] if found else None

    def operations(self, env: str | None = None, limit: int = 50, journals: bool = True,
                   steps: int | None = None) -> list[Operation]:
        """The newest operations first; ``journals=False`` leaves their journals empty (one query less).

        ``steps``: each journal in short, for readers that show the newest steps (MCP): its newest ``steps`` entries
        that are not build output, and its first failure if older, with ``journal_total`` the count of all such
        entries. A 200-service deploy journals ~2,200 entries; parsing and sending them all for a listing was most
        of its cost.
        """
        sql = f"SELECT {_COLUMNS} FROM operations" + (" WHERE env = ?" if env else "") \
            + " ORDER BY created_at DESC LIMIT ?"
        return self._operations(sql, (env, limit) if env else (limit,), journals, steps)

    def unfinished_operations(self) -> list[Operation]:
        """Operations still queued or running (with journals): what a daemon that died left in flight."""
        marks = ", ".join("?" for _ in IN_FLIGHT)
        return self._operations(f"SELECT {_COLUMNS} FROM operations WHERE status IN ({marks}) ORDER BY created_at",
                                tuple(s.value for s in IN_FLIGHT), True)

    def in_flight(self, env: str) -> InFlight | None:
        """The newest queued or running operation of ``env``, without its journal (status polls this)."""
        marks = ", ".join("?" for _ in IN_FLIGHT)
        row = self._one(f"SELECT id, kind, status, created_at FROM operations WHERE env = ? AND status IN ({marks}) "
                        "ORDER BY created_at DESC LIMIT 1", env, *(s.value for s in IN_FLIGHT))
        if row is None:
            return None
        return InFlight(id=row[0], kind=OperationKind(row[1]), status=OperationStatus(row[2]), created_at=row[3])

    def operation_status(self, operation_id: str) -> OperationStatus | None:
        row = self._one("SELECT status FROM operations WHERE id = ?", operation_id)
        return None if row is None else OperationStatus(row[0])

    def _operations(self, sql: str, args: tuple[Any, ...], journals: bool,
                    newest: int | None = None) -> list[Operation]:
        rows = self._db.execute(sql, args).fetchall()
        steps: dict[str, list[OperationStep]] = {row[0]: [] for row in rows}
        totals: dict[str, int] | None = None
        if journals and steps:
            ids: tuple[str | int, ...] = tuple(steps)
            marks = ", ".join("?" for _ in ids)
            if newest is None:
                for op_id, step, phase, detail, at in self._db.execute(
                        f"SELECT operation_id, step, phase, detail, at FROM journal WHERE operation_id IN ({marks}) "
                        "ORDER BY id", ids):
                    steps[op_id].append(OperationStep(step=step, phase=phase, detail=json.loads(detail), at=at))
            else:
                totals = self._short_journals(steps, max(0, newest))
        out = []
        for op_id, env, kind, plan_id, status, principal, created_at, updated_at, problem in rows:
            out.append(Operation(id=op_id, env=env, kind=OperationKind(kind), plan_id=plan_id,
                                 status=OperationStatus(status), principal=principal, created_at=created_at,
                                 updated_at=updated_at, error=json.loads(problem) if problem else None,
                                 journal=steps[op_id], journal_total=totals[op_id] if totals is not None else None))
        return out

    def _short_journals(self, steps: dict[str, list[OperationStep]], newest: int) -> dict[str, int]:
        """Fill each operation's short journal (its first failure and its newest ``newest`` entries that are not
        build output, oldest first); return how many such entries each whole journal has. Indexed queries per
        operation: a window over the whole journal cost more than reading it all."""
        totals: dict[str, int] = {}
        own = not self._db.in_transaction
        if own:  # one snapshot: a step written meanwhile is in both the count and the steps, or in neither
            self._db.execute("BEGIN")
        try:
            for op_id, found in steps.items():
                counted = self._db.execute(
                    "SELECT COUNT(*) FROM journal WHERE operation_id = ? AND phase != 'output'", (op_id,)).fetchone()
                totals[op_id] = int(counted[0])
                rows = {row[0]: row[1:] for row in self._db.execute(
                    "SELECT id, step, phase, detail, at FROM journal WHERE operation_id = ? AND phase = 'fail' "
                    "ORDER BY id LIMIT 1", (op_id,))}
                rows.update((row[0], row[1:]) for row in self._db.execute(
                    "SELECT id, step, phase, detail, at FROM journal WHERE operation_id = ? AND phase != 'output' "
                    "ORDER BY id DESC LIMIT ?", (op_id, newest)))
                found += [OperationStep(step=step, phase=phase, detail=json.loads(detail), at=at)
                          for _, (step, phase, detail, at) in sorted(rows.items())]
        finally:
            if own:
                self._db.execute("COMMIT")
        return totals
