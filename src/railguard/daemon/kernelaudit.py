"""What the kernel refuses an environment's processes, recorded: the Linux audit subsystem as a witness.

In an isolated install the kernel itself refuses most of what hostile app code tries (writing the state folder,
its own sealed artifact or another environment's data folder, reading another environment's
``/proc/<pid>/environ``, binding another environment's port): file modes, ``/proc`` access checks and
``SO_REUSEPORT`` across users. Those refusals never reach the daemon, and what the app prints about them is
its own word. The kernel's audit subsystem can report them: for each environment's OS user this module adds
audit rules (keyed ``railguard-<state id>``) for the failing syscalls that mean "refused" (file opens, creates,
renames, removals, mode and owner changes, ``ptrace`` with ``EACCES``/``EPERM``/``EROFS``; ``bind``/``connect``
with ``EADDRINUSE``/``EACCES``), and reads the records from a ``NETLINK_AUDIT`` socket bound to the kernel's
read-only multicast group (``AUDIT_NLGRP_READLOG``), so the daemon is not the audit daemon and does not
disturb one that runs. Each record (uid, syscall, errno, path or address, comm) goes to
:class:`railguard.daemon.intrusions.Intrusions`, which attributes the uid to its environment and records it
(event, signed audit entry, incident), rate-limited.

Rules are system-wide state: the daemon adds only rules under its own key, removes them at shutdown (and at start,
those a crashed daemon of the same state folder left), turns auditing on only if it was off and turns it off
again when no Railguard rule of any daemon remains. Without root, ``auditctl`` or a kernel that accepts the rules
(a container without audit), the feature is off and :attr:`KernelAudit.state` says why; nothing fails.
Used by :mod:`railguard.daemon.service` when the daemon runs isolated as root; ``watch`` is called (through the
provider registry's hook) before any process of an environment's user starts, so its first attempt is covered.
"""

from __future__ import annotations

import errno as errno_module
import logging
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("railguard.daemon")

NETLINK_AUDIT = 9
AUDIT_NLGRP_READLOG = 1
AUDIT_SYSCALL, AUDIT_PATH, AUDIT_CWD, AUDIT_SOCKADDR, AUDIT_EOE = 1300, 1302, 1307, 1306, 1320
KEY_PREFIX = "railguard-"
# Syscalls that mean "the kernel refused a change or a look": the names auditctl knows on this machine are kept.
FILE_SYSCALLS = ("open", "openat", "openat2", "creat", "truncate", "unlink", "unlinkat", "rename", "renameat",
                 "renameat2", "mkdir", "mkdirat", "rmdir", "link", "linkat", "symlink", "symlinkat", "chmod",
                 "fchmodat", "chown", "lchown", "fchownat", "ptrace")
NET_SYSCALLS = ("bind", "connect")
RULES = ((FILE_SYSCALLS + NET_SYSCALLS, "EACCES"), (FILE_SYSCALLS, "EPERM"), (FILE_SYSCALLS, "EROFS"),
         (NET_SYSCALLS, "EADDRINUSE"))
ERRNO = {13: "EACCES", 1: "EPERM", 30: "EROFS", 98: "EADDRINUSE"}
_GROUP_WAIT_S = 0.5  # a record group without its end-of-event marker is taken as complete after this
_RCVBUF = 16 << 20
_ENABLED_MARK = "railguard-audit-enabled"  # machine-wide: a Railguard daemon turned auditing on


@dataclass
class Refusal:
    """One refused syscall, as the kernel reported it (never file contents: names and addresses only)."""

    uid: int
    pid: int
    syscall: str
    errno: str
    target: str  # the path, or the socket address ("127.0.0.1:8080", a socket file's path)
    comm: str
    exe: str
    key: str
    env: str | None = None  # the environment whose process the daemon started as this uid

    def what(self) -> str:
        return f"{self.syscall} {self.target or '(no target)'} refused by the kernel: {self.errno}"


_FIELD = re.compile(r'(\w+)=("[^"]*"|\S+)')


