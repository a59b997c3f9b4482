"""Fixtures of the local runtime's tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psutil
import pytest

from ..conftest import _identity


@pytest.fixture(autouse=True)
def no_leftover_children() -> Iterator[None]:
    # Children that ran before the test (a session's Postgres, started by an earlier module) are not its own, nor
    # is what they start meanwhile (Postgres's autovacuum workers and backends): only what the test started
    # counts, and only that is killed (killing a Postgres worker makes its server restart every connection).
    before = {i for i in map(_identity, psutil.Process().children(recursive=True)) if i is not None}
    yield
    left = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if _identity(proc) in before or any(_identity(p) in before for p in proc.parents()):
                continue
            if proc.status() == psutil.STATUS_ZOMBIE:  # exited, only not reaped yet: nothing runs
                os.waitpid(proc.pid, os.WNOHANG)
                continue
            left.append(proc)
            proc.kill()
        except (psutil.NoSuchProcess, ChildProcessError):
            pass
    psutil.wait_procs(left, timeout=5)
    assert not left, f"test left child processes behind: {[p.pid for p in left]}"
