"""The connection to one state database: opening, upgrading, transactions, and bad state folders.

The base of every aggregate module (plans, operations, releases, events, inventory, locks);
:class:`railguard.state.store.Store` puts them together. It opens SQLite in WAL mode, applies
the schema's migrations (:mod:`railguard.state.schema`), runs every write in a short
``BEGIN IMMEDIATE`` transaction and turns failures to open or read into diagnostics
(``state.*``), never tracebacks. Text written to the store passes the redactor first.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from railguard.model.diagnostics import RailguardError, error
from railguard.state.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION

DB_NAME = "state.db"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def unwritable(home: Path, exc: Exception) -> RailguardError:
    return RailguardError(error(
        "state.unwritable", "The state folder cannot be written",
        f"Railguard keeps its state in {home} and could not write there: {exc}.",
        "Make the folder writable by this user, or point RAILGUARD_HOME at a writable folder.",
        address=str(home),
    ))


def corrupt(path: Path, exc: Exception) -> RailguardError:
    return RailguardError(error(
        "state.corrupt", "The state database is damaged",
        f"{path} could not be read as a Railguard store: {exc}. Nothing was changed.",
        f"Restore {path} from a backup, or move it aside to start with an empty state "
        "(Railguard will then observe the live system again).",
        address=str(path),
    ))


class Database:
    """A connection to one state folder. Not shared across threads."""

    def __init__(self, home: Path, connection: sqlite3.Connection) -> None:
        self.home = home
        self.path = home / DB_NAME
        self._db = connection
        self._redact: Callable[[str], str] = lambda text: text

    @classmethod
    def open(cls, home: Path) -> Self:
        """Open (creating and upgrading if needed) the store in ``home``."""
        try:
            home.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise unwritable(home, exc) from exc
        if not os.access(home, os.W_OK):
            raise unwritable(home, PermissionError("permission denied"))
        path = home / DB_NAME
        try:
            db = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise unwritable(home, exc) from exc
        try:
            db.execute("PRAGMA busy_timeout = 10000")
            # A new store's pages are 16 KiB (SQLite's default is 4 KiB); an existing one keeps its size (the
            # pragma does nothing once the file has pages). A large plan's body and inventory (~20 MB for 10,000
            # services) went through the WAL and its checkpoint as ~18,000 page writes: ~0.2 s of each such plan,
            # about half that with larger pages. Small commits write a few pages either way.
            db.execute("PRAGMA page_size = 16384")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA synchronous = NORMAL")
            store = cls(home, db)
            store._upgrade()
        except sqlite3.DatabaseError as exc:
            db.close()
            # The primary code (low byte) also covers the extended SQLITE_READONLY_* codes.
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_READONLY:
                raise unwritable(home, exc) from exc
            raise corrupt(path, exc) from exc
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
        """The connection, for the store's sibling modules in ``state/`` only (no SQL outside state/)."""
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
            raise corrupt(self.path, ValueError("it holds tables but is not a Railguard store"))
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
        return self._db.execute(sql, args).fetchone()

    # -- settings of the state folder (the meta table) ------------------------------------------
    def setting(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = ?", key)
        return None if row is None else str(row[0])

    def set_setting_once(self, key: str, value: str) -> None:
        """Record ``value`` unless the key has one already (the first writer wins)."""
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, value))


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
