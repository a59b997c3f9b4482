"""Pause Python's cyclic garbage collector while a request builds a large, acyclic object graph.

A plan of 10,000 services allocates millions of objects (resources, changes, 210,000 field diffs), nearly
all of them freed by reference counting; the cyclic collector still walks every live object again and
again as they pile up, which measured at more than half of the planning CPU (bench/plan_scale.py). The
collector is process-wide, so overlapping requests share one pause: the first one in stops it, the last
one out restarts it (if it was running) and files what survived under the oldest generation. Used by
:mod:`railguard.engine.usecases`.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_holders = 0
_was_enabled = False


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
        if restart:
            # What the request left alive (a 10k-service plan: millions of objects) is young, so the collector's
            # next young collection would walk all of it again (~0.25 s), and so did a ``gc.collect(1)`` here.
            # Moving it straight to the oldest generation (freeze, then unfreeze: two list splices) leaves it to
            # the rare full collections; any cycles the request made are still found there.
            gc.freeze()
            gc.unfreeze()
