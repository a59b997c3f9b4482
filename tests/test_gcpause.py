"""The collector pause around large plans: it restarts, leaves no young objects to walk, and loses no cycle."""

from __future__ import annotations

import gc
import subprocess
import sys
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


SETTLED = """
import gc, time, weakref
from railguard.engine import gcpause

class Node:
    def __init__(self):
        self.me = self

gcpause.settle()
assert gc.get_threshold() == gcpause.SERVER_THRESHOLDS, gc.get_threshold()
frozen = gc.get_freeze_count()
assert frozen > 1_000, frozen  # what the process loaded (modules, classes) is out of the collector's way
old = Node()  # a cycle frozen with the start-up...
old_gone = weakref.ref(old)
gcpause.settle()
del old
gc.collect()
assert old_gone() is not None  # ...is not walked by a full collection
with gcpause.paused_gc():
    kept = [[i] for i in range(50_000)]
    cycle = Node()
    gone = weakref.ref(cycle)
    del cycle
# A pause thaws (as in any process: its survivors go to the oldest generation, its cycles stay collectable)...
assert gc.get_freeze_count() == 0
assert not gcpause.resettle()  # ...and the heap is frozen again only once pauses have been over for a while
assert gcpause.resettle(time.monotonic() + gcpause.RESETTLE_AFTER_S)
assert gone() is None and old_gone() is None  # its full collection freed both cycles
assert gc.get_freeze_count() >= frozen + 50_000 and len(kept) == 50_000
assert not gcpause.resettle(time.monotonic() + 3600)  # nothing thawed since: nothing to do
again = Node()
again_gone = weakref.ref(again)
gcpause.refreeze()  # hourly: a cycle among frozen objects is freed too
assert again_gone() is not None  # still referenced
gc.freeze()
del again
gc.collect()
assert again_gone() is not None
gcpause.refreeze()
assert again_gone() is None
print("settled")
"""


def test_a_settled_server_freezes_its_heap_again_after_a_pause_and_refreeze_frees_frozen_cycles() -> None:
    # Its own process: settling changes the collector of the whole interpreter (pytest's too).
    done = subprocess.run([sys.executable, "-c", SETTLED], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "settled"


UNFROZEN = """
import gc, weakref
from railguard.engine import gcpause

class Node:
    def __init__(self):
        self.me = self

gcpause.settle(freeze=False)  # the MCP server: thresholds only, nothing frozen, pauses as before
assert gc.get_threshold() == gcpause.SERVER_THRESHOLDS and gc.get_freeze_count() == 0
with gcpause.paused_gc():
    cycle = Node()
    gone = weakref.ref(cycle)
    del cycle
assert gc.get_freeze_count() == 0
gc.collect()
assert gone() is None
print("thresholds only")
"""


def test_a_server_settled_without_freezing_collects_the_cycles_of_a_pause() -> None:
    done = subprocess.run([sys.executable, "-c", UNFROZEN], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "thresholds only"
