"""Who holds the state lock, and whether that holder is still alive.

Writers that change the live system (apply, rollback) hold a named lock row in the
store recording pid, the pid's start time, host, operation and time. A lock whose
holder is gone (process exited, or its pid reused by another program: the start
time differs) is stale and may be broken; a lock held by a live process never is.
Used by :class:`railguard.state.store.Store`.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Holder:
    pid: int
    pid_started: float
    host: str
    operation: str
    acquired_at: str

    def alive(self) -> bool:
        """True unless we can prove the holder is gone. Another host's holder is assumed alive."""
        if self.host != socket.gethostname():
            return True
        try:
            proc = psutil.Process(self.pid)
            # A killed holder whose parent never reaps it stays a zombie: it holds nothing any more.
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            started = proc.create_time()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return False
        except psutil.AccessDenied:
            return True
        return bool(abs(started - self.pid_started) < 0.5)


def current_identity() -> tuple[int, float, str]:
    pid = os.getpid()
    return pid, psutil.Process(pid).create_time(), socket.gethostname()
