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


# The columns (with information_schema's type names: what earlier releases recorded) and the indexes, in one
# round trip; the migration head needs a second query only where a framework's table exists.
SCHEMA = """SELECT json_build_object(
  'columns', (SELECT coalesce(json_agg(json_build_array(table_name, column_name, upper(data_type),
                                          is_nullable = 'NO' AND column_default IS NULL AND is_identity = 'NO'
                                          AND is_generated = 'NEVER')
                                       ORDER BY table_name, ordinal_position), '[]')
              FROM information_schema.columns WHERE table_schema = 'public'),
  'indexes', (SELECT coalesce(json_agg(json_build_array(indexname, tablename) ORDER BY indexname), '[]')
              FROM pg_catalog.pg_indexes WHERE schemaname = 'public'))"""


def schema(cluster: Cluster, database: str) -> DatabaseSchema:
    found = json.loads(cluster.inspect(SCHEMA, database))
    tables: dict[str, list[tuple[str, str]]] = {}
    required: dict[str, list[str]] = {}
    for table, column, kind, needed in found["columns"]:
        tables.setdefault(table, []).append((column, kind))
        if needed:  # NOT NULL without a default: an INSERT that does not name it fails
            required.setdefault(table, []).append(column)
    indexes = {name: table for name, table in found["indexes"]}
    return DatabaseSchema(tables={t: TableSchema(columns=c, required=required.get(t, []))
                                  for t, c in sorted(tables.items())}, indexes=indexes,
                          head=_head(cluster, database, tables))


def _head(cluster: Cluster, database: str, tables: dict[str, list[tuple[str, str]]]) -> str | None:
    try:
        if "django_migrations" in tables:
            row = cluster.inspect("SELECT app || '.' || name FROM public.django_migrations ORDER BY id DESC LIMIT 1",
                                  database)
            return f"django:{row.strip()}" if row.strip() else None
        if "alembic_version" in tables:
            row = cluster.inspect("SELECT version_num FROM public.alembic_version LIMIT 1", database)
            return f"alembic:{row.strip()}" if row.strip() else None
    except PostgresError:
        return None
    return None
