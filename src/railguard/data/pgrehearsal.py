"""Rehearsals on Postgres: the release command runs against a scratch database copied from the snapshot.

For each Postgres database a service uses, ``<name>__rehearsal`` is made on the same server while the snapshot
is written (:meth:`railguard.data.postgres.Cluster.dump` streams pg_dump into the file and into a pg_restore
at once), the rehearsal's URL points there instead of at the real database, and the shape of every table
(its columns and rows: one query per database and phase, :func:`shape`) is compared right after the copy,
after the first and after the second run with the same rules as SQLite's (:mod:`railguard.data.loss`): a
dropped table, a dropped column or fewer rows is a :class:`~railguard.model.data.Loss`; a rename (as many
columns come as go, no row lost) is not. The scratch databases are dropped after the verdict, on a thread of
their own (:func:`cleanup`): the release goes on meanwhile; the next copy waits for that drop, drops any
leftover itself, and a restarted daemon drops what a killed one left (:func:`sweep`).

The release command is the app's own code, and the app is not trusted: a command that ignores the scratch URL
(a database name written in its code, another variable) must not reach the real database while it is only
rehearsed. So the rehearsal connects as a role of its own, ``rg_rehearse`` (:data:`~railguard.data.postgres.
REHEARSE`, its password in the secret store like the others): it owns the scratch copies, and may CONNECT to no
other database of the server (:func:`fence`: CONNECT revoked from PUBLIC on every other database and granted to
the app's role by name). The server refuses such a command with ``permission denied for database``, and the
rehearsal fails with :data:`REACHED` (:func:`reached_real`). :func:`role_script` makes the role (every apply,
adoption and restart, from :mod:`railguard.providers.local.dbservers`); :func:`fence` runs there and again
before every rehearsal, since the app owns its real database and could have granted CONNECT back.

Called by :mod:`railguard.data.snapshots`, :mod:`railguard.providers.local.databases` and
:mod:`railguard.providers.local.dbservers`; :func:`shape` also by the doctor's Postgres scratch.
"""

from __future__ import annotations

import json
import re
import threading

from railguard.data import loss, postgres
from railguard.data.postgres import REHEARSE, ROLE, USER_SCHEMAS, Cluster, PostgresError, scram_verifier
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

REACHED = "data.rehearsal_reached_real_database"
# What the server says to a role without CONNECT on a database (libpq, psycopg, asyncpg all pass it on).
_DENIED = re.compile(r'permission denied for database "((?:[^"]|"")+)"')
# Every database a session can open except the scratch copies: what the rehearsal role must not reach.
_OTHERS = "datallowconn AND datname NOT LIKE '%\\_\\_rehearsal'"


def role_script(password: str) -> str:
    """As the admin, in ``postgres``: the rehearsal role (login, nothing more: no superuser, no CREATEDB or
    CREATEROLE, member of no role, so never of the app's, whose real database it could then reach), with
    ``password`` (a SCRAM verifier: the password itself never reaches the server's log). Idempotent."""
    return rf"""
SELECT format('CREATE ROLE %I LOGIN', '{REHEARSE}')
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{REHEARSE}')
\gexec
ALTER ROLE "{REHEARSE}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT
  PASSWORD '{scram_verifier(password)}';
"""


def _fence_script(app_role: str | None) -> str:
    # A superuser's REVOKE acts as the database's owner, so it removes what the owner (the app) granted too;
    # CASCADE removes what the rehearsal role passed on from a grant option it was given.
    grant = (rf"""SELECT format('GRANT CONNECT ON DATABASE %I TO %I', datname, '{app_role}') FROM pg_database
  WHERE {_OTHERS}
\gexec
""" if app_role else "")
    return rf"""
SELECT format('REVOKE %I FROM %I GRANTED BY %I CASCADE', g.rolname, m.rolname, b.rolname)
  FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member
  JOIN pg_roles b ON b.oid = a.grantor WHERE m.rolname = '{REHEARSE}'
\gexec
SELECT format('REVOKE CONNECT ON DATABASE %I FROM PUBLIC, %I CASCADE', datname, '{REHEARSE}') FROM pg_database
  WHERE {_OTHERS}
\gexec
{grant}SELECT coalesce(string_agg(datname, ', ' ORDER BY datname), '') FROM pg_database
  WHERE {_OTHERS} AND has_database_privilege('{REHEARSE}', oid, 'CONNECT');
"""


def fence(cluster: Cluster) -> None:
    """The rehearsal role may CONNECT to the scratch copies and nothing else: CONNECT revoked from PUBLIC (and
    from that role) on every other database, granted to the app's role by name so the app keeps its own; checked
    afterwards. Run as the admin at every apply and restart and before every rehearsal (the app owns its
    database: it may have granted CONNECT to PUBLIC again). Raises :class:`PostgresError` when the role can
    still reach another database."""
    said = cluster._client("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-f", "-",
                           script=_fence_script(ROLE if cluster.app_password is not None else None),
                           options="-c search_path=pg_catalog").strip().splitlines()
    left = said[-1].strip() if said else ""
    if left:
        raise PostgresError(f"the rehearsal role {REHEARSE} can still connect to {left}")


def reached_real(lines: list[str]) -> str | None:
    """The real database a rehearsal's command tried to open (the server said ``permission denied for database``
    for a database that is not a scratch copy), from its log's last lines; None when it did not."""
    for line in lines:
        for found in _DENIED.findall(line):
            name = str(found).replace('""', '"')
            if not name.endswith(SUFFIX):
                return name
    return None


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
