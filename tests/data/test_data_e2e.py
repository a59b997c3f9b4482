"""End to end, real daemon, real SQLite: a release command that would lose data is stopped before it runs,
acknowledging it runs it and the snapshot restores every row, and rollbacks follow the schema rule."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import stop_daemon
from ..e2e.harness import Workspace, free_port, wait_for

APP = Path(__file__).parent / "notesapp"
SPEC = """
[app]
name = "notes"

[environments.staging]
edge_port = {port}

[services.web]
run = ["python", "app.py"]
release = ["python", "migrate.py"]
env = {{ VERSION = "{version}", MIGRATE = "{migrate}" }}
start_timeout = "15s"
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
def notes(tmp_path: Path) -> Iterator[Workspace]:
    for name in ("app.py", "migrate.py"):
        shutil.copy(APP / name, tmp_path / name)
    ws = Workspace(tmp_path, free_port(), free_port())
    yield ws
    stop_daemon(tmp_path)


def _deploy(ws: Workspace, version: str, migrate: str, *extra: str) -> tuple[int, dict[str, Any]]:
    (ws.root / "railguard.toml").write_text(SPEC.format(port=ws.port, version=version, migrate=migrate))
    return ws.rg_json("deploy", "--env", "staging", "--yes", *extra)


def _rows(ws: Workspace) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(ws.root / ".railguard" / "data" / "staging" / "notes.db")
    try:
        return db.execute("SELECT * FROM notes ORDER BY id").fetchall()
    finally:
        db.close()


def _rehearsed(answer: dict[str, Any]) -> str:
    """The rehearse step's note in an operation's journal."""
    notes = [e["detail"].get("note", "") for e in answer["operation"]["journal"]
             if e["step"] == "staging/service.web: rehearse" and e["phase"] == "end"]
    assert len(notes) == 1, answer["operation"]["journal"]
    return str(notes[0])


def _error(answer: dict[str, Any]) -> dict[str, Any]:
    found = answer.get("diagnostics") or (answer.get("operation") or {}).get("error", {}).get("diagnostics")
    assert found, answer
    return dict(found[0])


@pytest.mark.timeout(900)  # eleven operations, most with a rehearsal; slow on a loaded machine
def test_data_survives_destructive_releases_and_rollbacks(notes: Workspace) -> None:
    ws = notes
    code, answer = _deploy(ws, "1", "v1")
    assert code == 0, answer
    original = _rows(ws)
    assert len(original) == 3
    page = ws.get().text

    # A release command that drops the table: stopped before the real run, with the loss named.
    code, answer = _deploy(ws, "2", "drop")
    assert code == 1
    stopped = _error(answer)
    assert stopped["code"] == "data.loss_detected", stopped
    assert "table notes" in stopped["summary"] and "3 lost" in stopped["summary"], stopped
    assert [loss["table"] for loss in stopped["extra"]["losses"]] == ["notes"]
    assert "`railguard plan --env staging --allow-data-loss notes`" in stopped["remediation"], stopped  # exact
    assert _rows(ws) == original and ws.get().text == page  # nothing ran on the real data; traffic unchanged
    journal = [e["step"] for e in answer["operation"]["journal"]]
    assert "staging/service.web: rehearse" in journal and "staging/service.web: release-command" not in journal

    code, listed = ws.rg_json("backups", "--env", "staging")
    assert code == 0 and len(listed["backups"]) == 1 and listed["backups"][0]["files"][0]["tables"] == {"notes": 3}

    # Acknowledged in a new plan: it runs (the plan is destructive), and the rows are gone.
    code, answer = _deploy(ws, "2", "drop", "--allow-data-loss", "notes")
    assert code == 0, answer
    assert _rows(ws) == []

    # The snapshot restores every row, through a reviewed plan that needs the address typed back.
    code, planned = ws.rg_json("restore", "--env", "staging", "--release", "1")
    assert code == 0 and planned["plan"]["max_risk"] == "destructive", planned
    assert [c["action"] for c in planned["plan"]["changes"]] == ["restore"]
    plan_id = planned["plan"]["id"]
    code, refused = ws.rg_json("apply", plan_id)
    assert code == 1 and _error(refused)["code"] == "restore.unconfirmed"
    assert _rows(ws) == []
    code, done = ws.rg_json("apply", plan_id, "--confirm", "staging/database.notes")
    assert code == 0, done
    assert _rows(ws) == original

    # A release that drops a column cannot be silently rolled back to code that reads it.
    code, answer = _deploy(ws, "2", "v1")  # release 4: reads title and body
    assert code == 0, answer
    # Its migration is already applied: the first run on the copy changed nothing, so it ran once there.
    assert "second run skipped: the first changed nothing" in _rehearsed(answer), answer["operation"]["journal"]
    r4 = ws.rg_json("releases", "--env", "staging")[1]["releases"][0]["number"]
    code, answer = _deploy(ws, "3", "dropcol")
    assert code == 1 and "--allow-data-loss notes.body`" in _error(answer)["remediation"], answer  # the column
    code, answer = _deploy(ws, "3", "dropcol", "--allow-data-loss", "notes.body")
    assert code == 0, answer
    code, refused = ws.rg_json("rollback", "--env", "staging", "--to", str(r4))
    assert code == 1
    diagnostic = _error(refused)
    assert diagnostic["code"] == "rollback.schema_changed", diagnostic
    assert "notes.body" in diagnostic["detail"]
    assert "railguard deploy" in diagnostic["remediation"] and f"--release {r4}" in diagnostic["remediation"]
    assert ws.get().text.startswith("v3")  # nothing moved

    # Rolling back code and data: restore the data as release 4 left it, then the code.
    code, planned = ws.rg_json("restore", "--env", "staging", "--release", str(r4))
    assert code == 0, planned
    assert ws.rg_json("apply", planned["plan"]["id"], "--confirm", "staging/database.notes")[0] == 0
    code, back = ws.rg_json("rollback", "--env", "staging", "--to", str(r4))
    assert code == 0, back
    answer_page = wait_for(lambda: (r := ws.get()).status_code == 200 and r.text.startswith("v2") and r, "v2 back")
    assert "milk, eggs" in answer_page.text

    # An additive migration passes its rehearsal silently and rolls back with a note (the expand case).
    code, answer = _deploy(ws, "5", "add")
    assert code == 0, answer
    assert "second run skipped" not in _rehearsed(answer)  # its first run added a column: run twice
    code, back = ws.rg_json("rollback", "--env", "staging", "--to", str(r4))
    assert code == 0, back
    notes_seen = [e["detail"].get("note", "") for e in back["operation"]["journal"] if e["step"] == "schema-check"]
    assert notes_seen and "expand" in notes_seen[0] and "tags" in notes_seen[0]
    assert ws.get().status_code == 200
