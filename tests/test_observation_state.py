"""What observation keeps in the state database: request metrics, canary steps, aborted releases, old incidents.

Real SQLite stores on disk; the in-memory metrics are the daemon's own class. The end-to-end flows with a
real daemon (a restart keeps the figures and the canary's step; an abort's record; drift) are in
tests/e2e/test_observe_restart.py and tests/mcp/test_canary_tools.py.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from railguard.daemon import housekeeping
from railguard.daemon.metrics import RING_S, RequestMetrics
from railguard.daemon.watchers import live_drift
from railguard.model.api import IncidentKind, IncidentState, ReleaseStatus
from railguard.model.diagnostics import RailguardError
from railguard.model.resources import LiveStatus, ObservedResource
from railguard.model.spec import Retention
from railguard.state import canaries, incidents, requestmetrics
from railguard.state.store import Store

NOW = 2_000_000.0


def _windows(metrics: RequestMetrics, now: float) -> dict[str, Any]:
    return {(r.env, r.service, r.release): [w.model_dump() for w in r.windows] for r in metrics.releases(now=now)}


def test_request_metrics_written_in_batches_read_back_the_same(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    metrics = RequestMetrics()
    metrics.record("staging", "web", 1, [NOW - 200] * 30, [200] * 30, [float(i) for i in range(30)])
    metrics.record("staging", "web", 2, [NOW - 5, NOW - 5, NOW - 1], [200, 503, 404], [1.0, 2.0, 3.0])
    metrics.record("staging", None, None, [NOW - 2], [404], [0.5])  # a line the edge could not attribute
    changed, gone = metrics.changes()
    assert len(changed) == 3 and gone == []
    requestmetrics.save(store, changed, gone, int(NOW) - RING_S)
    assert metrics.changes() == ([], [])  # taken: nothing to write until something changes

    # One more request in a second already written: the next batch rewrites that bucket, not a second row.
    metrics.record("staging", "web", 2, [NOW - 1], [200], [1.0])
    changed, gone = metrics.changes()
    assert [(s.release, [b[0] for b in s.buckets]) for s in changed] == [(2, [int(NOW - 1)])]
    requestmetrics.save(store, changed, gone, int(NOW) - RING_S)

    restored = RequestMetrics()
    restored.restore(requestmetrics.load(Store.open(tmp_path), int(NOW) - RING_S))
    assert _windows(restored, NOW) == _windows(metrics, NOW)
    windows = {w.window: w for w in restored.releases("staging", now=NOW)[1].windows}
    assert windows["since_switch"].requests == 4 and windows["1m"].status_5xx == 1


def test_stored_metrics_stay_bounded(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    metrics = RequestMetrics()
    metrics.record("staging", "web", 1, [NOW - 1000 + i for i in range(1000)], [200] * 1000, [1.0] * 1000)
    changed, gone = metrics.changes()
    requestmetrics.save(store, changed, gone, int(NOW) - RING_S)
    count = store.db.execute("SELECT count(*) FROM request_buckets").fetchone()[0]
    assert count <= RING_S  # per-second buckets beyond the ring are never kept; the cumulative row has them
    (series,) = requestmetrics.load(store, 0)
    assert sum(series.since["c"]) == 1000
    # A series the daemon drops goes from the store too.
    for release in (2, 3):
        metrics.record("staging", "web", release, [NOW], [200], [1.0])
    assert metrics.prune(NOW + 10_000) == 1
    changed, gone = metrics.changes()
    requestmetrics.save(store, changed, gone, int(NOW + 10_000) - RING_S)
    assert sorted(s.release for s in requestmetrics.load(store, 0)) == [2, 3]
    assert store.db.execute("SELECT count(*) FROM request_buckets").fetchone()[0] == 0  # all older than the ring


def test_a_batch_the_store_refused_is_written_with_the_next(tmp_path: Path) -> None:
    metrics = RequestMetrics()
    metrics.record("staging", "web", 1, [NOW], [200], [1.0])
    changed, gone = metrics.changes()
    metrics.unsaved(changed, gone)
    again, _ = metrics.changes()
    assert [(s.release, len(s.buckets)) for s in again] == [(1, 1)]


def _release(store: Store, live: bool = True) -> int:
    number = store.add_release("staging", None, None, {"services": {}, "desired": [], "source": {}})
    if live:
        store.finish_release("staging", number, ReleaseStatus.live)
    return number


def test_an_aborted_canary_leaves_its_release_aborted_and_the_one_before_live(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    first = _release(store)
    second = _release(store)
    assert canaries.abort_release(store, "staging", second) == ("aborted", first)
    assert [(r.number, r.status) for r in store.releases("staging")] == [
        (second, ReleaseStatus.aborted), (first, ReleaseStatus.live)]
    live = store.live_release("staging")
    assert live is not None and live.number == first and live.ended_at is None
    assert store.superseded_before("staging", first) == []  # an aborted release is no rollback target
    assert canaries.abort_release(store, "staging", second) == ("aborted", None)  # already: nothing moves
    # Only an operation's end finishes a release: an aborted (or superseded) one can never be made live by it.
    with pytest.raises(RailguardError) as exc:
        store.finish_release("staging", second, ReleaseStatus.live)
    assert exc.value.diagnostics[0].code == "state.illegal_transition"


def test_an_abort_during_its_deploy_waits_for_the_release_to_end(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    first = _release(store)
    pending = _release(store, live=False)
    assert canaries.abort_release(store, "staging", pending) == ("pending", None)
    store.finish_release("staging", pending, ReleaseStatus.live)
    assert canaries.abort_release(store, "staging", pending) == ("aborted", first)
    assert canaries.abort_release(store, "staging", 99) == ("gone", None)


def test_canary_runs_are_kept_per_service(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    run = canaries.CanaryRun(env="staging", service="web", release=3, stable=2, weight=10, step_started=NOW,
                             operation="op-1", analysis="analysing")
    canaries.save(store, run)
    canaries.save(store, canaries.CanaryRun(**{**run.__dict__, "weight": 50}))
    assert canaries.get(store, "staging", "web") == canaries.CanaryRun(**{**run.__dict__, "weight": 50})
    assert canaries.listed(store, canaries.ABORTED) == []
    canaries.delete(store, "staging", "web")
    assert canaries.get(store, "staging", "web") is None


def _incident(store: Store, service: str, resolved_at: str | None) -> str:
    found, _ = incidents.open_or_add(store, IncidentKind.crash_loop, "staging", f"{service} crashed", service=service,
                                     release=1)
    if resolved_at is not None:
        incidents.note(store, found.id, "resolved", "ok", state=IncidentState.resolved)
        with store.transaction() as db:
            db.execute("UPDATE incidents SET resolved_at = ? WHERE id = ?", (resolved_at, found.id))
    return found.id


def test_old_resolved_incidents_go_open_ones_and_known_bad_ones_never(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    old = [_incident(store, f"s{i}", f"2020-01-0{i + 1}T00:00:00.000Z") for i in range(4)]
    still_open = _incident(store, "open", None)
    mitigated = _incident(store, "mitigated", None)
    incidents.note(store, mitigated, "mitigated", "rolled back", state=IncidentState.mitigated)
    recent = _incident(store, "recent", "2999-01-01T00:00:00.000Z")
    incidents.mark_bad(store, "staging", "s0", "sha256:f", 1, old[0])  # its mark still blocks plans: it stays
    cutoff = "2021-01-01T00:00:00.000Z"
    dry = incidents.sweep_resolved(store, 30, keep=2, dry_run=True, cutoff=cutoff)
    # The newest two resolved (recent, s3) are kept whatever their age; s0 is named by a known-bad mark.
    assert sorted(dry) == sorted(old[1:3])
    assert {i.id for i in incidents.listed(store)} >= set(old)  # a dry run removes nothing
    assert incidents.sweep_resolved(store, 30, keep=2, cutoff=cutoff) == dry
    left = {i.id for i in incidents.listed(store)}
    assert left == {old[0], old[3], still_open, mitigated, recent}
    incidents.acknowledge_bad(store, "staging", old[0], "user:x")
    assert incidents.sweep_resolved(store, 30, keep=0, cutoff=cutoff) == [old[0], old[3]]
    assert {i.id for i in incidents.listed(store)} == {still_open, mitigated, recent}


class _NoArtifacts:
    def prune_artifacts(self, kept: Any, dry_run: bool = False) -> list[str]:
        return []


def test_housekeeping_applies_the_incident_retention_of_the_spec(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    gone = _incident(store, "web", "2020-01-01T00:00:00.000Z")
    kept = _incident(store, "open", None)
    done = housekeeping.collect(store, _NoArtifacts(), threading.Lock(), Retention(incidents_days=1, incidents_keep=0))
    assert done.removed["incidents"] == 1
    assert [i.id for i in incidents.listed(store)] == [kept] and gone != kept
    with pytest.raises(ValueError):
        Retention(incidents_days=0)


def _observed(address: str, fingerprint: str, status: LiveStatus = LiveStatus.running,
              kind: str = "service") -> ObservedResource:
    return ObservedResource(address=address, kind=kind, fingerprint=fingerprint, config={}, status=status)


def test_drift_is_what_runs_against_what_was_applied() -> None:
    applied = [{"address": "s/service.web", "kind": "service", "fingerprint": "a"},
               {"address": "s/service.api", "kind": "service", "fingerprint": "b"},
               {"address": "s/edge", "kind": "edge", "fingerprint": "e"},
               {"address": "s/database.main", "kind": "database", "fingerprint": "d"}]
    same = [_observed("s/service.web", "a"), _observed("s/service.api", "b"), _observed("s/edge", "e", kind="edge")]
    assert live_drift(applied, same, set()) == []
    assert live_drift(None, [], set()) == []  # nothing applied yet: nothing to drift from
    changed = [_observed("s/service.web", "x"), _observed("s/edge", "e", LiveStatus.missing, "edge"),
               _observed("s/service.extra", "z")]
    # Replicas down are a health matter (health_regression, crash_loop), not drift.
    assert live_drift(applied, [*same[:1], _observed("s/service.api", "b", LiveStatus.missing), same[2]], set()) == []
    assert live_drift(applied, changed, set()) == [
        "s/service.web runs another config than the applied spec",
        "s/service.api is in the applied spec but not running",
        "s/edge is missing: ",
        "s/service.extra runs but is not in the applied spec"]
    # A service with a canary runs two releases on purpose.
    assert live_drift(applied, changed, {"s/service.web", "s/service.api"}) == [
        "s/edge is missing: ", "s/service.extra runs but is not in the applied spec"]


def _code(call: Any) -> str:
    with pytest.raises(RailguardError) as exc:
        call()
    return exc.value.diagnostics[0].code


def test_a_protected_canary_step_is_a_plan_bound_to_exactly_that_step(tmp_path: Path) -> None:
    from railguard.engine import canarysteps
    from railguard.model.api import PlanStatus
    from railguard.model.principals import Principal, Role
    from railguard.model.resources import environment_address
    from railguard.state import approvals, audit

    store = Store.open(tmp_path)
    agent = Principal(id="token:agent", role=Role.agent, kind="token")
    assert not canarysteps.needs_approval(store, "staging")
    store.record_observed("staging", [ObservedResource(address=environment_address("staging"), kind="environment",
                                                       fingerprint="f", config={"protected": True})])
    assert canarysteps.needs_approval(store, "staging")
    plan = canarysteps.step_plan(store, "staging", "web", 3, 10, 50, agent)
    assert [(c.action.value, c.address) for c in plan.changes] == [("canary-step", "staging/service.web")]
    assert plan.decision.value == "require_approval"
    assert _code(lambda: canarysteps.check_step(store, plan.id, "staging", "web", 3, 10, agent)) == \
        "policy.approval_required"
    approvals.record(store, plan.id, plan.hash, "approved", "user:person", "", [], 3600)
    audit.append(store, None, principal="user:person", action=audit.APPROVE_ACTION, outcome="ok", env="staging",
                 plan_id=plan.id, plan_hash=plan.hash)  # the daemon logs every decision; only a logged one counts
    # Another release, another share now, another service: not the step that was approved.
    for release, current, service in ((4, 10, "web"), (3, 50, "web"), (3, 10, "api")):
        assert _code(lambda r=release, c=current, s=service: canarysteps.check_step(
            store, plan.id, "staging", s, r, c, agent)) == "canary.step_mismatch"
    assert canarysteps.check_step(store, plan.id, "staging", "web", 3, 10, agent) == 50
    assert _code(lambda: canarysteps.refuse_apply(plan)) == "canary.step_plan"
    store.mark_plan(plan.id, PlanStatus.applying)
    store.mark_plan(plan.id, PlanStatus.applied)
    assert _code(lambda: canarysteps.check_step(store, plan.id, "staging", "web", 3, 10, agent)) == \
        "canary.step_mismatch"  # used once, never again
