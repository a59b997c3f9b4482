"""Helpers for end-to-end tests: a workspace with the test app, the real CLI, polling with deadlines."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from pydantic import BaseModel

from railguard.model.api import EnvironmentStatus, Event, Operation, PlanAnswer, PlanRecord, Release, SecretSet

APP = Path(__file__).parent / "app"

# Commands whose --json answer is the daemon's, field for field: command -> (answer key, contract model, fields
# left out). Listings, and the single answers that no other test read back (promote, secret set).
CONTRACT: dict[str, tuple[str, type[BaseModel], set[str]]] = {
    "operations": ("operations", Operation, set()), "releases": ("releases", Release, {"desired"}),
    "events": ("events", Event, set()), "plans": ("plans", PlanRecord, set()),
    "promote": ("plan", PlanAnswer, set()), "secret": ("secret", SecretSet, set()),
}


def check_contract(command: str, answer: Any) -> None:
    """Every record of the answer round-trips exactly through its contract model: nothing missing or renamed."""
    if command not in CONTRACT or not isinstance(answer, dict) or not answer.get("ok"):
        return
    key, model, left_out = CONTRACT[command]
    key = "operation" if command == "operations" and "operation" in answer else key
    if command == "secret" and key not in answer:
        return  # secret list: its records are SecretInfo, which no command reads back either way
    records = answer[key] if isinstance(answer[key], list) else [answer[key]]
    for record in records:
        assert model.model_validate(record).model_dump(mode="json", exclude=left_out) == record, record

SPEC = """
[app]
name = "probe"

[environments.staging]
edge_port = {port}
rollback_window = "{window}"

[services.web]
run = ["python", "app.py"]
release = ["python", "migrate.py"]
replicas = {replicas}
env = {{ VERSION = "{version}", MODE = "{mode}", MIGRATE = "{migrate}", FIXED_PORT = "{fixed_port}", SLOW = "3" }}
start_timeout = "{start_timeout}"
stop_timeout = "3s"
drain_timeout = "5s"
{build}
[services.web.health]
http = "/healthz"
interval = "500ms"
timeout = "400ms"
start_period = "1s"
healthy_threshold = 2

[[services.web.routes]]
path = "/"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gone(pid: int | None) -> bool:
    """Whether process ``pid`` has ended (a zombie has: only its parent has not reaped it). It may vanish between
    any two looks, so every look is guarded: a check that raised NoSuchProcess failed a fault test under load."""
    if pid is None:
        return True
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:  # NoSuchProcess (it ended between two looks), AccessDenied on a reused pid
        return True


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Workspace:
    root: Path
    port: int
    fixed_port: int  # where MODE=ignore_port listens; stable so unrelated edits do not change `env`

    def write_spec(self, version: str = "1", mode: str = "", migrate: str = "", replicas: int = 1,
                   window: str = "5m", start_timeout: str = "15s", build: str = "") -> None:
        (self.root / "railguard.toml").write_text(SPEC.format(
            port=self.port, version=version, mode=mode, migrate=migrate, replicas=replicas, window=window,
            fixed_port=self.fixed_port, start_timeout=start_timeout, build=build))

    def rg(self, *args: str, env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
        # The workspace's own state folder unless the test names one.
        full = {k: v for k, v in os.environ.items() if k != "RAILGUARD_HOME"}
        full.update({"NO_COLOR": "1", "COLUMNS": "200", **(env or {})})
        return subprocess.run([sys.executable, "-m", "railguard", *args], cwd=self.root, capture_output=True,
                              text=True, timeout=timeout, env=full, check=False)

    def rg_json(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        done = self.rg(*args, "--json", env=env)
        assert "Traceback" not in done.stderr, done.stderr
        try:
            answer = json.loads(done.stdout)
        except ValueError as exc:
            raise AssertionError(f"not JSON: {done.stdout!r} {done.stderr!r}") from exc
        check_contract(args[0] if args else "", answer)
        return done.returncode, answer

    def deploy(self) -> tuple[int, dict[str, Any]]:
        return self.rg_json("deploy", "--env", "staging", "--yes")

    def get(self, path: str = "/") -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=5, trust_env=False)

    def version(self) -> str:
        return self.get().text.split()[0]

    def status(self) -> dict[str, Any]:
        code, found = self.rg_json("status", "--env", "staging")
        assert code == 0, found
        # The answer is exactly the contract's EnvironmentStatus: no field missing, renamed or retyped.
        assert EnvironmentStatus.model_validate(found["status"]).model_dump(mode="json") == found["status"]
        return dict(found["status"])

    def daemon_pid(self) -> int | None:
        try:
            return int(json.loads((self.root / ".railguard" / "daemon.pid").read_text())["pid"])
        except (OSError, ValueError):
            return None


def make_workspace(tmp_path: Path) -> Workspace:
    for name in ("app.py", "migrate.py"):
        shutil.copy(APP / name, tmp_path / name)
    ws = Workspace(tmp_path, free_port(), free_port())
    ws.write_spec()
    return ws


def run_on_terminal(root: Path, args: list[str], answer: str, env: dict[str, str] | None = None,
                    timeout: float = 60) -> tuple[int, str]:
    """Run the CLI with a real pseudo-terminal as its controlling terminal and type ``answer`` at its prompt."""
    import pty
    import select

    full = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    full.pop("RAILGUARD_HOME", None)
    pid, fd = pty.fork()
    if pid == 0:  # the child: a new session whose controlling terminal is the pty
        os.chdir(root)
        os.execve(sys.executable, [sys.executable, "-m", "railguard", *args], full)
    output, answered = b"", False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
                if not answered and b":" in output.splitlines()[-1] if output.splitlines() else False:
                    os.write(fd, answer.encode() + b"\n")
                    answered = True
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")
