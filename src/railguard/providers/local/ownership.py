"""Whether the listener on a replica's port is the replica's own: the check that keeps a route from being hijacked.

The edge reaches a replica on ``127.0.0.1:PORT``, and a health check only proves that *something* answers there.
Any local process can bind a port the moment a replica lets it go (it crashed, was OOM-killed, was restarted);
an app learns every listener's port and uid from the world-readable ``/proc/net/tcp``. So before a replica is
routed (the readiness gate) and at every health check, the listener on its port must be the replica's:

- its uid is the one the replica runs as (the environment's own user when isolated, else the daemon's);
- its socket is held by the replica's process or one of its descendants (``socket:[inode]`` among their
  ``/proc/<pid>/fd`` links): this also tells a same-user process apart, in shared-user mode.

The process-tree look (a readlink per descriptor, and a scan of the process table for descendants) is done once
per replica process and listener: the inode it proved is kept, and later checks are a dict lookup in the table
read once per pass (:func:`railguard.providers.listeners.loopback_listeners`). Called by the local provider's
monitor, the readiness gate (:mod:`railguard.providers.local.replicas`) and the rollback's warm check.
"""

from __future__ import annotations

import os
import pwd
import threading
from dataclasses import dataclass

import psutil

from railguard.providers.base import CheckResult
from railguard.providers.listeners import Listener, loopback_listeners, socket_inodes
from railguard.providers.local.isolation import lookup
from railguard.providers.local.processes import ReplicaRecord, ReplicaSpec


@dataclass(frozen=True)
class Foreign:
    """A listener on a replica's port that is not the replica's."""

    port: int
    uid: int  # the holder's uid (the kernel's word)
    user: str  # its name, or the uid as text
    reason: str  # one line for a human: "port 41234 is held by another user: rg-app-staging (uid 998)"


def user_of(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


_uids: dict[str, int] = {}  # user name -> uid: asked at every check, read from the password file once


def expected_uid(spec: ReplicaSpec) -> int:
    """The uid the replica's listener must have: its environment's user, or the daemon's own."""
    if spec.user is None:
        return os.geteuid()
    uid = _uids.get(spec.user)
    if uid is None:
        run_as = lookup(spec.user)
        uid = _uids[spec.user] = run_as.uid if run_as is not None else os.geteuid()
    return uid


def _tree(pid: int) -> list[int]:
    try:
        proc = psutil.Process(pid)
        return [pid, *(child.pid for child in proc.children(recursive=True))]
    except psutil.Error:
        return [pid]


class Ownership:
    """The inodes proven to be each replica process's own, so only a new listener costs a process-tree look."""

    def __init__(self) -> None:
        self._proven: dict[tuple[int, float, int], frozenset[int]] = {}  # (pid, start time, port) -> inodes
        self._lock = threading.Lock()

    def verify(self, spec: ReplicaSpec, record: ReplicaRecord,
               table: dict[int, list[Listener]] | None = None) -> Foreign | None:
        """Why the listener on ``spec.port`` is not the replica's, or None (it is, or nothing listens: the health
        check then says so itself). ``table``: the pass's one read of the listeners (read here when None)."""
        port = spec.port
        if port is None:
            return None
        listeners = (loopback_listeners() if table is None else table).get(port, [])
        if not listeners:
            return None
        want = expected_uid(spec)
        for listener in listeners:
            if listener.uid != want:
                user = user_of(listener.uid)
                return Foreign(port, listener.uid, user, f"port {port} is held by another user: {user} "
                                                         f"(uid {listener.uid}), not replica {spec.name}")
        inodes = frozenset(listener.inode for listener in listeners)
        key = (record.pid, record.create_time, port)
        with self._lock:
            if inodes <= self._proven.get(key, frozenset()):
                return None
        # The replica's own descriptors first (a server holds its listener itself, a master for its workers too);
        # its descendants only when they do not have it: finding them is a scan of the whole process table.
        held = socket_inodes([record.pid])
        if held is not None and not inodes <= held:
            more = socket_inodes(_tree(record.pid)[1:])
            held = None if more is None else held | more
        if held is None:  # its descriptors are not ours to read: the uid is all the kernel tells us
            return None
        stranger = next((listener for listener in listeners if listener.inode not in held), None)
        if stranger is not None:
            return Foreign(port, stranger.uid, user_of(stranger.uid),
                           f"port {port} is held by another process (of {user_of(stranger.uid)}, uid "
                           f"{stranger.uid}), not by replica {spec.name} (pid {record.pid}) or its children")
        with self._lock:
            if len(self._proven) > 4096:  # replicas come and go: forget the old ones now and then
                self._proven.clear()
            self._proven[key] = inodes
        return None


OWNED = Ownership()  # one per daemon: the gate, the monitor and the rollback's warm check share what was proven


def verdict(found: Foreign) -> CheckResult:
    """A foreign listener as a failed check: conclusive (the gate stops at once), naming the holder's uid."""
    return CheckResult(False, found.reason, conclusive=True, holder=found.uid)
