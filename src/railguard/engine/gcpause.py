"""Pause Python's cyclic garbage collector while a request builds a large, acyclic object graph.

A plan of 10,000 services allocates millions of objects (resources, changes, 210,000 field diffs), nearly
all of them freed by reference counting; the cyclic collector still walks every live object again and
again as they pile up, which measured at more than half of the planning CPU (bench/plan_scale.py). The
collector is process-wide, so overlapping requests share one pause: the first one in stops it, the last
one out restarts it (if it was running) and files what survived under the oldest generation. Used by
:mod:`railguard.engine.usecases`.

Long-running servers (the daemon, the MCP server) call :func:`settle` once started: every status of 200
services allocates ~10^5 objects that live for the whole request, so with the default thresholds each request
ran a few hundred young collections that promoted its temporaries, and every few requests a full collection
walked the whole heap (the imported modules, the parsed spec and plans, the runtime's records): 90–200 ms
holding the GIL, the MCP read tools' p95 (bench/mcp_tail.py). :func:`settle` raises the young threshold (a
request's temporaries die by reference counting before a collection sees them) and freezes what the process
holds once started (the daemon only), so the rare full collection walks only what came later. Frozen objects
are still freed by reference counting; only cycles among them wait for :func:`refreeze` (hourly). A pause
thaws them (see :func:`paused_gc`); :func:`resettle` freezes again once the pauses of a plan are over.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_holders = 0
_was_enabled = False
_settled = False  # a server that froze its long-lived objects (the daemon)
_thawed_at: float | None = None  # when a pause in a settled server last thawed them (None: frozen)

# Young collections every 50,000 net allocations instead of 700 (a request's temporaries are gone by then), the
# middle one every 20 of those; the full one keeps its own rule (a quarter more long-lived objects than it
# last found) on top of every 10 middle ones.
SERVER_THRESHOLDS = (50_000, 20, 10)
RESETTLE_AFTER_S = 30.0  # after a pause thawed the heap: freeze again once no pause has ended for this long


def settle(freeze: bool = True) -> None:
    """A long-running server is up: raise the young threshold and (``freeze``) collect once and freeze what
    survives (its modules, its long-lived state). Called once by the daemon after its boot (its loop calls
    :func:`resettle` and :func:`refreeze`) and by the MCP server at start, without ``freeze`` (nothing there
    would freeze again after a pause)."""
    global _settled, _thawed_at
    gc.set_threshold(*SERVER_THRESHOLDS)
    if not freeze:
        return
    gc.collect()
    with _lock:
        gc.freeze()
        _settled, _thawed_at = True, None


def resettle(now: float | None = None) -> bool:
    """Freeze again after a pause thawed the heap, once pauses have been over for ``RESETTLE_AFTER_S`` (a deploy
    is several in a row): one full collection (the cycles the pauses left are freed then), then ``gc.freeze``.
    Cheap when there is nothing to do; the daemon's loop calls it every pass. True when it froze."""
    global _thawed_at
    now = time.monotonic() if now is None else now
    with _lock:
        if not _settled or _holders or _thawed_at is None or now - _thawed_at < RESETTLE_AFTER_S:
            return False
        gc.collect()
        gc.freeze()
        _thawed_at = None
        return True


def refreeze() -> None:
    """Collect the cycles among frozen objects (frozen ones are never walked): thaw, one full collection, freeze
    again. One full walk of the heap (~0.1–0.2 s with 200 services), so rare: hourly, by the daemon's loop."""
    with _lock:
        if not _settled or _holders:
            return  # not a settled server, or a pause runs (``resettle`` freezes after it)
        gc.unfreeze()
        gc.collect()
        gc.freeze()


@contextmanager
def paused_gc() -> Iterator[None]:
    global _holders, _was_enabled, _thawed_at
    with _lock:
        if _holders == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            restart = _holders == 0 and _was_enabled
            if restart:
                gc.enable()
                # What the request left alive (a 10k-service plan: millions of objects) is young, so the
                # collector's next young collection would walk all of it again (~0.25 s), and so did a
                # ``gc.collect(1)`` here. Moving it straight to the oldest generation (freeze, then unfreeze: two
                # list splices) leaves it to the rare full collections; any cycles the request made are still
                # found there. In a settled server this thaws what it froze too (there is no way to move only the
                # young objects), so it is frozen again by ``resettle`` once pauses are over: keeping the
                # request's survivors frozen instead kept the cycles it left (+14 MB after a 10k-service plan).
                gc.freeze()
                gc.unfreeze()
                if _settled:
                    _thawed_at = time.monotonic()
