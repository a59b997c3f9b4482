"""The fake provider's summary counts the replicas its describe lists, without building the description
(bench/plan_scale.py's daemon holds 10,000 live services and answers a health check on every CLI call)."""

from __future__ import annotations

from railguard.model.resources import LiveStatus, ObservedResource
from railguard.providers.base import DescribeRequest
from railguard.providers.fake import FakeProvider


def test_the_summary_counts_what_describe_lists() -> None:
    def service(env: str, name: str, replicas: int | None) -> ObservedResource:
        config = {} if replicas is None else {"replicas": replicas}
        return ObservedResource(address=f"{env}/service.{name}", kind="service", fingerprint="f", config=config,
                                status=LiveStatus.running)

    live = {"staging": {r.address: r for r in (service("staging", "a", 3), service("staging", "b", None),
                                                service("staging", "c", 0))},
            "production": {"production/service.a": service("production", "a", 2),
                           "production/edge": ObservedResource(address="production/edge", kind="edge",
                                                               fingerprint="e", config={"port": 1, "replicas": 9})}}
    fake = FakeProvider(live=live)
    listed = sum(len(s.replicas) for env in live for s in fake.describe(DescribeRequest(env=env)).services)
    assert fake.summary().replicas == listed == 6
