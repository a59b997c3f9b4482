"""The typed values of an environment's data: backups (snapshots), schema fingerprints, rehearsal results.

Pure data shared by the provider that takes snapshots and rehearses release commands
(:mod:`railguard.providers.local.databases`), the engine that records them on releases and plans
restores (:mod:`railguard.engine.restore`, :mod:`railguard.engine.schemarule`), the store and the CLI.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)


class TableSchema(_Frozen):
    columns: list[tuple[str, str]] = Field(default_factory=list, description="(name, declared type), in order.")
    required: list[str] = Field(default_factory=list, description="Columns NOT NULL without a default (nor a key "
                                "or identity): an INSERT that does not name them fails.")


class DatabaseSchema(_Frozen):
    """The shape of one database: what a rollback must agree with."""

    tables: dict[str, TableSchema] = Field(default_factory=dict)
    indexes: dict[str, str] = Field(default_factory=dict, description="Index name -> its table.")
    head: str | None = Field(default=None, description="Migration head where a framework keeps one "
                                                       "(django_migrations, alembic_version).")

    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


class BackupFile(_Frozen):
    database: str = Field(description="The database's name, e.g. 'notes' for notes.db in the data folder.")
    path: str = Field(description="Path relative to the environment's data folder (SQLite), or of the dump in the "
                                  "backup (Postgres: postgres/<name>.dump).")
    engine: str = Field(default="sqlite", description="'sqlite' (a file copy) or 'postgres' (a pg_dump custom-format "
                                                      "dump).")
    sha256: str
    size: int
    tables: dict[str, int] = Field(default_factory=dict, description="Rows per table at snapshot time.")
    db_schema: DatabaseSchema = Field(default_factory=DatabaseSchema)


class Backup(_Frozen):
    """One snapshot of an environment's databases, taken before a release command ran."""

    id: str
    env: str
    release: int | None = Field(description="The release whose release command ran after this snapshot.")
    created_at: str
    seconds: float = Field(description="How long the snapshot took.")
    files: list[BackupFile] = Field(default_factory=list)
    gone: bool = Field(default=False, description="Deleted by retention; the record stays.")


class Loss(_Frozen):
    """Data a release command would lose, found by its rehearsal on a scratch copy."""

    database: str
    table: str
    column: str | None = None
    rows: int = Field(description="Rows lost (for a dropped table or column: the rows it held).")
    what: str = Field(description="In words: 'table notes (3 rows) dropped'.")
    second_run: bool = Field(default=False, description="Found only when the command ran a second time.")


class Rehearsal(_Frozen):
    """What running a release command on a scratch copy of the data showed."""

    seconds: float
    losses: list[Loss] = Field(default_factory=list)
    acknowledged: list[Loss] = Field(default_factory=list, description="Losses the plan allowed.")
    notes: list[str] = Field(default_factory=list, description="Other changes (added tables, columns, rows).")
    second_run_skipped: bool = Field(default=False, description="The first run changed nothing in the copy (every "
                                     "file byte-identical), so the second, which would have started from the "
                                     "same, did not run.")


class ReleaseData(_Frozen):
    """What a release recorded about the data: the snapshot before its release command, the schema after."""

    backup: Backup | None = None
    rehearsal: Rehearsal | None = None
    schemas: dict[str, DatabaseSchema] = Field(default_factory=dict, description="Per database, after the "
                                                                                  "release command.")
