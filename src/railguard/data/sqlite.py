"""SQLite databases of a data folder: find them, read their shape, copy them consistently.

A database is any file whose header is SQLite's (its ``-wal``/``-shm``/``-journal`` companions are
part of it, never databases of their own). Copies go through the online backup API from a read-only
connection, so a live database is copied as of one moment and the original is never written. Called by
:mod:`railguard.data.snapshots` and :mod:`railguard.data.rehearsal`.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from railguard.model.data import DatabaseSchema, TableSchema

SQLITE_MAGIC = b"SQLite format 3\x00"
COMPANIONS = ("-wal", "-shm", "-journal")


@dataclass(frozen=True)
class TableShape:
    columns: tuple[str, ...]
    rows: int
    digest: str  # of the rows, so a second run that rewrites data is seen


def is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def databases(folder: Path) -> list[str]:
    """Paths (relative to ``folder``, sorted) of the SQLite databases in it."""
    found: list[str] = []
    if not folder.is_dir():
        return found
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            if name.endswith(COMPANIONS) or path.is_symlink() or not path.is_file():
                continue
            if is_sqlite(path):
                found.append(str(path.relative_to(folder)))
    return found


def database_name(rel: str) -> str:
    """The database's address name: the file's stem, lowercased, in the spec's name alphabet."""
    stem = Path(rel).name.split(".", 1)[0].lower()
    name = re.sub(r"[^a-z0-9-]+", "-", stem).strip("-") or "db"
    return name if name[0].isalpha() else f"db-{name}"


def _connect(path: Path) -> sqlite3.Connection:
    try:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error:
        return sqlite3.connect(path, timeout=10)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def shape(path: Path, rows_digest: bool = True) -> dict[str, TableShape]:
    """Every table with its columns, row count and (optionally) a digest of its rows."""
    db = _connect(path)
    try:
        tables: dict[str, TableShape] = {}
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                          "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        for name in names:
            columns = tuple(r[1] for r in db.execute(f"PRAGMA table_info({_quote(name)})"))
            if rows_digest:
                h = hashlib.sha256()
                count = 0
                for row in db.execute(f"SELECT * FROM {_quote(name)}"):
                    h.update(repr(row).encode())
                    count += 1
                tables[name] = TableShape(columns, count, h.hexdigest()[:16])
            else:
                count = int(db.execute(f"SELECT count(*) FROM {_quote(name)}").fetchone()[0])
                tables[name] = TableShape(columns, count, "")
        return tables
    finally:
        db.close()


def schema(path: Path) -> DatabaseSchema:
    """The ordered tables, columns, declared types and indexes, plus a framework's migration head."""
    db = _connect(path)
    try:
        tables: dict[str, TableSchema] = {}
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                                  "ORDER BY name").fetchall():
            info = db.execute(f"PRAGMA table_info({_quote(name)})").fetchall()
            cols = [(str(r[1]), str(r[2] or "").upper()) for r in info]
            # (cid, name, type, notnull, dflt_value, pk): NOT NULL, no default, not the key
            required = [str(r[1]) for r in info if r[3] and r[4] is None and not r[5]]
            tables[name] = TableSchema(columns=cols, required=required)
        indexes = {str(n): str(t) for n, t in db.execute(
            "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name")}
        return DatabaseSchema(tables=tables, indexes=indexes, head=_head(db, tables))
    finally:
        db.close()


def _head(db: sqlite3.Connection, tables: dict[str, TableSchema]) -> str | None:
    try:
        if "django_migrations" in tables:
            row = db.execute("SELECT app || '.' || name FROM django_migrations ORDER BY id DESC LIMIT 1").fetchone()
            return f"django:{row[0]}" if row else None
        if "alembic_version" in tables:
            row = db.execute("SELECT version_num FROM alembic_version LIMIT 1").fetchone()
            return f"alembic:{row[0]}" if row else None
    except sqlite3.Error:
        return None
    return None


def copy(source: Path, target: Path) -> None:
    """A consistent copy of a live database (backup API; the source is opened read-only)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    src = _connect(source)
    try:
        dest = sqlite3.connect(target)
        try:
            src.backup(dest)
        finally:
            dest.close()
    finally:
        src.close()


def restore_into(snapshot: Path, live: Path) -> None:
    """Replace the live database's content with the snapshot's, through SQLite's own locking.

    The backup API writes the whole snapshot into the live file as one transaction, so replicas that
    hold it open see either the old or the restored database, never a torn one.
    """
    live.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)
    try:
        dest = sqlite3.connect(live, timeout=30)
        try:
            src.backup(dest)
        finally:
            dest.close()
    finally:
        src.close()


def checksum(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
