"""Guardrails with teeth, end to end (issue 18): a real daemon, real processes, the state folder on disk.

Each test fails when the guardrail it names is removed; bench/guardrail_breaks.py shows it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from .test_guardrails import STAGING_SECRET, Guarded, codes, guarded

LEAKY_RELEASE = ('release = ["python", "-c", "import os, sys; print(\'migrating with\', os.environ[\'API_TOKEN\']); '
                 'sys.exit(3)"]')
MARK = "(sensitive:API_TOKEN)"


@pytest.fixture
def g(tmp_path: Path) -> Iterator[Guarded]:
    yield from guarded(tmp_path)


def _stored_text(g: Guarded) -> dict[str, str]:
    """The text of every table that keeps free text, read straight from the SQLite file."""
    db = sqlite3.connect(g.root / ".railguard" / "state.db")
    try:
        return {table: "\n".join(" ".join(str(v) for v in row) for row in db.execute(f"SELECT * FROM {table}"))
                for table in ("events", "journal", "operations", "audit", "approvals")}
    finally:
        db.close()


def test_a_secret_sent_into_every_stored_text_is_redacted(g: Guarded) -> None:
    g.spec(api=False)
    spec = (g.root / "railguard.toml").read_text()
    assert 'release = ["python", "migrate.py"]' in spec
    (g.root / "railguard.toml").write_text(spec.replace('release = ["python", "migrate.py"]', LEAKY_RELEASE))
    # An operation error and a journal detail: a release command that prints the secret, then fails.
    code, failed = g.rg_json("deploy", "--env", "staging", "--yes")
    assert code == 1 and failed["operation"]["status"] == "failed", failed
    # An event and the audit log: a rejection whose reason carries the secret.
    code, planned = g.rg_json("plan", "--env", "staging")
    assert code == 0, planned
    approver = g.token("lead", "approver")
    code, rejected = g.as_(approver, "reject", planned["plan"]["id"], "--reason", f"it leaks {STAGING_SECRET}")
    assert code == 0, rejected
    stored = _stored_text(g)
    for table in ("journal", "operations", "events", "audit"):
        assert MARK in stored[table], f"the secret never reached {table}: this test would prove nothing"
        assert STAGING_SECRET not in stored[table], table
    assert STAGING_SECRET not in "\n".join(stored.values())
    # Nor anywhere in the state folder's bytes (WAL included). The app's own log files are its raw
    # output (docs/guardrails.md: `railguard logs` redacts them when served).
    for path in (g.root / ".railguard").rglob("*"):
        if path.is_file() and "logs" not in path.relative_to(g.root / ".railguard").parts:
            assert STAGING_SECRET.encode() not in path.read_bytes(), path


def test_an_admin_cannot_approve_their_own_plan(g: Guarded) -> None:
    admin = g.token("boss", "admin")
    assert g.as_(admin, "deploy", "--env", "staging", "--yes")[0] == 0
    g.spec(extra="[environments.production.services.api]\nreplicas = 0\n")
    code, planned = g.as_(admin, "plan", "--env", "production")
    assert code == 0 and planned["plan"]["requested_by"] == "token:boss", planned
    code, refused = g.as_(admin, "approve", planned["plan"]["id"])
    assert code == 1 and codes(refused) == ["approval.self"], refused
    other = g.token("lead", "approver")
    code, ok = g.as_(other, "approve", planned["plan"]["id"])
    assert code == 0 and ok["approval"]["principal"] == "token:lead", ok

