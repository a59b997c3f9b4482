"""The SQLite state store: schema, serials, lock, and bad state folders."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from railguard.model.api import ReleaseStatus
from railguard.model.canonical import canonical_json
from railguard.model.diagnostics import RailguardError
from railguard.model.errors import PermanentError, TemporaryError
from railguard.model.resources import LiveStatus, ObservedResource, canonical_observed
from railguard.state.schema import MIGRATIONS, SCHEMA_VERSION
from railguard.state.store import Store


def codes(exc: pytest.ExceptionInfo[RailguardError]) -> list[str]:
    return [d.code for d in exc.value.diagnostics]


def test_new_store_is_wal_versioned_and_private(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state")
    db = sqlite3.connect(tmp_path / "state" / "state.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert (tmp_path / "state").stat().st_mode & 0o077 == 0
    store.close()


def test_reopen_keeps_data(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.bump_serial("staging")
    store.add_event("staging", "test", "hello")
    store.close()
    again = Store.open(tmp_path)
    assert again.serial("staging") == 1
    assert [e.message for e in again.events("staging")] == ["hello"]


def test_newer_schema_is_refused_and_untouched(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    db = sqlite3.connect(tmp_path / "state.db")
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    before = (tmp_path / "state.db").read_bytes()
    with pytest.raises(RailguardError) as exc:
        Store.open(tmp_path)
    assert codes(exc) == ["state.too_new"]
    assert (tmp_path / "state.db").read_bytes() == before


def test_garbage_file_is_corrupt_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "state.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RailguardError) as exc:
        Store.open(tmp_path)
    assert codes(exc) == ["state.corrupt"]
    assert (tmp_path / "state.db").read_bytes() == b"this is not sqlite" * 100


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "state.db")
    db.execute("CREATE TABLE other (x)")
    db.commit()
    db.close()
    with pytest.raises(RailguardError) as exc:
        Store.open(tmp_path)
    assert codes(exc) == ["state.corrupt"]


def test_unwritable_state_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RailguardError) as exc:
        Store.open(blocker / "state")
    assert codes(exc) == ["state.unwritable"]


def test_record_observed_bumps_serial_only_on_change(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    live = [ObservedResource(address="s/service.web", kind="service", fingerprint="sha256:1", config={"a": 1})]
    assert store.record_observed("s", live) is True
    assert store.serial("s") == 1
    assert store.record_observed("s", live) is False
    assert store.serial("s") == 1
    assert store.record_observed("s", []) is True
    assert store.serial("s") == 2
    assert store.inventory("s") == []


def test_record_observed_writes_only_the_rows_that_moved(tmp_path: Path) -> None:
    store = Store.open(tmp_path)

    def web(n: int, replicas: int) -> ObservedResource:
        return ObservedResource(address=f"s/service.web{n}", kind="service", fingerprint=f"sha256:{n}",
                                config={"replicas": replicas})

    assert store.record_observed("s", [web(1, 1), web(2, 1), web(3, 1)]) is True
    stamps = dict(store._db.execute("SELECT address, updated_at FROM inventory").fetchall())
    store._db.execute("UPDATE inventory SET updated_at = 'untouched'")
    assert store.record_observed("s", [web(1, 1), web(2, 5), web(4, 1)]) is True  # 2 changed, 3 gone, 4 new
    rows = dict(store._db.execute("SELECT address, updated_at FROM inventory").fetchall())
    assert rows["s/service.web1"] == "untouched" and set(rows) == {"s/service.web1", "s/service.web2",
                                                                   "s/service.web4"}
    assert rows["s/service.web2"] != "untouched" and rows["s/service.web4"] != "untouched" and stamps
    assert [(r.address, r.config) for r in store.inventory("s")] == [
        ("s/service.web1", {"replicas": 1}), ("s/service.web2", {"replicas": 5}), ("s/service.web4", {"replicas": 1})]
    assert store.serial("s") == 2


def test_the_stored_text_of_a_live_resource_is_its_canonical_dump() -> None:
    plain = ObservedResource(address="s/service.wéb", kind="service", fingerprint="sha256:1", release=7,
                             config={"run": ["python", "a\"b"], "env": {"Z": "1", "A": None}, "n": 1.5, "ok": True},
                             depends_on=["s/service.db", "s/edge"], status=LiveStatus.degraded, message="exit 1 ✗")
    odd = [  # not plain JSON: the dump decides how it is written
        plain.model_copy(update={"config": {"at": datetime(2026, 1, 1, tzinfo=UTC)}}),
        plain.model_copy(update={"config": {"x": float("inf")}}),
        plain.model_copy(update={"config": {"t": ("a", 1)}, "release": None}),
        plain.model_copy(update={"release": True}),
    ]
    for resource in [plain, ObservedResource(address="s/edge", kind="edge", fingerprint="", config={}), *odd]:
        assert canonical_observed(resource) == canonical_json(resource.model_dump(mode="json"))


def test_lock_held_by_live_process_is_refused(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    other = Store.open(tmp_path)
    with store.lock("apply plan-1"):
        with pytest.raises(TemporaryError) as exc, other.lock("apply plan-2"):
            pass
        assert codes(exc) == ["state.locked"] and exc.value.delay > 0  # retry later, not a failure of the input
        assert isinstance(exc.value, RailguardError) and not isinstance(exc.value, PermanentError)
        assert "apply plan-1" in exc.value.diagnostics[0].detail
    with other.lock("apply plan-2"):
        pass


def test_stale_lock_of_killed_process_is_detected_and_broken(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from railguard.state.store import Store
        store = Store.open(Path({str(tmp_path)!r}))
        with store.lock("apply plan-dead"):
            print("locked", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        store = Store.open(tmp_path)
        with pytest.raises(RailguardError), store.lock("apply mine"):
            pass
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert [d.code for d in store.stale_lock_warning()] == ["state.stale_lock"]
        with store.lock("apply mine") as holder:
            assert holder.operation == "apply mine"
        assert any(e.kind == "lock.broken" for e in store.events())
        assert store.lock_holder() is None
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_lock_with_reused_pid_is_stale(tmp_path: Path) -> None:
    import os

    import psutil

    store = Store.open(tmp_path)
    with store.transaction() as db:
        # our own pid but a different start time: the pid was reused by another process
        db.execute("INSERT INTO locks VALUES ('state', ?, ?, ?, 'apply old', '2020-01-01')",
                   (os.getpid(), psutil.Process().create_time() - 1000, __import__("socket").gethostname()))
    with store.lock("apply new"):
        pass
    assert [e.data["operation"] for e in store.events() if e.kind == "lock.broken"] == ["apply old"]


def test_operations_read_their_journals_in_one_query(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    ids = [store.create_operation("staging", "apply", None, "user:test") for _ in range(5)]
    for op_id in ids:
        store.journal(op_id, f"step of {op_id}", "begin")
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)
    found = store.operations()
    store.db.set_trace_callback(None)
    assert len(statements) == 2  # the operations, then all their journals: no query per operation
    assert {o.id: [j.step for j in o.journal] for o in found} == {i: [f"step of {i}"] for i in ids}


def test_a_short_journal_holds_the_newest_steps_and_the_first_failure(tmp_path: Path) -> None:
    """``steps=N`` (MCP's operations): the newest N steps without build output, the first failure even when older,
    and the count of the whole journal's steps, which the long-poll's ``after`` counts too."""
    store = Store.open(tmp_path)
    failed, other = (store.create_operation("staging", "apply", None, "user:test") for _ in range(2))
    store.journal(failed, "build web", "begin")
    store.journal(failed, "build web", "output", {"line": "compiling"})
    store.journal(failed, "build web", "fail", {"why": "first"})
    for i in range(6):
        store.journal(failed, f"step {i}", "begin")
        store.journal(failed, f"step {i}", "output", {"line": f"out {i}"})
    store.journal(failed, "step 5", "fail", {"why": "second"})
    store.journal(other, "only", "begin")
    whole = store.operation(failed)
    assert whole is not None and whole.journal_total is None and len(whole.journal) == 16
    short = store.operation(failed, steps=3)
    assert short is not None and short.journal_total == 9  # output lines are not steps
    assert [(e.step, e.phase) for e in short.journal] == [
        ("build web", "fail"), ("step 4", "begin"), ("step 5", "begin"), ("step 5", "fail")]
    assert short.journal[0].detail == {"why": "first"}
    listed = {o.id: o for o in store.operations("staging", steps=1)}
    assert [e.step for e in listed[other].journal] == ["only"] and listed[other].journal_total == 1
    assert [e.phase for e in listed[failed].journal] == ["fail", "fail"]  # the first failure, and the newest step
    assert store.operations("staging", steps=0)[0].journal_total is not None


def test_release_lookups_are_queries_not_limited_listings(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    for _ in range(60):
        number = store.add_release("staging", None, None, {"services": {}, "desired": [], "source": {}})
        store.finish_release("staging", number, ReleaseStatus.live)
    assert len(store.releases("staging")) == 50 and len(store.releases("staging", limit=None)) == 60
    first = store.release("staging", 1)  # older than the default listing reaches
    assert first is not None and first.status is ReleaseStatus.superseded and first.ended_at
    live = store.live_release("staging")
    assert live is not None and live.number == 60 and live.live_at and live.ended_at is None
    assert [r.number for r in store.superseded_before("staging", 60)] == list(range(59, 0, -1))
    assert store.release("staging", 61) is None and store.live_release("production") is None
    resource = {"address": "staging/service.web", "env": "staging", "kind": "service", "name": "web", "config": {},
                "depends_on": [], "fingerprint": "f"}
    number = store.add_release("staging", None, None, {"services": {}, "desired": [resource], "source": {"a": 1}})
    listed = store.releases("staging", limit=1, desired=False)[0]  # a listing leaves the frozen resources out
    assert listed.number == number and listed.desired == [] and listed.source == {"a": 1}
    assert [r.address for r in store.releases("staging", limit=1)[0].desired] == ["staging/service.web"]


def test_a_read_only_database_is_unwritable_not_corrupt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Classified by SQLite's error code, not by the message text: any SQLITE_READONLY_* variant counts.
    Store.open(tmp_path).close()
    real_connect = sqlite3.connect

    def read_only(path: Path, *args: object, **kwargs: object) -> sqlite3.Connection:
        return real_connect(f"file:{path}?mode=ro", *args, uri=True, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", read_only)
    monkeypatch.setattr("railguard.state.db.SCHEMA_VERSION", SCHEMA_VERSION + 1)  # forces a write at open
    monkeypatch.setattr("railguard.state.db.MIGRATIONS", [*MIGRATIONS, "CREATE TABLE later (a)"])
    with pytest.raises(RailguardError) as exc:
        Store.open(tmp_path)
    assert codes(exc) == ["state.unwritable"]
