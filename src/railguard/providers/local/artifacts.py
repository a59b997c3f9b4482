"""Immutable artifacts: a snapshot of the app source plus its build output.

An artifact is identified by the source digest and the build command, lives in its own
folder under ``<state>/artifacts/``, and is built at most once: the spec's ``build``
runs in the artifact's folder with a private virtualenv on PATH, so a Python app's
``pip install`` lands in the artifact, not in the machine or in Railguard. Releases
and rollbacks run artifacts; nothing is ever rebuilt from the working tree for a
rollback. Called by the local provider's rollout; :func:`prune` deletes the artifacts retention
let go (the local provider decides which must stay).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import venv
from dataclasses import dataclass
from pathlib import Path

from railguard.model.resources import Resource
from railguard.providers.base import BuildFailed
from railguard.providers.local.processes import tail
from railguard.sources.snapshot import copy_into, snapshot

MARKER = "artifact.json"
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
        """Folders put first on a replica's PATH: the artifact's venv (if built) and the interpreter's."""
        dirs = [str(self.path / "venv" / "bin")] if (self.path / "venv").is_dir() else []
        return [*dirs, str(Path(sys.executable).parent)]


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
    """Return the built artifact for this source digest and build command, making it if needed."""
    found = find(root, source_digest, build)
    if found is not None:
        return found
    if not source_dir.is_dir():
        raise ArtifactError(f"the artifact for {source_digest[:19]} is gone and the source folder is missing",
                            missing=True)
    snap = snapshot(source_dir)
    if snap.digest != source_digest:
        # The working tree moved on: building it would run code nobody reviewed under this digest.
        raise ArtifactError(
            f"the artifact for source {source_digest[:19]} does not exist and the working tree now has "
            f"{snap.digest[:19]}; Railguard never rebuilds an old release from a changed working tree",
            missing=True)
    final = root / artifact_id(source_digest, build)
    staging = root / f".{final.name}.{os.getpid()}.{int(time.time() * 1000)}"
    shutil.rmtree(final, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
        copied = copy_into(snap, staging / "src")
        if copied != source_digest:
            raise ArtifactError("the source changed while it was being copied; plan again")
        if build:
            _build(staging, build, env)
        (staging / MARKER).write_text(json.dumps({
            "status": "built", "digest": source_digest, "build": build, "built_at": time.time(),
            "git_commit": snap.git_commit, "git_dirty": snap.git_dirty, "files": len(snap.files)}))
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Artifact(final, source_digest)


def _build(folder: Path, build: list[str], env: dict[str, str]) -> None:
    venv.EnvBuilder(with_pip=True, clear=True).create(folder / "venv")
    bin_dirs = [str(folder / "venv" / "bin"), str(Path(sys.executable).parent)]
    build_env = {**env, "PATH": base_path(bin_dirs), "VIRTUAL_ENV": str(folder / "venv"),
                 "HOME": os.path.expanduser("~"), "LANG": "C.UTF-8", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    log = folder / "build.log"
    try:
        with log.open("ab") as out:
            done = subprocess.run(build, cwd=folder / "src", env=build_env, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S, check=False,
                                  start_new_session=True)
    except FileNotFoundError as exc:
        raise ArtifactError(f"build command not found: {build[0]!r}") from exc
    except subprocess.TimeoutExpired as exc:
        raise ArtifactError(f"build did not finish within {BUILD_TIMEOUT_S:.0f} s", tail(log, 20)) from exc
    if done.returncode != 0:
        raise ArtifactError(f"build {build} exited with {done.returncode}", tail(log, 20))


def referenced(resources: list[Resource]) -> set[str]:
    """Artifact ids the service resources (as stored in a release) run."""
    return {artifact_id(r.config.get("source") or "", r.config.get("build"))
            for r in resources if r.kind == "service" and r.config.get("source")}


def prune(root: Path, keep: set[str], dry_run: bool = False) -> list[str]:
    """Delete every artifact folder under ``root`` whose id is not in ``keep``; return the ids deleted.

    Folders starting with '.' are builds in progress and are left alone.
    """
    if not root.is_dir():
        return []
    gone = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in keep)
    if not dry_run:
        for name in gone:
            # Renamed first, so a half-deleted folder is never taken for a built artifact.
            doomed = root / f".deleting.{name}.{os.getpid()}"
            (root / name).rename(doomed)
            shutil.rmtree(doomed, ignore_errors=True)
    return gone
