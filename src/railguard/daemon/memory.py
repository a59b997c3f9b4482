"""Give the memory of a large request back to the system once it is answered.

Why it exists: a plan of 10,000 services takes the daemon from ~70 MB to ~200 MB while it runs; nearly all
of it is freed when the answer is written, but glibc keeps freed memory in its arenas (one per request thread
that ever allocated much), so the daemon stayed ~40 MB larger after each large request and idled there
(bench/plan_scale.py, docs/benchmarks.md). ``malloc_trim`` hands the free pages back (a few ms after a 10k
plan; nothing to do after a small request, which is not trimmed at all). Called by :mod:`railguard.daemon.api`
after each answer, with the resident size read before the request.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

# A request that left the process this much larger than it found it is worth a trim (a 200-service plan: ~5 MB).
GREW_BYTES = 32 << 20

_PAGE = os.sysconf("SC_PAGE_SIZE")
log = logging.getLogger(__name__)


def _trimmer() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    try:  # glibc only (musl has no malloc_trim): elsewhere nothing is trimmed
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_TRIM = _trimmer()


def resident() -> int:
    """The process's resident size in bytes (one small read of /proc; 0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def give_back(before: int) -> bool:
    """Trim glibc's free memory when the process grew by ``GREW_BYTES`` since ``before``; whether it did."""
    if _TRIM is None or not before or resident() - before < GREW_BYTES:
        return False
    try:
        _TRIM(0)  # ctypes lets go of the GIL for the call: other requests run meanwhile
    except OSError:  # a convenience: it never fails a request
        log.exception("malloc_trim failed")
        return False
    return True
