"""Sample apps for the doctor tests: the healthy app with one failure laid over it, driven by the real CLI.

Every app starts as a copy of ``apps/healthy``; an app named in a case then lays its own files over it
(``apps/<name>``), so each folder shows exactly the failure it embodies. ``{STAGING_PORT}``,
``{PRODUCTION_PORT}`` and ``{FIXED_PORT}`` in the copied files become free ports. The doctor runs with
TMPDIR inside the test's tmp folder, so its scratch environment lives there too and the suite's
leftover-process check sees anything it would leave behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

APPS = Path(__file__).parent / "apps"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SampleApp:
    root: Path
    tmp: Path
    ports: dict[str, int]

    def overlay(self, name: str) -> None:
        if name != "healthy":
            shutil.copytree(APPS / name, self.root, dirs_exist_ok=True)
        for path in self.root.rglob("*"):
            if path.is_file() and path.suffix in (".toml", ".py", ".yml", ".example"):
                text = path.read_text()
                for key, port in self.ports.items():
                    text = text.replace("{" + key + "}", str(port))
                path.write_text(text)

    def edit_spec(self, old: str, new: str) -> None:
        spec = self.root / "railguard.toml"
        text = spec.read_text()
        assert old in text, f"{old!r} not in the spec"
        spec.write_text(text.replace(old, new))

    def env(self) -> dict[str, str]:
        env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "TMPDIR": str(self.tmp)}
        for name in ("RAILGUARD_HOME", "RAILGUARD_SPEC"):
            env.pop(name, None)
        return env

    def rg(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "railguard", *args], cwd=self.root, capture_output=True,
                              text=True, timeout=timeout, env=self.env(), check=False)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """``railguard`` as a terminal's foreground job runs it: SIGINT not ignored, whatever this process has (a
        suite started in the background of a script ignores it, and a child inherits that: Ctrl-C sent to it
        would do nothing)."""
        return subprocess.Popen([sys.executable, "-m", "railguard", *args], cwd=self.root, env=self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_interruptible)

    def doctor(self, *checks: str, strict: bool = False) -> tuple[int, dict[str, Any]]:
        args = ["doctor", "--env", "staging", "--json", *(f"--check={c}" for c in checks)]
        done = self.rg(*args, *(["--strict"] if strict else []))
        assert "Traceback" not in done.stderr, done.stderr
        try:
            return done.returncode, json.loads(done.stdout)
        except ValueError as exc:
            raise AssertionError(f"not JSON: {done.stdout!r} {done.stderr!r}") from exc

    @property
    def data(self) -> Path:
        return self.root / ".railguard" / "data" / "staging"

    def seed(self, rows: int = 3) -> None:
        """The staging data as release 1 left it: the notes table with a few notes."""
        self.data.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(self.data / "notes.db") as db:
            db.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")
            db.executemany("INSERT INTO notes (text) VALUES (?)", [(f"note {i}",) for i in range(rows)])
        db.close()

    def deploy(self) -> None:
        done = self.rg("deploy", "--env", "staging", "--yes", "--json")
        assert done.returncode == 0, done.stdout + done.stderr

    def stop(self) -> None:
        if (self.root / ".railguard" / "daemon.pid").exists():
            self.rg("daemon", "stop", "--everything", timeout=60)

    def data_bytes(self) -> dict[str, str]:
        """Every file of the real staging data folder, by content: 'untouched' means byte for byte."""
        return {str(p.relative_to(self.data)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(self.data.rglob("*")) if p.is_file()}

    def processes(self) -> set[tuple[int, float, str]]:
        """The real environment's processes (daemon, edge, replicas): pid, start time, command."""
        found = set()
        for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
            try:
                text = " ".join(proc.info["cmdline"] or [])
                cwd = proc.cwd()
            except psutil.Error:
                continue
            if str(self.root / ".railguard") in text or str(self.root / ".railguard") in cwd:
                found.add((proc.pid, proc.info["create_time"], text))
        return found


def make_app(tmp_path: Path, name: str = "healthy") -> SampleApp:
    root = tmp_path / "app"
    shutil.copytree(APPS / "healthy", root)
    scratch = tmp_path / "t"
    scratch.mkdir()
    app = SampleApp(root, scratch, {"STAGING_PORT": free_port(), "PRODUCTION_PORT": free_port(),
                                    "FIXED_PORT": free_port()})
    app.overlay(name)
    return app


def check(payload: dict[str, Any], check_id: str) -> dict[str, Any]:
    found = [c for c in payload["doctor"]["checks"] if c["id"] == check_id]
    assert found, f"no result for {check_id}: {payload}"
    return dict(found[0])


def text_of(result: dict[str, Any]) -> str:
    """Everything a check reported, for 'the evidence names X' assertions."""
    parts = [result["summary"]]
    for finding in result["findings"]:
        parts += [finding["summary"], *finding["evidence"], finding["remediation"], finding["subject"] or ""]
    return "\n".join(parts)


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # in the child, before exec: Python then installs its own
