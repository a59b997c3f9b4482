"""The local provider's ``traffic`` verb: the edge's access lines, attributed to service and release.

A mixin of :class:`railguard.providers.local.provider.LocalProvider`. Each environment's Caddy
logs the upstream that answered every request (:mod:`railguard.providers.local.accesslog`); the
upstream is a replica's loopback port, and the runtime record says which service and release that
replica belongs to (live, warm or pending: a request still in flight on a drained replica counts
for the release that answered it). Read by the daemon's observation loop every pass.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from railguard.providers.base import TrafficBatch, TrafficRequest, TrafficResponse
from railguard.providers.local.accesslog import FILE_NAME, AccessReader
from railguard.providers.local.runtime import RuntimeState


class Traffic:
    home: Path
    state: RuntimeState
    _access: dict[str, AccessReader]
    _access_since: float

    def traffic(self, request: TrafficRequest) -> TrafficResponse:
        readers = self._access
        with self.state.lock:
            # By port: the edge reaches replicas through its resolver, so the upstream it logs may name the host
            # as the lookup did ("localhost.:PORT"); every replica is on loopback, and its port is unique.
            owners = {env: {r.spec.port: (rs.service, rs.release) for rs in runtime.sets for r in rs.replicas
                            if r.spec.port is not None} for env, runtime in self.state.envs.items()}
        batches: list[TrafficBatch] = []
        for env, by_address in owners.items():
            reader = readers.get(env)
            if reader is None:
                reader = readers[env] = AccessReader(self.home / "edge" / env / FILE_NAME, self._access_since)
            grouped: dict[tuple[str | None, int | None], tuple[list[float], list[int], list[float]]] = (
                defaultdict(lambda: ([], [], [])))
            for line in reader.read():
                port = line.upstream.rpartition(":")[2]
                owner = by_address.get(int(port), (None, None)) if port.isdigit() else (None, None)
                at, status, duration = grouped[owner]
                at.append(line.at)
                status.append(line.status)
                duration.append(line.duration_ms)
            batches += [TrafficBatch(env=env, service=service, release=release, at=at, status=status,
                                     duration_ms=duration)
                        for (service, release), (at, status, duration) in grouped.items()]
        return TrafficResponse(batches=batches)
