"""Builds run as an unprivileged build user, never with the daemon's authority.

An artifact's build is the app's own code: ``setup.py`` or a build backend, sdists named by its
requirements, and any ``build = [...]`` command. When the runtime isolates, every such step runs as the
app's build user (``rg-build-<app>``, no supplementary groups), in a fresh home and package cache of
its own (a cache kept across builds could be poisoned by one build for the next). Artifacts and layers
are shared across environments by content digest, so the build user may write only the folder being
built and only while it is built: afterwards :func:`reclaim` kills every process of that user (a
daemon left behind could keep a file open for writing), refuses entries it could only have smuggled in
(another user's file hard linked in), makes the whole tree root's and strips set-id bits; the caller
then seals it read-only and records its manifest, which is verified before every start. Builds of one
build user are serialized (:func:`session`), so killing its processes never hits another build.

The current build user travels in a context variable set by :func:`session`, so the build code
(:mod:`~railguard.providers.local.artifacts`, :mod:`~railguard.providers.local.layers`,
:mod:`~railguard.providers.local.buildrun`) needs no new parameters. Called by the rollout (around
``artifacts.ensure``) and by the build modules above.
"""

from __future__ import annotations

import contextvars
import fcntl
import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from railguard.providers.local.isolation import RunAs, ensure_user

_USER_MAX = 32


@dataclass
class Builder:
    """Who runs the build's app-controlled steps, and the private home those steps get."""

    run_as: RunAs
    home: Path
    handed: bool = False  # a tree was handed over: something ran as the user, so its processes are killed at the end

    def env(self) -> dict[str, str]:
        """Overrides for every build step's environment: its own home and caches, nothing of root's."""
        return {"HOME": str(self.home), "XDG_CACHE_HOME": str(self.home / ".cache"),
                "UV_CACHE_DIR": str(self.home / ".cache" / "uv"), "PIP_CACHE_DIR": str(self.home / ".cache" / "pip")}


_current: contextvars.ContextVar[Builder | None] = contextvars.ContextVar("railguard_builder", default=None)


class ReclaimError(OSError):
    """The built tree holds something the build user could only have put there to attack (or cannot be reclaimed)."""


def build_user(app: str | None, home: Path) -> str:
    """``rg-build-<app>``, lower-case and at most 32 characters (a hash keeps long names distinct)."""
    base = f"rg-build-{app}" if app else f"rg-build-{hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:8]}"
    name = re.sub(r"[^a-z0-9_-]", "-", base.lower())
    if len(name) > _USER_MAX:
        name = name[:_USER_MAX - 9] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return name


def current() -> Builder | None:
    return _current.get()


def popen_user() -> dict[str, Any]:
    """``subprocess`` arguments that run a build step as the current build user (nothing when there is none)."""
    builder = _current.get()
    if builder is None:
        return {}
    return {"user": builder.run_as.uid, "group": builder.run_as.gid, "extra_groups": []}


@contextmanager
def session(lock_dir: Path, name: str | None) -> Iterator[Builder | None]:
    """Build as ``name`` (None: as the daemon's user) until the block ends; one build per build user at a time."""
    if name is None:
        yield None
        return
    run_as = ensure_user(name)
    lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_dir / f".{name}.build.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    # Beside the artifacts (traversable by other users; the daemon's TMPDIR may not be), never inside one.
    home = Path(tempfile.mkdtemp(prefix=f".home-{name}-", dir=lock_dir))
    token = None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.chown(home, run_as.uid, run_as.gid)
        token = _current.set(Builder(run_as, home))
        yield _current.get()
    finally:
        builder = _current.get()
        if token is not None:
            _current.reset(token)
        if builder is None or builder.handed:  # nothing ran as the user when the artifact was reused
            kill_all(run_as)
        shutil.rmtree(home, ignore_errors=True)
        os.close(fd)  # releases the lock


def hand_over(path: Path) -> None:
    """Make ``path`` (and everything in it) the current build user's, so its build steps can write it."""
    builder = _current.get()
    if builder is None:
        return
    builder.handed = True
    uid, gid = builder.run_as.uid, builder.run_as.gid
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.lchown(Path(root) / name, uid, gid)
    os.chown(path, uid, gid)


def reclaim(path: Path, planted: tuple[str, ...] = ()) -> None:
    """After the build: no process of the build user left, the tree root's, no set-id bit, ``planted`` gone.

    ``planted`` names top-level entries the daemon writes next (marker, manifest): whatever the build put
    there (a symlink to a system file) is removed first, so the daemon never writes through it.
    Raises :class:`ReclaimError` when the tree holds a root-owned file with other hard links (the build
    linked a file it does not own into the artifact, which sealing would make world-readable) or another
    user's file.
    """
    builder = _current.get()
    if builder is None:
        return
    kill_all(builder.run_as)
    uid = builder.run_as.uid
    problems: list[str] = []
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            entry = Path(root) / name
            info = entry.lstat()
            foreign = info.st_uid not in (uid, 0) or (info.st_uid == 0 and stat.S_ISREG(info.st_mode)
                                                        and info.st_nlink > 1)
            if foreign:
                problems.append(str(entry.relative_to(path)))
                continue
            _take(entry, info)
    _take(path, path.lstat())
    for name in planted:  # the daemon writes or chmods these next: only a plain file of its own may stay
        target = path / name
        try:
            info = target.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(info.st_mode):
            shutil.rmtree(target)
        elif not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            target.unlink()
    if problems:
        raise ReclaimError(f"the build left files it does not own in {path.name} (hard links to other users' "
                           f"files?): {', '.join(problems[:5])}")


def _take(entry: Path, info: os.stat_result) -> None:
    if info.st_uid != 0 or info.st_gid != 0:
        os.lchown(entry, 0, 0)
    if not stat.S_ISLNK(info.st_mode):
        mode = stat.S_IMODE(info.st_mode)
        safe = mode & ~(stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | 0o022)
        if safe != mode:
            entry.chmod(safe)


def kill_all(run_as: RunAs, timeout: float = 10.0) -> None:
    """SIGKILL every process of the build user (``kill -1`` as that user), until none is left."""
    deadline = time.monotonic() + timeout
    kill = shutil.which("kill")
    while True:
        if kill is not None:  # as the user: every process it has at once, so a forking loop cannot outrun it
            subprocess.run([kill, "-KILL", "-1"], user=run_as.uid, group=run_as.gid, extra_groups=[],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           check=False, timeout=10)
        left = _pids_of(run_as.uid)
        if not left:
            return
        if time.monotonic() > deadline:
            raise ReclaimError(f"processes of the build user {run_as.name} survive SIGKILL: {sorted(left)[:5]}")
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def _pids_of(uid: int) -> set[int]:
    pids: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", encoding="ascii", errors="replace") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if uid in {int(v) for v in line.split()[1:]}:
                            state = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[0]
                            if state != "Z":  # a zombie holds no file; its parent reaps it
                                pids.add(int(entry))
                        break
        except (OSError, IndexError, ValueError):
            continue
    return pids
