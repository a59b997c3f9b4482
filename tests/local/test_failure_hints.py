"""What a failed release command or readiness gate says about the cause the app's log shows.

Real apps tried with Railguard failed in ways their log explains but the diagnostic did not: Quart's blog
example opens a SQLite file next to its code (read-only in a release: SQLite says only "unable to open
database file"); the full-stack FastAPI template's settings (pydantic-settings) miss variables, and its
migration creates an extension the managed Postgres lacks. The SQLite cases run real processes on a real
artifact; the log-text cases feed the hint the messages pydantic and Postgres really print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import pytest

from railguard.providers.local import artifacts
from railguard.providers.local.replicas import (
    Failure,
    _hint,
    gate,
    replica_env,
    run_release_command,
    start_replicas,
    stop_all,
)
from railguard.sources.snapshot import snapshot

# The Quart blog example's mistake: the database file beside the code, created on first use.
OPENS_SQLITE_BESIDE_ITS_CODE = "import sqlite3\nsqlite3.connect('blog.db').execute('CREATE TABLE post (x)')\n"

SERVES_FROM_SQLITE_BESIDE_ITS_CODE = '''
import http.server, os, sqlite3, sys, traceback


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            sqlite3.connect("blog.db").execute("SELECT 1 FROM post")
            self.send_response(200)
        except Exception:
            traceback.print_exc()
            sys.stderr.flush()
            self.send_response(500)
        self.end_headers()


http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
'''


def _artifact(tmp_path: Path, code: str) -> artifacts.Artifact:
    src = tmp_path / "app"
    src.mkdir()
    (src / "app.py").write_text(code)
    return artifacts.ensure(tmp_path / "state" / "artifacts", src, snapshot(src).digest, None, {})


def _config(**extra: Any) -> dict[str, Any]:
    return {"env": {}, "port_env": "PORT", "run": ["python", "app.py"], "listen": False, "stop_timeout_ms": 1000,
            "health": None, "start_timeout_ms": 15_000, "release": ["python", "app.py"], **extra}


def test_a_release_command_opening_sqlite_in_its_release_is_told_where_data_belongs(tmp_path: Path) -> None:
    art = _artifact(tmp_path, OPENS_SQLITE_BESIDE_ITS_CODE)
    config = _config()
    environ = replica_env(config, env="staging", service="web", release=1, index=None, port=None,
                          data_dir=tmp_path / "data", artifact=art, home=tmp_path / "state")
    with pytest.raises(Failure) as failed:
        run_release_command(config, environ, art, tmp_path / "release.log")
    assert failed.value.code == "artifact.write_refused", failed.value.cause
    assert "unable to open database file" in failed.value.cause and "$RAILGUARD_DATA_DIR" in failed.value.cause
    assert not (art.src / "blog.db").exists()


def test_a_replica_answering_500_because_its_sqlite_file_is_in_the_release_says_so(tmp_path: Path) -> None:
    art = _artifact(tmp_path, SERVES_FROM_SQLITE_BESIDE_ITS_CODE)
    health = {"mode": "http", "http": "/", "interval_ms": 100, "timeout_ms": 1000, "healthy_threshold": 1,
              "unhealthy_threshold": 3, "start_period_ms": 0}
    config = _config(listen=True, health=health)
    replicas = start_replicas(1, 0, config, env="staging", service="web", release=1, data_dir=tmp_path / "data",
                              artifact=art, home=tmp_path / "state", log_dir=tmp_path / "logs")
    try:
        with pytest.raises(Failure) as failed:
            gate(replicas, config)
    finally:
        stop_all(replicas)
    assert failed.value.code == "artifact.write_refused", failed.value.cause
    assert "HTTP 500" in failed.value.cause and "$RAILGUARD_DATA_DIR" in failed.value.cause


def test_a_release_log_without_a_data_problem_keeps_the_plain_code(tmp_path: Path) -> None:
    art = _artifact(tmp_path, "raise SystemExit('migrations: no such revision')\n")
    config = _config()
    environ = replica_env(config, env="staging", service="web", release=1, index=None, port=None,
                          data_dir=tmp_path / "data", artifact=art, home=tmp_path / "state")
    with pytest.raises(Failure) as failed:
        run_release_command(config, environ, art, tmp_path / "release.log")
    assert failed.value.code == "rollout.release_failed"
    assert "RAILGUARD_DATA_DIR" not in failed.value.cause


def test_missing_pydantic_settings_are_named_as_variables() -> None:
    class Settings(pydantic.BaseModel):  # what BaseSettings raises is this model's error
        SECRET_KEY: str
        PROJECT_NAME: str
        API_V1_STR: str = "/api/v1"

    with pytest.raises(pydantic.ValidationError) as raised:
        Settings.model_validate({})
    lines = ["Traceback (most recent call last):", '  File "app/core/config.py", line 120, in <module>',
             f"pydantic_core._pydantic_core.ValidationError: {raised.value}"]
    hint = _hint("\n".join(lines).splitlines())
    assert "Settings missing SECRET_KEY, PROJECT_NAME" in hint and "API_V1_STR" not in hint
    assert "railguard secret set" in hint


def test_a_postgres_extension_the_server_lacks_is_named_with_the_way_out() -> None:
    lines = ['sqlalchemy.exc.NotSupportedError: (psycopg.errors.FeatureNotSupported) extension "uuid-ossp" is not '
             "available", "HINT:  The extension must first be installed on the system where PostgreSQL is running.",
             '[SQL: CREATE EXTENSION IF NOT EXISTS "uuid-ossp"]']
    hint = _hint(lines)
    assert "'uuid-ossp'" in hint and "gen_random_uuid()" in hint
    assert _hint(["ERROR: relation \"user\" does not exist"]) == ""

