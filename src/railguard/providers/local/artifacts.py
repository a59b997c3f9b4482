"""Immutable artifacts: a snapshot of the app source plus its build output.

An artifact is identified by the source digest and the build command, lives in its own
folder under ``<state>/artifacts/``, and is built at most once, in place: every artifact
has its own virtualenv at its final path (so installed console scripts such as
``gunicorn`` run), and the spec's ``build`` runs in the artifact's folder with that venv
on PATH, so a Python app's ``pip install`` lands in the artifact, not in the machine or in
Railguard; the build log stays beside it (``build.log``). Releases
and rollbacks run artifacts; the source is the snapshot stored when the plan was made
(:mod:`railguard.sources.store`, beside ``artifacts/`` in the state folder), never the
working tree. Called by the local provider's rollout; :func:`prune` deletes the artifacts retention
let go (the local provider decides which must stay).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import venv
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from railguard.model.resources import Resource
from railguard.providers.base import BuildFailed
from railguard.providers.local.processes import tail
from railguard.sources.store import FOLDER as SOURCES
from railguard.sources.store import SnapshotMissing, SnapshotStore, materialize_or_capture

MARKER = "artifact.json"
BUILD_LOG = "build.log"  # kept in the artifact's folder, also when the build failed
BUILD_TIMEOUT_S = 900.0


class ArtifactError(BuildFailed):
    """The artifact could not be made; ``log_tail`` holds the build's last output lines."""


@dataclass(frozen=True)
class Artifact:
    path: Path
    digest: str

    @property
    def src(self) -> Path:
        return self.path / "src"

    @property
    def bin_dirs(self) -> list[str]:
        """Folders put first on a replica's PATH: the artifact's own venv, never Railguard's.

        Only an artifact built before every artifact had a venv falls back to the interpreter
        Railguard runs on, so its releases still roll back.
        """
        if (self.path / "venv" / "bin").is_dir():
            return [str(self.path / "venv" / "bin")]
        return [str(Path(sys.executable).parent)]


def artifact_id(source_digest: str, build: list[str] | None) -> str:
    return hashlib.sha256(json.dumps([source_digest, build]).encode()).hexdigest()[:20]


def base_path(bin_dirs: list[str]) -> str:
    return os.pathsep.join([*bin_dirs, "/usr/local/bin", "/usr/bin", "/bin"])


def find(root: Path, source_digest: str, build: list[str] | None) -> Artifact | None:
    """The artifact if it was built successfully before."""
    path = root / artifact_id(source_digest, build)
    try:
        marker = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return Artifact(path, source_digest) if marker.get("status") == "built" else None


def ensure(root: Path, source_dir: Path, source_digest: str, build: list[str] | None,
           env: dict[str, str]) -> Artifact:
    """Return the built artifact for this source digest and build command, making it if needed.

    The artifact is built in its final folder, because a virtualenv records its own path (console
    scripts' shebangs, ``pyvenv.cfg``) and moving it would break every installed command. What says
    "complete" is the marker, written atomically last: a crashed build has no marker and is wiped by
    the next attempt. Builds of one artifact are serialized by a lock file, so two concurrent
    builds never write into the same folder.
    """
    found = find(root, source_digest, build)
    if found is not None:
        return found
    final = root / artifact_id(source_digest, build)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root, final.name, blocking=True):
        found = find(root, source_digest, build)
        if found is not None:  # another build finished while this one waited for the lock
            return found
        shutil.rmtree(final, ignore_errors=True)  # a crashed or failed build: no marker, so never used
        final.mkdir()
        try:  # the plan's stored snapshot, never the working tree (only a tree with this very digest stands in)
            snap = materialize_or_capture(SnapshotStore(root.parent / SOURCES), source_digest, final / "src",
                                          source_dir)
        except SnapshotMissing as exc:
            raise ArtifactError(
                f"the artifact for source {source_digest[:19]} does not exist and its snapshot is not stored "
                f"({exc}); Railguard never builds a release from a working tree with other content", missing=True,
            ) from exc
        _build(final, build, env)
        marker = final / f".{MARKER}.tmp"
        marker.write_text(json.dumps({
            "status": "built", "digest": source_digest, "build": build, "built_at": time.time(),
            "git_commit": snap.git_commit, "git_dirty": snap.git_dirty, "files": len(snap.files)}))
        os.replace(marker, final / MARKER)
    return Artifact(final, source_digest)


@contextmanager
def _locked(root: Path, name: str, *, blocking: bool) -> Iterator[bool]:
    """Hold the artifact's build lock; yields False when ``blocking`` is off and someone else holds it.

    :func:`prune` removes the lock file of an artifact it deletes, so a lock taken on a file that is
    no longer the one at the path is taken again on the current one.
    """
    path = root / f".{name}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                current = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                yield True
                return
        finally:
            os.close(fd)  # closing releases the lock


def _build(folder: Path, build: list[str] | None, env: dict[str, str]) -> None:
    """Create the artifact's own interpreter (always, so an app never runs on Railguard's) and run the build.

    Pip is only installed into the venv when there is a build to run: an app without dependencies gets
    a bare venv in milliseconds.
    """
    venv.EnvBuilder(with_pip=bool(build), clear=True, symlinks=True).create(folder / "venv")
    if not build:
        return
    bin_dirs = [str(folder / "venv" / "bin")]
    build_env = {**env, "PATH": base_path(bin_dirs), "VIRTUAL_ENV": str(folder / "venv"),
                 "HOME": os.path.expanduser("~"), "LANG": "C.UTF-8", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    log = folder / BUILD_LOG
    where = f"full log: {log}"
    try:
        with log.open("ab") as out:
            done = subprocess.run(build, cwd=folder / "src", env=build_env, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S, check=False,
                                  start_new_session=True)
    except FileNotFoundError as exc:
        raise ArtifactError(f"build command not found: {build[0]!r} (it is neither in the artifact's "
                            f"virtualenv nor on the system PATH)") from exc
    except subprocess.TimeoutExpired as exc:
        raise ArtifactError(f"build did not finish within {BUILD_TIMEOUT_S:.0f} s ({where})", tail(log, 20)) from exc
    if done.returncode != 0:
        raise ArtifactError(f"build {build} exited with {done.returncode} ({where})", tail(log, 20))


def referenced(resources: list[Resource]) -> set[str]:
    """Artifact ids the service resources (as stored in a release) run."""
    return {artifact_id(r.config.get("source") or "", r.config.get("build"))
            for r in resources if r.kind == "service" and r.config.get("source")}


def prune(root: Path, keep: set[str], dry_run: bool = False) -> list[str]:
    """Delete every artifact folder under ``root`` whose id is not in ``keep``; return the ids deleted.

    Folders starting with '.' are left alone, and so is an artifact whose build holds its lock.
    """
    if not root.is_dir():
        return []
    gone = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in keep)
    if dry_run:
        return gone
    deleted: list[str] = []
    for name in gone:
        with _locked(root, name, blocking=False) as held:
            if not held:
                continue  # being built right now: it is about to be referenced
            # Renamed first, so a half-deleted folder is never taken for a built artifact.
            doomed = root / f".deleting.{name}.{os.getpid()}"
            (root / name).rename(doomed)
            shutil.rmtree(doomed, ignore_errors=True)
            (root / f".{name}.lock").unlink(missing_ok=True)
            deleted.append(name)
    return deleted
