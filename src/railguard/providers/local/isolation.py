"""Workload isolation of the local runtime: which OS user runs what, and who may touch which folder.

The app is untrusted code. When the daemon has the privilege for it (it runs as root), each
environment's replicas, release commands and exec health checks run as that environment's own
unprivileged user (``rg-<app>-<env>``, created on demand with ``useradd --system``, or the spec's
``environments.<env>.user``), with no supplementary groups; the daemon stays root. Different users
give the rest by themselves: a replica cannot read another environment's ``/proc/<pid>/environ``,
cannot join its listening sockets (``SO_REUSEPORT`` needs the same user), cannot write the state
folder (root's, 0711, its files 0600), an artifact (root's, read-only) or another environment's data
folder (owned by its user, 0700). Without the privilege (or with isolation switched off) everything
runs as the daemon's user: ``shared-user``, whose limits docs/guardrails.md lists.

Called by the local provider (level at construction, users and folders before each start) and by
:mod:`railguard.providers.local.processes` (the spawn itself).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ISOLATED, SHARED = "isolated", "shared-user"
EDGE_USER = "rg-edge"  # Caddy's own user, when the edge launches it as one (see docs/guardrails.md)
# Folders of the state folder that other users must be able to traverse (never list, never write).
_TRAVERSABLE = {"artifacts", "data", "edge",
                "databases"}  # each cluster's own user reaches its folder (0700, its own) through it
_USER_MAX = 32  # useradd's limit
_lock = threading.Lock()
_sealed: set[str] = set()


@dataclass(frozen=True)
class Level:
    """Whether this runtime isolates workloads, and why (not)."""

    level: str  # ISOLATED or SHARED
    reason: str

    @property
    def isolated(self) -> bool:
        return self.level == ISOLATED


@dataclass(frozen=True)
class RunAs:
    """An OS user a process is started as."""

    name: str
    uid: int
    gid: int


def detect(home: Path, wanted: str | None = None) -> Level:
    """The isolation level this state folder can have (``wanted``: auto, off; default $RAILGUARD_ISOLATION)."""
    wanted = (wanted or os.environ.get("RAILGUARD_ISOLATION") or "auto").lower()
    if wanted == "off":
        return Level(SHARED, "isolation is switched off (RAILGUARD_ISOLATION=off)")
    if os.geteuid() != 0:
        return Level(SHARED, "the daemon does not run as root, so every app process runs as its user")
    if shutil.which("useradd") is None:
        return Level(SHARED, "useradd is not installed, so no environment user can be created")
    blocked = unreachable(home)
    if blocked is not None:
        return Level(SHARED, f"{blocked} is not traversable by other users (chmod o+x), so an environment user "
                             "could not reach its artifact")
    base = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    if unreachable(base) is not None or not os.stat(base).st_mode & stat.S_IXOTH:
        return Level(SHARED, f"the Python the artifacts' virtualenvs are made from ({base}) cannot be run by other "
                             "users")
    return Level(ISOLATED, "each environment runs as its own OS user")


def unreachable(home: Path) -> Path | None:
    """The first ancestor of the state folder another user cannot traverse, if any."""
    for folder in reversed(home.resolve().parents):
        try:
            if not os.stat(folder).st_mode & stat.S_IXOTH:
                return folder
        except OSError:
            return folder
    return None


def user_name(app: str | None, env: str, home: Path) -> str:
    """``rg-<app>-<env>``, lower-case and at most 32 characters (a hash keeps long names distinct)."""
    base = f"rg-{app}-{env}" if app else f"rg-{hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:8]}-{env}"
    name = re.sub(r"[^a-z0-9_-]", "-", base.lower())
    if len(name) > _USER_MAX:
        name = name[:_USER_MAX - 9] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return name


def scratch_user(app: str) -> str:
    """``rg-scratch-<app>``: the doctor's scratch runs of the app (never an environment's user, never root)."""
    name = re.sub(r"[^a-z0-9_-]", "-", f"rg-scratch-{app}".lower())
    if len(name) > _USER_MAX:
        name = name[:_USER_MAX - 9] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return name


def ensure_user(name: str) -> RunAs:
    """The user, created (system user, own group, no login, no home) when it does not exist yet."""
    with _lock:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            done = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
                                   "/nonexistent", "--shell", "/usr/sbin/nologin", name],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise OSError(f"useradd {name} failed: {done.stderr.strip() or done.returncode}") from None
            entry = pwd.getpwnam(name)
    if entry.pw_uid == 0:
        raise OSError(f"the user {name} is root; an environment must run as an unprivileged user")
    return RunAs(name, entry.pw_uid, entry.pw_gid)


_starting: list[Callable[[RunAs, str | None], None]] = []  # called before a process of an environment's user starts


def on_start(callback: Callable[[RunAs, str | None], None]) -> Callable[[], None]:
    """Call ``callback`` before any replica or command starts as an OS user other than the daemon's (the daemon's
    kernel audit covers that user's uid before its first syscall); returns the function that stops it."""
    _starting.append(callback)
    return lambda: _starting.remove(callback) if callback in _starting else None


