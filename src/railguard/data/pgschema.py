"""The schema of a Postgres database, in the same shape as SQLite's: what the rollback rule compares.

Ordered tables of the ``public`` schema with their columns and types, the indexes, and the migration head
where a framework keeps one (Django's ``django_migrations``, Alembic's ``alembic_version``). Recorded on each
release after its release command, and on each snapshot, under the key ``postgres/<name>``. Called by
:mod:`railguard.data.snapshots` and :mod:`railguard.providers.local.databases`.
"""

from __future__ import annotations

import json

from railguard.data.postgres import Cluster, PostgresError
from railguard.model.data import DatabaseSchema, TableSchema


def key(database: str) -> str:
    return f"postgres/{database}"


def schema(cluster: Cluster, database: str) -> DatabaseSchema:
    tables: dict[str, list[tuple[str, str]]] = {}
    required: dict[str, list[str]] = {}
    # JSON rows: a name may hold '|' or a newline, which psql's plain output would split on.
    for line in cluster.sql("SELECT json_build_array(table_name, column_name, (is_nullable = 'NO' AND column_default "
                            "IS NULL AND is_identity = 'NO' AND is_generated = 'NEVER'), upper(data_type)) FROM "
                            "information_schema.columns WHERE table_schema = 'public' "
                            "ORDER BY table_name, ordinal_position", database).splitlines():
        if line:
            table, column, needed, kind = json.loads(line)
            tables.setdefault(table, []).append((column, kind))
            if needed:  # NOT NULL without a default: an INSERT that does not name it fails
                required.setdefault(table, []).append(column)
    indexes = dict(json.loads(line) for line in cluster.sql(
        "SELECT json_build_array(indexname, tablename) FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname",
        database).splitlines() if line)
    return DatabaseSchema(tables={t: TableSchema(columns=c, required=required.get(t, []))
                                  for t, c in sorted(tables.items())}, indexes=indexes,
                          head=_head(cluster, database, tables))


def _head(cluster: Cluster, database: str, tables: dict[str, list[tuple[str, str]]]) -> str | None:
    try:
        if "django_migrations" in tables:
            row = cluster.sql("SELECT app || '.' || name FROM django_migrations ORDER BY id DESC LIMIT 1", database)
            return f"django:{row.strip()}" if row.strip() else None
        if "alembic_version" in tables:
            row = cluster.sql("SELECT version_num FROM alembic_version LIMIT 1", database)
            return f"alembic:{row.strip()}" if row.strip() else None
    except PostgresError:
        return None
    return None
