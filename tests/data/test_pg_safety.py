"""What a hostile app (or an agent-written fixture) can do through a managed Postgres, and what it must not reach:
root's shell through psql's meta-commands, the daemon's environment through the server's, a socket folder
another user made, a snapshot skipped by tables outside ``public``. The session's real Postgres (conftest.py)
and real processes."""

from __future__ import annotations

import os
import pwd
import secrets
import tempfile
from pathlib import Path

import pytest

from railguard.data import snapshots
from railguard.data.postgres import Cluster, PostgresError, bin_dir, quote_literal
from railguard.providers.local import artifacts
from railguard.providers.local.dbservers import DatabaseServers
from railguard.providers.local.replicas import Failure

from .conftest import free_port
from .test_dbservers import _apply
from .test_pg_rehearsal import _release, artifact  # noqa: F401 (artifact: fixture)

pytestmark = pytest.mark.skipif(bin_dir() is None, reason="the postgres extra is not installed")


def _db(cluster: Cluster, prefix: str) -> str:
    name = f"{prefix}_{secrets.token_hex(4)}"
    cluster.sql(f'CREATE DATABASE "{name}"')
    return name


def test_a_sql_fixture_runs_psql_meta_commands_as_the_servers_user_never_root(
        cluster: Cluster, session_temp_folder: Path) -> None:
    if os.geteuid() != 0 or cluster.user is None:
        pytest.skip("the server runs as another user only when started by root")
    private = Path(tempfile.mkdtemp(dir=session_temp_folder))  # root's 0700: the fixture file needs no right
    out = Path(tempfile.mkdtemp(dir=session_temp_folder))
    for parent in [out, *out.parents]:
        parent.chmod(parent.stat().st_mode | 0o001)
    out.chmod(0o777)
    fixture = private / "fixture.sql"
    fixture.write_text(f"CREATE TABLE t (a int);\nINSERT INTO t VALUES (7);\n\\! id -u > {out}/who\n")
    name = _db(cluster, "fixt")
    try:
        cluster.sql_file(fixture, name)
        assert cluster.sql("SELECT a FROM t", name).strip() == "7"
        assert (out / "who").read_text().strip() == str(cluster.user.pw_uid) != "0"
        assert (out / "who").stat().st_uid == cluster.user.pw_uid
    finally:
        cluster.sql(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.mark.timeout(300)
def test_tables_outside_public_are_snapshotted_and_their_loss_stops_the_release(
        cluster: Cluster, artifact: artifacts.Artifact, tmp_path: Path) -> None:  # noqa: F811
    db = _db(cluster, "schemas")
    cluster.sql("CREATE SCHEMA app; CREATE TABLE app.notes (id int, body text); "
                "INSERT INTO app.notes VALUES (1, 'a'), (2, 'b')", db)  # nothing at all in public
    try:
        with pytest.raises(Failure) as stopped:
            _release(cluster, db, artifact, tmp_path, "DROP TABLE IF EXISTS app.notes", [], 2)
        assert stopped.value.code == "data.loss_detected" and "app.notes" in stopped.value.summary, stopped.value.cause
        assert cluster.sql("SELECT count(*) FROM app.notes", db).strip() == "2"  # the real run never happened
        backup = snapshots.load(tmp_path / "home" / "backups" / "staging", stopped.value.extra["backup"])
        assert backup.files[0].tables == {"app.notes": 2}
    finally:
        cluster.sql(f'DROP DATABASE "{db}" WITH (FORCE)')


@pytest.mark.timeout(300)
def test_a_table_name_with_a_quote_breaks_no_snapshot(cluster: Cluster, artifact: artifacts.Artifact,  # noqa: F811
                                                      tmp_path: Path) -> None:
    db = _db(cluster, "quotes")
    cluster.sql("""CREATE TABLE "a'" (x int); INSERT INTO "a'" VALUES (1); CREATE TABLE "b""|c
d" (y int); INSERT INTO "b""|c
d" VALUES (1), (2)""", db)
    try:
        details = _release(cluster, db, artifact, tmp_path, "SELECT 1", [], 3)
        backup = details["snapshot"]["data"]["backup"]
        assert backup["files"][0]["tables"] == {"a'": 1, 'b"|c\nd': 2}
        assert details["rehearse"]["data"]["rehearsal"]["losses"] == []
    finally:
        cluster.sql(f'DROP DATABASE "{db}" WITH (FORCE)')


@pytest.mark.timeout(300)
def test_a_postmaster_pid_a_superuser_app_rewrites_never_makes_the_daemon_stop_another_server(
        reachable_tmp: Path) -> None:
    store: dict[tuple[str, str], str] = {}
    servers = DatabaseServers(reachable_tmp, lambda env, names: {n: store[(env, n)] for n in names
                                                                  if (env, n) in store},
                              lambda env, name, value: store.__setitem__((env, name), value),
                              isolated=os.geteuid() == 0)
    try:
        _apply(servers, "staging")
        _apply(servers, "production")
        staging, production = servers.cluster("staging", "main"), servers.cluster("production", "main")
        assert production.pid is not None
        # Staging's app is a superuser of its server: it writes production's pid into its own postmaster.pid.
        pidfile = staging.pgdata / "postmaster.pid"
        staging.sql(f"COPY (SELECT '{production.pid}') TO {quote_literal(str(pidfile))}", "main")
        assert pidfile.read_text().strip() == str(production.pid)
        restarted = DatabaseServers(reachable_tmp, servers.secret_values, servers.store_secret,
                                    isolated=os.geteuid() == 0)  # a restarted daemon: it only has the file
        adopted = restarted.cluster("staging", "main")
        assert restarted._pid(adopted) is None
        restarted._stop(adopted)
        assert production.process is not None and production.process.poll() is None
        assert production.healthy()
    finally:
        servers.stop_all()


@pytest.mark.timeout(300)
def test_the_server_gets_an_allow_listed_environment_never_the_daemons(
        reachable_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAEMON_ONLY_TOKEN", "s3cret-daemon-token")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cret-cloud-key")
    server = Cluster(reachable_tmp / "envcheck", free_port(), secrets.token_urlsafe(16))
    try:
        server.init()
        server.start()
        assert server.pid is not None
        # What a superuser app reads: the environment the server hands down to a program it runs.
        seen = server.sql("CREATE TEMP TABLE e (line text); COPY e FROM PROGRAM 'env'; "
                          "SELECT string_agg(line, ' ') FROM e")
        assert "s3cret" not in seen and "PATH=" in seen
        names = {line.split("=", 1)[0] for line in Path(f"/proc/{server.pid}/environ").read_bytes()
                 .decode().split("\0") if line}
        assert names <= {"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TZDIR", "PGDATA", "PG_GRANDPARENT_PID",
                         "PGLOCALEDIR", "PGSYSCONFDIR"} | {n for n in names if n.startswith("LC_")}, names
    finally:
        server.remove()


@pytest.mark.timeout(300)
def test_a_socket_folder_another_user_made_first_is_refused(reachable_tmp: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("making a folder as another user needs root")
    deep = reachable_tmp / ("d" * 90)  # too long for a socket path: the folder goes to /tmp
    server = Cluster(deep, free_port(), secrets.token_urlsafe(16))
    assert str(server.socket_dir).startswith("/tmp/")
    squatter = pwd.getpwnam("nobody")
    server.socket_dir.mkdir(mode=0o777)
    os.chown(server.socket_dir, squatter.pw_uid, squatter.pw_gid)
    try:
        server.init()
        with pytest.raises(PostgresError, match="not this server's"):
            server.start()
        assert server.pid is None and server.socket_dir.stat().st_uid == squatter.pw_uid
    finally:
        server.remove()  # its socket folder too


@pytest.mark.timeout(300)
def test_a_failed_postgres_rehearsal_does_not_claim_the_real_database_was_out_of_reach(
        cluster: Cluster, artifact: artifacts.Artifact, tmp_path: Path) -> None:  # noqa: F811
    db = _db(cluster, "honest")
    cluster.sql("CREATE TABLE notes (id int); INSERT INTO notes VALUES (1)", db)
    try:
        with pytest.raises(Failure) as failed:
            _release(cluster, db, artifact, tmp_path, "SELECT * FROM missing_table", [], 2)
        assert failed.value.code == "data.rehearsal_failed"
        assert "not touched" not in failed.value.cause and "real database's role" in failed.value.cause
    finally:
        cluster.sql(f'DROP DATABASE "{db}" WITH (FORCE)')
