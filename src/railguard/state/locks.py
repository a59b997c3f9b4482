"""Who holds the state lock, and whether that holder is still alive.

Writers that change the live system (apply, rollback) hold a named lock row in the
store recording pid, the pid's start time, host, operation and time. A lock whose
holder is gone (process exited, or its pid reused by another program: the start
time differs) is stale and may be broken; a lock held by a live process never is.
:class:`LockStore` takes and releases it; part of the :class:`railguard.state.store.Store` facade.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psutil

from railguard.model.canonical import canonical_json
from railguard.model.diagnostics import Diagnostic, error, warning
from railguard.model.errors import TemporaryError
from railguard.state.db import Database, now

LOCK_RETRY_S = 5.0  # a caller told `state.locked` may retry after this long


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


class LockStore(Database):
    def lock_holder(self, name: str = "state") -> Holder | None:
        row = self._one("SELECT pid, pid_started, host, operation, acquired_at FROM locks WHERE name = ?", name)
        return Holder(*row) if row else None

    @contextmanager
    def lock(self, operation: str, name: str = "state") -> Iterator[Holder]:
        """Hold the named lock for the duration of a change to the live system.

        A stale lock (its holder is provably gone) is broken and the break recorded as an
        event; a live holder's lock is never broken: the caller gets ``state.locked``.
        """
        pid, started, host = current_identity()
        mine = Holder(pid, started, host, operation, now())
        with self.transaction():
            holder = self.lock_holder(name)
            if holder is not None and holder.alive():
                raise TemporaryError(error(
                    "state.locked", "Another Railguard process is changing this state",
                    f"The lock '{name}' is held by pid {holder.pid} on {holder.host} for '{holder.operation}' "
                    f"since {holder.acquired_at}. Two changes at once could leave the environment half-switched.",
                    "Wait for it to finish (`railguard operations`), then try again.",
                    extra={"holder": holder.__dict__},
                ), delay=LOCK_RETRY_S)
            if holder is not None:
                self._db.execute(
                    "INSERT INTO events (env, at, kind, address, message, data) VALUES (NULL, ?, ?, NULL, ?, ?)",
                    (now(), "lock.broken", f"broke stale lock of pid {holder.pid} ({holder.operation})",
                     canonical_json(holder.__dict__)),
                )
            self._db.execute("DELETE FROM locks WHERE name = ?", (name,))
            self._db.execute(
                "INSERT INTO locks (name, pid, pid_started, host, operation, acquired_at) VALUES (?, ?, ?, ?, ?, ?)",
                (name, pid, started, host, operation, mine.acquired_at),
            )
        try:
            yield mine
        finally:
            with self.transaction():
                self._db.execute("DELETE FROM locks WHERE name = ? AND pid = ?", (name, pid))

    def stale_lock_warning(self, name: str = "state") -> list[Diagnostic]:
        holder = self.lock_holder(name)
        if holder is None or holder.alive():
            return []
        return [warning(
            "state.stale_lock", "A stale lock was left by a process that is gone",
            f"pid {holder.pid} took the lock for '{holder.operation}' at {holder.acquired_at} and no longer runs. "
            "The next change breaks it automatically and records that in the events.",
            "Check `railguard operations` for an operation it left unfinished.",
            extra={"holder": holder.__dict__},
        )]
