"""Replica processes of the embedded local runtime: spawn, identify, stop, supervise.

Each app replica is a real OS process in its own session, writing straight to an
O_APPEND log file rather than through a pipe, so it keeps running when the daemon
dies and a restarted daemon can re-adopt it from a stored :class:`ReplicaRecord`.
A record names a process by pid *and* start time; nothing here signals a pid whose
start time does not match, so a reused pid is never hit. Called by the local
provider (spawn/stop during a rollout) and the daemon (:class:`Supervisor`).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from railguard.providers.base import StartFailed
from railguard.providers.local import sandbox
from railguard.providers.local.isolation import RunAs, lookup, starting

log = logging.getLogger(__name__)

_CREATE_TIME_TOLERANCE = 0.5
_STABLE_AFTER = 10.0  # seconds up after which a replica's crash streak is forgotten
RECENT_S = 600.0  # restarts older than this no longer count in ``recent_restarts`` (the count decays)
_POLL = 0.02
# How old a liveness read may be when no supervision thread runs (then nothing refreshes it): long enough for the
# reads of one status answer to share it, short enough that a caller checking again sees a death.
_FRESH_UNSUPERVISED = 0.05
LOG_CHECK_S = 5.0  # how often the supervisor looks whether a replica's log reached the rotation size
# Bumped by every stop this process carries out: a liveness read taken before it is no longer trusted (a replica
# Railguard just stopped must not show as running until the next tick).
_stops = [0]


@dataclass(frozen=True)
class ReplicaSpec:
    name: str
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    port: int | None
    log_path: Path
    stop_timeout: float = 10.0
    readonly: tuple[str, ...] = ()  # folders the process must not write (its artifact and layer): see sandbox
    user: str | None = None  # the OS user it runs as (isolation); None: the daemon's own


@dataclass(frozen=True)
class ReplicaRecord:
    name: str
    pid: int
    create_time: float
    pgid: int
    port: int | None
    argv: list[str]
    log_path: str
    started_at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReplicaRecord:
        return cls(
            name=str(data["name"]), pid=int(data["pid"]), create_time=float(data["create_time"]),
            pgid=int(data["pgid"]), port=None if data.get("port") is None else int(data["port"]),
            argv=[str(a) for a in data["argv"]], log_path=str(data["log_path"]),
            started_at=float(data["started_at"]),
        )


class SpawnError(StartFailed):
    """A replica could not be started; the message says why in user terms."""


# Ports handed out recently: the OS may hand the same free port to two callers
# before either binds it, so remember ours for a while.
_recent_ports: collections.deque[int] = collections.deque(maxlen=256)
_ports_lock = threading.Lock()


def allocate_port() -> int:
    with _ports_lock:
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            if port not in _recent_ports:
                _recent_ports.append(port)
                return port
    raise RuntimeError("could not find a free loopback port not handed out recently")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


# Popen objects of replicas this process spawned, by pid: kept so exit_code can
# reap them (and to avoid Popen's "still running" warning on garbage collection).
_children: dict[int, subprocess.Popen[bytes]] = {}
_children_lock = threading.Lock()
_child_started: dict[int, float] = {}  # pid -> start time of each child in ``_children``: which record it is
_WAITID = hasattr(os, "waitid") and hasattr(os, "WNOWAIT")
_PIDFD = hasattr(os, "pidfd_open") and hasattr(select, "poll")  # Linux 5.3+: exits seen as they happen


def spawn(spec: ReplicaSpec) -> ReplicaRecord:
    argv = [_substitute_port(a, spec) for a in spec.argv]
    if not argv:
        raise SpawnError(f"replica {spec.name}: empty command")
    try:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_fd = os.open(spec.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as e:
        raise SpawnError(f"replica {spec.name}: cannot open log file {spec.log_path}: {e.strerror}") from e
    try:
        run_as = lookup(spec.user)
    except OSError as e:
        os.close(log_fd)
        raise SpawnError(f"replica {spec.name}: cannot run as user {spec.user}: {e}") from e
    starting(run_as, spec.env.get("RAILGUARD_ENV"))  # the daemon's own word (replica_env), not the app's
    try:
        proc = sandbox.popen(
            argv, tuple(spec.readonly), cwd=spec.cwd, env=dict(spec.env), stdin=subprocess.DEVNULL, stdout=log_fd,
            stderr=log_fd, start_new_session=True, close_fds=True, **as_user(run_as),
        )
    except FileNotFoundError as e:
        if e.filename is not None and Path(str(e.filename)) == spec.cwd:
            raise SpawnError(f"working directory does not exist: '{spec.cwd}' (command: {argv})") from e
        raise SpawnError(f"command not found: '{argv[0]}' (command: {argv})") from e
    except PermissionError as e:
        raise SpawnError(f"permission denied running '{argv[0]}' (command: {argv})") from e
    except OSError as e:
        raise SpawnError(f"cannot run '{argv[0]}': {e.strerror} (command: {argv})") from e
    finally:
        os.close(log_fd)  # the child holds its own copy
    with _children_lock:
        _children[proc.pid] = proc
    # Unreaped, so even a child that already exited still has a readable start time.
    create_time = float(psutil.Process(proc.pid).create_time())
    with _children_lock:
        _child_started[proc.pid] = create_time
    return ReplicaRecord(
        name=spec.name, pid=proc.pid, create_time=create_time, pgid=proc.pid, port=spec.port,
        argv=argv, log_path=str(spec.log_path), started_at=time.time(),
    )


def as_user(run_as: RunAs | None) -> dict[str, Any]:
    """Popen arguments that start a process as ``run_as`` with no supplementary groups (None: as we are)."""
    if run_as is None:
        return {}
    return {"user": run_as.uid, "group": run_as.gid, "extra_groups": []}


def _substitute_port(arg: str, spec: ReplicaSpec) -> str:
    if "$PORT" not in arg:
        return arg
    if spec.port is None:
        raise SpawnError(f"replica {spec.name}: the command uses $PORT but no port was assigned")
    return arg.replace("$PORT", str(spec.port))


# Linux: liveness is one read of /proc/<pid>/stat (its state and start time) instead of psutil's four file reads
# per process (stat three times, /proc/stat for the boot time): the supervisor checks every replica twice a second,
# and with 200 replicas psutil's reads were most of an idle daemon's CPU (and held the GIL from API answers).
_PROCFS = os.path.exists("/proc/self/stat")
_CLK_TCK = os.sysconf("SC_CLK_TCK") if _PROCFS else 100
_BOOT_EVERY_S = 1.0  # the boot time (epoch) moves with clock steps, as psutil's does: read it again this often
_boot = [0.0, -_BOOT_EVERY_S]  # boot time, monotonic time it was read


def _boot_time() -> float:
    now = time.monotonic()
    if now - _boot[1] >= _BOOT_EVERY_S:
        _boot[0], _boot[1] = float(psutil.boot_time()), now
    return _boot[0]


def _proc_state(pid: int) -> tuple[bytes, float] | None:
    """(state letter, start time as psutil's ``create_time`` computes it) of ``pid``; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        # After "pid (comm) ": state is field 3 and starttime (clock ticks since boot) field 22; comm may hold ")".
        fields = data[data.rindex(b")") + 2:].split()
        return fields[0], int(fields[19]) / _CLK_TCK + _boot_time()
    except (OSError, ValueError, IndexError):
        return None


def _child_running(record: ReplicaRecord) -> bool | None:
    """Whether ``record`` is a child of this process that has not ended (one ``waitid`` that reaps nothing, so
    :func:`exit_code` still collects its status); None when it is not one of ours (adopted): read /proc then."""
    if not _WAITID:
        return None
    with _children_lock:
        ours = record.pid in _children and record.pid in _child_started
        started = _child_started.get(record.pid, 0.0)
    if not ours or abs(started - record.create_time) > _CREATE_TIME_TOLERANCE:
        return None
    try:  # unreaped, the pid cannot belong to anyone else
        return os.waitid(os.P_PID, record.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    except ChildProcessError:  # reaped meanwhile by another thread
        return None


def is_alive(record: ReplicaRecord) -> bool:
    running = _child_running(record)
    if running is not None:
        return running
    if _PROCFS:
        found = _proc_state(record.pid)
        if found is None or abs(found[1] - record.create_time) > _CREATE_TIME_TOLERANCE:
            return False  # gone, or the pid now belongs to a stranger
        return found[0] not in (b"Z", b"X")  # a zombie (or one being reaped) has ended
    try:
        proc = psutil.Process(record.pid)
        if abs(float(proc.create_time()) - record.create_time) > _CREATE_TIME_TOLERANCE:
            return False  # the pid now belongs to a stranger
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def exit_code(record: ReplicaRecord) -> int | None:
    """Exit status of a replica we spawned (negative: killed by that signal), reaping it."""
    with _children_lock:
        proc = _children.get(record.pid)
        if proc is not None:
            code = proc.poll()
            if code is not None:
                del _children[record.pid]
                _child_started.pop(record.pid, None)
            return code
    # Not spawned through this module (e.g. adopted): only succeeds if it is our child anyway.
    try:
        pid, status = os.waitpid(record.pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if pid else None


def describe_exit(code: int | None) -> str:
    """How a supervised replica ended on its own; Railguard's own stops never reach the supervisor's watch."""
    if code is None:
        return "exited (status unknown: not a child of this daemon) (not by Railguard)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name} (not by Railguard)"
    return f"exited with status {code} (not by Railguard)"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies still count as members, and PID 1 in a container may never reap
    # orphans, so look for a member that is actually running.
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (OSError, psutil.Error):
            continue
    return False


def _signal(pid: int, pgid: int | None, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig) if pgid is not None else os.kill(pid, sig)


def _wait_gone(record: ReplicaRecord, pgid: int | None, deadline: float) -> bool:
    while True:
        gone = not _group_alive(pgid) if pgid is not None else not is_alive(record)
        exit_code(record)  # reap our own child now that it may be a zombie
        if gone or time.monotonic() >= deadline:
            return gone
        time.sleep(min(_POLL, max(0.0, deadline - time.monotonic())))


def stop(record: ReplicaRecord, timeout: float) -> str:
    if not is_alive(record):
        exit_code(record)
        return "gone"
    try:
        # Only signal the group if the verified leader still leads it.
        pgid: int | None = record.pgid if os.getpgid(record.pid) == record.pgid else None
    except ProcessLookupError:
        exit_code(record)
        return "gone"
    try:
        _signal(record.pid, pgid, signal.SIGTERM)
        if _wait_gone(record, pgid, time.monotonic() + timeout):
            return "exited"
        _signal(record.pid, pgid, signal.SIGKILL)
        _wait_gone(record, pgid, time.monotonic() + 5.0)
        return "killed"
    finally:
        _stops[0] += 1


def rotate_log(path: Path, max_bytes: int, keep: int) -> bool:
    """Copy-truncate: writers keep their O_APPEND descriptor, which lands at the new end."""
    if not path.exists() or path.stat().st_size < max_bytes:
        return False
    if keep > 0:
        for i in range(keep - 1, 0, -1):
            older = path.with_name(f"{path.name}.{i}")
            if older.exists():
                os.replace(older, path.with_name(f"{path.name}.{i + 1}"))
        shutil.copyfile(path, path.with_name(f"{path.name}.1"))
    # Lines written between the copy and the truncate are lost; that is the price of not
    # piping through the daemon.
    os.truncate(path, 0)
    return True


def tail(path: Path, lines: int, max_bytes: int = 65536) -> list[str]:
    if lines <= 0:
        return []
    found = _read_tail(path, max_bytes)
    if len(found) < lines:
        budget = max_bytes - sum(len(x) + 1 for x in found)
        if budget > 0:
            found = _read_tail(path.with_name(f"{path.name}.1"), budget) + found
    return found[-lines:]


def _read_tail(path: Path, max_bytes: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - max_bytes)
            f.seek(start)
            data = f.read(max_bytes)
    except FileNotFoundError:
        return []
    text = data.decode("utf-8", errors="replace").splitlines()
    return text[1:] if start > 0 and text else text  # the first line was cut mid-way


@dataclass
class _Replica:
    spec: ReplicaSpec
    record: ReplicaRecord
    up_since: float
    restarts: int = 0
    crashes: int = 0  # consecutive, drives the backoff
    restart_at: float | None = None  # set while waiting to restart after a crash
    last_exit: str | None = None  # how it last ended on its own, e.g. "killed by SIGKILL (not by Railguard)"
    restart_times: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=1000))


class ExitWatch:
    """A pidfd per supervised process: one ``poll`` per tick names the processes that ended since.

    Why: the supervisor's pass read every replica (a ``waitpid`` and a ``waitid``, or ``/proc/<pid>/stat``'s open,
    read and close for adopted ones): with 200 replicas twice a second, 400-600 system calls, each one a GIL
    release that an API answer waiting for the GIL had to win back, and most of the daemon's idle CPU. A pidfd
    turns readable when its process ends (a child as soon as it is a zombie), so a pass over processes that all
    still run is one ``poll``; only those that ended are read as before (exit status, reaping, start time). A
    pidfd is opened once per process and then checked against the record's start time, so it never stands for a
    stranger that reused the pid. Processes beyond ``cap`` pidfds (file descriptors are the daemon's too), or on a
    system without pidfds, are read every pass as before. Used by :class:`Supervisor`'s tick thread only.
    """

    def __init__(self, cap: int | None = None) -> None:
        if cap is None:
            try:
                import resource

                soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            except (ImportError, OSError, ValueError):
                soft = 1024
            cap = max(0, min(4096, (soft if soft > 0 else 1024) // 4))
        self.cap = cap if hasattr(os, "pidfd_open") else 0
        self._fds: dict[tuple[int, float], int] = {}
        self._keys: dict[int, tuple[int, float]] = {}
        self._poll = select.poll()
        self._lock = threading.Lock()

    def running(self, records: list[ReplicaRecord]) -> set[tuple[int, float]]:
        """The (pid, start time) of those of ``records`` whose pidfd says they still run (the rest must be read)."""
        wanted = {(r.pid, r.create_time): r for r in records}
        with self._lock:
            for key in [k for k in self._fds if k not in wanted]:  # removed, restarted, forgotten
                self._close(key)
            for key, record in wanted.items():
                if key not in self._fds and len(self._fds) < self.cap:
                    self._open(key, record)
            if not self._fds:
                return set()
            ended = {self._keys[fd] for fd, _ in self._poll.poll(0)}
            return {k for k in self._fds if k not in ended}

    def _open(self, key: tuple[int, float], record: ReplicaRecord) -> None:
        try:
            fd = os.pidfd_open(record.pid)
        except OSError:  # gone already, or no descriptor left: read as before
            return
        if not is_alive(record):  # opened for the process now holding the pid: ours only if it started when ours did
            os.close(fd)
            return
        self._fds[key], self._keys[fd] = fd, key
        self._poll.register(fd, select.POLLIN)

    def _close(self, key: tuple[int, float]) -> None:
        fd = self._fds.pop(key)
        del self._keys[fd]
        self._poll.unregister(fd)
        os.close(fd)

    def close(self) -> None:
        with self._lock:
            for key in list(self._fds):
                self._close(key)


class Supervisor:
    """Keeps a set of replicas running: restarts crashed ones with exponential backoff, rotates logs."""

    def __init__(
        self, *, backoff_initial: float = 0.5, backoff_max: float = 30.0,
        log_max_bytes: int = 10_000_000, log_keep: int = 3,
    ) -> None:
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.log_max_bytes = log_max_bytes
        self.log_keep = log_keep
        self.on_restart: Callable[[str, ReplicaRecord], None] | None = None
        # Asked before a dead replica is started again: a reason (e.g. its artifact was tampered with) keeps it down.
        self.before_start: Callable[[ReplicaSpec], str | None] | None = None
        # Told the moment a replica is seen to have ended, before its restart is even scheduled to run: the provider
        # takes its port out of the edge's routes (any process may bind it now) and answers the spec to restart
        # it with (a fresh port), or None to keep the old one.
        self.on_exit: Callable[[str, ReplicaSpec], ReplicaSpec | None] | None = None
        self._replicas: dict[str, _Replica] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # a supervised process ended (its pidfd said so): tick now, not at the interval
        self._watcher: threading.Thread | None = None
        self._thread: threading.Thread | None = None
        # Last liveness read of each process, by (pid, start time), with the monotonic time it was read: status
        # answers reuse it while fresh instead of reading /proc again for every replica of every request.
        self._seen: dict[tuple[int, float], tuple[bool, float, int]] = {}  # alive, read at, stops before
        self._fresh_s = _FRESH_UNSUPERVISED
        self._seen_lock = threading.Lock()  # not the supervisor's lock: views read liveness while a tick runs
        self._next_log_check = 0.0  # monotonic time of the next look at the log sizes (the first tick looks)
        self._exits = ExitWatch()
        self.restarted_total = 0  # restarts carried out so far (all replicas): a reader sees at a glance if any moved

    def add(self, spec: ReplicaSpec, record: ReplicaRecord | None = None) -> ReplicaRecord:
        with self._lock:
            if spec.name in self._replicas:
                raise ValueError(f"replica {spec.name} is already supervised")
            if record is None or not is_alive(record):
                record = spawn(spec)
            self._replicas[spec.name] = _Replica(spec, record, up_since=time.monotonic())
            return record

    def remove(self, name: str, timeout: float | None = None) -> None:
        with self._lock:
            rep = self._replicas.pop(name, None)
        if rep is not None:  # stop outside the lock: it can take the whole timeout
            stop(rep.record, rep.spec.stop_timeout if timeout is None else timeout)

    def forget(self, name: str) -> None:
        """Stop supervising without stopping the process (the caller stops it)."""
        with self._lock:
            self._replicas.pop(name, None)

    def records(self) -> dict[str, ReplicaRecord]:
        with self._lock:
            return {n: r.record for n, r in self._replicas.items()}

    def restarts(self, name: str) -> int:
        with self._lock:
            return self._replicas[name].restarts

    def last_exit(self, name: str) -> str | None:
        with self._lock:
            return self._replicas[name].last_exit

    def recent_restarts(self, name: str, now: float | None = None) -> int:
        """Restarts within the last ``RECENT_S``: the count a status leads with decays."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return sum(1 for at in self._replicas[name].restart_times if at > now - RECENT_S)

    def counters(self, now: float | None = None) -> dict[str, tuple[int, int, str | None]]:
        """Every supervised replica's (restarts, restarts within ``RECENT_S``, last exit), under one hold of the
        lock: a status of 200 services asked for each of the three per replica (600 holds, each also waited for by
        the supervisor's pass)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return {name: (rep.restarts, sum(1 for at in rep.restart_times if at > now - RECENT_S), rep.last_exit)
                    for name, rep in self._replicas.items()}

    def alive(self, record: ReplicaRecord) -> bool:
        """Whether ``record``'s process runs, for views: the last read of it while fresh (≤ one tick), else one read.

        Keyed by pid *and* start time, so a pid reused by a stranger never inherits our process's answer; the read
        itself is :func:`is_alive` (start time checked). Rollouts and stops keep calling :func:`is_alive` directly.
        """
        key = (record.pid, record.create_time)
        seen = self._seen.get(key)  # one dict read (atomic): a status asks this for every replica, twice
        if seen is not None and time.monotonic() - seen[1] <= self._fresh_s and seen[2] == _stops[0]:
            return seen[0]
        stops = _stops[0]
        alive = is_alive(record)
        with self._seen_lock:
            self._seen[key] = (alive, time.monotonic(), stops)
        return alive

    def restart_at(self, name: str) -> float | None:
        """Monotonic time of the pending restart, None while the replica is running."""
        with self._lock:
            return self._replicas[name].restart_at

    def tick(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        restarted: list[tuple[str, ReplicaRecord]] = []
        read_at = time.monotonic()  # ``now`` may be a test's made-up time; freshness is always real time
        with self._seen_lock:
            self._seen = {k: v for k, v in self._seen.items() if read_at - v[1] <= self._fresh_s}
        with self._lock:
            running = [(name, rep) for name, rep in self._replicas.items() if rep.restart_at is None]
        # The /proc reads happen outside the lock: status answers ask the supervisor (restarts, last exit) for every
        # replica, and must not wait for a pass over all of them. Only processes whose pidfd says they ended (or
        # that have none) are read; the others are running now, and so is what views are told.
        quiet = self._exits.running([rep.record for _, rep in running])
        stops = _stops[0]
        with self._seen_lock:
            for _, rep in running:
                if (key := (rep.record.pid, rep.record.create_time)) in quiet:
                    self._seen[key] = (True, read_at, stops)
        seen = [(name, rep, None, True) if (rep.record.pid, rep.record.create_time) in quiet
                else (name, rep, *self._read(rep)) for name, rep in running]
        ended: list[tuple[str, _Replica]] = []
        with self._lock:
            for name, rep, code, alive in seen:
                if self._replicas.get(name) is rep and rep.restart_at is None:  # not removed or replaced meanwhile
                    if self._observe(rep, now, code, alive):
                        ended.append((name, rep))
        # Outside the lock (it changes the edge), and before any restart below can run.
        for name, rep in ended if self.on_exit is not None else []:
            try:
                fresh = self.on_exit(name, rep.spec) if self.on_exit is not None else None
            except Exception:  # never a reason to leave a replica down
                log.exception("exit handler of %s failed", name)
                fresh = None
            if fresh is not None:
                with self._lock:
                    if self._replicas.get(name) is rep:
                        rep.spec = fresh
        with self._lock:
            for name, rep in self._replicas.items():
                if rep.restart_at is not None and now >= rep.restart_at:
                    refused = self.before_start(rep.spec) if self.before_start is not None else None
                    if refused is not None:
                        log.warning("restart of %s refused: %s", name, refused)
                        self._schedule(rep, now)
                        continue
                    try:
                        rep.record = spawn(rep.spec)
                    except SpawnError as e:
                        log.warning("restart of %s failed: %s", name, e)
                        self._schedule(rep, now)
                        continue
                    rep.restarts += 1
                    self.restarted_total += 1
                    rep.restart_times.append(now)
                    rep.restart_at, rep.up_since = None, now
                    restarted.append((name, rep.record))
            # Sizes change slowly next to the 10 MB limit: a look every LOG_CHECK_S, not a stat per replica per tick.
            due = read_at >= self._next_log_check
            logs = {rep.spec.log_path for rep in self._replicas.values()} if due else set()
        if due:
            self._next_log_check = read_at + LOG_CHECK_S
        for path in logs:  # file copies can be slow; keep them out of the lock
            try:
                rotate_log(path, self.log_max_bytes, self.log_keep)
            except OSError as e:
                log.warning("log rotation of %s failed: %s", path, e)
        for name, record in restarted:
            if self.on_restart is not None:
                self.on_restart(name, record)
        return [name for name, _ in restarted]

    def _read(self, rep: _Replica) -> tuple[int | None, bool]:
        """(exit status if it ended and was reaped now, whether it runs): the process's side of one observation."""
        record = rep.record
        code = exit_code(record)  # also reaps, so crashed replicas do not pile up as zombies
        stops = _stops[0]
        alive = is_alive(record)
        with self._seen_lock:
            self._seen[(record.pid, record.create_time)] = (alive, time.monotonic(), stops)
        if not alive and code is None:  # it ended between the two reads: its status is there to collect now
            code = exit_code(record)
        return code, alive

    def _observe(self, rep: _Replica, now: float, code: int | None, alive: bool) -> bool:
        """Take one observation in; True when the replica was found ended (its restart is now scheduled)."""
        if now - rep.up_since >= _STABLE_AFTER:
            rep.crashes = 0
        if not alive:
            rep.last_exit = describe_exit(code)
            log.warning("replica %s %s", rep.spec.name, rep.last_exit)
            self._schedule(rep, now)
        return not alive

    def _schedule(self, rep: _Replica, now: float) -> None:
        delay = min(self.backoff_initial * 2 ** rep.crashes, self.backoff_max)
        rep.crashes += 1
        rep.restart_at = now + delay

    def run_in_thread(self, interval: float = 0.5) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._wake.clear()
        # Every tick reads every replica again: a read stays fresh until the next tick's (the interval, plus the
        # pass itself), so status answers between ticks reuse them rather than reading every replica themselves.
        self._fresh_s = max(2 * interval, _FRESH_UNSUPERVISED)
        self._thread = threading.Thread(target=self._loop, args=(interval,), name="railguard-supervisor",
                                        daemon=True)
        self._thread.start()
        if _PIDFD and (self._watcher is None or not self._watcher.is_alive()):
            self._watcher = threading.Thread(target=self._watch_exits, name="railguard-exits", daemon=True)
            self._watcher.start()

    def shutdown_thread(self) -> None:
        """Stop supervising; replicas keep running so a new daemon can adopt them."""
        self._stop.set()
        self._wake.set()
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._fresh_s = _FRESH_UNSUPERVISED
        self._exits.close()

    def _loop(self, interval: float) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before the pass: an exit seen during it wakes the next one at once
            try:
                self.tick()
            except Exception:  # a supervision bug must not end supervision of every replica
                log.exception("supervisor tick failed")
            self._wake.wait(interval)

    def _watch_exits(self) -> None:
        """Wake the supervision pass the moment a supervised process ends (a pidfd per process turns readable),
        rather than up to one interval later: its port leaves the edge's routes that much sooner (on_exit), before
        another process can bind it and be sent requests meanwhile. Registrations follow the supervised records
        (a quarter second at most behind a start); a pidfd that fired is not watched again."""
        watched: dict[tuple[int, float], int] = {}  # record (pid, start time) -> its pidfd
        fired: set[tuple[int, float]] = set()
        poller = select.poll()
        try:
            while not self._stop.is_set():
                with self._lock:
                    current = {(r.record.pid, r.record.create_time) for r in self._replicas.values()
                               if r.restart_at is None}
                for key in [k for k in watched if k not in current]:
                    poller.unregister(watched[key])
                    os.close(watched.pop(key))
                fired &= current
                for key in current - watched.keys() - fired:
                    if len(watched) >= self._exits.cap:  # the same bound as the pass's pidfds: beyond, the interval
                        break
                    try:
                        fd = os.pidfd_open(key[0])
                    except OSError:  # gone already: the pass finds it
                        fired.add(key)
                        continue
                    found = _proc_state(key[0])  # the pid may be a stranger's by now: then the pass finds ours gone
                    if found is None or abs(found[1] - key[1]) > _CREATE_TIME_TOLERANCE:
                        os.close(fd)
                        fired.add(key)
                        continue
                    watched[key] = fd
                    poller.register(fd, select.POLLIN)
                ready = {fd for fd, _ in poller.poll(250)}
                for key in [k for k, fd in watched.items() if fd in ready]:
                    poller.unregister(watched[key])
                    os.close(watched.pop(key))
                    fired.add(key)
                if ready:
                    self._wake.set()
        finally:
            for fd in watched.values():
                os.close(fd)