def fields(text: str) -> dict[str, str]:
    """``key=value`` pairs of one record's text; quoted values unquoted, hex-encoded (unquoted) names decoded."""
    found: dict[str, str] = {}
    for name, value in _FIELD.findall(text):
        if value.startswith('"'):
            value = value[1:-1]
        elif name in ("name", "cwd", "comm", "exe", "key") and value not in ("(null)", "(none)") \
                and re.fullmatch(r"(?:[0-9A-F]{2})+", value):
            value = bytes.fromhex(value).decode("utf-8", "replace")
        found.setdefault(name, value)
    return found


def sockaddr(hexed: str) -> str:
    """The address of a SOCKADDR record (``saddr=``, the raw struct in hex): ``host:port`` or a socket path."""
    try:
        raw = bytes.fromhex(hexed)
    except ValueError:
        return ""
    if len(raw) < 2:
        return ""
    family = struct.unpack_from("=H", raw)[0]
    if family == socket.AF_INET and len(raw) >= 8:
        return f"{socket.inet_ntop(socket.AF_INET, raw[4:8])}:{struct.unpack_from('!H', raw, 2)[0]}"
    if family == socket.AF_INET6 and len(raw) >= 24:
        return f"[{socket.inet_ntop(socket.AF_INET6, raw[8:24])}]:{struct.unpack_from('!H', raw, 2)[0]}"
    if family == socket.AF_UNIX:
        return raw[2:].split(b"\0", 1)[0].decode("utf-8", "replace") or "(abstract socket)"
    return f"(address family {family})"


def refusal(records: list[tuple[int, str]], names: dict[int, str], key: str) -> Refusal | None:
    """One event's records (type, text) as a :class:`Refusal`, or None (not a failed syscall under ``key``).

    Exactly ``key``: the readlog group hands every daemon every record, and another state folder's daemon's
    refusals (its own ``railguard-*`` key) are not this one's to record."""
    syscall = next((fields(text) for kind, text in records if kind == AUDIT_SYSCALL), None)
    if syscall is None or syscall.get("success") != "no" or syscall.get("key", "") != key:
        return None
    try:
        uid, pid, code = int(syscall["uid"]), int(syscall["pid"]), -int(syscall["exit"])
        number = int(syscall["syscall"])
    except (KeyError, ValueError):
        return None
    cwd = next((fields(text).get("cwd", "") for kind, text in records if kind == AUDIT_CWD), "")
    target = ""
    for kind, text in records:
        if kind == AUDIT_SOCKADDR:
            target = sockaddr(fields(text).get("saddr", ""))
        elif kind == AUDIT_PATH and not target:
            item = fields(text)
            name = item.get("name", "")
            if name and name != "(null)":
                target = name if name.startswith("/") or not cwd else f"{cwd.rstrip('/')}/{name}"
    return Refusal(uid=uid, pid=pid, syscall=names.get(number, f"syscall {number}"),
                   errno=ERRNO.get(code, f"errno {code}"), target=target, comm=syscall.get("comm", ""),
                   exe=syscall.get("exe", ""), key=syscall.get("key", ""))


def split(data: bytes) -> list[tuple[int, int, str]]:
    """Netlink messages of one datagram: (type, serial, text)."""
    found: list[tuple[int, int, str]] = []
    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if length < 16:
            break
        text = data[offset + 16:offset + length].rstrip(b"\0").decode("utf-8", "replace")
        serial = re.match(r"audit\([\d.]+:(\d+)\):\s?", text)
        if serial is not None:
            found.append((kind, int(serial.group(1)), text[serial.end():]))
        offset += (length + 3) & ~3
    return found


