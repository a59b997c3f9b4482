"""The rehearsal connects as a role of its own, which the server lets into the scratch copies only: a release
command that ignores its DATABASE_URL and opens the real database by name is refused by Postgres during the
rehearsal (pg_hba.conf rejects the rehearsal role there, and CONNECT on the real database is not its either),
the release stops with its own diagnostic, and the real data is untouched; an ordinary migration (create,
alter, drop; a second run that changes nothing) still passes and then runs for real as the app's role. On the
session's real Postgres (conftest.py), with the roles a managed server gets (dbservers.secure), driven through
the local provider's data guard with a real artifact."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from railguard.data import pgrehearsal
from railguard.data.postgres import REHEARSE, ROLE, Cluster, bin_dir
from railguard.model.diagnostics import CODES
from railguard.model.plans import Action, Change, Risk
from railguard.providers.base import ApplyRequest
from railguard.providers.local import artifacts
from railguard.providers.local.databases import guarded_release
from railguard.providers.local.dbservers import secure
from railguard.providers.local.provider import REMEDIATION
from railguard.providers.local.replicas import Failure
from railguard.sources.snapshot import snapshot

from .test_pg_rehearsal import _step

pytestmark = pytest.mark.skipif(bin_dir() is None, reason="the postgres extra is not installed")

# The release command: psql on $DATABASE_URL, or (HOSTILE=1) on the same URL with the scratch suffix cut off,
# as a command that hard-codes its database's name would do. It prints no URL (what a command prints reaches
# log_tail, which the daemon's redactor cleans of every stored secret, this role's password too).
MIGRATE = """import os, subprocess, sys
url = os.environ["DATABASE_URL"]
if os.environ.get("HOSTILE") == "1":
    url = url.replace("__rehearsal", "")
if os.environ.get("OTHER_URL"):  # a second database the service uses (OTHER_SQL runs there first)
    subprocess.run([os.environ["PSQL"], os.environ["OTHER_URL"], "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                    os.environ["OTHER_SQL"]], check=True)
sys.exit(subprocess.run([os.environ["PSQL"], url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                         os.environ["MIGRATE_SQL"]]).returncode)
"""


@pytest.fixture
def artifact(tmp_path: Path) -> artifacts.Artifact:
    src = tmp_path / "src"
    src.mkdir()
    (src / "migrate.py").write_text(MIGRATE)
    return artifacts.ensure(tmp_path / "artifacts", src, snapshot(src).digest, None, {})


@pytest.fixture
def managed(cluster: Cluster) -> Cluster:
    """The session's server seen as a managed one: the app's role owning a database of its own, the rehearsal
    role, CONNECT fenced (what an apply does). The roles are server-wide; their passwords are this test's."""
    database = f"guarded_{secrets.token_hex(4)}"
    view = Cluster(cluster.folder, cluster.port, cluster.password, run_as=cluster.run_as,
                   app_password=secrets.token_urlsafe(18), rehearse_password=secrets.token_urlsafe(18))
    secure(view, database)
    view.database = database  # type: ignore[attr-defined]
    return view


def _psql(url: str, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bin_dir() / "psql"), url, "-X", "-Atq", "-v", "ON_ERROR_STOP=1", "-c", sql],  # type: ignore[operator]
                          capture_output=True, text=True, timeout=60, check=False)


def _release(cluster: Cluster, artifact: artifacts.Artifact, tmp_path: Path, sql: str, release: int,
             hostile: bool = False, other: tuple[str, str] | None = None) -> dict[str, Any]:
    """``other``: a second database of the service (on the same server here) and the SQL run there."""
    database = cluster.database  # type: ignore[attr-defined]
    _step.seen, _step.details = [], {}  # type: ignore[attr-defined]
    config = {"release": ["python", "migrate.py"], "start_timeout_ms": 60_000,
              "databases": {database: "DATABASE_URL", **({other[0]: "OTHER_URL"} if other else {})}}
    environ = {"PATH": artifacts.base_path(artifact.bin_dirs), "DATABASE_URL": cluster.app_url(database),
               "PSQL": str(cluster.bin / "psql"), "MIGRATE_SQL": sql, "HOSTILE": "1" if hostile else "0",
               **({"OTHER_URL": cluster.app_url(other[0]), "OTHER_SQL": other[1]} if other else {})}
    change = Change(address="staging/service.web", kind="service", action=Action.update, risk=Risk.disruptive,
                    reason="test", before_fingerprint="a", after_fingerprint="b")
    request = ApplyRequest(env="staging", change=change, desired=None, operation_id="op-1", release=release)
    guarded_release(request, home=tmp_path / "home", service="web", config=config, environ=environ,
                    artifact=artifact, data_dir=tmp_path / "data", log_dir=tmp_path / "logs", step=_step,
                    postgres={database: cluster, **({other[0]: cluster} if other else {})})
    return dict(_step.details)  # type: ignore[attr-defined]


