"""Giving a large request's memory back (daemon/memory.py): only when the process grew by the threshold."""

from __future__ import annotations

from railguard.daemon import memory


def test_only_a_process_that_grew_enough_is_trimmed() -> None:
    now = memory.resident()
    assert now > 0
    assert memory.give_back(now) is False  # a small request: nothing grew
    assert memory.give_back(0) is False  # no reading before the request: nothing to compare
    assert memory.give_back(now - memory.GREW_BYTES - (1 << 20)) is (memory._TRIM is not None)


def test_a_trim_gives_freed_memory_back() -> None:
    # Many objects below the mmap threshold, freed but for every 50th: the ones kept pin the heap, so glibc keeps
    # the free pages between them until trimmed (what a request thread's arena looks like after a 10k plan).
    made = [bytes(1000) for _ in range(100_000)]
    pins = made[::50]
    del made
    grown = memory.resident()
    assert memory.give_back(grown - memory.GREW_BYTES - 1)
    assert memory.resident() < grown - (50 << 20) and len(pins) == 2000
