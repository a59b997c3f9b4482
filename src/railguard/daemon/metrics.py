"""Request metrics per environment, service and release, kept compactly in memory.

The daemon's observation loop feeds every request the edge handled (status, latency, time) into one
:class:`Series` per (environment, service, release): a ring of per-second buckets over the last five
minutes (counts by status class and a sparse log-scale latency histogram) plus one cumulative
histogram since the release first answered (the "since switch" window). Memory is bounded: 300
buckets per series, a fixed histogram, and series of releases nobody asked about for a while are
dropped (:meth:`RequestMetrics.prune`). Percentiles come from the histogram (bucket upper bound,
relative error under 10%). Read by status, the API, verification and the Prometheus listener.
What changed since the last :meth:`RequestMetrics.changes` is handed out in one batch, which the
observation loop writes to the state database (:mod:`railguard.state.requestmetrics`); a restarted
daemon starts from it (:meth:`RequestMetrics.restore`), so its figures survive the restart.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from railguard.model.api import ReleaseTraffic, RequestWindow
from railguard.state.requestmetrics import StoredSeries

RING_S = 300
# Latency bucket upper bounds in ms: 0.05 ms .. ~10 min, a factor 1.1 apart (percentiles within 10%).
BOUNDS = [0.05 * 1.1 ** i for i in range(int(math.log(600_000 / 0.05, 1.1)) + 2)]
WINDOWS = (("1m", 60), ("5m", 300))
KEEP_S = 900.0  # a series of a release that answered nothing for this long goes (the newest two per service stay)

Key = tuple[str, str | None, int | None]


def bucket(ms: float) -> int:
    return min(bisect.bisect_left(BOUNDS, ms), len(BOUNDS) - 1)


@dataclass
class Counts:
    classes: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0])  # 1xx.. 5xx (index 0: other)
    hist: dict[int, int] = field(default_factory=dict)

    def add(self, status: int, ms: float) -> None:
        cls = status // 100
        self.classes[cls - 1 if 2 <= cls <= 5 else 0] += 1
        b = bucket(ms)
        self.hist[b] = self.hist.get(b, 0) + 1

    def merge(self, other: Counts) -> None:
        for i, n in enumerate(other.classes):
            self.classes[i] += n
        for b, n in other.hist.items():
            self.hist[b] = self.hist.get(b, 0) + n

    def to_json(self) -> dict[str, Any]:
        return {"c": list(self.classes), "h": {str(b): n for b, n in self.hist.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Counts:
        classes = [int(n) for n in data.get("c", [])][:5]
        return cls(classes=classes + [0] * (5 - len(classes)),
                   hist={int(b): int(n) for b, n in (data.get("h") or {}).items() if 0 <= int(b) < len(BOUNDS)})

    @property
    def total(self) -> int:
        return sum(self.classes)

    def percentile(self, q: float) -> float | None:
        total = sum(self.hist.values())
        if total == 0:
            return None
        rank, seen = max(1, math.ceil(q * total)), 0
        for b in sorted(self.hist):
            seen += self.hist[b]
            if seen >= rank:
                return round(BOUNDS[b], 3)
        return round(BOUNDS[-1], 3)

    def window(self, name: str, seconds: float) -> RequestWindow:
        total = self.total
        return RequestWindow(
            window=name, seconds=round(seconds, 1), requests=total,
            rate=round(total / seconds, 3) if seconds > 0 else 0.0,
            status_2xx=self.classes[1], status_3xx=self.classes[2], status_4xx=self.classes[3],
            status_5xx=self.classes[4], error_ratio=round(self.classes[4] / total, 4) if total else 0.0,
            p50_ms=self.percentile(0.50), p95_ms=self.percentile(0.95), p99_ms=self.percentile(0.99))


@dataclass
class Series:
    ring: deque[tuple[int, Counts]] = field(default_factory=lambda: deque(maxlen=RING_S))
    since: Counts = field(default_factory=Counts)
    first_at: float | None = None
    last_at: float | None = None

    def add(self, at: float, status: int, ms: float) -> None:
        second = int(at)
        if not self.ring or self.ring[-1][0] < second:
            self.ring.append((second, Counts()))
        # A line a little out of order (Caddy logs when a request ends) lands in the newest bucket at most.
        self.ring[-1][1].add(status, ms)
        self.since.add(status, ms)
        self.first_at = at if self.first_at is None else min(self.first_at, at)
        self.last_at = at if self.last_at is None else max(self.last_at, at)

    def over(self, now: float, seconds: int) -> Counts:
        found = Counts()
        for second, counts in self.ring:
            if second > now - seconds:
                found.merge(counts)
        return found

    def windows(self, now: float) -> list[RequestWindow]:
        span = max(now - (self.first_at or now), 0.0)
        found = [self.over(now, s).window(name, min(float(s), max(span, 1.0))) for name, s in WINDOWS]
        return found + [self.since.window("since_switch", max(span, 1.0))]


class RequestMetrics:
    """All series of this daemon, behind one lock (the loop writes, API threads read)."""

    def __init__(self) -> None:
        self._series: dict[Key, Series] = {}
        self._lock = threading.Lock()
        self._dirty: dict[Key, set[int]] = {}  # series -> seconds changed since the last batch
        self._gone: list[Key] = []  # series pruned since the last batch

    def record(self, env: str, service: str | None, release: int | None, at: list[float], status: list[int],
               duration_ms: list[float]) -> None:
        with self._lock:
            key = (env, service, release)
            series = self._series.setdefault(key, Series())
            dirty = self._dirty.setdefault(key, set())
            for when, code, ms in zip(at, status, duration_ms, strict=True):
                series.add(when, code, ms)
                dirty.add(series.ring[-1][0])

    def changes(self) -> tuple[list[StoredSeries], list[Key]]:
        """What changed since the last call (the touched series with their touched buckets; the pruned ones),
        as the store keeps it. Taken, so the next call starts afresh."""
        with self._lock:
            dirty, self._dirty = self._dirty, {}
            gone, self._gone = self._gone, []
            found = []
            for key, seconds in dirty.items():
                series = self._series.get(key)
                if series is None:
                    continue
                found.append(StoredSeries(
                    env=key[0], service=key[1], release=key[2], first_at=series.first_at, last_at=series.last_at,
                    since=series.since.to_json(),
                    buckets=[(second, counts.to_json()) for second, counts in series.ring if second in seconds]))
            return found, gone

    def unsaved(self, changed: list[StoredSeries], gone: list[Key]) -> None:
        """A batch the store refused: its series and seconds are written with the next one."""
        with self._lock:
            for s in changed:
                self._dirty.setdefault((s.env, s.service, s.release), set()).update(b[0] for b in s.buckets)
            self._gone.extend(gone)

    def restore(self, stored: list[StoredSeries]) -> None:
        """Start from what a previous daemon stored (buckets outside the ring are not given)."""
        with self._lock:
            for s in stored:
                series = Series(since=Counts.from_json(s.since), first_at=s.first_at, last_at=s.last_at)
                for second, counts in s.buckets[-RING_S:]:
                    series.ring.append((second, Counts.from_json(counts)))
                self._series[(s.env, s.service, s.release)] = series

    def series(self, env: str, service: str | None, release: int | None) -> Series | None:
        with self._lock:
            return self._series.get((env, service, release))

    def since(self, env: str, service: str, release: int, start: float, now: float | None = None) -> Counts:
        """What ``release`` answered from ``start`` on (whole seconds, within the ring)."""
        now = time.time() if now is None else now
        with self._lock:
            series = self._series.get((env, service, release))
            return series.over(now, max(1, math.ceil(now - start) + 1)) if series else Counts()

    def releases(self, env: str | None = None, now: float | None = None) -> list[ReleaseTraffic]:
        now = time.time() if now is None else now
        with self._lock:
            items = sorted(((k, s) for k, s in self._series.items() if env is None or k[0] == env),
                           key=lambda kv: (kv[0][0], kv[0][1] or "", -(kv[0][2] or 0)))
            return [ReleaseTraffic(env=k[0], service=k[1], release=k[2], first_at=s.first_at, last_at=s.last_at,
                                   windows=s.windows(now)) for k, s in items]

    def prune(self, now: float | None = None) -> int:
        """Drop series idle for ``KEEP_S`` beyond the newest two releases of each service; return how many."""
        now = time.time() if now is None else now
        with self._lock:
            newest: dict[tuple[str, str | None], list[int]] = {}
            for env, service, release in self._series:
                newest.setdefault((env, service), []).append(release or 0)
            keep = {k: sorted(v)[-2:] for k, v in newest.items()}
            gone = [k for k, s in self._series.items()
                    if (s.last_at or 0) < now - KEEP_S and (k[2] or 0) not in keep[(k[0], k[1])]]
            for k in gone:
                del self._series[k]
                self._dirty.pop(k, None)
            self._gone.extend(gone)
            return len(gone)
