"""Rehearsals on Postgres: the release command runs against a scratch database restored from the snapshot.

For each Postgres database a service uses, the snapshot's dump is restored into ``<name>__rehearsal`` on the
same server (same role and password), the rehearsal's URL points there instead of at the real database, and
the shape of every table (its columns and rows) is compared right after the restore, after the first and
after the second run with the same rules as SQLite's (:mod:`railguard.data.loss`): a dropped table, a
dropped column or fewer rows is a :class:`~railguard.model.data.Loss`; a rename (as many columns come as go,
no row lost) is not. The scratch databases are dropped afterwards. Called by
:mod:`railguard.providers.local.databases`; :func:`shape` also by the doctor's Postgres scratch.
"""

from __future__ import annotations

from pathlib import Path

from railguard.data import loss, postgres
from railguard.data.postgres import Cluster
from railguard.data.sqlite import TableShape
from railguard.model.data import Loss

Tables = loss.Shapes  # database -> table -> shape (columns and rows)


def scratch_name(database: str) -> str:
    return f"{database}__rehearsal"


def prepare(clusters: dict[str, Cluster], dumps: dict[str, Path]) -> dict[str, str]:
    """Restore each dump into its scratch database; returns database -> the scratch database's URL."""
    urls = {}
    for name, cluster in clusters.items():
        cluster.restore(scratch_name(name), dumps[name])
        urls[name] = cluster.url(scratch_name(name))
    return urls


def shape(cluster: Cluster, database: str) -> dict[str, TableShape]:
    """Every base table of the app's schemas (``schema.table`` outside ``public``): its columns in order and its
    exact row count."""
    columns = postgres.user_columns(cluster, database)
    rows = postgres.row_counts(cluster, database, list(columns))
    return {postgres.table_key(*t): TableShape(tuple(cols), rows.get(t, 0), "") for t, cols in sorted(columns.items())}


def shapes(clusters: dict[str, Cluster]) -> Tables:
    return {name: shape(cluster, scratch_name(name)) for name, cluster in clusters.items()}


def losses(before: Tables, after: Tables, second_run: bool = False) -> list[Loss]:
    """Tables, columns and rows lost between two shapes (the SQLite rehearsal's rules, per database)."""
    return loss.losses(before, after, second_run)


def notes(before: Tables, first: Tables, second: Tables) -> list[str]:
    """What the runs added (tables, columns, rows) and what a second run changed: for the journal."""
    return loss.additions(before, first) + loss.changed(first, second)


def cleanup(clusters: dict[str, Cluster]) -> None:
    for name, cluster in clusters.items():
        cluster.sql(f'DROP DATABASE IF EXISTS "{scratch_name(name)}" WITH (FORCE)')
