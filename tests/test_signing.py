"""Decisions are signed with a key outside the state folder: rows written without it decide nothing.

Someone who can write ``state.db`` (app code in shared-user mode, a stolen backup restored elsewhere) but does
not hold the signing key can insert an approval, rewrite a plan with a matching hash, or rebuild the audit
chain and its anchor; each is caught here, on a real store on disk.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from railguard.model.canonical import canonical_json
from railguard.model.diagnostics import RailguardError
from railguard.state import approvals, audit
from railguard.state.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(tmp_path / "state")
    yield opened
    opened.close()


def test_an_approval_row_inserted_without_the_key_does_not_count(store: Store) -> None:
    with store.transaction() as db:
        db.execute("INSERT INTO approvals (id, plan_id, plan_hash, decision, principal, reason, confirmed, "
                   "created_at, expires_at) VALUES ('appr-x', 'plan-1', 'sha256:h', 'approved', 'token:lead', '', "
                   "'[]', '2026-01-01T00:00:00+00:00', '2999-01-01T00:00:00+00:00')")
    assert approvals.standing(store, "plan-1", "sha256:h") is None
    real = approvals.record(store, "plan-1", "sha256:h", "approved", "token:lead", "", [], 60)
    assert approvals.standing(store, "plan-1", "sha256:h") == real
    with store.transaction() as db:  # editing a signed row (another plan's hash, a later expiry) voids it
        db.execute("UPDATE approvals SET expires_at = '2999-12-31T00:00:00+00:00' WHERE id = ?", (real.id,))
    assert approvals.standing(store, "plan-1", "sha256:h") is None


def test_a_plan_rewritten_with_a_matching_hash_is_refused(store: Store, tmp_path: Path) -> None:
    from railguard.model.plans import Plan

    plan = store.save_plan(Plan(env="staging", base_serial=0, changes=[], desired=[], desired_digest="d"))
    assert store.load_plan(plan.id)[0] == plan
    forged = plan.model_copy(update={"base_serial": 7})
    forged = forged.model_copy(update={"hash": forged.content_hash()})
    with store.transaction() as db:
        db.execute("UPDATE plans SET body = ?, hash = ? WHERE id = ?", (forged.model_dump_json(), forged.hash, plan.id))
    with pytest.raises(RailguardError) as exc:
        store.load_plan(plan.id)
    assert exc.value.diagnostics[0].code == "plan.hash_mismatch"


def test_rewriting_the_chain_and_its_anchor_without_the_key_is_detected(store: Store, tmp_path: Path) -> None:
    anchor = tmp_path / "keys" / "audit.anchor"
    for i in range(3):
        audit.append(store, anchor, principal="user:a", action="apply", outcome="ok", plan_id=f"plan-{i}")
    assert audit.verify(store, anchor).ok
    # The forger recomputes every sha256 of an edited chain and the anchor, but cannot make the macs.
    rows = store.db.execute("SELECT id, at, principal, action, env, plan_id, plan_hash, outcome, detail FROM audit "
                            "ORDER BY id").fetchall()
    prev = audit.GENESIS
    with store.transaction() as db:
        for row in rows:
            body = dict(zip(("at", "principal", "action", "env", "plan_id", "plan_hash", "outcome", "detail"),
                            row[1:], strict=True))
            body["principal"] = "user:someone-else"
            body["detail"] = json.loads(body["detail"])
            digest = hashlib.sha256((prev + canonical_json(body)).encode()).hexdigest()
            db.execute("UPDATE audit SET principal = ?, prev_hash = ?, hash = ?, mac = NULL WHERE id = ?",
                       (body["principal"], prev, digest, row[0]))
            prev = digest
    anchor.write_text(json.dumps({"count": 3, "hash": prev}))
    found = audit.verify(store, anchor)
    assert not found.ok and "anchor" in found.problems[0] and "not signed" in found.problems[0], found
    anchor.unlink()
    assert "missing" in audit.verify(store, anchor).problems[0]
    # Keeping the old anchor (with its mac) does not help either: it still says where the keyed part starts.
    anchor.write_text(json.dumps({"count": 3, "hash": prev, "keyed_from": 1, "mac": "0" * 64}))
    assert "anchor" in audit.verify(store, anchor).problems[0]
