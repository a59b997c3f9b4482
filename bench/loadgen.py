"""A small, bounded HTTP load generator for measuring failed requests during a redeploy.

Why it exists: to compare Railguard's rollouts with peer tools (bench/rollout_peers.py, and
Railguard's own bench scripts later) we need the same steady client load around every
redeploy and the same way of counting what the clients saw. It sends GET requests to one
loopback URL at a fixed target rate (open loop: request k is due at start + k/rate, whatever
happened to request k-1), spread over a few threads, and counts 2xx, non-2xx by status, and
connection errors / timeouts by exception type, plus latency p50/p99 of the 2xx answers.

Stdlib http.client only (low overhead). By default every request opens a new TCP connection
(`Connection: close`), the harsher case during a restart; `keepalive=True` reuses one
connection per thread and reconnects after any error (no retries: a failed request counts).
Keep-alive threads are closed-loop: against examples/notes (no TCP_NODELAY, so back-to-back
requests on one connection take ~44 ms) use ~16 threads to hold 250 req/s; check achieved_rate.
A slot more than `max_lag` seconds behind schedule (a thread stuck in a timeout, or a
generator that cannot keep up) is skipped and counted in `missed_slots` instead of being
sent in a burst later. It always stops by itself after `max_duration` seconds.

Library use:
    gen = LoadGen("http://127.0.0.1:8080/", rate=250)
    gen.start(); ...redeploy...; result = gen.stop()   # Result is a JSON-serialisable dataclass
CLI:
    python bench/loadgen.py http://127.0.0.1:8080/ --rate 250 --duration 5 [--keepalive] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass
class Result:
    url: str
    target_rate: float
    keepalive: bool
    threads: int
    duration_s: float
    total: int
    ok_2xx: int
    non_2xx: dict[str, int]
    errors: dict[str, int]
    failed: int
    achieved_rate: float
    missed_slots: int
    max_lag_ms: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    first_failure_s: float | None
    last_failure_s: float | None
    marks: list[tuple[float, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        lat = f"p50 {_fmt(self.p50_ms)} ms, p99 {_fmt(self.p99_ms)} ms"
        return (
            f"{self.total} requests in {self.duration_s:.2f}s ({self.achieved_rate:.0f}/s of {self.target_rate:.0f}/s"
            f" target), {self.ok_2xx} 2xx, {self.failed} failed{_breakdown(self)}, "
            f"{self.missed_slots} missed slots, max lag {self.max_lag_ms:.0f} ms, {lat}"
        )


def _breakdown(r: Result) -> str:
    parts = [f"{k}: {v}" for k, v in {**r.non_2xx, **r.errors}.items()]
    return f" ({', '.join(parts)})" if parts else ""


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    idx = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[idx]


@dataclass
class _Tally:
    total: int = 0
    ok: int = 0
    non_2xx: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    missed: int = 0
    max_lag: float = 0.0
    fail_times: list[float] = field(default_factory=list)  # first and last only


class LoadGen:
    """Open-loop GET load against one loopback URL; start() then stop() -> Result."""

    def __init__(
        self,
        url: str,
        rate: float = 250.0,
        threads: int = 4,
        keepalive: bool = False,
        timeout: float = 2.0,
        max_duration: float = 120.0,
        max_lag: float = 0.5,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS:
            raise ValueError(f"loopback http:// URLs only, got {url!r}")
        if rate <= 0 or threads <= 0:
            raise ValueError("rate and threads must be positive")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or 80
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.rate = rate
        self.threads = threads
        self.keepalive = keepalive
        self.timeout = timeout
        self.max_duration = max_duration
        self.max_lag = max_lag
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._tallies: list[_Tally] = []
        self._t0 = 0.0
        self._t_end: float | None = None
        self._marks: list[tuple[float, str]] = []

    # -- public API -------------------------------------------------------------------
    def start(self) -> None:
        if self._workers:
            raise RuntimeError("already started")
        self._t0 = time.perf_counter()
        for i in range(self.threads):
            tally = _Tally()
            self._tallies.append(tally)
            t = threading.Thread(target=self._run, args=(i, tally), name=f"loadgen-{i}", daemon=True)
            self._workers.append(t)
            t.start()

    def mark(self, label: str) -> None:
        """Record a labelled timestamp (seconds since start), e.g. 'redeploy 1 begin'."""
        self._marks.append((round(time.perf_counter() - self._t0, 3), label))

    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def stop(self) -> Result:
        self._stop.set()
        self._t_end = min(time.perf_counter(), self._t0 + self.max_duration)
        for t in self._workers:
            t.join(self.timeout + 2)
        return self._result()

    def run_for(self, seconds: float) -> Result:
        self.start()
        time.sleep(min(seconds, self.max_duration))
        return self.stop()

    # -- internals --------------------------------------------------------------------
    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def _run(self, idx: int, tally: _Tally) -> None:
        headers = {} if self.keepalive else {"Connection": "close"}
        conn: http.client.HTTPConnection | None = None
        interval = 1.0 / self.rate
        k = idx
        try:
            while not self._stop.is_set():
                due = k * interval
                if due > self.max_duration:
                    break
                now = time.perf_counter() - self._t0
                if due > now:
                    if self._stop.wait(due - now):
                        break
                    now = time.perf_counter() - self._t0
                lag = now - due
                if lag > self.max_lag:  # hopelessly late: skip to the next slot due from now
                    skip = int((now - due) / (interval * self.threads))
                    tally.missed += skip
                    k += skip * self.threads
                    continue
                tally.max_lag = max(tally.max_lag, lag)
                k += self.threads
                t_send = time.perf_counter()
                try:
                    if conn is None:
                        conn = self._connect()
                    conn.request("GET", self.path, headers=headers)
                    resp = conn.getresponse()
                    resp.read()
                    status = resp.status
                    if not self.keepalive or resp.will_close:
                        conn.close()
                        conn = None
                except Exception as exc:  # every failure type is data here
                    tally.total += 1
                    tally.errors[type(exc).__name__] += 1
                    self._note_failure(tally, t_send)
                    if conn is not None:
                        conn.close()
                        conn = None
                    continue
                tally.total += 1
                if 200 <= status < 300:
                    tally.ok += 1
                    tally.latencies.append((time.perf_counter() - t_send) * 1000.0)
                else:
                    tally.non_2xx[str(status)] += 1
                    self._note_failure(tally, t_send)
        finally:
            if conn is not None:
                conn.close()

    def _note_failure(self, tally: _Tally, t_send: float) -> None:
        t = t_send - self._t0
        if not tally.fail_times:
            tally.fail_times = [t, t]
        else:
            tally.fail_times[1] = t

    def _result(self) -> Result:
        end = self._t_end if self._t_end is not None else time.perf_counter()
        duration = max(1e-9, end - self._t0)
        total = sum(t.total for t in self._tallies)
        ok = sum(t.ok for t in self._tallies)
        non_2xx: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        lat: list[float] = []
        firsts: list[float] = []
        lasts: list[float] = []
        for t in self._tallies:
            non_2xx.update(t.non_2xx)
            errors.update(t.errors)
            lat.extend(t.latencies)
            if t.fail_times:
                firsts.append(t.fail_times[0])
                lasts.append(t.fail_times[1])
        lat.sort()
        return Result(
            url=self.url,
            target_rate=self.rate,
            keepalive=self.keepalive,
            threads=self.threads,
            duration_s=round(duration, 3),
            total=total,
            ok_2xx=ok,
            non_2xx=dict(non_2xx),
            errors=dict(errors),
            failed=total - ok,
            achieved_rate=round(total / duration, 1),
            missed_slots=sum(t.missed for t in self._tallies),
            max_lag_ms=round(max((t.max_lag for t in self._tallies), default=0.0) * 1000.0, 1),
            p50_ms=_round(_percentile(lat, 0.50)),
            p99_ms=_round(_percentile(lat, 0.99)),
            max_ms=_round(lat[-1] if lat else None),
            first_failure_s=_round(min(firsts) if firsts else None, 3),
            last_failure_s=_round(max(lasts) if lasts else None, 3),
            marks=list(self._marks),
        )


def _round(v: float | None, nd: int = 2) -> float | None:
    return None if v is None else round(v, nd)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("url", help="loopback http:// URL, e.g. http://127.0.0.1:8080/")
    ap.add_argument("--rate", type=float, default=250.0, help="target requests per second (default 250)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds to run (default 5)")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--keepalive", action="store_true", help="reuse connections (default: one per request)")
    ap.add_argument("--timeout", type=float, default=2.0, help="per-request timeout in seconds")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    gen = LoadGen(
        args.url,
        rate=args.rate,
        threads=args.threads,
        keepalive=args.keepalive,
        timeout=args.timeout,
        max_duration=args.duration,
    )
    result = gen.run_for(args.duration)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
