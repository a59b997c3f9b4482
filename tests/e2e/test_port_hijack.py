"""A process that binds a port the moment a replica or the edge lets it go never receives the edge's traffic.

The attack (docs/guardrails.md, "Ports and routes"): an app reads ``/proc/net/tcp`` (world-readable: every
listener's port and uid), and keeps trying to bind another environment's replica port; when that replica exits
(crash, OOM kill), it binds the freed port before the replica is restarted. Real CLI, daemon, Caddy and HTTP:
the replica is killed, a squatter of another OS user binds its port, and the replica must come back healthy on a
fresh port with every request through the edge answered by it, never by the squatter. The same for the edge:
a killed Caddy is restarted by the daemon; while another process holds its port, that is recorded (naming the
holder's uid) and retried until the port is free.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..local.test_port_ownership import end, squat
from .harness import APP, SPEC, Workspace, free_port, gone, wait_for
from .test_adversarial import reachable_python


class Site:
    """The probe app deployed to staging from a folder other users can traverse (isolation needs it)."""

    def __init__(self, root: Path, python: str, env: dict[str, str]) -> None:
        self.root, self.python, self.env = root, python, env
        self.port = free_port()
        for name in ("app.py", "migrate.py"):
            shutil.copy(APP / name, root / name)
        (root / "railguard.toml").write_text(SPEC.format(
            port=self.port, version="1", mode="", migrate="", replicas=1, window="5m", fixed_port=free_port(),
            start_timeout="15s", build=""))

    def rg(self, *args: str) -> dict[str, Any]:
        env = {k: v for k, v in os.environ.items() if k not in ("RAILGUARD_HOME", "RAILGUARD_TOKEN")}
        env.update({"NO_COLOR": "1", "COLUMNS": "200", **self.env,
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"})
        done = subprocess.run([self.python, "-m", "railguard", *args, "--json"], cwd=self.root, capture_output=True,
                              text=True, timeout=180, env=env, check=False)
        assert "Traceback" not in done.stderr, done.stderr
        answer: dict[str, Any] = json.loads(done.stdout)
        assert answer["ok"], answer
        return answer

    def replica(self) -> dict[str, Any]:
        [service] = self.rg("status", "--env", "staging")["status"]["services"]
        [replica] = service["replicas"]
        return dict(replica)

    def get(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.port}/", timeout=5, trust_env=False).text


@pytest.fixture(params=["isolated", "shared-user"])
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    if os.geteuid() != 0:
        pytest.skip("the squatter runs as another OS user (nobody): that needs root")
    # Not under pytest's 0700 folder: an isolated environment's user must traverse down to its artifact.
    root = Path(tempfile.mkdtemp(prefix="rg-porthijack-", dir="/tmp"))
    root.chmod(0o755)
    try:
        if request.param == "isolated":
            python = reachable_python(root)
            if python is None or shutil.which("useradd") is None:
                pytest.skip("isolation needs useradd and a Python other users can run")
            yield Site(root, python, {})
        else:
            yield Site(root, sys.executable, {"RAILGUARD_ISOLATION": "off"})
    finally:
        subprocess.run([sys.executable, "-m", "railguard", "daemon", "stop", "--everything", "--spec",
                        str(root / "railguard.toml")], capture_output=True, text=True, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)


def test_a_squatter_on_a_killed_replicas_port_gets_no_traffic_and_the_replica_returns_on_a_fresh_port(
        site: Site) -> None:
    site.rg("deploy", "--env", "staging", "--yes")
    before = site.replica()
    assert site.get().startswith("v1")
    os.kill(before["pid"], signal.SIGKILL)
    squatter = squat(before["port"], as_other_user=True)  # binds the freed port (retrying until it is free)
    try:
        after = wait_for(lambda: (r := site.replica())["pid"] not in (None, before["pid"]) and
                         r["health"] == "healthy" and r, "the replica back, healthy")
        assert after["port"] != before["port"], (before, after)
        answers = [site.get() for _ in range(30)]
        assert all(a.startswith("v1") for a in answers), answers
    finally:
        hits = end(squatter)
    # The squatter may have had a health check before the daemon saw the replica end; never a request of a user.
    assert set(hits.splitlines()) <= {"hit railguard-health"}, hits
    events = site.rg("events", "--env", "staging")["events"]
    assert any(e["kind"] == "replica.restarted" for e in events), events


def test_a_killed_edge_is_restarted_and_a_holder_of_its_port_is_named_meanwhile(ws: Workspace) -> None:
    if os.geteuid() != 0:
        pytest.skip("the squatter runs as another OS user (nobody): that needs root")
    assert ws.deploy()[0] == 0
    pid_file = ws.root / ".railguard" / "edge" / "staging" / "caddy.pid"
    caddy = json.loads(pid_file.read_text())["pid"]
    os.kill(caddy, signal.SIGKILL)
    wait_for(lambda: gone(caddy), "Caddy to end")
    squatter = squat(ws.port, as_other_user=True)  # the public port: what it answers there, we cannot stop

    def held() -> list[dict[str, Any]]:
        return [e for e in ws.rg_json("events", "--env", "staging")[1]["events"] if e["kind"] == "edge.port_held"]

    try:
        # Said once per holder, naming its OS user and uid (the kernel's word).
        named = wait_for(lambda: [e for e in held() if e["data"].get("uid") == pwd.getpwnam("nobody").pw_uid],
                         "the edge's port named as held by nobody")
        assert all("nobody" in e["message"] for e in named), named
    finally:
        end(squatter)
    # The port is free again: the daemon's next try brings the edge back, serving the replica.
    wait_for(lambda: _serves(ws), "the edge back")
    restarted = json.loads(pid_file.read_text())["pid"]
    assert restarted != caddy
    events = ws.rg_json("events", "--env", "staging")[1]["events"]
    assert any(e["kind"] == "edge.restarted" for e in events), events


def _serves(ws: Workspace) -> bool:
    try:
        return ws.get().text.startswith("v1")
    except httpx.HTTPError:
        return False


def test_a_replica_found_dead_at_adoption_returns_on_a_fresh_port(ws: Workspace) -> None:
    """The daemon was killed, then the replica: the next daemon adopts a dead replica, whose port a squatter holds
    by then. It must not restart it there (crash loop on EADDRINUSE) nor route there: a fresh port, gated."""
    if os.geteuid() != 0:
        pytest.skip("the squatter runs as another OS user (nobody): that needs root")
    assert ws.deploy()[0] == 0
    [before] = ws.status()["services"][0]["replicas"]
    daemon = ws.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: gone(daemon), "the daemon to end")
    os.kill(before["pid"], signal.SIGKILL)
    wait_for(lambda: gone(before["pid"]), "the replica to end")
    squatter = squat(before["port"], as_other_user=True)
    try:
        # `status` starts a daemon on demand, which adopts what runs and restarts what does not.
        after = wait_for(lambda: (r := ws.status()["services"][0]["replicas"][0])["pid"] not in (None, before["pid"])
                         and r["health"] == "healthy" and r, "the replica back, healthy")
        assert after["port"] != before["port"], (before, after)
        # Started on the fresh port at adoption: it never tried the held one (no crash, no restart, no EADDRINUSE).
        assert after["restarts"] == 0, after
        logs = "".join(p.read_text() for p in (ws.root / ".railguard" / "logs" / "staging" / "web").glob("*.log"))
        assert "Address already in use" not in logs, logs[-2000:]
        answers = [ws.get().text for _ in range(30)]
        assert all(a.startswith("v1") for a in answers), answers
    finally:
        hits = end(squatter)
    assert set(hits.splitlines()) <= {"hit railguard-health"}, hits
