"""Retention: old rows and unused artifacts go, what is still in use or recent stays.

Real SQLite stores on disk and real artifact folders; the last test drives `railguard gc` through the daemon.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from railguard.model.api import KeptRelease
from railguard.model.spec import Retention
from railguard.providers.local import artifacts
from railguard.providers.local.processes import Supervisor
from railguard.providers.local.provider import LocalProvider
from railguard.providers.local.runtime import LIVE, WARM, ReplicaSet
from railguard.state import retention
from railguard.state.store import Store
from tests.test_cli import rg

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def stamp(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def add_plan(db: sqlite3.Connection, plan_id: str, days_ago: float, status: str = "saved") -> None:
    db.execute("INSERT INTO plans (id, env, created_at, hash, base_serial, status, body) VALUES (?, 'staging', ?, "
               "'sha256:x', 0, ?, '{}')", (plan_id, stamp(days_ago), status))


def add_operation(db: sqlite3.Connection, op_id: str, days_ago: float, status: str = "succeeded",
                  plan_id: str | None = None) -> None:
    db.execute("INSERT INTO operations (id, env, kind, plan_id, status, principal, created_at, updated_at) "
               "VALUES (?, 'staging', 'apply', ?, ?, 'user:test', ?, ?)",
               (op_id, plan_id, status, stamp(days_ago), stamp(days_ago)))
    db.execute("INSERT INTO journal (operation_id, step, phase, at) VALUES (?, 'lock', 'begin', ?)",
               (op_id, stamp(days_ago)))


def add_event(db: sqlite3.Connection, days_ago: float, message: str) -> None:
    db.execute("INSERT INTO events (env, at, kind, message) VALUES ('staging', ?, 'test', ?)",
               (stamp(days_ago), message))


def ids(store: Store, table: str) -> set[str]:
    return {r[0] for r in store.db.execute(f"SELECT id FROM {table}")}


def test_old_rows_go_and_kept_ones_stay(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    with store.transaction() as db:
        add_plan(db, "plan-old", 40)
        add_plan(db, "plan-old-applying", 40, status="applying")
        add_plan(db, "plan-old-queued", 40)  # applied by an operation still queued
        add_plan(db, "plan-new", 5)
        add_operation(db, "op-old", 40)
        add_operation(db, "op-old-failed", 35, status="failed")
        add_operation(db, "op-old-running", 40, status="running")
        add_operation(db, "op-old-queued", 40, status="queued", plan_id="plan-old-queued")
        add_operation(db, "op-new", 2)
        for i in range(5):
            add_event(db, 44 - i, f"old {i}")  # in time order, like the daemon writes them
        add_event(db, 1, "new")
    rules = Retention(plans_days=30, plans_keep=1, operations_days=30, operations_keep=1, events_days=30,
                      events_keep=2)

    dry = retention.sweep(store, rules, dry_run=True, now=NOW)
    assert sorted(dry.plans) == ["plan-old"] and sorted(dry.operations) == ["op-old", "op-old-failed"]
    assert dry.counts() == {"plans": 1, "operations": 2, "journal": 2, "events": 4}
    assert len(ids(store, "plans")) == 4 and len(ids(store, "operations")) == 5  # a dry run removes nothing

    swept = retention.sweep(store, rules, now=NOW)
    assert swept.counts() == dry.counts()
    assert ids(store, "plans") == {"plan-old-applying", "plan-old-queued", "plan-new"}
    assert ids(store, "operations") == {"op-old-running", "op-old-queued", "op-new"}
    assert {r[0] for r in store.db.execute("SELECT operation_id FROM journal")} == ids(store, "operations")
    # The newest two events stay whatever their age (events_keep), the older ones beyond 30 days go.
    assert [e.message for e in store.events()] == ["old 4", "new"]
    assert retention.sweep(store, rules, now=NOW).counts() == {"plans": 0, "operations": 0, "journal": 0,
                                                               "events": 0}


def test_keep_counts_protect_old_rows_after_a_quiet_month(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    with store.transaction() as db:
        for i in range(3):
            add_plan(db, f"plan-{i}", 100 + i)
            add_operation(db, f"op-{i}", 100 + i)
            add_event(db, 100 + i, f"event {i}")
    swept = retention.sweep(store, Retention(plans_keep=2, operations_keep=2, events_keep=2), now=NOW)
    assert swept.plans == ["plan-2"] and swept.operations == ["op-2"] and swept.events == 1
    assert ids(store, "plans") == {"plan-0", "plan-1"}


def service(name: str, source: str, build: list[str] | None = None) -> dict[str, object]:
    return {"address": f"staging/service.{name}", "env": "staging", "kind": "service", "name": name,
            "config": {"source": source, "build": build}, "depends_on": [], "fingerprint": "sha256:f"}


def test_kept_releases_are_the_live_and_the_newest_per_environment(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    for env in ("staging", "production"):
        for n in range(1, 6):
            number = store.add_release(env, None, None, {"desired": [service("web", f"sha256:{env}{n}")]})
            store.finish_release(env, number, "live" if (env, n) != ("production", 5) else "failed")
    # production's release 2 is made live again (a rollback target stays referenced while it is live)
    store.db.execute("UPDATE releases SET status = 'superseded' WHERE env = 'production' AND number = 4")
    store.db.execute("UPDATE releases SET status = 'live' WHERE env = 'production' AND number = 2")
    kept = {(r.env, r.number) for r in retention.kept_releases(store, 2)}
    assert kept == {("staging", 4), ("staging", 5), ("production", 2), ("production", 4), ("production", 5)}


def make_artifact(root: Path, source: str, build: list[str] | None = None) -> str:
    name = artifacts.artifact_id(source, build)
    (root / name / "src").mkdir(parents=True)
    (root / name / artifacts.MARKER).write_text(json.dumps({"status": "built"}))
    return name


def test_an_artifact_in_use_is_never_removed(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    kept_one = make_artifact(root, "sha256:kept", ["pip", "install", "."])
    live_one = make_artifact(root, "sha256:live")
    warm_one = make_artifact(root, "sha256:warm")
    old_one = make_artifact(root, "sha256:old")
    (root / ".building.123").mkdir()  # a build in progress
    provider = LocalProvider(tmp_path, Supervisor())
    runtime = provider.state.env("staging")
    for role, name in ((LIVE, live_one), (WARM, warm_one)):
        runtime.sets.append(ReplicaSet(service="web", release=1, fingerprint="sha256:f", config={}, depends_on=[],
                                       artifact=str(root / name), role=role))
    edge = {"address": "staging/edge", "env": "staging", "kind": "edge", "name": "edge", "config": {},
            "depends_on": [], "fingerprint": "sha256:e"}
    kept = [KeptRelease(env="staging", number=9,
                        desired=[service("web", "sha256:kept", ["pip", "install", "."]), edge])]

    assert provider.prune_artifacts(kept, dry_run=True) == [old_one]
    assert (root / old_one).is_dir()
    assert provider.prune_artifacts(kept) == [old_one]
    assert sorted(p.name for p in root.iterdir()) == sorted([".building.123", kept_one, live_one, warm_one])
    assert artifacts.find(root, "sha256:kept", ["pip", "install", "."]) is not None


def test_gc_command_applies_the_spec_retention_and_records_one_event(workspace: Path) -> None:
    with (workspace / "railguard.toml").open("a") as spec:
        spec.write("\n[retention]\nplans_keep = 0\noperations_keep = 0\nevents_keep = 1\n")
    assert rg("daemon", "start", cwd=workspace).returncode == 0
    log = workspace / ".railguard" / "daemon.log"
    deadline = time.monotonic() + 30
    while "retention pass" not in (log.read_text() if log.exists() else ""):  # the pass at boot is done
        assert time.monotonic() < deadline, "no retention pass at boot"
        time.sleep(0.1)
    db = sqlite3.connect(workspace / ".railguard" / "state.db", isolation_level=None)
    now = datetime.now(UTC)
    old = (now - timedelta(days=60)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    db.execute("INSERT INTO plans (id, env, created_at, hash, base_serial, status, body) VALUES "
               "('plan-ancient', 'staging', ?, 'sha256:x', 0, 'saved', '{}')", (old,))
    db.execute("INSERT INTO operations (id, env, kind, status, principal, created_at, updated_at) VALUES "
               "('op-ancient', 'staging', 'apply', 'succeeded', 'user:test', ?, ?)", (old, old))
    db.execute("INSERT INTO events (env, at, kind, message) VALUES ('staging', ?, 'test', 'ancient')", (old,))
    db.close()

    done = rg("gc", "--dry-run", "--json", cwd=workspace)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)["gc"]
    assert found["dry_run"] is True and found["policy"]["plans_keep"] == 0
    assert found["removed"]["plans"] == 1 and found["removed"]["operations"] == 1

    done = rg("gc", "--json", cwd=workspace)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["gc"]["removed"]["plans"] == 1
    events = json.loads(rg("events", "--json", cwd=workspace).stdout)["events"]
    collected = [e for e in events if e["kind"] == "retention.collected"]
    assert len(collected) == 1 and collected[0]["data"]["removed"]["plans"] == 1, collected
    assert "ancient" not in [e["message"] for e in events]
    assert json.loads(rg("gc", "--json", cwd=workspace).stdout)["gc"]["removed"]["plans"] == 0
