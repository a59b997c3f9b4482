"""An in-memory provider: the whole protocol, no processes, for engine tests and the contract suite.

It keeps live resources in a dict and applies changes instantly; ``fail_on`` makes
a given address fail to apply, so tests can exercise partial applies. A replace keeps
the previous release "warm" (like the local runtime does) until a ``tick`` passes its
rollback window. Handing one fake's ``live`` dict to a new fake stands for a runtime
that survived a daemon restart (what ``adopt`` takes over). Pure logic: tests of real
behaviour use the local runtime, which passes the same contract suite
(``tests/providers/test_contract.py``).
"""

from __future__ import annotations

import time

from railguard.model.api import KeptRelease
from railguard.model.diagnostics import RailguardError, error
from railguard.model.plans import Action
from railguard.model.resources import LiveStatus, ObservedResource
from railguard.providers.base import (
    AdoptResponse,
    ApplyRequest,
    ApplyResponse,
    CommandProcess,
    CommandRequest,
    DescribeRequest,
    DescribeResponse,
    EdgeUnit,
    Health,
    HealthRequest,
    HealthResponse,
    LogFile,
    LogsRequest,
    LogsResponse,
    ObserveRequest,
    ObserveResponse,
    Progress,
    ProviderEvent,
    ReplicaUnit,
    RouteUnit,
    ServiceUnit,
    ShutdownRequest,
    SummaryResponse,
    TickRequest,
    TickResponse,
    TrafficBatch,
    TrafficRequest,
    TrafficResponse,
    WarmUnit,
)

WARM_S = 60.0  # how long a replaced release stays warm when its config names no rollback window