@pytest.mark.timeout(300)
def test_a_release_command_that_opens_the_real_database_in_its_rehearsal_is_refused_by_the_server(
        managed: Cluster, artifact: artifacts.Artifact, tmp_path: Path) -> None:
    db = managed.database  # type: ignore[attr-defined]
    app = managed.app_url(db)
    assert _psql(app, "CREATE TABLE notes (id serial PRIMARY KEY, body text); "
                      "INSERT INTO notes (body) VALUES ('a'), ('b'), ('c')").returncode == 0
    # The app owns its database, so it can hand CONNECT to everyone again; the fence before the rehearsal undoes it.
    assert _psql(app, f'GRANT CONNECT ON DATABASE "{db}" TO PUBLIC').returncode == 0
    try:
        with pytest.raises(Failure) as stopped:
            _release(managed, artifact, tmp_path, "DELETE FROM notes; DROP TABLE notes", 2, hostile=True)
        failure = stopped.value
        assert failure.code == pgrehearsal.REACHED == "data.rehearsal_reached_real_database", failure
        assert failure.code in CODES and failure.code in REMEDIATION  # declared, with its remediation
        assert f"the real database '{db}'" in failure.summary, failure.summary
        assert "refused it" in failure.cause and "real data was not touched" in failure.cause, failure.cause
        assert failure.extra["database"] == db
        assert any(f'user "{REHEARSE}", database "{db}"' in line for line in failure.extra["log_tail"]), failure.extra
        # The second lock: the GRANT to PUBLIC the app made was revoked; the app's role got CONNECT by name.
        assert managed.sql(f"SELECT has_database_privilege('{REHEARSE}', '{db}', 'CONNECT'), "
                           f"has_database_privilege('{ROLE}', '{db}', 'CONNECT')").strip() == "f|t"
        assert managed.rehearse_password not in str(failure) + repr(failure.extra)  # never in a diagnostic
        assert managed.app_password not in str(failure) + repr(failure.extra)
        assert "release-command" not in _step.seen  # type: ignore[attr-defined]
        assert managed.sql("SELECT count(*) FROM notes", db).strip() == "3"  # the real rows are all there

        # The rehearsal role reaches no other database either; the app's role still reaches its own.
        rehearse = managed.rehearsal_url(db)
        assert rehearse.startswith(f"postgresql://{REHEARSE}:")
        for other in (db, "postgres", "template1"):
            denied = _psql(rehearse.rsplit("/", 1)[0] + f"/{other}", "SELECT 1")
            assert denied.returncode != 0 and "pg_hba.conf rejects connection" in denied.stderr, (other, denied)
        assert _psql(app, "SELECT current_user").stdout.strip() == ROLE
        # The app owns its database and may grant CONNECT to the rehearsal role itself at any moment (after the
        # fence's check, during a rehearsal): pg_hba.conf, which it cannot change, still refuses the role there.
        assert _psql(app, f'GRANT CONNECT ON DATABASE "{db}" TO PUBLIC, {REHEARSE}').returncode == 0
        denied = _psql(rehearse, "SELECT 1")
        assert denied.returncode != 0 and "pg_hba.conf rejects connection" in denied.stderr, denied
        # A membership in the app's role (only a superuser could grant it) is taken back by the next fence too.
        managed.sql(f"GRANT {ROLE} TO {REHEARSE}")
        pgrehearsal.fence(managed)
        assert managed.sql(f"SELECT pg_has_role('{REHEARSE}', '{ROLE}', 'MEMBER'), has_database_privilege("
                           f"'{REHEARSE}', '{db}', 'CONNECT')").strip() == "f|f"
    finally:
        pgrehearsal.wait_for_drop(managed, f"{db}__rehearsal")
        managed.sql(f'DROP DATABASE "{db}" WITH (FORCE)')


@pytest.mark.timeout(300)
def test_a_migration_creates_alters_and_drops_tables_in_its_rehearsal_then_runs_for_real_as_the_app(
        managed: Cluster, artifact: artifacts.Artifact, tmp_path: Path) -> None:
    db = managed.database  # type: ignore[attr-defined]
    assert _psql(managed.app_url(db), "CREATE TABLE notes (id serial PRIMARY KEY, body text); "
                                      "INSERT INTO notes (body) VALUES ('a'), ('b')").returncode == 0
    # Idempotent, as a migration tool's run is: a second run changes nothing. It records who ran it.
    migration = ("CREATE TABLE IF NOT EXISTS tags (id serial PRIMARY KEY, name text NOT NULL); "
                 "CREATE TABLE IF NOT EXISTS ran (who text PRIMARY KEY); "
                 "INSERT INTO ran VALUES (current_user) ON CONFLICT DO NOTHING; "
                 "ALTER TABLE notes ADD COLUMN IF NOT EXISTS tag_id int REFERENCES tags (id); "
                 "ALTER TABLE notes ALTER COLUMN body TYPE varchar(200); "
                 "CREATE INDEX IF NOT EXISTS notes_tag ON notes (tag_id); "
                 "CREATE TABLE IF NOT EXISTS tmp_build (x int); DROP TABLE tmp_build; "
                 "CREATE SCHEMA IF NOT EXISTS audit; CREATE TABLE IF NOT EXISTS audit.log (at timestamptz)")
    try:
        details = _release(managed, artifact, tmp_path, migration, 2)
        found = details["rehearse"]["data"]["rehearsal"]
        assert found["losses"] == [], found
        assert "release-command" in _step.seen  # type: ignore[attr-defined]
        # The real run: as the app's role, which owns what it made; the rehearsal ran as the rehearsal role only
        # on its copy (dropped since), so the real table names the app alone.
        assert managed.sql("SELECT who FROM ran", db).split() == [ROLE]
        assert managed.sql("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname IN ('public', 'audit')",
                           db).split() == [ROLE]
        assert managed.sql("SELECT count(*) FROM notes", db).strip() == "2"
        # The next release runs the same migration again: nothing to do, nothing lost.
        details = _release(managed, artifact, tmp_path, migration, 3)
        assert details["rehearse"]["data"]["rehearsal"]["losses"] == []
    finally:
        pgrehearsal.wait_for_drop(managed, f"{db}__rehearsal")
        managed.sql(f'DROP DATABASE "{db}" WITH (FORCE)')


