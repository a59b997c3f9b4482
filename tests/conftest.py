"""Shared fixtures: a spec builder and a tmp workspace."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
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


def _ours(base: Path) -> list[psutil.Process]:
    """Processes whose command line or working directory points into this session's temporary folders.

    Replicas run as `python app.py` inside an artifact folder: only their working directory names the test.
    """
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        try:
            text = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["cwd"] or "")
            if str(base) in text and proc.pid != os.getpid():
                found.append(proc)
        except psutil.Error:
            continue
    return found


@pytest.fixture(autouse=True)
def no_leftover_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every daemon, replica and Caddy a test starts is stopped by the test; anything left fails it."""
    yield
    base = tmp_path_factory.getbasetemp()
    for proc in _ours(base):
        cmd = proc.info["cmdline"] or []
        if "daemon" in cmd and "--home" in cmd:
            home = cmd[cmd.index("--home") + 1]
            subprocess.run([sys.executable, "-m", "railguard", "daemon", "stop", "--everything"],
                           env={**os.environ, "RAILGUARD_HOME": home}, capture_output=True, timeout=60, check=False)
    leftovers = []
    for proc in _ours(base):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                leftovers.append(" ".join(proc.cmdline()))
                proc.kill()
        except psutil.Error:
            continue
    assert leftovers == [], f"processes left running: {leftovers}"


def stop_daemon(folder: Path) -> None:
    """Stop the daemon of a workspace and everything it runs, if one was started."""
    if (folder / ".railguard" / "daemon.pid").exists():
        subprocess.run([sys.executable, "-m", "railguard", "daemon", "stop", "--everything",
                        "--spec", str(folder / "railguard.toml")], capture_output=True, timeout=60, check=False)
