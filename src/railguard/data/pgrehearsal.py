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
other database of the server (:func:`fence`: the server's pg_hba.conf rejects it on any other database, and
CONNECT is revoked from PUBLIC on every other database and granted to the app's role by name). The server
refuses such a command (``pg_hba.conf rejects connection``, else ``permission denied for database``), and the
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
# What the server says to the rehearsal role on another database: pg_hba.conf's rejection (checked first), or
# the missing CONNECT privilege (libpq, psycopg, asyncpg all pass either on).
_DENIED = re.compile(r'(?:permission denied for database|pg_hba\.conf rejects connection for host "[^"]*", '
                     r'user "[^"]*", database) "((?:[^"]|"")+)"')
# Every database a session can open except the scratch copies: what the rehearsal role must not reach.
_OTHERS = "datallowconn AND datname NOT LIKE '%\\_\\_rehearsal'"


def role_script(password: str) -> str:
    """As the admin, in ``postgres``: the rehearsal role (login, nothing more: no superuser, no CREATEDB or
    CREATEROLE, member of no role, so never of the app's, whose real database it could then reach), with
    ``password`` (a SCRAM verifier: the password itself never reaches the server's log). Idempotent; run again
    before every rehearsal, since a rehearsal's command may change its own role's password or settings."""
    return rf"""
SELECT format('CREATE ROLE %I LOGIN', '{REHEARSE}')
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{REHEARSE}')
\gexec
ALTER ROLE "{REHEARSE}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT
  CONNECTION LIMIT -1 PASSWORD '{scram_verifier(password)}';
ALTER ROLE "{REHEARSE}" RESET ALL;
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
{grant}SELECT 'left:' || coalesce(string_agg(datname, ', ' ORDER BY datname), '') FROM pg_database
  WHERE {_OTHERS} AND has_database_privilege('{REHEARSE}', oid, 'CONNECT');
"""


# The server's pg_hba.conf: initdb's (scram-sha-256 for all, on the socket and loopback), with the rehearsal role
# let in to the scratch copies only (a database name starting with '/' is a regular expression) and rejected
# everywhere else. The first matching line decides, so the role's lines come first. The app (no superuser)
# cannot change this file, unlike a database's CONNECT privilege, which its owner (the app) can grant again at
# any moment, between the fence's check and the rehearsal's connection included.
HBA = [f"{kind} {database} {role} {where} {method}".replace("  ", " ")
       for kind, database, role, where, method in (
           ("local", f"/{SUFFIX}$", REHEARSE, "", "scram-sha-256"),
           ("host", f"/{SUFFIX}$", REHEARSE, "127.0.0.1/32", "scram-sha-256"),
           ("host", f"/{SUFFIX}$", REHEARSE, "::1/128", "scram-sha-256"),
           ("local", "all", REHEARSE, "", "reject"),
           ("host", "all", REHEARSE, "all", "reject"),
           ("local", "all", "all", "", "scram-sha-256"),
           ("host", "all", "all", "127.0.0.1/32", "scram-sha-256"),
           ("host", "all", "all", "::1/128", "scram-sha-256"),
           ("local", "replication", "all", "", "scram-sha-256"),
           ("host", "replication", "all", "127.0.0.1/32", "scram-sha-256"),
           ("host", "replication", "all", "::1/128", "scram-sha-256"))]
_HBA_CHECK = f"""SELECT 'hba ' || count(*) FILTER (WHERE error IS NOT NULL) || ' ' || count(*) FILTER (
  WHERE '{REHEARSE}' = ANY(user_name) AND auth_method = 'reject' AND 'all' = ANY(database)) || ' ' || coalesce(
  (SELECT min(rule_number) FROM pg_hba_file_rules WHERE NOT ('{REHEARSE}' = ANY(user_name))), 0) || ' ' || coalesce(
  (SELECT max(rule_number) FROM pg_hba_file_rules WHERE '{REHEARSE}' = ANY(user_name)), 0)
FROM pg_hba_file_rules;
"""


def _hba_script() -> str:
    """Write :data:`HBA` as the server's pg_hba.conf when the file differs, and reload: through the server (the
    file is its OS user's, so root never writes into its folder). COPY writes one line per row, verbatim (no
    line holds a backslash or a tab)."""
    lines = ", ".join(postgres.quote_literal(line) for line in HBA)
    expected = postgres.quote_literal("".join(f"{line}\n" for line in HBA))
    return rf"""
SELECT format('COPY (SELECT unnest(%L::text[])) TO %L', ARRAY[{lines}]::text, current_setting('hba_file')),
       'SELECT pg_reload_conf() IS NULL'
  WHERE pg_read_file(current_setting('hba_file')) IS DISTINCT FROM {expected}
\gexec
"""


def fence(cluster: Cluster) -> None:
    """The rehearsal role may connect to the scratch copies and nothing else, by two locks: the server's
    pg_hba.conf lets it into ``*__rehearsal`` databases only (:data:`HBA`: the app cannot change it), and
    CONNECT is revoked from PUBLIC (and from that role) on every other database, granted to the app's role by
    name so the app keeps its own. The role itself is set up again first (:func:`role_script`). Checked
    afterwards (what the server parsed of the file, who may CONNECT), in one psql session. Run as the admin at
    every apply and restart and before every rehearsal (the app owns its database: it may have granted CONNECT
    again). Raises :class:`PostgresError` when the role could still reach another database."""
    role = role_script(cluster.rehearse_password) if cluster.rehearse_password is not None else ""
    said = cluster._client("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-f", "-",
                           script=role + _hba_script() + _HBA_CHECK
                           + _fence_script(ROLE if cluster.app_password is not None else None),
                           options="-c search_path=pg_catalog").splitlines()
    hba = next((ln.split()[1:] for ln in said if ln.startswith("hba ")), None)
    left = next((ln[len("left:"):].strip() for ln in said if ln.startswith("left:")), "?")
    if hba is None or len(hba) != 4:
        raise PostgresError(f"the server's pg_hba.conf could not be read back: {' | '.join(said)[-200:]}")
    errors, rejects, first_other, last_ours = (int(n) for n in hba)
    if errors or not rejects or (last_ours and first_other and last_ours > first_other):
        raise PostgresError("the server's pg_hba.conf does not keep the rehearsal role to its scratch copies "
                            f"({errors} line(s) in error)")
    if left:
        raise PostgresError(f"the rehearsal role {REHEARSE} can still connect to {left}")


def reached_real(lines: list[str]) -> str | None:
    """The real database a rehearsal's command tried to open (the server rejected the rehearsal role on a
    database that is not a scratch copy), from its log's last lines; None when it did not."""
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
