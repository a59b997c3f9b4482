"""Rehearsals on Postgres: the release command runs against a scratch database copied from the snapshot.

For each Postgres database a service uses, ``<name>__rehearsal`` is made on the same server while the snapshot
is written (:meth:`railguard.data.postgres.Cluster.dump` streams pg_dump into the file and into a pg_restore
at once), the rehearsal's URL points there instead of at the real database, and the shape of every table
(its columns and rows: one query per database and phase, :func:`shape`) is compared right after the copy,
after the first and after the second run with the same rules as SQLite's (:mod:`railguard.data.loss`): a
dropped table, a dropped column or fewer rows is a :class:`~railguard.model.data.Loss`; a rename (as many
columns come as go, no row lost) is not. The scratch databases are dropped after the verdict, on a thread of
their own (:func:`cleanup`): the release goes on meanwhile; the next copy waits for that drop, drops any
leftover itself, and a restarted daemon drops what a killed one left (:func:`sweep`). Called by
:mod:`railguard.data.snapshots` and :mod:`railguard.providers.local.databases`; :func:`shape` also by the
doctor's Postgres scratch.
"""

from __future__ import annotations

import json
import threading

from railguard.data import loss, postgres
from railguard.data.postgres import USER_SCHEMAS, Cluster, PostgresError
from railguard.data.sqlite import TableShape
from railguard.model.data import Loss

Tables = loss.Shapes  # database -> table -> shape (columns and rows)
SUFFIX = "__rehearsal"

# Every base table of the app's schemas (not the server's own; partitioned ones too) with its columns in order and
# its exact row count, as one JSON value in one psql session: the first query writes the counting query (one
# sub-select per table, each name quoted by format()) and psql's \gexec runs it. A table outside ``public`` is
# ``schema.table`` (postgres.table_key).
SHAPE = """SELECT 'SELECT coalesce(json_object_agg(t, json_build_array(c, n)), ''{}'') FROM ('
  || coalesce(string_agg(format('SELECT %L::text AS t, %L::json AS c, (SELECT pg_catalog.count(*) FROM %I.%I) AS n',
                                CASE WHEN nspname = 'public' THEN relname ELSE nspname || '.' || relname END, cols,
                                nspname, relname), ' UNION ALL '),
              'SELECT NULL::text AS t, NULL::json AS c, NULL::bigint AS n WHERE false')
  || ') s'
FROM (SELECT n.nspname, c.relname, (SELECT coalesce(json_agg(a.attname ORDER BY a.attnum), '[]')::text
                                    FROM pg_catalog.pg_attribute a
                                    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS cols
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE """ + USER_SCHEMAS.format(col="n.nspname") + """ AND c.relkind IN ('r', 'p')) tables
\\gexec
"""
HAS_TABLES = ("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON "
              "n.oid = c.relnamespace WHERE " + USER_SCHEMAS.format(col="n.nspname") + " AND c.relkind IN ('r', 'p'))")

_drops: dict[tuple[str, str], threading.Thread] = {}  # (cluster folder, scratch database) -> its pending drop
_drops_lock = threading.Lock()


def scratch_name(database: str) -> str:
    return f"{database}{SUFFIX}"


def has_tables(cluster: Cluster, database: str) -> bool:
    """Whether ``database`` holds a table to protect (a first deploy's empty database does not)."""
    return cluster.inspect(HAS_TABLES, database).strip() == "t"


def shape(cluster: Cluster, database: str) -> dict[str, TableShape]:
    """Every base table of the app's schemas (``schema.table`` outside ``public``): its columns in order and
    its exact row count, in one round trip."""
    found = json.loads(cluster.inspect(SHAPE, database, script=True).strip() or "{}")
    return {t: TableShape(tuple(cols), int(rows or 0), "") for t, (cols, rows) in sorted(found.items())}


def shapes(clusters: dict[str, Cluster]) -> Tables:
    return {name: shape(cluster, scratch_name(name)) for name, cluster in clusters.items()}


def losses(before: Tables, after: Tables, second_run: bool = False) -> list[Loss]:
    """Tables, columns and rows lost between two shapes (the SQLite rehearsal's rules, per database)."""
    return loss.losses(before, after, second_run)


def notes(before: Tables, first: Tables, second: Tables) -> list[str]:
    """What the runs added (tables, columns, rows) and what a second run changed: for the journal."""
    return loss.additions(before, first) + loss.changed(first, second)


def wait_for_drop(cluster: Cluster, database: str) -> None:
    """Before a scratch database is made again: the previous rehearsal's drop of it has finished."""
    with _drops_lock:
        pending = _drops.pop((str(cluster.folder), database), None)
    if pending is not None:
        pending.join()


def _drop(cluster: Cluster, database: str) -> None:
    try:
        cluster.sql(f"DROP DATABASE IF EXISTS {postgres.quote_ident(database)} WITH (FORCE)")
    except PostgresError:
        pass  # dropped again before the next copy (Cluster.dump) or by the next daemon's sweep


def cleanup(clusters: dict[str, Cluster], wait: bool = False) -> None:
    """Drop the scratch databases; on a thread of their own unless ``wait`` (the verdict does not need them)."""
    for name, cluster in clusters.items():
        database = scratch_name(name)
        wait_for_drop(cluster, database)
        if wait:
            _drop(cluster, database)
            continue
        thread = threading.Thread(target=_drop, args=(cluster, database), name=f"drop {database}", daemon=True)
        with _drops_lock:
            _drops[(str(cluster.folder), database)] = thread
        thread.start()


def sweep(cluster: Cluster) -> list[str]:
    """Drop every rehearsal database a killed daemon left on ``cluster`` (run at adoption)."""
    names = [n for n in cluster.inspect("SELECT datname FROM pg_catalog.pg_database", "postgres").split()
             if n.endswith(SUFFIX)]
    for name in names:
        _drop(cluster, name)
    return names
