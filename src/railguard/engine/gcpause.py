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
holds once started (the daemon only: it refreezes hourly), so the rare full collection walks only what came
later. Frozen objects are still freed by reference counting; only cycles among them wait for :func:`refreeze`.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_holders = 0
_was_enabled = False
_settled = False  # a server that froze its long-lived objects: a pause must not thaw them again

# Young collections every 50,000 net allocations instead of 700 (a request's temporaries are gone by then), the
# middle one every 20 of those; the full one keeps its own rule (a quarter more long-lived objects than it
# last found) on top of every 10 middle ones.
SERVER_THRESHOLDS = (50_000, 20, 10)


def settle(freeze: bool = True) -> None:
    """A long-running server is up: raise the young threshold and (``freeze``) collect once and freeze what
    survives (its modules, its long-lived state). Called once by the daemon after its boot (which refreezes
    hourly) and by the MCP server at start, without ``freeze``: nothing there refreezes, so cycles a pause left
    would never be collected."""
    global _settled
    gc.set_threshold(*SERVER_THRESHOLDS)
    if not freeze:
        return
    gc.collect()
    with _lock:
        gc.freeze()
        _settled = True


def refreeze() -> None:
    """Collect the cycles among frozen objects (frozen ones are never walked): thaw, one full collection, freeze
    again. One full walk of the heap (~0.1–0.2 s with 200 services), so rare: hourly, by the daemon's loop."""
    with _lock:
        if not _settled or _holders:
            return  # not a settled server, or a pause runs (its survivors are frozen when it ends)
        gc.unfreeze()
        gc.collect()
        gc.freeze()


@contextmanager
def paused_gc() -> Iterator[None]:
    global _holders, _was_enabled
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
                # found there. A settled server keeps it frozen (unfreezing would thaw everything it froze at
                # start, and full collections would walk the whole heap again): cycles wait for ``refreeze``.
                gc.freeze()
                if not _settled:
                    gc.unfreeze()
