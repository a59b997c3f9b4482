"""Snapshots of an environment's databases: taken before every release command, verified, restored, pruned.

A backup is a folder ``<root>/<id>/`` holding one consistent copy per database (SQLite's online backup
API) and ``backup.json`` (the :class:`~railguard.model.data.Backup` record: checksums, row counts and the
schema of each copy). A restore refuses a backup whose folder is gone or whose checksum no longer
matches. A Postgres snapshot can make the rehearsal's scratch copy from the same pg_dump stream
(:class:`ScratchCopies`): the copy's tables are then what the backup records, read once for both.
Called by the local provider's rollout (take), its restore change (restore) and retention (prune).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from railguard.data import pgrehearsal, pgschema, postgres, sqlite
from railguard.data.postgres import Cluster, PostgresError
from railguard.data.sqlite import TableShape
from railguard.model.data import Backup, BackupFile

MANIFEST = "backup.json"


class BackupError(Exception):
    """A backup cannot be used: ``code`` is the diagnostic code, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def new_id() -> str:
    return "bk-" + datetime.now(UTC).strftime("%Y%m%d%H%M%S") + "-" + secrets.token_hex(3)


@dataclass
class ScratchCopies:
    """The rehearsal's Postgres copies, made by :func:`take` from the snapshot's own pg_dump stream."""

    shapes: dict[str, dict[str, TableShape]] = field(default_factory=dict)  # database -> its copy, as made
    failed: dict[str, str] = field(default_factory=dict)  # database -> why its copy could not be made


def postgres_tables(cluster: Cluster, database: str) -> dict[str, int]:
    """Rows per table of every schema of the app's (exact counts: what a restore must bring back); a table
    outside ``public`` is named ``schema.table``."""
    tables = list(postgres.user_columns(cluster, database))
    return {postgres.table_key(*t): n for t, n in postgres.row_counts(cluster, database, tables).items()}


def _postgres(cluster: Cluster, name: str, target: Path, scratch: ScratchCopies | None) -> BackupFile:
    """Dump ``name`` into ``target`` (and, with ``scratch``, into its rehearsal copy from the same stream).

    The copy holds exactly what the dump holds, so its row counts and schema are the backup's (read on the
    copy: one read serves the backup and the rehearsal's starting point); without a copy they are read from
    the live database after the dump."""
    into = pgrehearsal.scratch_name(name) if scratch is not None else None
    if into is not None:
        pgrehearsal.wait_for_drop(cluster, into)
    digest, failed = cluster.dump(name, target, into)  # one repeatable-read transaction: consistent
    if scratch is not None and into is not None and failed is None:
        try:
            shape = pgrehearsal.shape(cluster, into)
            scratch.shapes[name] = shape
            return BackupFile(database=name, path=f"postgres/{name}.dump", engine="postgres",
                              sha256=digest, size=target.stat().st_size,
                              tables={t: s.rows for t, s in shape.items()}, db_schema=pgschema.schema(cluster, into))
        except PostgresError as exc:
            failed = str(exc)
    if scratch is not None and failed is not None:
        scratch.failed[name] = failed
    return BackupFile(database=name, path=f"postgres/{name}.dump", engine="postgres",
                      sha256=digest, size=target.stat().st_size, tables=postgres_tables(cluster, name),
                      db_schema=pgschema.schema(cluster, name))


