"""The daemon works with any provider: status, health and logs built from protocol verbs only.

The daemon is driven in-process with the fake provider (no processes), which would fail if it
still reached into a runtime's internals; and the JSON users see from `status`, the daemon's health
answer and `logs` keeps every field name, whatever the provider.
"""

from __future__ import annotations

from pathlib import Path

from pydantic_core import to_jsonable_python

from railguard.daemon.service import Daemon
from railguard.daemon.watchers import DRIFT_EVERY_S
from railguard.engine import planner
from railguard.model.plans import Action
from railguard.model.principals import Principal, Role
from railguard.model.resources import desired_resources
from railguard.model.spec import Retention
from railguard.model.specfile import parse_spec
from railguard.providers.base import ApplyRequest, EdgeSummary, ObserveRequest, SummaryResponse
from railguard.providers.fake import FakeProvider

from ..conftest import BASE_SPEC


def _deploy(fake: FakeProvider) -> None:
    spec, _ = parse_spec(BASE_SPEC)
    assert spec is not None
    desired = desired_resources(spec, "staging", "sha256:" + "0" * 64)
    wanted = {r.address: r for r in desired}
    plan = planner.plan("staging", desired, fake.observe(ObserveRequest(env="staging")).resources, 0)
    for change in plan.changes:
        if change.kind != "environment" and change.action is not Action.noop:
            assert fake.apply_change(ApplyRequest(env="staging", change=change, desired=wanted[change.address],
                                                  operation_id="op", release=1)).ok


def test_status_health_and_logs_keep_their_fields_with_the_fake_provider(tmp_path: Path) -> None:
    fake = FakeProvider()
    _deploy(fake)
    daemon = Daemon(tmp_path / ".railguard", provider=fake)
    try:
        status = daemon.status("staging", None).model_dump(mode="json")  # as the API answers it
        assert set(status) == {"env", "serial", "services", "edge", "operation", "drift", "live_sets", "isolation",
                               "user", "databases", "security_refused", "security_last"}
        assert [s["address"] for s in status["services"]] == ["staging/service.api", "staging/service.web"]
        service = status["services"][0]
        assert set(service) == {"name", "address", "release", "status", "replicas", "warm", "requests", "verifying_s",
                                "canary", "replica_sets"}
        assert service["replica_sets"] == []  # Kubernetes environments only
        assert service["status"] == "healthy" and service["release"] == 1  # the provider's health verdict
        assert set(service["replicas"][0]) == {"name", "pid", "port", "health", "restarts", "uptime_s",
                                               "recent_restarts", "last_exit"}
        assert set(status["edge"]) == {"port", "url", "running", "routes", "https_port", "ca_root"}
        assert status["edge"]["port"] == 18080 and status["edge"]["running"] is True
        assert {tuple(sorted(r)) for r in status["edge"]["routes"]} == {("host", "path", "upstreams")}
        assert status["live_sets"] == 2
        assert status["drift"]["live_differs"] is True  # nothing was applied through the engine's store
        health = daemon.health().model_dump(mode="json")
        assert {"pid", "home", "started_at", "edges", "replicas"} <= set(health) and health["replicas"] == 2
        logs = daemon.logs("staging", "web", None, 10, None).model_dump(mode="json")
        assert set(logs) == {"files", "offsets"}
        assert logs["files"][0]["lines"] == ["create staging/service.web release 1"]
    finally:
        daemon.store().close()


