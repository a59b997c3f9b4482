"""End to end, real daemon, real Caddy, a real Postgres that the provider starts: a `[databases.main]` is created,
its URL reaches the app (never any output), rows survive redeploys and a daemon restart (the server is adopted),
a destructive release command is stopped by its rehearsal on a scratch restore, the snapshot taken before each
release command restores every row, and the password exists only in the secret store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from railguard.daemon.secrets_ops import Secrets
from railguard.data.postgres import bin_dir
from railguard.providers.base import LATEST
from railguard.providers.local.dbservers import password_name
from railguard.state.store import Store

from ..conftest import stop_daemon
from ..e2e.harness import Workspace, free_port, wait_for

pytestmark = pytest.mark.skipif(bin_dir() is None, reason="the postgres extra is not installed")
APP = Path(__file__).parent / "pgapp"
SPEC = """
[app]
name = "pgnotes"

[environments.staging]
edge_port = {port}

[databases.main]
engine = "postgres"

[services.web]
run = ["python", "app.py"]
release = ["python", "migrate.py"]
databases = ["main"]
env = {{ VERSION = "{version}", MIGRATE = "{migrate}", PSQL = "{psql}" }}
start_timeout = "20s"
stop_timeout = "3s"
drain_timeout = "2s"

[services.web.health]
http = "/healthz"
interval = "500ms"
timeout = "400ms"
start_period = "1s"

