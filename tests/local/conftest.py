"""Fixtures of the local runtime's tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psutil
import pytest


@pytest.fixture(autouse=True)
def no_leftover_children() -> Iterator[None]:
    yield
    left = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:  # exited, only not reaped yet: nothing runs
                os.waitpid(proc.pid, os.WNOHANG)
                continue
            left.append(proc)
            proc.kill()
        except (psutil.NoSuchProcess, ChildProcessError):
            pass
    psutil.wait_procs(left, timeout=5)
    assert not left, f"test left child processes behind: {[p.pid for p in left]}"
