"""A service that uses one managed Postgres database gets libpq's PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE
beside DATABASE_URL, naming the same database; in the release command's rehearsal they name the scratch copy (a
destructive migration that connects through PG* is caught there, the real rows stay); their password never
shows in status, plans, events, logs or an exec's captured output. Real daemon, Caddy and Postgres."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from railguard.daemon.secrets_ops import Secrets
from railguard.data import libpq
from railguard.data.postgres import bin_dir
from railguard.providers.base import LATEST
from railguard.state.store import Store

from ..conftest import stop_daemon
from ..e2e.harness import Workspace, free_port
from .test_postgres_e2e import SPEC

pytestmark = pytest.mark.skipif(bin_dir() is None, reason="the postgres extra is not installed")
APP = Path(__file__).parent / "pgapp"


@pytest.fixture
def pgenv(reachable_tmp: Path) -> Iterator[Workspace]:
    for name in ("app.py", "migrate.py"):  # the same app, connecting through libpq's variables only
        text = (APP / name).read_text().replace('os.environ["PSQL"], os.environ["DATABASE_URL"],',
                                                'os.environ["PSQL"],')
        text = text.replace('print("migrating", os.environ["DATABASE_URL"]',
                            'print("migrating", os.environ["PGPASSWORD"]')
        assert "DATABASE_URL" not in text.split('"""', 2)[2], name
        (reachable_tmp / name).write_text(text)
    ws = Workspace(reachable_tmp, free_port(), free_port())
    yield ws
    stop_daemon(reachable_tmp)


def _deploy(ws: Workspace, version: str, migrate: str = "v1") -> tuple[int, dict[str, Any]]:
    spec = SPEC.format(port=ws.port, version=version, migrate=migrate, psql=bin_dir() / "psql")  # type: ignore[operator]
    (ws.root / "railguard.toml").write_text(spec)
    return ws.rg_json("deploy", "--env", "staging", "--yes")


def test_libpq_variables_of_a_url() -> None:
    assert libpq.variables("postgresql://railguard:p%40ss@127.0.0.1:5433/main") == {
        "PGHOST": "127.0.0.1", "PGPORT": "5433", "PGUSER": "railguard", "PGPASSWORD": "p@ss", "PGDATABASE": "main"}
    urls = {"DATABASE_URL": "postgresql://a:b@h:1/x", "OTHER_URL": "postgresql://a:b@h:1/y"}
    assert libpq.add_to(urls, ["DATABASE_URL", "OTHER_URL"]) == urls  # two databases: PG* would name one at random


@pytest.mark.timeout(600)
def test_an_app_that_reads_pg_variables_reaches_its_database_and_its_rehearsal_reaches_the_copy(
        pgenv: Workspace) -> None:
    ws = pgenv
    code, answer = _deploy(ws, "1")
    assert code == 0, json.dumps(answer.get("diagnostics") or answer, indent=1)[:3000]
    for note in ("milk", "eggs"):
        assert ws.get(f"/add?{note}").status_code == 200
    assert ws.get().text.split("\n")[1:] == ["milk", "eggs"]

    # A migration that drops the table, connecting through PG*: stopped by its rehearsal, on the copy.
    code, answer = _deploy(ws, "2", "drop")
    assert code == 1, answer
    found = answer.get("diagnostics") or answer["operation"]["error"]["diagnostics"]
    assert found[0]["code"] == "data.loss_detected", found
    assert ws.get().text.split("\n")[1:] == ["milk", "eggs"]

    home = ws.root / ".railguard"
    done = ws.rg("exec", "web", "--env", "staging", "--json", "--",
                 "sh", "-c", 'echo "$PGUSER@$PGHOST:$PGPORT/$PGDATABASE $PGPASSWORD $DATABASE_URL"')
    ran = json.loads(done.stdout)
    assert done.returncode == 0, ran
    line = "\n".join(ran["exec"]["output"])
    assert "railguard@127.0.0.1:" in line and "/main " in line, line
    outputs = [ws.rg("status", "--env", "staging").stdout, ws.rg("status", "--env", "staging", "--json").stdout,
               ws.rg("plan", "--env", "staging", "--json").stdout, ws.rg("events", "--json").stdout,
               ws.rg("logs", "web", "--env", "staging").stdout, json.dumps(ran), json.dumps(answer)]
    assert "migrating " in outputs[4]
    secret = _password(home)
    for text in outputs:
        assert secret not in text


def _password(home: Path) -> str:
    from railguard.providers.local.dbservers import password_name

    key = password_name("main")
    return Secrets(home).values_for(Store.open(home), "staging", {key: LATEST})[key]
