"""The verification window after a switch: is the new release at least as good as the one it replaced?

When a service's live release changes, :class:`Watch` starts: for ``verify`` seconds (the service's
spec; docs/observe.md) each observation pass compares what the new release did since the switch with
the previous release: replica restarts (a crash loop), health going from passing to failing (flapping),
the 5xx ratio (above ``thresholds.error_ratio`` AND above the previous release's), and p99 latency
(more than ``thresholds.p99_factor`` times the previous release's). The first failed check ends the
watch with a :class:`Verdict` holding the evidence; a window that ends clean is a pass. Pure: the
observation loop (:mod:`railguard.daemon.observation`) feeds it and acts on the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from railguard.daemon.metrics import Counts
from railguard.model.api import Evidence, RequestWindowRef
from railguard.model.spec import Thresholds

P99_FLOOR_MS = 5.0  # below this a p99 "regression" is scheduling noise, not a slower release


@dataclass
class Watch:
    env: str
    service: str
    release: int
    previous: int | None
    started: float  # wall clock of the switch (as first seen)
    verify_s: float
    thresholds: Thresholds
    on_regression: str
    last_health: dict[str, str] = field(default_factory=dict)  # replica -> last health seen
    flaps: int = 0


@dataclass(frozen=True)
class Verdict:
    passed: bool
    check: str  # "window" when passed; crash_loop | flapping | error_ratio | latency
    summary: str
    evidence: list[Evidence]


def _ref(release: int | None, window: str, counts: Counts) -> RequestWindowRef:
    w = counts.window(window, 1.0)
    return RequestWindowRef(release=release, window=window, requests=w.requests, status_5xx=w.status_5xx,
                            error_ratio=w.error_ratio, p99_ms=w.p99_ms)


def judge(watch: Watch, now: float, current: Counts, previous: Counts, restarts: int,
          health: dict[str, str]) -> Verdict | None:
    """One pass: a failing verdict as soon as a check fails, a passing one when the window is over, else None."""
    for replica, state in health.items():
        last = watch.last_health.get(replica)
        if last == "healthy" and state in ("failing", "unhealthy", "down"):
            watch.flaps += 1
        watch.last_health[replica] = state
    t = watch.thresholds
    who = f"{watch.env}/{watch.service} release {watch.release}"
    metrics = Evidence(kind="metrics", summary=f"requests since the switch: release {watch.release} vs "
                       f"{'release ' + str(watch.previous) if watch.previous is not None else 'none before'}",
                       metrics=[_ref(watch.release, "since_switch", current),
                                _ref(watch.previous, "previous_release", previous)])
    if restarts >= t.crash_restarts:
        return Verdict(False, "crash_loop", f"{who} crash-loops: {restarts} restarts within "
                       f"{now - watch.started:.0f} s of the switch", [metrics])
    if watch.flaps >= t.flaps:
        return Verdict(False, "flapping", f"{who} flaps: its health went from passing to failing {watch.flaps} "
                       "times in the verification window", [metrics])
    total = current.total
    if total >= t.min_requests:
        ratio = current.classes[4] / total
        before = previous.classes[4] / previous.total if previous.total else 0.0
        if ratio > t.error_ratio and ratio > before:
            return Verdict(False, "error_ratio", f"{who} answers {ratio:.0%} of requests with a 5xx "
                           f"(threshold {t.error_ratio:.0%}, previous release {before:.0%}); "
                           f"{current.classes[4]} of {total} since the switch", [metrics])
        p99, p99_before = current.percentile(0.99), previous.percentile(0.99)
        healthy_before = previous.total and previous.classes[4] / previous.total <= t.error_ratio
        if (p99 is not None and p99_before is not None and previous.total >= t.min_requests and healthy_before
                and p99 > max(P99_FLOOR_MS, t.p99_factor * p99_before)):
            return Verdict(False, "latency", f"{who} is slower: p99 {p99:.1f} ms against {p99_before:.1f} ms "
                           f"before (more than {t.p99_factor:g}x)", [metrics])
    if now - watch.started >= watch.verify_s:
        return Verdict(True, "window", f"{who} passed its {watch.verify_s:g} s verification window "
                       f"({total} requests, {restarts} restarts)", [metrics])
    return None
