"""The collector pause around large plans: it restarts, leaves no young objects to walk, and loses no cycle."""

from __future__ import annotations

import gc
import weakref

from railguard.engine.gcpause import paused_gc


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_after_a_pause_survivors_are_old_and_cycles_are_still_collected() -> None:
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
        kept = [[i] for i in range(50_000)]  # what a request leaves alive
        cycle = _Node()
        gone = weakref.ref(cycle)
        del cycle
    assert gc.isenabled()
    # The survivors were filed under the oldest generation, not left for the next young collection to walk.
    assert gc.get_count()[0] < 1_000
    assert gone() is not None  # the cycle made during the pause is still there...
    gc.collect()
    assert gone() is None  # ...and a full collection frees it
    assert len(kept) == 50_000
