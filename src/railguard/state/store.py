"""The state store: one SQLite database (WAL mode) in the state folder.

It holds what Railguard knows: spec snapshots, the observed inventory, saved plans,
operations and their step journal, releases, events, and a serial per environment
that grows whenever the environment's live state or applied spec moves (plans bind
to it). Every write runs in a short transaction; changes to the live system are
also serialized by the named lock of :meth:`Store.lock`. Failures to open, read or
write become diagnostics (``state.*``), never tracebacks. Called by the engine.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from railguard.model.canonical import canonical_json
from railguard.model.diagnostics import RailguardError, error, warning
from railguard.model.errors import TemporaryError
from railguard.model.plans import Plan
from railguard.model.resources import ObservedResource
from railguard.state.locks import Holder, current_identity
from railguard.state.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION

DB_NAME = "state.db"
LOCK_RETRY_S = 5.0  # a caller told `state.locked` may retry after this long


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _unwritable(home: Path, exc: Exception) -> RailguardError:
    return RailguardError(error(
        "state.unwritable", "The state folder cannot be written",
        f"Railguard keeps its state in {home} and could not write there: {exc}.",
        "Make the folder writable by this user, or point RAILGUARD_HOME at a writable folder.",
        address=str(home),
    ))


def _corrupt(path: Path, exc: Exception) -> RailguardError:
    return RailguardError(error(
        "state.corrupt", "The state database is damaged",
        f"{path} could not be read as a Railguard store: {exc}. Nothing was changed.",
        f"Restore {path} from a backup, or move it aside to start with an empty state "
        "(Railguard will then observe the live system again).",
        address=str(path),
    ))


class Store:
    """A connection to one state folder. Not shared across threads."""

    def __init__(self, home: Path, connection: sqlite3.Connection) -> None:
        self.home = home
        self.path = home / DB_NAME
        self._db = connection
        self._redact: Callable[[str], str] = lambda text: text

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, home: Path) -> Store:
        """Open (creating and upgrading if needed) the store in ``home``."""
        try:
            home.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise _unwritable(home, exc) from exc
        if not os.access(home, os.W_OK):
            raise _unwritable(home, PermissionError("permission denied"))
        path = home / DB_NAME
        try:
            db = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise _unwritable(home, exc) from exc
        try:
            db.execute("PRAGMA busy_timeout = 10000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA synchronous = NORMAL")
            store = cls(home, db)
            store._upgrade()
        except sqlite3.DatabaseError as exc:
            db.close()
            # The primary code (low byte) also covers the extended SQLITE_READONLY_* codes.
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_READONLY:
                raise _unwritable(home, exc) from exc
            raise _corrupt(path, exc) from exc
        except RailguardError:
            db.close()
            raise
        try:
            os.chmod(path, 0o600)
        except OSError:
            pass
        return store

    def close(self) -> None:
        self._db.close()

    @property
    def db(self) -> sqlite3.Connection:
        """The connection, for the store's sibling modules (tokens, approvals, secrets, audit)."""
        return self._db

    def redact(self, text: str) -> str:
        return self._redact(text)

    def add_redactor(self, redact: Callable[[str], str]) -> None:
        """Text stored in events, the journal and operation errors passes through ``redact`` first."""
        self._redact = redact

    def _upgrade(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        app_id = self._db.execute("PRAGMA application_id").fetchone()[0]
        tables = self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if version == 0 and tables and app_id != APPLICATION_ID:
            raise _corrupt(self.path, ValueError("it holds tables but is not a Railguard store"))
        if version > SCHEMA_VERSION:
            raise RailguardError(error(
                "state.too_new", "The state was written by a newer Railguard",
                f"The store is at schema version {version}; this Railguard knows up to {SCHEMA_VERSION}.",
                "Upgrade Railguard (pip install -U railguard) before using this state folder.",
                address=str(self.path),
            ))
        if version == SCHEMA_VERSION:
            return
        with self.transaction():
            for index in range(version, SCHEMA_VERSION):
                for statement in _statements(MIGRATIONS[index]):
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT: writers queue behind each other instead of failing."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _one(self, sql: str, *args: Any) -> Any:
        row = self._db.execute(sql, args).fetchone()
        return None if row is None else row

    # -- serials ---------------------------------------------------------------------------
    def serial(self, env: str) -> int:
        row = self._one("SELECT serial FROM environments WHERE name = ?", env)
        return int(row[0]) if row else 0

    def _bump(self, env: str) -> int:
        self._db.execute(
            "INSERT INTO environments (name, serial, updated_at) VALUES (?, 1, ?) "
            "ON CONFLICT(name) DO UPDATE SET serial = serial + 1, updated_at = excluded.updated_at",
            (env, now()),
        )
        return self.serial(env)

    def bump_serial(self, env: str) -> int:
        with self.transaction():
            return self._bump(env)

    # -- inventory -------------------------------------------------------------------------
    def inventory(self, env: str) -> list[ObservedResource]:
        rows = self._db.execute("SELECT body FROM inventory WHERE env = ? ORDER BY address", (env,)).fetchall()
        try:
            return [ObservedResource.model_validate_json(r[0]) for r in rows]
        except ValidationError as exc:
            raise _corrupt(self.path, exc) from exc

    def record_observed(self, env: str, resources: list[ObservedResource]) -> bool:
        """Replace the env's inventory with a provider's report; bump the serial if it moved."""
        new = {r.address: canonical_json(r.model_dump(mode="json")) for r in resources}
        with self.transaction():
            old = dict(self._db.execute("SELECT address, body FROM inventory WHERE env = ?", (env,)).fetchall())
            if old == new:
                return False
            self._db.execute("DELETE FROM inventory WHERE env = ?", (env,))
            self._db.executemany(
                "INSERT INTO inventory (env, address, body, updated_at) VALUES (?, ?, ?, ?)",
                [(env, address, body, now()) for address, body in new.items()],
            )
            self._bump(env)
            return True

    def set_observed(self, env: str, resource: ObservedResource | None, address: str) -> None:
        """Record one resource's new live state after an applied change (None: it is gone)."""
        with self.transaction():
            self._db.execute("DELETE FROM inventory WHERE env = ? AND address = ?", (env, address))
            if resource is not None:
                self._db.execute(
                    "INSERT INTO inventory (env, address, body, updated_at) VALUES (?, ?, ?, ?)",
                    (env, address, canonical_json(resource.model_dump(mode="json")), now()),
                )
            self._bump(env)

    # -- spec snapshots ----------------------------------------------------------------------
    def add_spec_snapshot(self, env: str, digest: str, body: Any) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT INTO spec_snapshots (env, digest, body, created_at) VALUES (?, ?, ?, ?)",
                (env, digest, canonical_json(body), now()),
            )

    def last_spec(self, env: str) -> list[dict[str, Any]] | None:
        """The desired resources of the last applied spec snapshot."""
        row = self._one("SELECT body FROM spec_snapshots WHERE env = ? ORDER BY id DESC LIMIT 1", env)
        return list(json.loads(row[0])) if row else None

    def last_spec_digest(self, env: str) -> str | None:
        row = self._one("SELECT digest FROM spec_snapshots WHERE env = ? ORDER BY id DESC LIMIT 1", env)
        return str(row[0]) if row else None

    # -- plans -------------------------------------------------------------------------------
    def save_plan(self, plan: Plan) -> Plan:
        sealed = plan.sealed(plan.id or new_id("plan"), now())
        with self.transaction():
            self._db.execute(
                "INSERT INTO plans (id, env, created_at, hash, base_serial, body, requested_by) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (sealed.id, sealed.env, sealed.created_at, sealed.hash, sealed.base_serial,
                 sealed.model_dump_json(), sealed.requested_by),
            )
        return sealed

    def load_plan(self, plan_id: str) -> tuple[Plan, str, str]:
        """The stored plan, the hash recorded beside it, and its status."""
        row = self._one("SELECT body, hash, status FROM plans WHERE id = ?", plan_id)
        if row is None:
            raise RailguardError(error(
                "plan.not_found", f"No plan '{plan_id}'",
                f"The state folder {self.home} has no saved plan with the id '{plan_id}'.",
                "List plans with `railguard plans`, or make one with `railguard plan --env <env>`.",
                address=plan_id,
            ))
        try:
            plan = Plan.model_validate_json(row[0])
        except ValidationError as exc:
            raise RailguardError(error(
                "plan.hash_mismatch", f"Plan '{plan_id}' is damaged",
                f"The stored plan no longer parses ({exc.error_count()} problems); it was modified after it "
                "was saved.",
                "Do not apply it. Make a new plan with `railguard plan --env <env>` and review it.",
                address=plan_id,
            )) from exc
        return plan, str(row[1]), str(row[2])

    def plans(self, env: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        sql = "SELECT id, env, created_at, hash, base_serial, status FROM plans"
        args: tuple[Any, ...] = ()
        if env:
            sql, args = sql + " WHERE env = ?", (env,)
        rows = self._db.execute(sql + " ORDER BY created_at DESC LIMIT ?", (*args, limit)).fetchall()
        keys = ("id", "env", "created_at", "hash", "base_serial", "status")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def mark_plan(self, plan_id: str, status: str) -> None:
        with self.transaction():
            self._db.execute("UPDATE plans SET status = ? WHERE id = ?", (status, plan_id))

    # -- operations and journal -----------------------------------------------------------
    def create_operation(self, env: str, kind: str, plan_id: str | None, principal: str,
                         status: str = "running") -> str:
        op_id = new_id("op")
        stamp = now()
        with self.transaction():
            self._db.execute(
                "INSERT INTO operations (id, env, kind, plan_id, status, principal, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (op_id, env, kind, plan_id, status, principal, stamp, stamp),
            )
        return op_id

    def journal(self, operation_id: str, step: str, phase: str, detail: dict[str, Any] | None = None) -> None:
        with self.transaction():
            self._db.execute("UPDATE operations SET status = 'running', updated_at = ? WHERE id = ? "
                             "AND status = 'queued'", (now(), operation_id))
            self._db.execute(
                "INSERT INTO journal (operation_id, step, phase, detail, at) VALUES (?, ?, ?, ?, ?)",
                (operation_id, step, phase, self._redact(canonical_json(detail or {})), now()),
            )

    def finish_operation(self, operation_id: str, status: str, problem: dict[str, Any] | None = None) -> None:
        with self.transaction():
            self._db.execute(
                "UPDATE operations SET status = ?, updated_at = ?, error = ? WHERE id = ?",
                (status, now(), self._redact(canonical_json(problem)) if problem else None, operation_id),
            )

    def operation(self, operation_id: str) -> dict[str, Any] | None:
        row = self._one(
            "SELECT id, env, kind, plan_id, status, principal, created_at, updated_at, error "
            "FROM operations WHERE id = ?", operation_id)
        if row is None:
            return None
        keys = ("id", "env", "kind", "plan_id", "status", "principal", "created_at", "updated_at", "error")
        record = dict(zip(keys, row, strict=True))
        record["error"] = json.loads(record["error"]) if record["error"] else None
        steps = self._db.execute(
            "SELECT step, phase, detail, at FROM journal WHERE operation_id = ? ORDER BY id", (operation_id,)
        ).fetchall()
        record["journal"] = [{"step": s, "phase": p, "detail": json.loads(d), "at": a} for s, p, d, a in steps]
        return record

    def operations(self, env: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        sql = "SELECT id FROM operations" + (" WHERE env = ?" if env else "") + " ORDER BY created_at DESC LIMIT ?"
        ids = [r[0] for r in self._db.execute(sql, (env, limit) if env else (limit,)).fetchall()]
        return [op for op in (self.operation(i) for i in ids) if op is not None]

    # -- releases --------------------------------------------------------------------------
    def add_release(self, env: str, plan_id: str | None, operation_id: str | None, status: str,
                    body: dict[str, Any]) -> int:
        with self.transaction():
            row = self._one("SELECT coalesce(max(number), 0) + 1 FROM releases WHERE env = ?", env)
            number = int(row[0])
            self._db.execute(
                "INSERT INTO releases (env, number, created_at, plan_id, operation_id, status, body) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (env, number, now(), plan_id, operation_id, status, canonical_json(body)),
            )
        return number

    def finish_release(self, env: str, number: int, status: str) -> None:
        """Mark a release live (the previous live one becomes superseded) or failed."""
        stamp = now()
        with self.transaction():
            if status == "live":
                self._db.execute("UPDATE releases SET status = 'superseded', ended_at = ? "
                                 "WHERE env = ? AND status = 'live'", (stamp, env))
                self._db.execute("UPDATE releases SET live_at = ? WHERE env = ? AND number = ?", (stamp, env, number))
            else:
                self._db.execute("UPDATE releases SET ended_at = ? WHERE env = ? AND number = ?", (stamp, env, number))
            self._db.execute("UPDATE releases SET status = ? WHERE env = ? AND number = ?", (status, env, number))

    def release(self, env: str, number: int) -> dict[str, Any] | None:
        found = [r for r in self.releases(env, limit=1_000_000) if r["number"] == number]
        return found[0] if found else None

    def releases(self, env: str, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT number, created_at, plan_id, operation_id, status, body, live_at, ended_at FROM releases "
            "WHERE env = ? ORDER BY number DESC LIMIT ?", (env, limit)).fetchall()
        return [{"number": n, "created_at": c, "plan_id": p, "operation_id": o, "status": s, "live_at": la,
                 "ended_at": ea, **json.loads(b)} for n, c, p, o, s, b, la, ea in rows]

    # -- events --------------------------------------------------------------------------
    def add_event(self, env: str | None, kind: str, message: str, address: str | None = None,
                  data: dict[str, Any] | None = None) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT INTO events (env, at, kind, address, message, data) VALUES (?, ?, ?, ?, ?, ?)",
                (env, now(), kind, address, self._redact(message), self._redact(canonical_json(data or {}))),
            )

    def events(self, env: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        sql = "SELECT id, env, at, kind, address, message, data FROM events"
        args: tuple[Any, ...] = ()
        if env:
            sql, args = sql + " WHERE env = ?", (env,)
        rows = self._db.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [{"id": i, "env": e, "at": a, "kind": k, "address": ad, "message": m, "data": json.loads(d)}
                for i, e, a, k, ad, m, d in reversed(rows)]

    # -- the lock --------------------------------------------------------------------------
    def lock_holder(self, name: str = "state") -> Holder | None:
        row = self._one("SELECT pid, pid_started, host, operation, acquired_at FROM locks WHERE name = ?", name)
        return Holder(*row) if row else None

    @contextmanager
    def lock(self, operation: str, name: str = "state") -> Iterator[Holder]:
        """Hold the named lock for the duration of a change to the live system.

        A stale lock (its holder is provably gone) is broken and the break recorded as an
        event; a live holder's lock is never broken: the caller gets ``state.locked``.
        """
        pid, started, host = current_identity()
        mine = Holder(pid, started, host, operation, now())
        with self.transaction():
            holder = self.lock_holder(name)
            if holder is not None and holder.alive():
                raise TemporaryError(error(
                    "state.locked", "Another Railguard process is changing this state",
                    f"The lock '{name}' is held by pid {holder.pid} on {holder.host} for '{holder.operation}' "
                    f"since {holder.acquired_at}. Two changes at once could leave the environment half-switched.",
                    "Wait for it to finish (`railguard operations`), then try again.",
                    extra={"holder": holder.__dict__},
                ), delay=LOCK_RETRY_S)
            if holder is not None:
                self._db.execute(
                    "INSERT INTO events (env, at, kind, address, message, data) VALUES (NULL, ?, ?, NULL, ?, ?)",
                    (now(), "lock.broken", f"broke stale lock of pid {holder.pid} ({holder.operation})",
                     canonical_json(holder.__dict__)),
                )
            self._db.execute("DELETE FROM locks WHERE name = ?", (name,))
            self._db.execute(
                "INSERT INTO locks (name, pid, pid_started, host, operation, acquired_at) VALUES (?, ?, ?, ?, ?, ?)",
                (name, pid, started, host, operation, mine.acquired_at),
            )
        try:
            yield mine
        finally:
            with self.transaction():
                self._db.execute("DELETE FROM locks WHERE name = ? AND pid = ?", (name, pid))

    def stale_lock_warning(self, name: str = "state") -> list[Any]:
        holder = self.lock_holder(name)
        if holder is None or holder.alive():
            return []
        return [warning(
            "state.stale_lock", "A stale lock was left by a process that is gone",
            f"pid {holder.pid} took the lock for '{holder.operation}' at {holder.acquired_at} and no longer runs. "
            "The next change breaks it automatically and records that in the events.",
            "Check `railguard operations` for an operation it left unfinished.",
            extra={"holder": holder.__dict__},
        )]


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
