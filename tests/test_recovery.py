"""Settling operations a dead daemon left in flight, through the lifecycles (store on disk, fake provider).

A crash is simulated by a store whose ``finish_operation`` raises, as if the process died right
there; a fresh store on the same folder then runs :func:`recover`, as a new daemon would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from railguard.engine.apply import apply_plan
from railguard.engine.recovery import recover
from railguard.model.api import OperationStatus, PlanStatus, ReleaseStatus
from railguard.providers.fake import FakeProvider
from railguard.state.store import Store

from .test_apply import _plan


class Died(Exception):
    """The daemon died here."""


class DiesBeforeFinishing(Store):
    def finish_operation(self, operation_id: str, status: OperationStatus,
                         problem: dict[str, Any] | None = None) -> None:
        raise Died


def test_crash_after_the_release_went_live_settles_as_succeeded(tmp_path: Path) -> None:
    provider = FakeProvider()
    dying = DiesBeforeFinishing.open(tmp_path)
    plan = _plan(dying, provider)
    op_id = dying.create_operation("staging", "apply", plan.id, "user:test", status=OperationStatus.queued)
    with pytest.raises(Died):
        apply_plan(dying, plan.id, provider, "user:test", plan.desired_digest, op_id=op_id)
    dying.close()
    store = Store.open(tmp_path)
    assert store.operation_status(op_id) is OperationStatus.running
    assert store.load_plan(plan.id)[2] is PlanStatus.applying

    notes = recover(store, provider)

    assert len(notes) == 1 and "succeeded" in notes[0]
    assert store.operation_status(op_id) is OperationStatus.succeeded
    assert store.load_plan(plan.id)[2] is PlanStatus.applied
    live = store.live_release("staging")
    assert live is not None and live.operation_id == op_id  # it stays live: not moved a second time
    assert recover(store, provider) == []  # nothing is left in flight


def test_queued_operation_that_never_started_fails_with_its_plan(tmp_path: Path) -> None:
    provider, store = FakeProvider(), Store.open(tmp_path)
    plan = _plan(store, provider)
    op_id = store.create_operation("staging", "apply", plan.id, "user:test", status=OperationStatus.queued)

    recover(store, provider)

    record = store.operation(op_id)
    assert record is not None and record.status is OperationStatus.failed and record.error is not None
    assert [d.code for d in record.error.diagnostics] == ["operation.interrupted"]
    assert store.load_plan(plan.id)[2] is PlanStatus.failed
    assert store.releases("staging") == []
    assert provider.applied == []


def test_finished_operations_are_left_alone(tmp_path: Path) -> None:
    provider, store = FakeProvider(), Store.open(tmp_path)
    plan = _plan(store, provider)
    record = apply_plan(store, plan.id, provider, "user:test", plan.desired_digest)
    assert record.status is OperationStatus.succeeded
    assert recover(store, provider) == []
    assert [r.status for r in store.releases("staging")] == [ReleaseStatus.live]