def test_plan_policy_gc_and_token_answers_keep_their_wire_fields(workspace: Path) -> None:
    """The daemon answers with contract models now: their JSON has exactly the fields it answered as dicts."""
    daemon = Daemon(workspace / ".railguard", provider=FakeProvider())
    spec = str(workspace / "railguard.toml")
    admin = Principal(id="user:test", role=Role.admin, tty=True)
    try:
        plan = to_jsonable_python(daemon.plan(spec, "staging", admin))
        assert set(plan) == {"format", "id", "created_at", "env", "base_serial", "desired_digest", "changes",
                             "desired", "diagnostics", "requested_by", "verdicts", "source", "allow_data_loss", "hash",
                             "summary", "short_hash"}
        assert set(plan["summary"]) == {"id", "env", "hash", "base_serial", "errored", "applyable", "max_risk",
                                        "counts", "decision", "requested_by"}
        assert plan["short_hash"] and plan["summary"]["hash"] == plan["hash"]
        record = to_jsonable_python(dict(daemon.plan_record(plan["id"])))
        assert set(record) == {"plan", "status", "approvals", "approval"} and record["status"] == "saved"
        assert record["plan"] == plan  # the same answer as the plan call, read back from the store
        policies = daemon.policies(spec, "staging").model_dump(mode="json")
        assert set(policies) == {"env", "protected", "promote_from", "soak_ms", "max_disruptive_changes",
                                 "freezes", "built_in", "rules"}
        assert set(policies["built_in"][0]) == {"rule", "effect", "applies_to"}
        gc = daemon.gc(spec, dry_run=True).model_dump(mode="json")
        assert set(gc) == {"dry_run", "removed", "artifacts", "policy"} and gc["dry_run"] is True
        assert gc["policy"] == Retention().model_dump()
        token = daemon.create_token(admin, "ci", "agent", None, None, None).model_dump(mode="json")
        assert set(token) == {"id", "name", "role", "envs", "created_at", "created_by", "expires_at", "revoked_at",
                              "last_used_at", "token"} and token["token"]
    finally:
        daemon.store().close()


def test_the_drift_watcher_never_moves_the_serial(tmp_path: Path) -> None:
    """The background drift pass reads what runs as status does: it must not record it (an approved plan, bound
    to the serial, would go stale every few seconds, and its writes would race with operations)."""
    class EdgedFake(FakeProvider):
        def summary(self) -> SummaryResponse:  # the drift pass looks at environments with an edge
            return SummaryResponse(edges={env: EdgeSummary(running=True, pid=None) for env in self.live},
                                   replicas=super().summary().replicas)

    fake = EdgedFake()
    _deploy(fake)  # live services the store has never recorded: recording them would move the serial
    daemon = Daemon(tmp_path / ".railguard", provider=fake)
    try:
        watchers = daemon.observer.watchers  # not started: the passes run here, in the test
        before = daemon.store().serial("staging")
        for step in range(3):
            watchers.drift(1_000.0 + step * (DRIFT_EVERY_S + 1))
        assert watchers.next_drift > 1_000.0  # the passes ran
        assert daemon.store().serial("staging") == before
    finally:
        daemon.store().close()


def test_status_records_carry_every_field_of_the_providers_units(tmp_path: Path) -> None:
    """Status reads the provider's replica, warm and ReplicaSet units into its records by attribute (one validation
    of the whole answer): each record equals the unit's fields, as dumping and validating each unit gave."""
    from railguard.model.api import ReplicaSetStatus, ReplicaStatus, WarmRelease
    from railguard.providers.base import DescribeRequest, ReplicaSetUnit, WarmUnit

    fake = FakeProvider()
    _deploy(fake)
    described = fake.describe(DescribeRequest(env="staging"))
    first = described.services[0].model_copy(update={
        "warm": [WarmUnit(release=0, replicas=2, until_s=4.5)],
        "replica_sets": [ReplicaSetUnit(name="api-7d9", release=1, replicas=2, ready=1),
                         ReplicaSetUnit(name="api-5c1", release=None, replicas=0, ready=0)]})
    units = described.model_copy(update={"services": [first, *described.services[1:]]})
    fake.describe = lambda request: units  # type: ignore[method-assign]
    daemon = Daemon(tmp_path / ".railguard", provider=fake)
    try:
        status = daemon.status("staging", None)
        for unit, record in zip(units.services, status.services, strict=True):
            assert record.replicas == [ReplicaStatus.model_validate(r.model_dump()) for r in unit.replicas]
            assert record.warm == [WarmRelease.model_validate(w.model_dump()) for w in unit.warm]
            assert record.replica_sets == [ReplicaSetStatus.model_validate(r.model_dump()) for r in unit.replica_sets]
        assert status.services[0].replica_sets[0].ready == 1 and status.services[0].warm[0].until_s == 4.5
        assert status.edge.model_dump() == units.edge.model_dump()
    finally:
        daemon.store().close()
