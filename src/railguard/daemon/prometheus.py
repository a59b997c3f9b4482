"""The daemon's opt-in Prometheus listener: ``/metrics`` in the text format (the ``prometheus-client`` library).

Off unless ``RAILGUARD_METRICS_ADDR`` (``host:port``, e.g. ``127.0.0.1:9464``) is set when the daemon
starts. Everything is computed at scrape time from what the daemon already holds, so an idle daemon
pays nothing: request counts and latency per environment, service and release (the edge's access log,
:mod:`railguard.daemon.metrics`), operations by kind and status with their durations, replica
restarts and service health (the provider's ``describe``), incidents by kind and state. It serves
numbers only: no names of secrets, no log lines. Started by :class:`railguard.daemon.service.Daemon`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from railguard.model.api import Health
from railguard.providers.base import DescribeRequest
from railguard.state import incidents

if TYPE_CHECKING:
    from railguard.daemon.service import Daemon

log = logging.getLogger("railguard.daemon")
ADDRESS_VARIABLE = "RAILGUARD_METRICS_ADDR"


class DaemonCollector(Collector):
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        yield from self._requests()
        yield from self._operations()
        yield from self._runtime()
        yield from self._incidents()

    def _requests(self) -> Iterator[Metric]:
        labels = ["env", "service", "release"]
        total = CounterMetricFamily("railguard_requests", "Requests the edge handled, by status class "
                                    "(since the release first answered)", labels=[*labels, "code"])
        latency = GaugeMetricFamily("railguard_request_latency_ms", "Edge latency quantiles over the last minute",
                                    labels=[*labels, "quantile"])
        rate = GaugeMetricFamily("railguard_request_rate", "Requests per second over the last minute", labels=labels)
        for traffic in self.daemon.observer.metrics.releases():
            values = [traffic.env, traffic.service or "", "" if traffic.release is None else str(traffic.release)]
            by = {w.window: w for w in traffic.windows}
            since, minute = by["since_switch"], by["1m"]
            for code, n in (("2xx", since.status_2xx), ("3xx", since.status_3xx), ("4xx", since.status_4xx),
                            ("5xx", since.status_5xx)):
                total.add_metric([*values, code], n)
            rate.add_metric(values, minute.rate)
            for q, v in (("0.5", minute.p50_ms), ("0.95", minute.p95_ms), ("0.99", minute.p99_ms)):
                if v is not None:
                    latency.add_metric([*values, q], v)
        yield from (total, latency, rate)

    def _operations(self) -> Iterator[Metric]:
        count = CounterMetricFamily("railguard_operations", "Operations by kind and status (retained history)",
                                    labels=["env", "kind", "status"])
        seconds = CounterMetricFamily("railguard_operation_seconds", "Total duration of finished operations",
                                      labels=["env", "kind"])
        counted: dict[tuple[str, str, str], int] = {}
        durations: dict[tuple[str, str], float] = {}
        for op in self.daemon.store().operations(None, limit=1000, journals=False):
            key = (op.env, op.kind.value, op.status.value)
            counted[key] = counted.get(key, 0) + 1
            if not op.status.in_flight:
                spent = (datetime.fromisoformat(op.updated_at) - datetime.fromisoformat(op.created_at)).total_seconds()
                durations[(op.env, op.kind.value)] = durations.get((op.env, op.kind.value), 0.0) + max(spent, 0.0)
        for key, n in counted.items():
            count.add_metric(list(key), n)
        for pair, total in durations.items():
            seconds.add_metric(list(pair), total)
        yield from (count, seconds)

    def _runtime(self) -> Iterator[Metric]:
        restarts = CounterMetricFamily("railguard_replica_restarts", "Restarts of each live replica",
                                       labels=["env", "service", "replica"])
        health = GaugeMetricFamily("railguard_service_health", "1 for the service's current health",
                                   labels=["env", "service", "health"])
        for env in sorted(self.daemon.provider.summary().edges):
            for unit in self.daemon.provider.describe(DescribeRequest(env=env)).services:
                for replica in unit.replicas:
                    restarts.add_metric([env, unit.name, replica.name], replica.restarts)
                found = self.daemon.status_health(env, unit.address)
                for value in Health:
                    health.add_metric([env, unit.name, value.value], 1.0 if value is found else 0.0)
        yield from (restarts, health)

    def _incidents(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily("railguard_incidents", "Incidents by kind and state (retained)",
                                  labels=["env", "kind", "state"])
        counted: dict[tuple[str, str, str], int] = {}
        for found in incidents.listed(self.daemon.store(), limit=10_000):
            key = (found.env, found.kind.value, found.state.value)
            counted[key] = counted.get(key, 0) + 1
        for key, n in counted.items():
            gauge.add_metric(list(key), n)
        yield gauge


def start(daemon: Daemon) -> str | None:
    """Serve ``/metrics`` when ``RAILGUARD_METRICS_ADDR`` asks for it; return where, or None."""
    address = os.environ.get(ADDRESS_VARIABLE, "").strip()
    if not address:
        return None
    host, _, port = address.rpartition(":")
    registry = CollectorRegistry()
    registry.register(DaemonCollector(daemon))
    try:
        start_http_server(int(port), addr=host or "127.0.0.1", registry=registry)
    except (OSError, ValueError) as exc:  # a bad or busy address must not stop the daemon itself
        log.error("metrics listener not started on %r: %s", address, exc)
        return None
    return address