def take(data_dir: Path, root: Path, env: str, release: int | None,
         postgres: dict[str, Cluster] | None = None, scratch: ScratchCopies | None = None) -> Backup | None:
    """Snapshot every database in ``data_dir`` (and each Postgres database of ``postgres``, by name) under
    ``root``; None when there is no database to protect. ``scratch``: also make each Postgres database's
    rehearsal copy from the dump's stream, and record there what it holds (or why it failed)."""
    found = sqlite.databases(data_dir)
    if not found and not postgres:
        return None
    started = time.monotonic()
    backup_id = new_id()
    folder = root / backup_id
    files: list[BackupFile] = []
    try:
        for rel in found:
            target = folder / "files" / rel
            sqlite.copy(data_dir, rel, target, durable=True)  # on disk before the release command runs
            shape = sqlite.shape(target, rows_digest=False)
            files.append(BackupFile(database=sqlite.database_name(rel), path=rel, sha256=sqlite.checksum(target),
                                    size=target.stat().st_size, tables={t: s.rows for t, s in shape.items()},
                                    db_schema=sqlite.schema(target)))
        for name, cluster in sorted((postgres or {}).items()):
            files.append(_postgres(cluster, name, folder / "files" / "postgres" / f"{name}.dump", scratch))
        backup = Backup(id=backup_id, env=env, release=release,
                        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                        seconds=round(time.monotonic() - started, 3), files=files)
        _write(folder / MANIFEST, backup.model_dump_json(indent=2))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # never a half-written backup that looks whole
        raise
    return backup


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def files(root: Path, backup: Backup) -> dict[str, Path]:
    """Each SQLite database's copy in the backup, by its path in the data folder."""
    return {f.path: root / backup.id / "files" / f.path for f in backup.files if f.engine == "sqlite"}


def load(root: Path, backup_id: str) -> Backup:
    if not backup_id.startswith("bk-") or "/" in backup_id or backup_id in (".", ".."):
        raise BackupError("restore.backup_missing", f"'{backup_id}' is not a backup id")
    manifest = root / backup_id / MANIFEST
    try:
        return Backup.model_validate(json.loads(manifest.read_text(encoding="utf-8")))
    except FileNotFoundError as exc:
        raise BackupError("restore.backup_missing", f"backup {backup_id} no longer exists ({manifest.parent} "
                          "is gone: deleted by retention or by hand)") from exc
    except ValueError as exc:
        raise BackupError("restore.checksum_mismatch", f"backup {backup_id}'s record is damaged: {exc}") from exc


def verify(root: Path, backup: Backup) -> None:
    """Refuse a backup whose files are missing or whose checksums changed since it was taken."""
    for entry in backup.files:
        path = root / backup.id / "files" / entry.path
        if not path.is_file():
            raise BackupError("restore.backup_missing", f"backup {backup.id} lost its copy of {entry.path}")
        actual = sqlite.checksum(path)
        if actual != entry.sha256:
            raise BackupError("restore.checksum_mismatch",
                              f"the copy of {entry.path} in backup {backup.id} has sha256 {actual[:16]}…, "
                              f"recorded {entry.sha256[:16]}… when it was taken")


def restore(root: Path, backup: Backup, data_dir: Path, databases: list[str] | None = None,
            postgres: dict[str, Cluster] | None = None) -> list[BackupFile]:
    """Verify, then write each (or each named) database of ``backup`` back: SQLite files into ``data_dir``,
    Postgres dumps into the database of the same name on its server in ``postgres``."""
    verify(root, backup)
    chosen = [f for f in backup.files if databases is None or f.database in databases]
    for entry in chosen:
        if entry.engine == "postgres":
            cluster = (postgres or {}).get(entry.database)
            if cluster is None:
                raise BackupError("restore.backup_missing", f"database '{entry.database}' of backup {backup.id} "
                                  "is a Postgres database this environment no longer has")
            cluster.restore(entry.database, root / backup.id / "files" / entry.path)
        else:
            sqlite.restore_into(root / backup.id / "files" / entry.path, data_dir, entry.path)
    return chosen


def listing(root: Path) -> list[Backup]:
    """Every readable backup under ``root``, newest first."""
    found: list[Backup] = []
    if not root.is_dir():
        return found
    for folder in root.iterdir():
        try:
            found.append(Backup.model_validate(json.loads((folder / MANIFEST).read_text(encoding="utf-8"))))
        except (OSError, ValueError):
            continue
    return sorted(found, key=lambda b: (b.created_at, b.id), reverse=True)


def prune(root: Path, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` backups; returns the ids removed."""
    removed: list[str] = []
    for old in listing(root)[keep:]:
        shutil.rmtree(root / old.id, ignore_errors=True)
        removed.append(old.id)
    # Leftovers of a snapshot that died half-way have no manifest: they are never restorable.
    if root.is_dir():
        for folder in root.iterdir():
            if folder.is_dir() and not (folder / MANIFEST).exists() and time.time() - folder.stat().st_mtime > 3600:
                shutil.rmtree(folder, ignore_errors=True)
    return removed
