"""Shared fixtures: a spec builder and a tmp workspace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, Phase, settings

# Property tests (test_fuzz, test_properties) take their example counts from a profile, chosen with
# HYPOTHESIS_PROFILE: "ci" by default (the suite's budget), "long" by hand, "mutation" for bench/mutation.py
# (few examples, derandomized so every mutant meets the same inputs, not shrunk). print_blob: a failure prints the
# @reproduce_failure line that replays it.
_PROFILE = {"deadline": None, "print_blob": True, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("ci", max_examples=100, **_PROFILE)
settings.register_profile("long", max_examples=3000, **_PROFILE)
settings.register_profile("mutation", max_examples=10, derandomize=True, database=None,
                          phases=[Phase.explicit, Phase.generate], **_PROFILE)  # a failure is enough: no shrinking
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BASE_SPEC = """
[app]
name = "shop"

[environments.staging]
edge_port = 18080

[environments.production]
edge_port = 18443
protected = true

[services.web]
run = ["python", "app.py"]
depends_on = ["api"]
[services.web.health]
http = "/healthz"
interval = "2s"
timeout = "1s"
[[services.web.routes]]
path = "/"

[services.api]
run = ["python", "api.py"]
[[services.api.routes]]
path = "/api"
"""


@pytest.fixture(autouse=True, scope="session")
def private_key_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Secret keys and audit anchors of test daemons go to a temporary folder, never the real ~/.config."""
    old = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("config"))
    yield
    if old is None:
        os.environ.pop("XDG_CONFIG_HOME", None)
    else:
        os.environ["XDG_CONFIG_HOME"] = old


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder holding an app and a valid spec; the current directory for the test."""
    (tmp_path / "app.py").write_text("print('hi')\n")
    (tmp_path / "api.py").write_text("print('api')\n")
    (tmp_path / "railguard.toml").write_text(BASE_SPEC)
    monkeypatch.chdir(tmp_path)
    for var in ("RAILGUARD_HOME", "RAILGUARD_SPEC"):
        monkeypatch.delenv(var, raising=False)
    yield tmp_path
    stop_daemon(tmp_path)
    os.chdir("/")


@pytest.fixture(autouse=True, scope="session")
def session_temp_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Folders a test makes with ``tempfile`` (and so do the CLI, daemons and doctor runs it starts: they
    inherit TMPDIR) go into one short folder of this session, outside pytest's temp root, where the
    leftover-process check looks too. Short, because Unix socket paths are limited to 107 bytes."""
    tmp_path_factory.getbasetemp()  # pytest's own root stays where it is
    folder = Path(tempfile.mkdtemp(prefix="rgt-")).resolve()
    old_env, old_default = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = tempfile.tempdir = str(folder)
    yield folder
    tempfile.tempdir = old_default
    if old_env is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = old_env
    shutil.rmtree(folder, ignore_errors=True)


# Processes that outlive one test on purpose (a session's browser, a module's daemon): a process whose command line
# or working directory contains one of these markers is not any single test's leftover. Its fixture removes the
# marker when it stops them, so what it leaves behind after that is caught like any other leak.
SHARED: set[str] = set()


@contextmanager
def shared_processes(marker: str) -> Iterator[None]:
    SHARED.add(marker)
    try:
        yield
    finally:
        SHARED.discard(marker)


def _ours(roots: list[Path], before: set[tuple[int, float]]) -> list[psutil.Process]:
    """Live processes this test started: the pytest process's new descendants, and any process whose command
    line or working directory points into ``roots`` (daemons run detached; replicas run as `python app.py`
    inside an artifact folder, so only their working directory names the test)."""
    found: dict[int, psutil.Process] = {}
    me = psutil.Process()
    for proc in me.children(recursive=True):
        found[proc.pid] = proc
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        try:
            text = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["cwd"] or "")
            if any(marker in text for marker in SHARED):
                found.pop(proc.pid, None)
            elif any(str(root) in text for root in roots):
                found[proc.pid] = proc
        except psutil.Error:
            continue
    alive = []
    for proc in found.values():
        try:
            if proc.pid != me.pid and proc.status() != psutil.STATUS_ZOMBIE and \
                    (proc.pid, proc.create_time()) not in before:
                alive.append(proc)
        except psutil.Error:
            continue
    return alive


def _describe(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid}: {' '.join(proc.cmdline())} (in {proc.cwd()})"
    except psutil.Error:
        return f"pid {proc.pid}"


def _identity(proc: psutil.Process) -> tuple[int, float] | None:
    try:
        return proc.pid, proc.create_time()
    except psutil.Error:
        return None


@pytest.fixture(autouse=True)
def no_leftover_processes(tmp_path_factory: pytest.TempPathFactory, session_temp_folder: Path) -> Iterator[None]:
    """A test (with its fixtures' teardown) stops every process it starts; anything still running fails it.

    It looks first, then cleans up (daemons are asked to stop with everything they run, stragglers are
    killed), so a leak fails the test that leaked instead of being tidied away unnoticed.
    """
    roots = [tmp_path_factory.getbasetemp(), session_temp_folder]
    before = {i for i in map(_identity, _ours(roots, set())) if i is not None}
    yield
    found = _ours(roots, before)
    # A process on its way out is not a leak: under load, `daemon stop --everything` in a fixture's teardown
    # can return before the daemon has finished stopping its replicas and the edge.
    _, still = psutil.wait_procs(found, timeout=30)
    leftovers = [_describe(p) for p in still]
    for proc in still:  # cleanup: stop daemons (and what they run) properly, then kill what is left
        try:
            cmd = proc.cmdline()
        except psutil.Error:
            continue
        if "daemon" in cmd and "--home" in cmd:
            home = cmd[cmd.index("--home") + 1]
            subprocess.run([sys.executable, "-m", "railguard", "daemon", "stop", "--everything"],
                           env={**os.environ, "RAILGUARD_HOME": home}, capture_output=True, timeout=60, check=False)
    for proc in _ours(roots, before):
        try:
            proc.kill()
        except psutil.Error:
            continue
    for child in psutil.Process().children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE:  # exited, only not reaped: nothing runs
                os.waitpid(child.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError):
            continue
    assert leftovers == [], f"the test left processes running: {leftovers}"


def stop_daemon(folder: Path) -> None:
    """Stop the daemon of a workspace and everything it runs, if one was started."""
    if (folder / ".railguard" / "daemon.pid").exists():
        args = ["daemon", "stop", "--everything", "--spec", str(folder / "railguard.toml")]
        done = subprocess.run([sys.executable, "-m", "railguard", *args], capture_output=True, timeout=60,
                              check=False)
        if done.returncode != 0 and b"auth.needs_terminal" in done.stdout + done.stderr:
            # A protected environment runs: stopping it is a person's act, typed on a terminal.
            from tests.e2e.harness import run_on_terminal

            run_on_terminal(folder, args, "")
