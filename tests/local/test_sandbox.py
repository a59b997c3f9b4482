"""The read-only release folders (sandbox.py), with real processes: what a child may not write, and that the
daemon's own view of the file system is untouched by the mount namespaces its children get."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from railguard.providers.local import sandbox
from railguard.providers.local.health import check_exec
from railguard.providers.local.processes import ReplicaSpec, exit_code, spawn, stop

PY = sys.executable
WRITE = ("import pathlib, sys\ntry:\n    pathlib.Path('x').write_text('x')\n"
         "except OSError as e:\n    print(e); sys.exit(3)\n")

needs_root = pytest.mark.skipif(not sandbox.available(), reason="mount namespaces need root")


def _mounts() -> str:
    return Path("/proc/self/mountinfo").read_text()


@needs_root
def test_a_child_cannot_write_its_readonly_folder_and_the_daemon_still_can(tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.mkdir()
    before = _mounts()
    with sandbox.popen([PY, "-c", WRITE], (str(release),), cwd=release, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT) as proc:
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 3 and b"Read-only file system" in out
    assert not (release / "x").exists()
    # The namespace was the child's alone: no mount here, and this process writes the folder as before.
    assert _mounts() == before and str(release) not in _mounts()
    (release / "mine").write_text("ok")
    # Without a cwd of its own, a child started while the daemon works in a read-only folder cannot write there.
    here = os.getcwd()
    os.chdir(release)
    try:
        with sandbox.popen([PY, "-c", WRITE], (str(release),), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT) as proc:
            out, _ = proc.communicate(timeout=30)
    finally:
        os.chdir(here)
    assert proc.returncode == 3 and b"Read-only file system" in out and not (release / "x").exists()
    assert os.getcwd() == here
    # A folder that is not read-only for it is written as usual.
    with sandbox.popen([PY, "-c", WRITE], (str(release),), cwd=tmp_path) as proc:
        proc.wait(timeout=30)
    assert proc.returncode == 0 and (tmp_path / "x").exists()


@needs_root
def test_a_replica_and_an_exec_check_meet_the_readonly_release(tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.mkdir()
    spec = ReplicaSpec(name="staging.web.r1.0", argv=[PY, "-c", WRITE], cwd=release, env=dict(os.environ),
                       port=None, log_path=tmp_path / "replica.log", readonly=(str(release),))
    record = spawn(spec)
    try:
        deadline = time.monotonic() + 30
        while (code := exit_code(record)) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert code == 3, spec.log_path.read_text()
        assert "Read-only file system" in spec.log_path.read_text()
    finally:
        stop(record, timeout=1.0)
    result = check_exec([PY, "-c", WRITE], dict(os.environ), release, 30.0, readonly=(str(release),))
    assert not result.ok and result.detail.startswith("exit 3") and "Read-only file system" in result.detail
    assert not (release / "x").exists()


def test_without_readonly_folders_popen_is_plain(tmp_path: Path) -> None:
    with sandbox.popen([PY, "-c", WRITE], (), cwd=tmp_path) as proc:
        proc.wait(timeout=30)
    assert proc.returncode == 0 and (tmp_path / "x").exists()
    with pytest.raises(FileNotFoundError):
        sandbox.popen([str(tmp_path / "missing")], (str(tmp_path),), cwd=tmp_path)
