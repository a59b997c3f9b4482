"""Rehearsals on Postgres: the release command runs against a scratch database restored from the snapshot.

For each Postgres database a service uses, the snapshot's dump is restored into ``<name>__rehearsal`` on the
same server (same role and password), the rehearsal's URL points there instead of at the real database, and
the rows per table are compared before, after the first and after the second run: a dropped table or fewer
rows is a :class:`~railguard.model.data.Loss`, as for SQLite. The scratch databases are dropped afterwards.
Called by :mod:`railguard.providers.local.databases`.
"""

from __future__ import annotations

from pathlib import Path

from railguard.data.postgres import Cluster
from railguard.data.snapshots import postgres_tables
from railguard.model.data import Loss

Tables = dict[str, dict[str, int]]  # database -> table -> rows


def scratch_name(database: str) -> str:
    return f"{database}__rehearsal"


def prepare(clusters: dict[str, Cluster], dumps: dict[str, Path]) -> dict[str, str]:
    """Restore each dump into its scratch database; returns database -> the scratch database's URL."""
    urls = {}
    for name, cluster in clusters.items():
        cluster.restore(scratch_name(name), dumps[name])
        urls[name] = cluster.url(scratch_name(name))
    return urls


def shapes(clusters: dict[str, Cluster]) -> Tables:
    return {name: postgres_tables(cluster, scratch_name(name)) for name, cluster in clusters.items()}


def losses(before: Tables, after: Tables, second_run: bool = False) -> list[Loss]:
    found = []
    for database, tables in sorted(before.items()):
        now = after.get(database, {})
        for table, rows in sorted(tables.items()):
            if table not in now:
                found.append(Loss(database=database, table=table, rows=rows, second_run=second_run,
                                  what=f"{database}: table {table} ({rows} rows) dropped"))
            elif now[table] < rows:
                found.append(Loss(database=database, table=table, rows=rows - now[table], second_run=second_run,
                                  what=f"{database}: {rows - now[table]} of {rows} rows of {table} deleted"))
    return found


def cleanup(clusters: dict[str, Cluster]) -> None:
    for name, cluster in clusters.items():
        cluster.sql(f'DROP DATABASE IF EXISTS "{scratch_name(name)}" WITH (FORCE)')
