"""The engine's bounded parallel run of a plan's changes on a runtime that rolls services out side by side.

Pure scheduling logic (``engine.execute._run_bounded``), with a recording stand-in for one change's work: the bound
holds, a service starts only after the services it depends on are done, a change that may not run beside others
(a delete, the edge) has nothing in flight, and a failure stops new starts while what was in flight finishes.
The same path against the real cluster and daemon: tests/k8s/test_faults_cluster.py and test_provider_e2e.py.
"""

from __future__ import annotations

import threading
import time

from railguard.engine.execute import _run_bounded
from railguard.model.diagnostics import Diagnostic, error
from railguard.model.plans import Action, Change, Risk
from railguard.model.resources import Resource


def _service(name: str, depends: list[str] | None = None) -> Resource:
    return Resource(address=f"staging/service.{name}", env="staging", kind="service", name=name, config={},
                    depends_on=[f"staging/service.{d}" for d in depends or []], fingerprint=name)


def _change(resource: Resource, action: Action = Action.create) -> Change:
    return Change(address=resource.address, kind=resource.kind, action=action, reason="test", risk=Risk.safe)


class Recorder:
    def __init__(self, fail: set[str] | None = None) -> None:
        self.fail = fail or set()
        self.lock = threading.Lock()
        self.running: set[str] = set()
        self.events: list[tuple[str, str, frozenset[str]]] = []  # (address, start/end, what else ran at start)
        self.most = 0

    def __call__(self, change: Change) -> list[Diagnostic]:
        with self.lock:
            self.events.append((change.address, "start", frozenset(self.running)))
            self.running.add(change.address)
            self.most = max(self.most, len(self.running))
        time.sleep(0.02)
        with self.lock:
            self.running.discard(change.address)
            self.events.append((change.address, "end", frozenset()))
        if change.address in self.fail:
            return [error("cluster.rollout_failed", "failed", "it failed", "none", address=change.address)]
        return []

    def ended_before(self, first: str, then: str) -> bool:
        order = [(a, what) for a, what, _ in self.events]
        return order.index((f"staging/service.{first}", "end")) < order.index((f"staging/service.{then}", "start"))


def test_services_run_bounded_and_after_what_they_depend_on() -> None:
    api = _service("api")
    workers = [_service(f"w{i}", ["api"]) for i in range(10)]
    web = _service("web", ["w3"])
    gone = Resource(address="staging/service.old", env="staging", kind="service", name="old", config={},
                    fingerprint="old")
    resources = [api, *workers, web]
    changes = [_change(r) for r in resources] + [_change(gone, Action.delete)]
    recorder = Recorder()
    assert _run_bounded(changes, {r.address: r for r in resources}, 4, recorder) == []
    assert recorder.most == 4  # the bound, reached
    assert all(recorder.ended_before("api", w.name) for w in workers)
    assert recorder.ended_before("w3", "web")
    [(_, _, beside)] = [e for e in recorder.events if e[0] == "staging/service.old" and e[1] == "start"]
    assert beside == frozenset()  # a delete runs with nothing in flight
    assert {a for a, what, _ in recorder.events if what == "end"} == {c.address for c in changes}


def test_a_failure_stops_new_starts_and_what_is_in_flight_finishes() -> None:
    resources = [_service(f"s{i}") for i in range(12)]
    recorder = Recorder(fail={"staging/service.s1"})
    failed = _run_bounded([_change(r) for r in resources], {r.address: r for r in resources}, 3, recorder)
    assert [d.address for d in failed] == ["staging/service.s1"]
    started = {a for a, what, _ in recorder.events if what == "start"}
    ended = {a for a, what, _ in recorder.events if what == "end"}
    assert started == ended  # nothing left running
    assert len(started) < len(resources)  # the rest never started
