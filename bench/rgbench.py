"""Shared plumbing for Railguard's runtime benchmarks (rollout, deploy timing, edge, idle daemon).

Why it exists: every runtime benchmark needs the same disposable Railguard workspace (a copy of
examples/notes in a temp folder with its own state, a free loopback edge port, a spec edited in
place), the same way to drive the real CLI (`railguard ... --json`, timed) and, above all, the same
teardown: `railguard daemon stop --everything`, then a psutil sweep proving that no process whose
command line, working directory or environment mentions the temp folder is left (any straggler is
killed by pid and reported). Nothing here is a benchmark by itself.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "notes"
PY = sys.executable
RG = str(Path(PY).parent / "railguard")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (as bench/loadgen.py computes it)."""
    if not values:
        return None
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[idx]


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def journal_time(at: str) -> float:
    """Journal timestamps are UTC ISO-8601 with milliseconds and a Z; return epoch seconds."""
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


def get(port: int, path: str = "/", timeout: float = 1.0) -> tuple[int, bytes]:
    """One GET on a new connection; raises OSError/HTTPException on failure."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def serves_version(port: int, version: str) -> bool:
    try:
        status, body = get(port, "/", timeout=0.5)
    except (OSError, http.client.HTTPException):
        return False
    if status != 200:
        return False
    try:
        return str(json.loads(body).get("version")) == version
    except ValueError:
        return False


def wait_version(port: int, version: str, timeout: float = 30.0, pause: float = 0.001) -> float | None:
    """Poll the edge (new connection each time, `pause` s apart) until it answers with `version`.

    Returns time.perf_counter() of the first matching answer's arrival, None on timeout.
    """
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if serves_version(port, version):
            return time.perf_counter()
        time.sleep(pause)
    return None


def app_ready_time(version: str = "1", runs: int = 5, pause: float = 0.001) -> list[float]:
    """The app's own time from exec to its first 200 on /healthz, measured `runs` times.

    Runs examples/notes/migrate.py once, then starts `python app.py` with PORT and
    RAILGUARD_DATA_DIR set (as Railguard does) and polls /healthz on new connections.
    """
    out: list[float] = []
    with tempfile.TemporaryDirectory(prefix="rg-bench-app-") as tmp:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.path.expanduser("~"),
            "LANG": "C.UTF-8",
            "RAILGUARD_DATA_DIR": tmp,
            "APP_VERSION": version,
        }
        subprocess.run([PY, str(EXAMPLE / "migrate.py")], env=env, cwd=EXAMPLE, check=True, capture_output=True)
        for _ in range(runs):
            port = free_port()
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [PY, "app.py"],
                env={**env, "PORT": str(port)},
                cwd=EXAMPLE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                deadline = t0 + 15.0
                while time.perf_counter() < deadline:
                    try:
                        if get(port, "/healthz", timeout=0.5)[0] == 200:
                            out.append(time.perf_counter() - t0)
                            break
                    except (OSError, http.client.HTTPException):
                        pass
                    time.sleep(pause)
            finally:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    return out


def machine() -> dict[str, str]:
    model = "?"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "ram_gib": f"{psutil.virtual_memory().total / 2**30:.0f}",
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
    }


def machine_line() -> str:
    m = machine()
    return f"{m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']} GiB RAM, Linux {m['kernel']}, Python {m['python']}"


@dataclass
class CliRun:
    args: list[str]
    returncode: int
    seconds: float
    started_wall: float  # time.time() just before exec
    payload: dict[str, Any] | None
    stderr: str
    completed: subprocess.CompletedProcess[str] | None = None


@dataclass
class Workspace:
    """A copy of examples/notes with its own state folder; `close()` leaves nothing running."""

    edge_port: int = 0
    root: Path = field(default_factory=Path)
    tag: str = ""
    leftovers: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, edge_port: int | None = None, parent: Path | None = None, tag: str = "") -> Workspace:
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="rg-bench-", dir=parent))
        root = tmp / "notes"
        shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".railguard", "__pycache__"))
        ws = cls(edge_port=edge_port or free_port(), root=root, tag=tag)
        ws.edit(
            lambda text: re.sub(
                r"(\[environments\.staging\]\s*\nedge_port = )\d+", lambda m: f"{m.group(1)}{ws.edge_port}", text
            )
        )
        return ws

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def tmp(self) -> Path:
        return self.root.parent

    @property
    def home(self) -> Path:
        return self.root / ".railguard"

    @property
    def spec(self) -> Path:
        return self.root / "railguard.toml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.edge_port}/"

    def edit(self, change: Callable[[str], str]) -> None:
        text = self.spec.read_text()
        new = change(text)
        if new == text:
            raise RuntimeError("spec edit changed nothing")
        self.spec.write_text(new)

    def set_version(self, version: str) -> None:
        text = self.spec.read_text()
        self.spec.write_text(re.sub(r'APP_VERSION = "[^"]*"', f'APP_VERSION = "{version}"', text))

    def set_replicas(self, n: int) -> None:
        """Set `replicas` of [services.web] (the base section, not an environment override)."""

        def change(text: str) -> str:
            lines, section = text.splitlines(keepends=True), ""
            for i, line in enumerate(lines):
                if line.startswith("["):
                    section = line.strip()
                elif section == "[services.web]" and re.match(r"replicas\s*=", line):
                    lines[i] = f"replicas = {n}\n"
            return "".join(lines)

        self.edit(change)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("RAILGUARD_HOME", "RAILGUARD_SPEC", "RAILGUARD_DEBUG")}
        if self.tag:
            env["RG_BENCH_RUN"] = self.tag
        return env

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [RG, *args], cwd=self.root, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def finish(self, proc: subprocess.Popen[str], t0: float, wall0: float, timeout: float = 120.0) -> CliRun:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        secs = time.perf_counter() - t0
        args = [str(a) for a in proc.args] if isinstance(proc.args, list) else [str(proc.args)]
        try:
            payload = json.loads(stdout) if stdout.strip().startswith("{") else None
        except ValueError:
            payload = None
        done = subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)
        return CliRun(args[1:], proc.returncode, secs, wall0, payload, stderr, done)

    def cli(self, *args: str, timeout: float = 120.0) -> CliRun:
        wall0, t0 = time.time(), time.perf_counter()
        return self.finish(self.popen(*args), t0, wall0, timeout)

    def must(self, *args: str, timeout: float = 120.0) -> CliRun:
        run = self.cli(*args, timeout=timeout)
        if run.returncode != 0 or (run.payload is not None and not run.payload.get("ok", True)):
            detail = json.dumps(run.payload)[-800:] if run.payload else (run.stderr or "")[-800:]
            raise RuntimeError(f"railguard {' '.join(args)} failed (exit {run.returncode}): {detail}")
        return run

    def status(self) -> dict[str, Any]:
        payload = self.must("status", "--env", "staging", "--json").payload
        assert payload is not None
        return dict(payload["status"])

    def daemon_pid(self) -> int | None:
        try:
            return int(json.loads((self.home / "daemon.pid").read_text())["pid"])
        except (OSError, ValueError, KeyError):
            return None

    def caddy_pid(self) -> int | None:
        try:
            return int(json.loads((self.home / "edge" / "staging" / "caddy.pid").read_text())["pid"])
        except (OSError, ValueError, KeyError):
            return None

    def live_pids(self) -> list[int]:
        """Pids of the live replica set(s) of staging, read from the runtime file (no daemon call)."""
        try:
            raw = json.loads((self.home / "runtime.json").read_text())
        except (OSError, ValueError):
            return []
        sets = raw.get("envs", {}).get("staging", {}).get("sets", [])
        return [int(r["record"]["pid"]) for s in sets if s.get("role") == "live" for r in s["replicas"]]

    # -- teardown ----------------------------------------------------------------------------------
    def mine(self) -> list[psutil.Process]:
        """Every process whose cmdline, cwd or environment mentions this workspace's temp folder."""
        needle = str(self.tmp)
        found = []
        for p in psutil.process_iter(["pid", "cmdline"]):
            if p.pid == os.getpid():
                continue
            try:
                if (
                    any(needle in a for a in (p.info["cmdline"] or []))
                    or needle in p.cwd()
                    or any(needle in v for v in p.environ().values())
                ):
                    if p.status() != psutil.STATUS_ZOMBIE:
                        found.append(p)
            except (psutil.Error, OSError):
                continue
        return found

    def close(self) -> None:
        if self.home.exists():
            try:
                self.cli("daemon", "stop", "--everything", timeout=60)
            except Exception as exc:  # the sweep below still runs
                self.leftovers.append(f"daemon stop failed: {exc}")
        deadline = time.monotonic() + 5.0
        procs = self.mine()
        while procs and time.monotonic() < deadline:
            time.sleep(0.1)
            procs = self.mine()
        for p in procs:
            try:
                self.leftovers.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
                p.kill()
            except psutil.Error:
                continue
        shutil.rmtree(self.tmp, ignore_errors=True)