def starting(run_as: RunAs | None, env: str | None) -> None:
    """A process of environment ``env`` is about to start as ``run_as`` (None: the daemon's own user, nothing to
    tell)."""
    if run_as is None:
        return
    for callback in list(_starting):
        try:
            callback(run_as, env)
        except Exception:  # a watcher's failure must never stop a replica from starting
            logging.getLogger("railguard.daemon").exception("start watcher failed for %s", run_as.name)


def lookup(name: str | None) -> RunAs | None:
    """The user a stored replica spec names (None: the daemon's own)."""
    return None if name is None else ensure_user(name)


def protect_home(home: Path) -> None:
    """State folder 0711 owned by the daemon's user; everything in it private except the traversable folders.

    Run at boot with the daemon's umask at 077, so files made later (the database's WAL) are private too.
    """
    home.chmod(0o711)
    for entry in home.iterdir():
        try:
            mode = entry.lstat().st_mode
            if stat.S_ISLNK(mode):
                continue
            if entry.name in _TRAVERSABLE and stat.S_ISDIR(mode):
                entry.chmod(0o711)
            else:
                entry.chmod(stat.S_IMODE(mode) & 0o700)
        except OSError as exc:  # a file that vanished meanwhile
            log.debug("cannot protect %s: %s", entry, exc)
    for folder in _TRAVERSABLE:
        (home / folder).mkdir(mode=0o711, exist_ok=True)
        (home / folder).chmod(0o711)


def seal_artifact(path: Path) -> None:
    """Make a built artifact the daemon user's and read-only for everyone else (once per artifact and run).

    Replicas of every environment that runs it read it; none may change it, so a promotion ships exactly
    the code that was reviewed and soaked.
    """
    key = str(path)
    if key in _sealed:
        return
    owner = os.geteuid()
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            _seal(Path(root) / name, owner)
    _seal(path, owner)
    _sealed.add(key)


def _seal(path: Path, owner: int) -> None:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        if info.st_uid != owner:
            os.lchown(path, owner, -1)
        return
    if info.st_uid != owner:
        os.chown(path, owner, -1)
    mode = stat.S_IMODE(info.st_mode) & ~0o022 & ~stat.S_ISUID & ~stat.S_ISGID
    mode |= 0o044 | (0o011 if stat.S_ISDIR(info.st_mode) or mode & 0o100 else 0)
    if mode != stat.S_IMODE(info.st_mode):
        path.chmod(mode)


def prepare_data(path: Path, run_as: RunAs | None) -> None:
    """The environment's data folder: its user's alone (0700), created when missing."""
    path.mkdir(parents=True, exist_ok=True)
    if run_as is None:
        return
    info = path.stat()
    if (info.st_uid, info.st_gid) != (run_as.uid, run_as.gid):
        # Handed over (first isolated run, or a new user): everything in it becomes the user's.
        for root, dirs, files in os.walk(path):
            for name in [*dirs, *files]:
                os.lchown(Path(root) / name, run_as.uid, run_as.gid)
        os.chown(path, run_as.uid, run_as.gid)
    path.chmod(0o700)