[[services.web.routes]]
path = "/"
"""


@pytest.fixture
def pgnotes(reachable_tmp: Path) -> Iterator[Workspace]:
    tmp_path = reachable_tmp  # the server's own user must reach its folder (see conftest.py)
    for name in ("app.py", "migrate.py"):
        shutil.copy(APP / name, tmp_path / name)
    ws = Workspace(tmp_path, free_port(), free_port())
    yield ws
    stop_daemon(tmp_path)


def _deploy(ws: Workspace, version: str, migrate: str = "v1", *extra: str) -> tuple[int, dict[str, Any]]:
    spec = SPEC.format(port=ws.port, version=version, migrate=migrate, psql=bin_dir() / "psql")  # type: ignore[operator]
    (ws.root / "railguard.toml").write_text(spec)
    return ws.rg_json("deploy", "--env", "staging", "--yes", *extra)


def _ok(code: int, answer: dict[str, Any]) -> None:
    if code != 0:
        pytest.fail(json.dumps(answer.get("diagnostics"), indent=1))


def _rows(ws: Workspace) -> list[str]:
    return ws.get().text.split("\n")[1:]


@pytest.mark.timeout(600)
def test_a_managed_postgres_keeps_its_rows_and_its_url_secret(pgnotes: Workspace) -> None:
    ws = pgnotes
    code, answer = _deploy(ws, "1")
    assert code == 0, answer
    steps = [e["step"] for e in answer["operation"]["journal"]]
    assert steps.index("staging/database.main: start-database") < steps.index("staging/service.web: start"), steps
    for note in ("milk", "eggs"):
        assert ws.get(f"/add?{note}").status_code == 200
    assert _rows(ws) == ["milk", "eggs"]
    # The database is part of the applied spec like the service: right after the deploy nothing has drifted.
    code, status = ws.rg_json("status", "--env", "staging")
    assert code == 0 and status["status"]["drift"]["details"] == [], status["status"]["drift"]
    assert status["status"]["drift"]["spec_changed_since_apply"] is False, status["status"]["drift"]
    home = ws.root / ".railguard"
    key = password_name("main")
    password = Secrets(home).values_for(Store.open(home), "staging", {key: LATEST})[key]
    assert len(password) >= 24

    # A redeploy: snapshot (pg_dump) and rehearsal on a scratch restore before the release command; rows stay.
    code, answer = _deploy(ws, "2")
    _ok(code, answer)
    steps = [e["step"] for e in answer["operation"]["journal"]]
    assert "staging/service.web: snapshot" in steps and "staging/service.web: rehearse" in steps, steps
    assert ws.get().text.startswith("v2") and _rows(ws) == ["milk", "eggs"]

    # The daemon restarts: the server is adopted (same pid), the app keeps its URL.
    pid_file = next((home / "databases" / "staging" / "main" / "pgdata").glob("postmaster.pid"))
    pid = pid_file.read_text().split()[0]
    subprocess.run([sys.executable, "-m", "railguard", "daemon", "stop", "--spec", str(ws.root / "railguard.toml")],
                   capture_output=True, timeout=60, check=False)
    code, status = ws.rg_json("status", "--env", "staging")
    assert code == 0, status
    databases = [(d["address"], d["status"]) for d in status["status"]["databases"]]
    assert databases == [("staging/database.main", "healthy")]
    assert pid_file.read_text().split()[0] == pid
    assert ws.get("/add?bread").status_code == 200 and _rows(ws) == ["milk", "eggs", "bread"]

    # A release command that drops the table: its rehearsal (on a scratch restore) stops it; the rows stay.
    code, answer = _deploy(ws, "3", "drop")
    assert code == 1, answer
    found = answer.get("diagnostics") or answer["operation"]["error"]["diagnostics"]
    assert found[0]["code"] == "data.loss_detected"
    assert "main: table notes went from 3 to 0 rows (3 lost)" in found[0]["detail"], found[0]["detail"]
    assert _rows(ws) == ["milk", "eggs", "bread"]

    # Acknowledged: it runs and the rows are gone; the snapshot taken before it restores every row.
    code, answer = _deploy(ws, "3", "drop", "--allow-data-loss", "notes")
    _ok(code, answer)
    assert _rows(ws) == [""]
    code, listed = ws.rg_json("backups", "--env", "staging")
    assert code == 0 and listed["backups"][0]["files"][0]["engine"] == "postgres", listed
    assert listed["backups"][0]["files"][0]["tables"] == {"notes": 3}
    code, planned = ws.rg_json("restore", "--backup", listed["backups"][0]["id"], "--env", "staging")
    assert code == 0, planned
    code, done = ws.rg_json("apply", planned["plan"]["id"], "--confirm", "staging/database.main")
    assert code == 0, done
    assert wait_for(lambda: _rows(ws) == ["milk", "eggs", "bread"], "the rows restored")

    # The password (hence the URL) never shows: not in plans, status, logs or journals, nor on disk in plaintext.
    outputs = [ws.rg("plan", "--env", "staging", "--json").stdout, ws.rg("status", "--env", "staging").stdout,
               ws.rg("logs", "web", "--env", "staging").stdout, ws.rg("events", "--json").stdout,
               ws.rg("operations", "--json").stdout, str(answer)]
    for text in outputs:
        assert password not in text
    assert "migrating postgresql://railguard:" in ws.rg("logs", "web", "--env", "staging").stdout
    # What Railguard writes (state, runtime records, snapshots) never holds it; the app's own log lines are its own.
    leaks = [p for p in home.rglob("*") if p.is_file() and not {"pgdata", "logs"} & set(p.parts)
             and password.encode() in p.read_bytes()]
    assert leaks == []

    # The doctor on this environment: its data checks run on a scratch Postgres seeded from the newest snapshot
    # (3 notes), so the destructive release command fails them. The rollback drill deploys into a scratch
    # deployment whose own server (a password of its own: the real one is never read for it) holds a copy of the
    # same snapshot, not an empty database: there the current release's rehearsal stops it, naming the 3 rows, as
    # a real deploy would be stopped (on an empty database the drill passed and proved nothing).
    env = {k: v for k, v in os.environ.items() if k not in ("RAILGUARD_HOME", "RAILGUARD_SPEC")}
    done = subprocess.run([sys.executable, "-m", "railguard", "doctor", "--env", "staging", "--json",
                           "--check=idempotent-release", "--check=rollback-drill"], cwd=ws.root, capture_output=True,
                          text=True, timeout=600, env=env, check=False)
    checks = {c["id"]: c for c in json.loads(done.stdout)["doctor"]["checks"]}
    idem = json.dumps(checks["idempotent-release"])
    assert checks["idempotent-release"]["status"] == "fail" and "postgres:main: table notes" in idem, idem
    drill = json.dumps(checks["rollback-drill"])
    assert checks["rollback-drill"]["status"] == "fail", drill
    assert "deploy the previous release (2): healthy" in drill, drill
    assert "deploy the current working tree failed" in drill and "table notes went from 3 to 0 rows" in drill, drill
    assert "the drill's server holds a copy of snapshot bk-" in drill, drill
    assert password not in drill and password not in done.stdout
    assert _rows(ws) == ["milk", "eggs", "bread"]  # the real database is untouched
