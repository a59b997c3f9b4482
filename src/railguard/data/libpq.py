"""libpq's own variables (``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGPASSWORD``, ``PGDATABASE``) for a database URL.

Many apps and libraries (psql, pg_dump, psycopg with an empty conninfo, asyncpg, Django settings that read
``PGHOST``...) connect through these rather than ``DATABASE_URL``. A service that uses exactly one Postgres
database gets both, always describing the same database, wherever its URL is handed out: its replicas and
one-off commands (providers/local/dbservers.py), its release command's rehearsal on a scratch copy
(providers/local/databases.py: the copy's, never the real one's) and the doctor's scratch runs
(doctor/pgscratch.py). The password is the URL's, which the secret store holds, so the same redaction hides it.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

NAMES = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")


def variables(url: str) -> dict[str, str]:
    """The libpq variables naming the same server, role, password and database as ``url`` (postgresql://)."""
    parts = urlsplit(url)
    found = {"PGHOST": parts.hostname or "", "PGPORT": str(parts.port or 5432),
             "PGUSER": unquote(parts.username or ""), "PGPASSWORD": unquote(parts.password or ""),
             "PGDATABASE": unquote(parts.path.lstrip("/"))}
    return {k: v for k, v in found.items() if v}


def add_to(values: dict[str, str], postgres: list[str]) -> dict[str, str]:
    """``values`` (variable → URL) plus the libpq variables of the one Postgres URL among them.

    ``postgres``: the variables of ``values`` that hold a Postgres URL. With two or more there is no one
    database for PG* to name, so none is set (each URL still is)."""
    if len(postgres) != 1:
        return values
    return {**values, **variables(values[postgres[0]])}