class FakeProvider:
    kind = "fake"

    def __init__(self, fail_on: set[str] | None = None,
                 live: dict[str, dict[str, ObservedResource]] | None = None) -> None:
        self.live: dict[str, dict[str, ObservedResource]] = live if live is not None else {}
        self.fail_on = fail_on or set()
        self.applied: list[tuple[str, Action]] = []
        self.warm: dict[str, list[tuple[str, int, float]]] = {}  # env -> (address, release, until)
        self.log_lines: dict[tuple[str, str], list[str]] = {}  # (env, service) -> what it "wrote"
        self.supervising = False
        self.requests: list[TrafficBatch] = []  # what tests make the edge "see"; handed out once

    # -- facts -------------------------------------------------------------------------------
    def observe(self, request: ObserveRequest) -> ObserveResponse:
        return ObserveResponse(resources=sorted(self.live.get(request.env, {}).values(), key=lambda r: r.address))

    def health(self, request: HealthRequest) -> HealthResponse:
        found = self.live.get(request.env, {}).get(request.address)
        if found is None:
            return HealthResponse(address=request.address, health=Health.missing)
        return HealthResponse(address=request.address, health=Health.healthy)

    # -- changes -----------------------------------------------------------------------------
    def apply_change(self, request: ApplyRequest, progress: Progress | None = None) -> ApplyResponse:
        change = request.change
        if change.address in self.fail_on:
            return ApplyResponse(ok=False, observed=self.live.get(request.env, {}).get(change.address), diagnostics=[
                error("apply.step_failed", f"{change.address} failed", "The fake provider was told to fail.",
                      "Nothing to do: this is a test.", address=change.address)])
        env = self.live.setdefault(request.env, {})
        self.applied.append((change.address, change.action))
        if change.action is Action.delete:
            env.pop(change.address, None)
            return ApplyResponse(ok=True, observed=None)
        desired = request.desired
        assert desired is not None
        previous = env.get(change.address)
        if previous is None:
            release = request.release or 1
        elif change.action is Action.replace:
            release = request.release or (previous.release or 0) + 1
            window = float(desired.config.get("rollback_window_ms") or WARM_S * 1000) / 1000
            self.warm.setdefault(request.env, []).append(
                (change.address, previous.release or 0, time.time() + window))
        else:
            release = previous.release or 1
        observed = ObservedResource(address=desired.address, kind=desired.kind, fingerprint=desired.fingerprint,
                                    config=desired.config, depends_on=desired.depends_on,
                                    status=LiveStatus.running, release=release)
        env[change.address] = observed
        self.log_lines.setdefault((request.env, desired.name), []).append(
            f"{change.action.value} {desired.address} release {release}")
        return ApplyResponse(ok=True, observed=observed)

    # -- lifecycle ---------------------------------------------------------------------------
    def adopt(self) -> AdoptResponse:
        self.supervising = True
        return AdoptResponse(notes=[f"{address}: adopted" for env in self.live.values() for address in env])

    def tick(self, request: TickRequest) -> TickResponse:
        now = time.time() if request.now is None else request.now
        events: list[ProviderEvent] = []
        for env, sets in self.warm.items():
            for entry in [w for w in sets if w[2] <= now]:
                sets.remove(entry)
                events.append(ProviderEvent(kind="release.warm_stopped", env=env,
                                            message=f"{entry[0]} release {entry[1]}: rollback window over"))
        return TickResponse(events=events)

    def shutdown(self, request: ShutdownRequest) -> None:
        self.supervising = False
        if request.everything:
            self.live.clear()
            self.warm.clear()

    def prune_artifacts(self, kept: list[KeptRelease], dry_run: bool = False) -> list[str]:
        return []  # the fake builds nothing, so it keeps no artifacts to prune

    def start_command(self, request: CommandRequest, stdio: tuple[int, int, int] | None) -> CommandProcess:
        raise RailguardError(error(
            "exec.no_release", "The fake runtime runs no commands",
            f"{request.argv} in '{request.env}': the fake provider keeps state in memory and runs no processes.",
            "Use the local provider to run one-off commands."))

    # -- views -------------------------------------------------------------------------------
    def describe(self, request: DescribeRequest) -> DescribeResponse:
        live = self.live.get(request.env, {})
        services: list[ServiceUnit] = []
        now = time.time()
        for resource in sorted(live.values(), key=lambda r: r.address):
            if resource.kind != "service":
                continue
            replicas = [ReplicaUnit(name=f"{request.env}.{resource.address.rsplit('.', 1)[-1]}.r{resource.release}.{i}",
                                    pid=None, port=None, health="healthy", restarts=0, uptime_s=0.0)
                        for i in range(int(resource.config.get("replicas", 1)))]
            warm = [WarmUnit(release=release, replicas=len(replicas), until_s=round(until - now, 1))
                    for address, release, until in self.warm.get(request.env, []) if address == resource.address]
            services.append(ServiceUnit(name=resource.address.rsplit(".", 1)[-1], address=resource.address,
                                        release=resource.release, replicas=replicas, warm=warm))
        edge = live.get(f"{request.env}/edge")
        port = edge.config.get("port") if edge else None
        routes = [RouteUnit(host=r.get("host"), path=r.get("path", "/"), upstreams=[])
                  for r in (edge.config.get("routes", []) if edge else [])]
        return DescribeResponse(env=request.env, services=services,
                                live_sets=len(services),
                                edge=EdgeUnit(port=port, url=f"http://127.0.0.1:{port}/" if port else None,
                                              running=edge is not None, routes=routes))

    def logs(self, request: LogsRequest) -> LogsResponse:
        lines = self.log_lines.get((request.env, request.service), [])
        if not lines:
            return LogsResponse()
        name = f"{request.env}.{request.service}"
        start = (request.offsets or {}).get(name, len(lines)) if request.offsets is not None else None
        shown = lines[start:] if start is not None else lines[-request.lines:] if request.lines else []
        return LogsResponse(files=[LogFile(name=name, lines=shown)], offsets={name: len(lines)})

    def set_canary_weight(self, env: str, service: str, percent: int) -> None:
        raise _no_canary(env, service)  # the fake rolls out all at once: it never has a canary

    def abort_canary(self, env: str, service: str) -> None:
        raise _no_canary(env, service)

    def traffic(self, request: TrafficRequest) -> TrafficResponse:
        batches, self.requests = self.requests, []
        return TrafficResponse(batches=batches)

    def summary(self) -> SummaryResponse:
        # What describe() would list, counted without building it (a health check holding 10k live services).
        return SummaryResponse(replicas=sum(int(r.config.get("replicas", 1)) for live in self.live.values()
                                            for r in live.values() if r.kind == "service"))


def _no_canary(env: str, service: str) -> RailguardError:
    return RailguardError(error("canary.none", f"'{service}' in '{env}' has no canary in progress",
                                "The fake provider rolls every release out at once.",
                                "Use the local runtime for canary rollouts."))
