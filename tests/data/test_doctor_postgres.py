"""`railguard doctor` on an app whose service uses a managed Postgres (`[databases.main] engine = "postgres"`):
its data checks run against a scratch Postgres made for the run, seeded from the environment's newest snapshot
(or from `[doctor] fixture` on a fresh checkout), and deleted afterwards. The release command gets a URL to the
scratch server, never the real one; a dropped column counts as data lost against the data before the first
run. The environment's "real" database is a database of the session's Postgres (see conftest.py)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from railguard.data import snapshots
from railguard.data.postgres import Cluster, bin_dir

from .conftest import free_port

pytestmark = pytest.mark.skipif(bin_dir() is None, reason="the postgres extra is not installed")
APP = Path(__file__).parent / "pgdoctor"
SPEC = """
[app]
name = "pgdoc"

[environments.staging]
edge_port = {port}
{doctor}
[databases.main]
engine = "postgres"

[services.web]
run = ["python", "app.py"]
release = ["python", "migrate.py"]
databases = ["main"]
env = {{ MIGRATE = "{migrate}", PSQL = "{psql}", URL_LOG = "{log}", HONEST = "{honest}" }}
start_timeout = "60s"
{health}"""
HEALTH = '[services.web.health]\nhttp = "/healthz"\ninterval = "500ms"\ntimeout = "500ms"\n'



def _app(tmp_path: Path, migrate: str, doctor: str = "", honest: str = "0", health: str = "") -> Path:
    root = tmp_path / "app"
    shutil.copytree(APP, root)
    (root / "railguard.toml").write_text(SPEC.format(port=free_port(), doctor=doctor, migrate=migrate,
                                                     psql=bin_dir() / "psql", log=tmp_path / "urls.log",  # type: ignore[operator]
                                                     honest=honest, health=health))
    (tmp_path / "t").mkdir()
    return root


def _doctor(root: Path, tmp_path: Path,
            checks: tuple[str, ...] = ("idempotent-release", "migrations-forward")) -> dict[str, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAILGUARD_HOME", "RAILGUARD_SPEC")}
    done = subprocess.run([sys.executable, "-m", "railguard", "doctor", "--env", "staging", "--json",
                           *(f"--check={c}" for c in checks)], cwd=root, capture_output=True,
                          text=True, timeout=600, env={**env, "TMPDIR": str(tmp_path / "t"), "NO_COLOR": "1"},
                          check=False)
    assert "Traceback" not in done.stderr, done.stderr
    payload = json.loads(done.stdout)
    return {c["id"]: c for c in payload["doctor"]["checks"]}


def _text(result: dict[str, Any]) -> str:
    return "\n".join([result["summary"], *(line for f in result["findings"]
                                           for line in (f["summary"], *f["evidence"]))])


def _closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.timeout(900)
def test_doctor_runs_the_data_checks_on_a_scratch_postgres_restored_from_the_snapshot(
        cluster: Cluster, reachable_tmp: Path) -> None:
    tmp_path = reachable_tmp
    cluster.sql('DROP DATABASE IF EXISTS "main" WITH (FORCE)')
    cluster.sql('CREATE DATABASE "main"')
    cluster.sql("CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL, tag text); "
                "INSERT INTO notes (body, tag) VALUES ('milk', 'x'), ('eggs', 'y'), ('bread', 'z')", "main")
    root = _app(tmp_path, "dropcol")
    backup = snapshots.take(tmp_path / "none", root / ".railguard" / "backups" / "staging", "staging", 1,
                            {"main": cluster})
    assert backup is not None
    cluster.sql("INSERT INTO notes (body) VALUES ('written after the snapshot')", "main")
    real = cluster.sql("SELECT * FROM notes ORDER BY id", "main")

    checks = _doctor(root, tmp_path)
    idem, forward = checks["idempotent-release"], checks["migrations-forward"]
    assert idem["status"] == "fail", _text(idem)
    assert "postgres:main: column notes.tag was dropped (it held values in 3 rows)" in _text(idem)
    assert f"snapshot {backup.id} of staging" in _text(idem)  # seeded from the snapshot, not from the live data
    assert forward["status"] == "fail" and "column notes.tag was dropped" in _text(forward), _text(forward)

    # Every run got a scratch server's URL: another port, another password, never the real database.
    urls = [urlsplit(u) for u in (tmp_path / "urls.log").read_text().split()]
    assert len(urls) >= 3
    assert {u.port for u in urls} & {cluster.port} == set() and all(u.password != cluster.password for u in urls)
    assert all(_closed(port) for port in {u.port for u in urls if u.port})  # deleted with the scratch
    # ... as an app-like role (it owns the scratch database and altered its table), never the superuser.
    assert {u.username for u in urls} == {"railguard"}
    assert set((tmp_path / "urls.log.who").read_text().split()) == {"railguard:false"}
    assert cluster.sql("SELECT * FROM notes ORDER BY id", "main") == real  # the real data is untouched
    assert not [p for p in (tmp_path / "t").iterdir() if p.name.startswith("rgdoc-")]

    # A fresh checkout (no snapshot, no data): the fixture seeds the scratch Postgres; a safe command passes.
    shutil.rmtree(tmp_path / "app")
    shutil.rmtree(tmp_path / "t")
    root = _app(tmp_path, "keep", '[doctor]\nfixture = "seed.sql"\nfixture_database = "main"\n')
    checks = _doctor(root, tmp_path)
    idem, forward = checks["idempotent-release"], checks["migrations-forward"]
    assert idem["status"] == "pass", _text(idem)
    assert "the fixture seed.sql" in _text(idem) and "2 row(s)" in _text(idem), _text(idem)
    assert forward["status"] == "pass", _text(forward)
    # A seed from the SQL fixture: the runs get the app-like role there too.
    assert set((tmp_path / "urls.log.who").read_text().split()) == {"railguard:false"}


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("honest", "status", "summary"), [
    ("0", "fail", "health stayed green with its database main unreachable"),
    ("1", "pass", "with its database main unreachable, it went unhealthy"),
])
def test_honest_health_breaks_the_managed_postgres_database(reachable_tmp: Path, honest: str, status: str,
                                                            summary: str) -> None:
    """A health check that answers 200 while its Postgres database is gone fails the doctor's honest-health;
    one that queries the database passes. The database is the scratch server's until it is broken: then the
    service's variable and libpq's PG* name a closed port (never the real server, never libpq's defaults)."""
    tmp_path = reachable_tmp
    root = _app(tmp_path, "keep", '[doctor]\nfixture = "seed.sql"\nfixture_database = "main"\n', honest=honest,
                health=HEALTH)
    result = _doctor(root, tmp_path, ("honest-health",))["honest-health"]
    assert result["status"] == status, _text(result)
    finding = next(f for f in result["findings"] if "database main" in f["summary"])
    assert finding["summary"].startswith(summary), _text(result)
    assert any("DATABASE_URL=postgresql://doctor@127.0.0.1:" in line and "PGHOST/PGPORT the same" in line
               for line in finding["evidence"]), finding["evidence"]
    assert any(line.startswith("baseline: healthy") for line in finding["evidence"]), finding["evidence"]
    assert not [p for p in (tmp_path / "t").iterdir() if p.name.startswith("rgdoc-")]
