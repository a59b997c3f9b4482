"""Fingerprints of a data folder, compared logically: did a release command change or delete data?

Plain files are hashed. SQLite files are read through SQLite, table by table (schema, row count and
a hash of the rows), because their bytes move for reasons that change nothing (page reuse, the
change counter, a checkpoint) and their ``-wal``/``-shm``/``-journal`` companions come and go.
:func:`differences` says what changed in words ("notes.db: table settings: 1 → 2 rows");
:func:`losses` says what was lost (a file or table gone, fewer rows). Also copies a data folder
consistently (:func:`copy_data`): SQLite files through the backup API from a read-only connection,
so a live database is copied as of one moment and the original is never written. Called by the
idempotent-release, migrations-forward and rollback-drill checks.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from railguard.data import sqlite

SQLITE_MAGIC = b"SQLite format 3\x00"
COMPANIONS = ("-wal", "-shm", "-journal")


@dataclass(frozen=True)
class Table:
    rows: int
    digest: str
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileFacts:
    size: int
    digest: str
    tables: dict[str, Table] | None = None  # SQLite files only
    schema: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class DataPrint:
    files: dict[str, FileFacts] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for rel, facts in sorted(self.files.items()):
            h.update(f"{rel}\0{facts.digest}\n".encode())
        return "sha256:" + h.hexdigest()[:16]

    def describe(self) -> str:
        tables = sum(len(f.tables or {}) for f in self.files.values())
        rows = sum(t.rows for f in self.files.values() for t in (f.tables or {}).values())
        return f"{len(self.files)} file(s), {tables} table(s) with {rows} row(s), fingerprint {self.digest}"


def is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def _companion(name: str) -> bool:
    return name.endswith(COMPANIONS)


def _sqlite_facts(path: Path) -> FileFacts:
    size = path.stat().st_size
    try:
        return _read_sqlite(path, size, "ro")
    except sqlite3.Error:
        # A WAL database without its -shm file cannot be opened read-only; this is a scratch copy,
        # so a normal connection (whose close may checkpoint: logically a no-op) is fine.
        try:
            return _read_sqlite(path, size, "rw")
        except sqlite3.Error as exc:
            return FileFacts(size, "unreadable", error=str(exc))


def _read_sqlite(path: Path, size: int, mode: str) -> FileFacts:
    db = sqlite3.connect(f"file:{path}?mode={mode}", uri=True, timeout=5)
    try:
        master = db.execute("SELECT type, name, coalesce(sql, '') FROM sqlite_master ORDER BY type, name").fetchall()
        tables: dict[str, Table] = {}
        for kind, name, _ in master:
            if kind != "table":
                continue
            h = hashlib.sha256()
            count = 0
            for row in db.execute(f'SELECT * FROM "{name.replace(chr(34), chr(34) * 2)}"'):
                h.update(repr(row).encode())
                count += 1
            quoted = name.replace(chr(34), chr(34) * 2)
            columns = tuple(str(r[1]) for r in db.execute(f'PRAGMA table_info("{quoted}")'))
            tables[name] = Table(count, h.hexdigest()[:16], columns)
        schema = tuple(sql for _, _, sql in master if sql)
    finally:
        db.close()
    whole = hashlib.sha256(repr((schema, sorted((n, t.digest) for n, t in tables.items()))).encode()).hexdigest()
    return FileFacts(size, whole[:16], tables, schema)


def fingerprint(folder: Path) -> DataPrint:
    files: dict[str, FileFacts] = {}
    if not folder.is_dir():
        return DataPrint(files)
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            rel = str(path.relative_to(folder))
            if _companion(name) or path.is_symlink() or not path.is_file():
                continue
            if is_sqlite(path):
                files[rel] = _sqlite_facts(path)
                continue
            h = hashlib.sha256()
            with path.open("rb") as handle:
                h.update(hashlib.file_digest(handle, "sha256").digest())
            files[rel] = FileFacts(path.stat().st_size, h.hexdigest()[:16])
    return DataPrint(files)


def differences(before: DataPrint, after: DataPrint, limit: int = 12) -> list[str]:
    found: list[str] = []
    for rel in sorted(set(before.files) | set(after.files)):
        old, new = before.files.get(rel), after.files.get(rel)
        if old is None and new is not None:
            found.append(f"{rel}: new file ({new.size} bytes)")
        elif new is None and old is not None:
            found.append(f"{rel}: file removed")
        elif old is not None and new is not None and old.digest != new.digest:
            if old.tables is None or new.tables is None:
                found.append(f"{rel}: content changed ({old.size} → {new.size} bytes)")
                continue
            if old.schema != new.schema:
                added = [s for s in new.schema if s not in old.schema]
                gone = [s for s in old.schema if s not in new.schema]
                found.append(f"{rel}: schema changed" + "".join(f"; + {s}" for s in added[:3])
                             + "".join(f"; - {s}" for s in gone[:3]))
            for name in sorted(set(old.tables) | set(new.tables)):
                a, b = old.tables.get(name), new.tables.get(name)
                if a is None and b is not None:
                    found.append(f"{rel}: table {name} created ({b.rows} rows)")
                elif b is None and a is not None:
                    found.append(f"{rel}: table {name} dropped (had {a.rows} rows)")
                elif a is not None and b is not None and a != b:
                    found.append(f"{rel}: table {name}: {a.rows} → {b.rows} rows" if a.rows != b.rows
                                 else f"{rel}: table {name}: same {a.rows} rows, contents changed")
    return found[:limit] + ([f"... and {len(found) - limit} more"] if len(found) > limit else [])


def losses(before: DataPrint, after: DataPrint) -> list[str]:
    """Data present before and missing after: removed files, dropped tables, fewer rows."""
    found: list[str] = []
    for rel, old in sorted(before.files.items()):
        new = after.files.get(rel)
        if new is None:
            found.append(f"{rel}: file removed ({old.size} bytes)")
            continue
        for name, table in sorted((old.tables or {}).items()):
            now = (new.tables or {}).get(name)
            if now is None and table.rows:
                found.append(f"{rel}: table {name} with {table.rows} rows was dropped")
            elif now is not None and now.rows < table.rows:
                found.append(f"{rel}: table {name} went from {table.rows} to {now.rows} rows")
            gone = [c for c in table.columns if now is not None and c not in now.columns]
            renamed = now is not None and len([c for c in now.columns if c not in table.columns]) == len(gone)
            if now is not None and table.rows and not renamed:  # a dropped column loses its values in every row
                found += [f"{rel}: column {name}.{c} was dropped (it held values in {table.rows} rows)" for c in gone]
    return found


def copy_data(src: Path, dest: Path) -> int:
    """Copy a data folder; SQLite files through the backup API (read-only source). Returns files copied."""
    dest.mkdir(parents=True, exist_ok=True)
    if not src.is_dir():
        return 0
    copied = 0
    for root, _dirs, names in os.walk(src):
        rel_root = Path(root).relative_to(src)
        (dest / rel_root).mkdir(parents=True, exist_ok=True)
        for name in names:
            path = Path(root) / name
            target = dest / rel_root / name
            if _companion(name) or path.is_symlink() or not path.is_file():
                continue
            # The data folder is the app's: read through checked descriptors (a link, a hard link or a non-regular
            # file planted there is skipped, never followed into the daemon's files), as the snapshot reads it.
            rel = str((rel_root / name).as_posix())
            if is_sqlite(path):
                try:
                    sqlite.copy(src, rel, target)
                except (sqlite.UnsafeDatabase, OSError):
                    continue
                except sqlite3.Error:  # a header that says SQLite on a file that is not: copied as bytes
                    if not sqlite.copy_file(src, rel, target):
                        continue
                copied += 1
            elif sqlite.copy_file(src, rel, target):
                copied += 1
    return copied
