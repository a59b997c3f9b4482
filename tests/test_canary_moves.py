"""The canary controller's decision to move a step, as pure logic: a step is made once, never skipped.

:meth:`railguard.daemon.canary.Canaries.advance` against a real state database and a runtime stand-in that only
holds each canary's share (the share is all the decision reads; the real runtimes' moves are covered end to end
in tests/e2e/test_canary_guards.py and tests/k8s/test_canary_cluster.py). What is checked here cannot be timed
from outside a daemon: a promote-step right after another one, before the analysis began the step the first
one made, moves nothing; two moves from the same step at once (promote-step racing promote-step, or the
controller's timed step) move once.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from railguard.daemon.canary import Canaries, Run
from railguard.daemon.verification import Watch
from railguard.model.diagnostics import RailguardError
from railguard.providers.base import (
    CanaryUnit,
    DescribeRequest,
    DescribeResponse,
    EdgeUnit,
    ServiceUnit,
    SummaryResponse,
)
from railguard.state.store import Store


class Shares:
    """The runtime as the decision sees it: one service with a canary at a share. ``hold`` makes a move wait
    (bounded) until another mover has read the share, to force the interleaving a race would need."""

    def __init__(self, weight: int) -> None:
        self.weight = weight
        self.moves: list[int] = []
        self.hold = False
        self.read = threading.Event()

    def summary(self) -> SummaryResponse:
        return SummaryResponse(clusters=["staging"], replicas=0)

    def describe(self, request: DescribeRequest) -> DescribeResponse:
        if threading.current_thread() is not threading.main_thread():
            self.read.set()
        unit = ServiceUnit(name="web", address="staging/service.web", release=1,
                           canary=CanaryUnit(release=2, weight=self.weight))
        return DescribeResponse(env=request.env, services=[unit], edge=EdgeUnit(port=None, url=None, running=False),
                                live_sets=1)

    def set_canary_weight(self, env: str, service: str, percent: int) -> None:
        if self.hold:
            self.read.clear()
            self.read.wait(timeout=2)  # bounded: with the mover's lock, the other one cannot read meanwhile
        self.weight = percent
        self.moves.append(percent)


def _canaries(tmp_path: Path, shares: Shares) -> Canaries:
    store = Store.open(tmp_path / "state")
    daemon = SimpleNamespace(provider=shares, store=lambda: store)
    observer: Any = SimpleNamespace(daemon=daemon, spec=lambda: None, metrics=None)
    return Canaries(observer)


def _run(weight: int) -> Run:
    watch = Watch(env="staging", service="web", release=2, previous=1, started=0.0, verify_s=float("inf"),
                  thresholds=None, on_regression="rollback")  # type: ignore[arg-type]
    return Run(watch=watch, steps=[10, 50, 100], pause="manual", weight=weight)


def test_a_promote_step_right_after_another_moves_nothing_until_the_analysis_began_the_step(tmp_path: Path) -> None:
    shares = Shares(10)
    canaries = _canaries(tmp_path, shares)
    canaries.runs[("staging", "web")] = _run(10)  # the controller analyses the 10 % step
    assert canaries.advance("staging", "web", by="user:a") == 50
    with pytest.raises(RailguardError) as refused:  # the analysis has not begun 50 % yet
        canaries.advance("staging", "web", by="user:a")
    diagnostic = refused.value.diagnostics[0]
    assert diagnostic.code == "canary.step_moved" and diagnostic.remediation and diagnostic.detail
    assert shares.moves == [50] and shares.weight == 50
    canaries.runs[("staging", "web")] = _run(50)  # the next pass begins the 50 % step
    assert canaries.advance("staging", "web", by="user:a") == 100
    assert shares.moves == [50, 100]


def test_a_retry_from_a_share_the_canary_left_moves_nothing(tmp_path: Path) -> None:
    shares = Shares(50)
    canaries = _canaries(tmp_path, shares)
    with pytest.raises(RailguardError) as refused:
        canaries.advance("staging", "web", by="user:a", expect=10)
    assert refused.value.diagnostics[0].code == "canary.step_moved"
    assert refused.value.diagnostics[0].extra == {"expected": 10, "weight": 50}
    assert shares.moves == []


@pytest.mark.parametrize("second", ["promote-step", "controller"])
def test_two_moves_from_the_same_step_at_once_move_once(tmp_path: Path, second: str) -> None:
    shares = Shares(10)
    shares.hold = True
    canaries = _canaries(tmp_path, shares)
    canaries.runs[("staging", "web")] = _run(10)
    outcomes: list[object] = []

    def move(expect: int | None) -> None:
        try:
            outcomes.append(canaries.advance("staging", "web", by="x", expect=expect))
        except RailguardError as exc:
            outcomes.append(exc.diagnostics[0].code)

    # The controller moves from the step it analysed (expect = its run's share); promote-step from the runtime's.
    movers = [threading.Thread(target=move, args=(None,)),
              threading.Thread(target=move, args=(10 if second == "controller" else None,))]
    for mover in movers:
        mover.start()
    for mover in movers:
        mover.join(timeout=30)
    assert sorted(map(str, outcomes)) == ["50", "canary.step_moved"], outcomes
    assert shares.moves == [50] and shares.weight == 50
