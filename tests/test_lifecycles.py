"""The lifecycles of operations, plans, releases and approvals: golden transition tables, refusals.

The tables in ``railguard.state.lifecycles`` are rendered to tests/golden/lifecycles/<name>.txt;
a change to a table must change its golden file too (set UPDATE_GOLDEN=1 to rewrite them), so it
shows up in review. The other tests drive a real store on disk through legal and illegal moves.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from railguard.model.api import OperationStatus, PlanStatus, ReleaseStatus
from railguard.model.diagnostics import RailguardError
from railguard.model.plans import Plan
from railguard.state import approvals
from railguard.state.lifecycles import ALL, Lifecycle
from railguard.state.store import Store

GOLDEN = Path(__file__).parent / "golden" / "lifecycles"


@pytest.mark.parametrize("lifecycle", ALL, ids=lambda lc: lc.name)
def test_transition_table_matches_golden_file(lifecycle: Lifecycle) -> None:
    path = GOLDEN / f"{lifecycle.name}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(lifecycle.render())
    assert lifecycle.render() == path.read_text(), f"{path.name} differs: review it, then UPDATE_GOLDEN=1"


def test_golden_files_are_only_the_lifecycles() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.txt")) == sorted(lc.name for lc in ALL)


def _code(exc: pytest.ExceptionInfo[RailguardError]) -> str:
    return exc.value.diagnostics[0].code


def test_operation_moves_queued_running_succeeded_and_never_again(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    op = store.create_operation("staging", "apply", None, "user:test", status=OperationStatus.queued)
    store.journal(op, "step", "begin")  # the first entry moves it to running
    assert store.operation_status(op) is OperationStatus.running
    store.finish_operation(op, OperationStatus.succeeded)
    with pytest.raises(RailguardError) as exc:
        store.finish_operation(op, OperationStatus.failed, {"diagnostics": []})
    assert _code(exc) == "state.illegal_transition"
    assert exc.value.diagnostics[0].extra == {"lifecycle": "operation", "from": "succeeded", "to": "failed"}
    record = store.operation(op)
    assert record is not None and record.status is OperationStatus.succeeded and record.error is None


def test_operation_cannot_start_finished_and_unknown_one_cannot_move(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    with pytest.raises(RailguardError) as exc:
        store.create_operation("staging", "apply", None, "user:test", status=OperationStatus.succeeded)
    assert _code(exc) == "state.illegal_transition"
    assert store.operations() == []
    with pytest.raises(RailguardError) as exc:
        store.finish_operation("op-missing", OperationStatus.failed)
    assert _code(exc) == "state.illegal_transition"


def _saved_plan(store: Store) -> Plan:
    return store.save_plan(Plan(env="staging", base_serial=0, changes=[], desired=[], desired_digest="d"))


def test_plan_lifecycle_refuses_applying_a_rejected_plan(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    plan = _saved_plan(store)
    store.mark_plan(plan.id, PlanStatus.rejected)
    with pytest.raises(RailguardError) as exc:
        store.mark_plan(plan.id, PlanStatus.applying)
    assert _code(exc) == "state.illegal_transition"
    assert store.load_plan(plan.id)[2] is PlanStatus.rejected
    other = _saved_plan(store)
    with pytest.raises(RailguardError):
        store.mark_plan(other.id, PlanStatus.applied)  # applied only after applying
    store.mark_plan(other.id, PlanStatus.applying)
    store.mark_plan(other.id, PlanStatus.applied)
    assert {p.id: p.status for p in store.plans()} == {plan.id: PlanStatus.rejected, other.id: PlanStatus.applied}


def test_release_goes_live_once_and_supersedes_the_previous(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    first = store.add_release("staging", None, None, {"services": {}, "desired": [], "source": {}})
    store.finish_release("staging", first, ReleaseStatus.live)
    second = store.add_release("staging", None, None, {"services": {}, "desired": [], "source": {}})
    store.finish_release("staging", second, ReleaseStatus.live)
    assert [(r.number, r.status) for r in store.releases("staging")] == [
        (second, ReleaseStatus.live), (first, ReleaseStatus.superseded)]
    with pytest.raises(RailguardError) as exc:
        store.finish_release("staging", first, ReleaseStatus.live)  # a superseded release is final
    assert _code(exc) == "state.illegal_transition"
    with pytest.raises(RailguardError):
        store.finish_release("staging", second, ReleaseStatus.failed)
    live = store.live_release("staging")
    assert live is not None and live.number == second


def test_nothing_is_decided_after_a_rejection(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    approvals.record(store, "plan-1", "sha256:x", "approved", "token:a", "", [], 60)
    approvals.record(store, "plan-1", "sha256:x", "rejected", "token:b", "no", [], 60)
    with pytest.raises(RailguardError) as exc:
        approvals.record(store, "plan-1", "sha256:x", "approved", "token:c", "", [], 60)
    assert _code(exc) == "state.illegal_transition"
    assert [a.decision for a in approvals.for_plan(store, "plan-1")] == ["approved", "rejected"]
