"""What the local runtime shows of itself: the live units of an environment, logs and a summary.

A mixin of :class:`railguard.providers.local.provider.LocalProvider`, kept apart from
adoption, supervision and rollouts: these verbs only read (``runtime.json``'s replica
sets, the supervisor's records, the last health checks, the log files under
``<state>/logs/<env>/<service>/``) and never change what runs. ``railguard status``,
``railguard logs`` and the daemon's health answer are built from them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from railguard.providers.base import (
    CanaryUnit,
    DescribeRequest,
    DescribeResponse,
    EdgeSummary,
    EdgeUnit,
    Health,
    LogFile,
    LogsRequest,
    LogsResponse,
    ReplicaHealth,
    ReplicaUnit,
    RouteUnit,
    ServiceUnit,
    SummaryResponse,
    WarmUnit,
)
from railguard.providers.local.edge import CaddyEdge, EdgeRoute
from railguard.providers.local.isolation import ISOLATED, SHARED, Level
from railguard.providers.local.processes import ReplicaRecord, Supervisor, tail
from railguard.providers.local.runtime import CANARY, LIVE, WARM, Replica, ReplicaSet, RuntimeState

FOLLOW_CHUNK = 256 * 1024  # most bytes one follow-mode answer reads per file


def service_health(states: list[ReplicaHealth]) -> Health:
    """A live service's health from its replicas' (``health`` and ``describe`` answer the same)."""
    # A replica down or past its unhealthy threshold degrades the service; one still starting or failing
    # its first checks leaves it progressing.
    if states and all(s == "healthy" for s in states):
        return Health.healthy
    if any(s in ("down", "unhealthy") for s in states):
        return Health.degraded
    return Health.progressing


class Views:
    home: Path
    state: RuntimeState
    supervisor: Supervisor
    edges: dict[str, CaddyEdge]
    isolation: Level

    def edge(self, env: str) -> CaddyEdge:
        raise NotImplementedError

    def edge_routes(self, env: str) -> list[EdgeRoute]:
        raise NotImplementedError

    def replica_health(self, config: dict[str, Any], replica: Replica) -> ReplicaHealth:
        raise NotImplementedError

    def restarts(self, name: str) -> int:
        try:
            return self.supervisor.restarts(name)
        except KeyError:  # not (or no longer) supervised
            return 0

    def _last_exit(self, name: str) -> str | None:
        try:
            return self.supervisor.last_exit(name)
        except KeyError:
            return None

    def describe(self, request: DescribeRequest) -> DescribeResponse:
        now = time.time()
        with self.state.lock:
            runtime = self.state.env(request.env)
            records = self.supervisor.records()
            counters = self.supervisor.counters()  # restarts, recent restarts, last exit: one read for all
            by_service: dict[str, list[ReplicaSet]] = {}  # one pass: runtime.live(name) per service is quadratic
            for rs in runtime.sets:
                by_service.setdefault(rs.service, []).append(rs)
            services = [self._service_unit(request.env, name, next((s for s in sets if s.role == LIVE), None),
                                           [s for s in sets if s.role == WARM], now, records,
                                           next((s for s in sets if s.role == CANARY), None), counters)
                        for name, sets in sorted(by_service.items())]
            edge = runtime.edge
            routes = [RouteUnit(host=r.host, path=r.path, upstreams=list(r.upstreams))
                      for r in self.edge_routes(request.env) if r.static is None]
            live_sets = sum(1 for rs in runtime.sets if rs.role == LIVE)
            users = {r.spec.user for rs in runtime.sets for r in rs.replicas}
        port = edge["config"]["port"] if edge else None
        # Isolated only when the runtime isolates and nothing of the environment still runs as the daemon's user.
        isolated = self.isolation.isolated and None not in users
        https_port = edge["config"].get("https_port") if edge else None
        root = self.edge(request.env).ca_root()
        return DescribeResponse(
            env=request.env, services=services, live_sets=live_sets,
            isolation=ISOLATED if isolated else SHARED, user=next(iter(sorted(u for u in users if u)), None),
            edge=EdgeUnit(port=port, url=f"http://127.0.0.1:{port}/" if port else None,
                          running=self.edge(request.env).running(), routes=routes, https_port=https_port,
                          ca_root=str(root) if https_port is not None and root.exists() else None))

    def _service_unit(self, env: str, name: str, live: ReplicaSet | None, warm: list[ReplicaSet],
                      now: float, records: dict[str, ReplicaRecord], canary: ReplicaSet | None,
                      counters: dict[str, tuple[int, int, str | None]]) -> ServiceUnit:
        replicas = self._replica_units(live, now, records, counters)
        return ServiceUnit(
            name=name, address=f"{env}/service.{name}", release=live.release if live else None,
            replicas=replicas, health=service_health([r.health for r in replicas]) if live else Health.missing,
            warm=[WarmUnit(release=w.release, replicas=len(w.replicas),
                           until_s=round((w.warm_until or now) - now, 1)) for w in warm],
            canary=CanaryUnit(release=canary.release, weight=canary.weight or 0,
                              replicas=self._replica_units(canary, now, records, counters),
                              operation=canary.operation)
            if canary is not None else None)

    def _replica_units(self, rs: ReplicaSet | None, now: float, records: dict[str, ReplicaRecord],
                       counters: dict[str, tuple[int, int, str | None]]) -> list[ReplicaUnit]:
        replicas: list[ReplicaUnit] = []
        for replica in rs.replicas if rs else []:
            record = records.get(replica.spec.name, replica.record)
            alive = self.supervisor.alive(record)
            restarts, recent, last_exit = counters.get(replica.spec.name, (0, 0, None))  # unsupervised: none
            replicas.append(ReplicaUnit(
                name=replica.spec.name, pid=record.pid if alive else None, port=replica.spec.port,
                health=self.replica_health(rs.config, replica) if rs else "unknown", restarts=restarts,
                uptime_s=round(now - record.create_time, 1) if alive else 0, recent_restarts=recent,
                last_exit=last_exit))
        return replicas

    def logs(self, request: LogsRequest) -> LogsResponse:
        """The last ``lines`` of each log file of the service, or (follow mode) what was written since."""
        folder = self.home / "logs" / request.env / request.service
        files = sorted(folder.glob("*.log")) if folder.is_dir() else []
        if request.release is not None:
            files = [f for f in files if f".r{request.release}." in f.name]
        found: list[LogFile] = []
        offsets: dict[str, int] = {}
        for path in files:
            size = path.stat().st_size
            if request.offsets is None:
                chunk = tail(path, request.lines)
            else:
                start = request.offsets.get(path.name, size)
                start = 0 if start > size else start  # rotated: read the new file from its start
                with path.open("rb") as handle:
                    handle.seek(start)
                    chunk = handle.read(FOLLOW_CHUNK).decode("utf-8", errors="replace").splitlines()
            found.append(LogFile(name=path.stem, lines=chunk))
            offsets[path.name] = size
        return LogsResponse(files=found, offsets=offsets)

    def summary(self) -> SummaryResponse:
        return SummaryResponse(edges={env: EdgeSummary(running=edge.running(), pid=edge.pid())
                                      for env, edge in self.edges.items()},
                               replicas=len(self.supervisor.records()), isolation=self.isolation.level,
                               isolation_reason=self.isolation.reason)