def syscall_numbers() -> dict[int, str]:
    """Syscall number -> name on this machine's architecture (``ausyscall --dump``; empty when it cannot say)."""
    if shutil.which("ausyscall") is None:
        return {}
    try:
        done = subprocess.run(["ausyscall", "--dump"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return {}
    found: dict[int, str] = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            found[int(parts[0])] = parts[1]
    return found


def _auditctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["auditctl", *args], capture_output=True, text=True, timeout=15, check=False)


def _mark() -> Path:
    run = Path("/run")
    return (run if run.is_dir() else Path(tempfile.gettempdir())) / _ENABLED_MARK


class KernelAudit:
    """Rules for environment users' uids under ``key``, and a reader handing each refusal to ``report``."""

    def __init__(self, key: str, report: Callable[[Refusal], None]) -> None:
        self.key = key
        self._report = report
        self._lock = threading.Lock()
        self._uids: dict[int, str | None] = {}  # watched uid -> its environment (as the daemon started it)
        self._adding: dict[int, str | None] = {}  # uid whose rules are being added -> its environment
        self._failed: dict[int, str] = {}  # uid whose rules auditctl refused -> why (not in _uids: tried again)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._names: dict[int, str] = {}
        self._syscalls: dict[tuple[str, ...], tuple[str, ...]] = {}
        self.state = "kernel-refused attempts are not recorded (the kernel audit was not started)"
        self.on = False
        self.lost = 0  # times the socket overflowed (records dropped by the kernel)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> bool:
        """Turn the feature on if this machine allows it; :attr:`state` says what happened. Never raises."""
        try:
            why = self._start()
        except (OSError, subprocess.SubprocessError) as exc:
            why = f"the kernel audit cannot be used: {exc}"
        if why is not None:
            self.state = f"kernel-refused attempts are not recorded ({why})"
            self._close()
            return False
        self.on = True
        with self._lock:
            self._say()
        return True

    def _start(self) -> str | None:
        if os.geteuid() != 0:
            return "the daemon is not root"
        if shutil.which("auditctl") is None:
            return "auditctl is not installed (Debian package auditd)"
        status = _auditctl("-s")
        if status.returncode != 0:
            return f"the kernel refuses audit requests: {(status.stderr or status.stdout).strip()[:200]}"
        enabled = re.search(r"^enabled (\d)", status.stdout, re.MULTILINE)
        if enabled is None:
            return "auditctl -s does not say whether auditing is on"
        if enabled.group(1) == "2":
            return "the audit configuration is locked (enabled 2) until reboot"
        self._remove_rules()  # a crashed daemon of this state folder left its rules
        try:
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
            self._sock.bind((0, 1 << (AUDIT_NLGRP_READLOG - 1)))
            # A burst (an app scanning every /proc/<pid>/environ is hundreds of records) must not overflow the
            # socket: the kernel drops multicast records a full socket cannot take. Root may force the size.
            for option in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
                try:
                    self._sock.setsockopt(socket.SOL_SOCKET, option, _RCVBUF)
                    break
                except OSError:
                    continue
        except OSError as exc:
            return f"the kernel's audit log cannot be read (netlink multicast): {exc.strerror or exc}"
        if enabled.group(1) == "0":
            done = _auditctl("-e", "1")
            if done.returncode != 0:
                return f"auditing cannot be turned on: {(done.stderr or done.stdout).strip()[:200]}"
            _mark().write_text(str(os.getpid()))
        self._names = syscall_numbers()
        known = set(self._names.values())
        for syscalls, _ in RULES:  # only the syscalls this architecture has (aarch64 has no open, creat, ...)
            self._syscalls[syscalls] = tuple(s for s in syscalls if not known or s in known)
        self._thread = threading.Thread(target=self._read, name="railguard-kernel-audit", daemon=True)
        self._thread.start()
        return None

    def stop(self) -> None:
        """Remove this daemon's rules, stop reading, and turn auditing off if Railguard turned it on and no
        Railguard rule (of any daemon on this machine) remains."""
        if not self.on:
            return
        self.on = False
        self._stop.set()
        try:
            self._remove_rules()
            listed = _auditctl("-l")
            mark = _mark()
            if mark.exists() and KEY_PREFIX not in listed.stdout:
                _auditctl("-e", "0")
                mark.unlink(missing_ok=True)
        except (OSError, subprocess.SubprocessError):
            log.exception("cannot remove the kernel audit rules %s", self.key)
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._close()

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _remove_rules(self) -> None:
        # ``-D -k key`` deletes exactly the rules carrying our key, nothing else on the machine.
        _auditctl("-D", "-k", self.key)

    # -- rules -------------------------------------------------------------------------------------
    def watch(self, uid: int, env: str | None = None) -> None:
        """Cover ``uid`` (the user of environment ``env``) from now on; cheap when it is covered already.

        A uid whose rules auditctl refused is not taken as covered (the next call tries again) and :attr:`state`
        says so. auditctl runs without the lock: the reader thread needs it for every refusal it hands on."""
        if not self.on or uid == 0:
            return
        with self._lock:
            if uid in self._uids:
                if env is not None:
                    self._uids[uid] = env
                return
            if uid in self._adding:
                if env is not None:
                    self._adding[uid] = env
                return  # another caller is adding its rules right now
            self._adding[uid] = env
        failed: list[str] = []
        try:
            for syscalls, errno in RULES:
                argv = ["-a", "always,exit", "-F", "arch=b64"]
                for name in self._syscalls.get(syscalls, syscalls):
                    argv += ["-S", name]
                argv += ["-F", f"exit=-{errno}", "-F", f"uid={uid}", "-k", self.key]
                try:
                    done = _auditctl(*argv)
                except (OSError, subprocess.SubprocessError) as exc:
                    failed.append(str(exc))
                    continue
                if done.returncode != 0 and "exists" not in done.stderr:
                    failed.append(done.stderr.strip() or f"auditctl exited with {done.returncode}")
        finally:
            with self._lock:
                env = self._adding.pop(uid, env)
                if failed:
                    self._failed[uid] = failed[0][:200]
                else:
                    self._uids[uid] = env
                    self._failed.pop(uid, None)
                self._say()
        if failed:
            log.warning("kernel audit rule for uid %s not added: %s", uid, failed[0])

    def _say(self) -> None:
        """:attr:`state` while on: recorded, except for the uids whose rules auditctl refused (lock held)."""
        self.state = f"kernel-refused attempts are recorded (Linux audit rules keyed {self.key})"
        if self._failed:
            uid, why = next(iter(sorted(self._failed.items())))
            self.state += (f", except for uid(s) {', '.join(str(u) for u in sorted(self._failed))}: their rules "
                           f"were not added (uid {uid}: {why}); retried when the environment's user is next used")

    def watched(self) -> dict[int, str | None]:
        with self._lock:
            return dict(self._uids)

    # -- reading -----------------------------------------------------------------------------------
    def _read(self) -> None:
        pending: dict[int, tuple[float, list[tuple[int, str]]]] = {}
        while not self._stop.is_set():
            sock = self._sock
            if sock is None:
                return
            try:
                ready, _, _ = select.select([sock], [], [], 0.25)
                data = sock.recv(1 << 16) if ready else b""
            except OSError as exc:
                if self._stop.is_set():
                    return
                if exc.errno == errno_module.ENOBUFS:  # records were dropped for want of room: say so, read on
                    self.lost += 1
                    log.warning("kernel audit records were lost (the socket overflowed)")
                else:
                    time.sleep(0.1)
                continue
            now = time.monotonic()
            done: list[list[tuple[int, str]]] = []
            for kind, serial, text in split(data):
                if kind == AUDIT_EOE:
                    if serial in pending:
                        done.append(pending.pop(serial)[1])
                    continue
                pending.setdefault(serial, (now, []))[1].append((kind, text))
            for serial in [s for s, (at, _) in pending.items() if now - at > _GROUP_WAIT_S]:
                done.append(pending.pop(serial)[1])
            if len(pending) > 1024:  # events without an end marker must not pile up
                pending.clear()
            for records in done:
                try:
                    found = refusal(records, self._names, self.key)
                    if found is not None:
                        with self._lock:
                            found.env = self._uids.get(found.uid, self._adding.get(found.uid))
                        self._report(found)
                except Exception:  # one odd record must not end the reader
                    log.exception("cannot read a kernel audit record")