@pytest.mark.timeout(300)
def test_the_rehearsals_copy_is_the_rehearsal_roles_and_a_server_without_that_role_refuses_to_rehearse(
        managed: Cluster, artifact: artifacts.Artifact, tmp_path: Path) -> None:
    db = managed.database  # type: ignore[attr-defined]
    assert _psql(managed.app_url(db), "CREATE TABLE notes (id int); INSERT INTO notes VALUES (1); "
                                      "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC").returncode == 0
    try:
        # The copy (made from the snapshot's stream) belongs to the rehearsal role, grants aside: a default
        # privilege FOR ROLE railguard would need the right to become the app's role, which it never gets.
        managed.dump(db, tmp_path / "snap.dump", f"{db}__rehearsal")
        owners = managed.sql(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{db}__rehearsal'")
        assert owners.strip() == REHEARSE
        assert managed.sql("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'",
                           f"{db}__rehearsal").split() == [REHEARSE]
        pgrehearsal.cleanup({db: managed}, wait=True)
        # A command may change its own role's password in its rehearsal (which breaks its second run); the next
        # rehearsal sets the role up again first, so the role stays Railguard's.
        hijack = ("DO $$ BEGIN IF current_user = 'rg_rehearse' THEN "
                  "EXECUTE 'ALTER ROLE rg_rehearse PASSWORD ''chosen-by-the-command'''; END IF; END $$")
        with pytest.raises(Failure) as broken:
            _release(managed, artifact, tmp_path, hijack, 2)
        assert broken.value.code == "data.rehearsal_failed", broken.value
        assert "second time" in broken.value.summary, broken.value
        details = _release(managed, artifact, tmp_path, "SELECT 1", 3)
        assert details["rehearse"]["data"]["rehearsal"]["losses"] == []
        # A server with the app's role but no rehearsal role (yet) never lends the app's role to a rehearsal.
        bare = Cluster(managed.folder, managed.port, managed.password, run_as=managed.run_as,
                       app_password=managed.app_password)
        bare.database = db  # type: ignore[attr-defined]
        with pytest.raises(Failure) as refused:
            _release(bare, artifact, tmp_path, "SELECT 1", 4)
        assert refused.value.code == "data.rehearsal_failed" and "no rehearsal role" in refused.value.cause
        assert "did not run" in refused.value.cause, refused.value.cause
        assert "release-command" not in _step.seen  # type: ignore[attr-defined]
    finally:
        pgrehearsal.wait_for_drop(managed, f"{db}__rehearsal")
        managed.sql(f'DROP DATABASE "{db}" WITH (FORCE)')


@pytest.mark.timeout(300)
def test_a_database_without_tables_yet_gets_an_empty_copy_in_the_rehearsal_never_its_real_url(
        managed: Cluster, artifact: artifacts.Artifact, tmp_path: Path) -> None:
    db = managed.database  # type: ignore[attr-defined]
    empty = f"{db}_empty"
    managed.sql(f'CREATE DATABASE "{empty}" OWNER "{ROLE}"')
    pgrehearsal.fence(managed)  # what the apply of a second database does
    assert _psql(managed.app_url(db), "CREATE TABLE notes (id int); INSERT INTO notes VALUES (1)").returncode == 0
    try:
        # The rehearsal loses a table in the first database, so nothing runs for real; what it did in the second
        # (no tables yet: no snapshot of it) happened on an empty copy, not in the real one.
        with pytest.raises(Failure) as stopped:
            _release(managed, artifact, tmp_path, "DROP TABLE IF EXISTS notes", 2,
                     other=(empty, "CREATE TABLE IF NOT EXISTS made (x int); INSERT INTO made VALUES (1)"))
        assert stopped.value.code == "data.loss_detected", stopped.value
        assert managed.sql("SELECT count(*) FROM pg_tables WHERE tablename = 'made'", empty).strip() == "0"
        assert "release-command" not in _step.seen  # type: ignore[attr-defined]
    finally:
        for name in (db, empty):
            pgrehearsal.wait_for_drop(managed, f"{name}__rehearsal")
            managed.sql(f'DROP DATABASE "{name}" WITH (FORCE)')
