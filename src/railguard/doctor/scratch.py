"""The scratch environment: a throwaway folder, free ports and processes that are always torn down.

Everything a doctor check runs lives here: copies of data folders, built or copied artifacts, logs,
a scratch state folder for the rollback drill, and every process, marked with this scratch's own
``RAILGUARD_INSTANCE`` (so no real daemon ever mistakes it for one of its replicas, and
:meth:`Scratch.close` finds every one of them, including grandchildren). The folder is created under
the system temporary folder (``$TMPDIR``), never inside a real state or data folder. Building and
starting go through the runtime's scratch facade (:class:`railguard.providers.base.ScratchRuntime`). Real folders are
only ever read: artifacts are copied from the real state folder, data folders are copied with
:func:`railguard.doctor.fingerprint.copy_data`. Created and closed by the doctor's runner.

The app's code is untrusted here too. When the runtime can isolate (the doctor runs as root), :meth:`isolate`
makes the build run as ``rg-build-scratch-<app>`` and the release command, replicas and drills as
``rg-scratch-<app>``: an unprivileged user of its own, owner of the scratch data folders (0700), able to
traverse the scratch (0711) and read its sealed artifacts, never to read the state folder or the keys.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

import psutil

from railguard.providers.base import BuiltArtifact, ScratchRuntime
from railguard.providers.registry import scratch_runtime


class Interrupted(BaseException):  # like KeyboardInterrupt, which it stands beside
    """SIGTERM (or SIGINT) arrived: stop the run, tear the scratch down, report what finished."""

    def __init__(self, signame: str) -> None:
        super().__init__(signame)
        self.signame = signame


class Scratch:
    def __init__(self, base: Path | None = None, allocate: Callable[[], int] | None = None,
                 runtime: ScratchRuntime | None = None) -> None:
        self.runtime = runtime or scratch_runtime()
        self.root = Path(tempfile.mkdtemp(prefix="rgdoc-", dir=base)).resolve()
        self.home = self.root / "home"
        self.home.mkdir(mode=0o700)
        self.instance = self.runtime.instance(self.home)
        self._allocate = allocate or self.runtime.free_port
        self._artifacts: dict[str, BuiltArtifact] = {}
        self._counter = 0
        self.closers: list[Callable[[], None]] = []
        self.extra: list[Path] = []  # short folders outside root, for Unix sockets (see socket_folder)
        self.user: str | None = None  # the scratch user the app's code runs as (see isolate), None: ours

    def isolate(self, app: str) -> str | None:
        """Run the app's code in this scratch as the runtime's scratch user, when it can; its name, or None."""
        for folder in (self.root, self.home):
            folder.chmod(0o711)  # traversable (never listable) by the scratch user, down to its artifacts
        self.user = self.runtime.isolate(app, self.root)
        if self.user is None:
            for folder in (self.root, self.home):
                folder.chmod(0o700)
        else:
            (self.home / "artifacts").mkdir(mode=0o711, exist_ok=True)
            (self.home / "artifacts").chmod(0o711)
        return self.user

    def hand_over(self, data_dir: Path) -> None:
        """A scratch data folder becomes the scratch user's alone before the app's code runs on it."""
        if self.user is None:
            return
        try:
            self.runtime.hand_over(data_dir)
        except OSError:  # a path made impossible on purpose (``blocked``): the app meets that failure itself
            pass

    # -- places ------------------------------------------------------------------------------
    def folder(self, name: str) -> Path:
        """A new, empty folder for one use (``data-3``, ``drill-5``...)."""
        self._counter += 1
        path = self.root / f"{name}-{self._counter}"
        path.mkdir(parents=True)
        if self.user is not None:
            path.chmod(0o711)  # a scratch state folder (drills) must be traversable by the scratch user
        return path

    def socket_folder(self, name: str) -> Path:
        """A new folder for a state folder with Unix sockets (Caddy's admin socket) in it.

        Socket paths are limited to 107 bytes; when the scratch folder is too deep (CI, pytest) the
        folder is made under /tmp instead, and torn down with the rest."""
        path = self.folder(name)
        if len(str(path / "edge" / "admin.sock")) <= 100:
            return path
        short = Path(tempfile.mkdtemp(prefix="rgdoc-", dir="/tmp")).resolve()
        if self.user is not None:
            short.chmod(0o711)
        self.extra.append(short)
        return short

    def blocked(self) -> Path:
        """A path under which nothing can be created: its parent is a regular file (ENOTDIR, even for root)."""
        wall = self.folder("blocked") / "not-a-folder"
        wall.write_text("railguard doctor: this is a file, so nothing can live under it\n")
        return wall

    def port(self) -> tuple[int, list[str]]:
        """A free loopback port, skipping ones another program holds; notes say which were skipped."""
        notes: list[str] = []
        for _ in range(20):
            port = self._allocate()
            if not self.runtime.port_in_use(port):
                return port, notes
            notes.append(f"scratch port {port} was already taken by another program; picked another")
        raise RuntimeError("no free loopback port found for the scratch environment")

    @staticmethod
    def closed_port() -> int:
        """A loopback port nothing listens on (bound, then released at once)."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    # -- artifacts -----------------------------------------------------------------------------
    def artifact(self, source_root: Path, digest: str, build: list[str] | None, env: dict[str, str],
                 real_home: Path) -> BuiltArtifact:
        """The artifact of this source and build in scratch: copied from the real state folder when it was
        built there already (read-only), else built here. Raises ``BuildFailed`` when the build fails."""
        key = self.runtime.artifact_key(digest, build)
        if key in self._artifacts:
            return self._artifacts[key]
        found = self.copy_artifact(real_home, digest, build)
        if found is None:
            found = self.runtime.build_artifact(self.home / "artifacts", source_root, digest, build, env)
        self._artifacts[key] = found
        return found

    def copy_artifact(self, real_home: Path, digest: str, build: list[str] | None) -> BuiltArtifact | None:
        """Copy a release's artifact out of the real state folder; None when it is not there."""
        real = self.runtime.find_artifact(real_home / "artifacts", digest, build)
        if real is None:
            return None
        target = self.home / "artifacts" / real.path.name
        if not target.exists():
            # Whole, bytecode included: the copy is checked against the artifact's manifest before it starts.
            shutil.copytree(real.path, target, symlinks=True)
            _link_layer(real.path, target)
        return self.runtime.artifact_at(target, digest)

    # -- teardown ------------------------------------------------------------------------------
    def ours(self) -> list[psutil.Process]:
        """Every live process started for this scratch: by its RAILGUARD_INSTANCE, command line or folder."""
        found = []
        me = os.getpid()
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if proc.pid == me:
                continue
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                text = " ".join(proc.info["cmdline"] or [])
                places = [str(p) for p in (self.root, *self.extra)]
                if any(p in text or p in _cwd(proc) for p in places) or self._instance_of(proc) == self.instance:
                    found.append(proc)
            except psutil.Error:
                continue
        return found

    @staticmethod
    def _instance_of(proc: psutil.Process) -> str | None:
        try:
            found = proc.environ().get("RAILGUARD_INSTANCE")
            return str(found) if found is not None else None
        except psutil.Error:
            return None

    def close(self) -> list[str]:
        """Stop everything, remove the folder; return what had to be killed (normally nothing)."""
        notes: list[str] = []
        for closer in reversed(self.closers):
            with contextlib.suppress(Exception):
                closer()
        self.closers.clear()
        mine = os.getpgid(0)
        for proc in self.ours():
            try:
                notes.append(f"killed leftover pid {proc.pid} ({' '.join(proc.cmdline())[:80]})")
                pgid = os.getpgid(proc.pid)
                if pgid != mine and pgid == proc.pid:
                    os.killpg(pgid, signal.SIGKILL)
                else:
                    proc.kill()
            except (psutil.Error, OSError):
                continue
        psutil.wait_procs(self.ours(), timeout=5)
        for folder in (self.root, *self.extra):
            _unseal(folder)
            shutil.rmtree(folder, ignore_errors=True)
        return notes


def _link_layer(real: Path, copy: Path) -> None:
    """The copy uses the real artifact's read-only dependency layer (named in its ``layer.ref.json``): linked,
    never copied (tens of MB) nor written (sealed)."""
    try:
        key = str(json.loads((real / "layer.ref.json").read_text())["key"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    source = real.parent / ".layers" / key
    link = copy.parent / ".layers" / key
    if source.is_dir() and not link.exists() and "/" not in key:
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source, target_is_directory=True)


def _unseal(folder: Path) -> None:
    """Artifacts are sealed read-only (folders 0555): a non-root owner must open the folders before deleting."""
    for here, dirs, _files in os.walk(folder):
        for name in dirs:
            path = os.path.join(here, name)
            if not os.path.islink(path):
                with contextlib.suppress(OSError):
                    os.chmod(path, 0o755)


def _cwd(proc: psutil.Process) -> str:
    try:
        return str(proc.cwd())
    except psutil.Error:
        return ""
