"""Observation across a daemon restart and against the world, with real Caddy, real replicas and the daemon.

- Request metrics are persisted: the figures ``status`` shows are the same after ``railguard daemon stop``
  and a new daemon (started on demand by the next command).
- A canary's step survives a daemon restart: the step's clock keeps counting (``canary.resumed``), a manual
  step is still promoted by ``promote-step``; after ``abort`` the record says the canary's release is
  ``aborted`` and the one before it is live again (status, releases and the rollback targets agree).
- Drift: the edge's server removed from Caddy behind Railguard's back opens a ``drift`` incident with the
  difference as evidence; the deploy that puts it back resolves it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..conftest import stop_daemon
from .harness import Workspace, free_port, gone, wait_for

APP = Path(__file__).parent / "observe_app" / "app.py"
SPEC = """
[app]
name = "restarted"
{alerts}

[environments.staging]
edge_port = {port}
rollback_window = "5m"

[services.web]
run = ["python", "app.py"]
env = {{ VERSION = "{version}" }}
stop_timeout = "2s"
drain_timeout = "2s"
verify = "2s"
{canary}
[services.web.thresholds]
min_requests = 5
error_ratio = 0.2
p99_factor = 1000.0
[services.web.health]
http = "/healthz"
interval = "500ms"
timeout = "400ms"
start_period = "1s"
[[services.web.routes]]
path = "/"
"""
CANARY = 'strategy = "canary"\nsteps = [10, 50, 100]\npause = "manual"'


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    shutil.copy(APP, tmp_path / "app.py")
    yield Workspace(tmp_path, free_port(), free_port())
    stop_daemon(tmp_path)


def _write(ws: Workspace, version: str, canary: bool = False, alerts: Path | None = None) -> None:
    # The alert command appends each delivery (one JSON document on stdin) as one line of ``alerts``.
    hook = ("" if alerts is None else "[alerts]\ncommand = " + json.dumps([
        sys.executable, "-c", f"import sys; open({str(alerts)!r}, 'a').write(sys.stdin.read().replace(chr(10), ' ') "
        "+ chr(10))"]))
    (ws.root / "railguard.toml").write_text(SPEC.format(port=ws.port, version=version, alerts=hook,
                                                        canary=CANARY if canary else ""))


def _restart_daemon(ws: Workspace) -> None:
    """A clean stop (apps and edge keep running), then a new daemon on the next command."""
    pid = ws.daemon_pid()
    assert pid is not None
    done = subprocess.run([sys.executable, "-m", "railguard", "daemon", "stop", "--spec",
                           str(ws.root / "railguard.toml")], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: gone(pid),
             "the daemon to stop")
    ws.status()  # starts the new daemon
    assert ws.daemon_pid() not in (None, pid)


def _window(ws: Workspace, name: str) -> dict[str, Any]:
    service = ws.status()["services"][0]
    return next((w for w in service["requests"] if w["window"] == name), {"requests": 0})


@pytest.mark.timeout(240)
def test_request_metrics_survive_a_daemon_restart(ws: Workspace) -> None:
    _write(ws, "1")
    code, done = ws.deploy()
    assert code == 0, done
    with httpx.Client(timeout=5, trust_env=False) as client:
        for _ in range(40):
            assert client.get(f"http://127.0.0.1:{ws.port}/").status_code == 200
    before = wait_for(lambda: (w := _window(ws, "since_switch"))["requests"] >= 40 and w,
                      what="the 40 requests in status")
    _restart_daemon(ws)
    after = _window(ws, "since_switch")
    # Nothing was sent meanwhile: the same figures, from the store (a daemon that lost them would show 0).
    assert after["requests"] == before["requests"] >= 40
    assert after["status_2xx"] == before["status_2xx"] and after["p50_ms"] == before["p50_ms"]
    assert _window(ws, "5m")["requests"] == before["requests"]
    # And new requests add to them.
    with httpx.Client(timeout=5, trust_env=False) as client:
        for _ in range(10):
            client.get(f"http://127.0.0.1:{ws.port}/")
    wait_for(lambda: _window(ws, "since_switch")["requests"] >= before["requests"] + 10, what="the new requests")


def _canary(ws: Workspace) -> dict[str, Any] | None:
    found: dict[str, Any] | None = ws.status()["services"][0]["canary"]
    return found


@pytest.mark.timeout(300)
def test_a_canary_step_survives_a_daemon_restart_and_an_abort_is_recorded(ws: Workspace) -> None:
    _write(ws, "1", canary=True)
    assert ws.deploy()[0] == 0  # the first release has nothing beside it: all at once
    _write(ws, "2", canary=True)
    code, done = ws.deploy()
    assert code == 0, done
    canary = wait_for(lambda: (c := _canary(ws)) is not None and c["steps"] and c, what="the canary analysed")
    assert canary["release"] == 2 and canary["weight"] == 10
    wait_for(lambda: (_canary(ws) or {}).get("step_s", 0) >= 3, what="the step to run a few seconds")
    _restart_daemon(ws)
    # The step goes on: its clock counts from the step's start, not from the new daemon's first look.
    resumed = wait_for(lambda: (c := _canary(ws)) is not None and c["steps"] and c, what="the canary resumed")
    assert resumed["weight"] == 10 and resumed["step_s"] >= 3, resumed
    events = ws.rg_json("events", "--env", "staging")[1]["events"]
    assert any(e["kind"] == "canary.resumed" for e in events), [e["kind"] for e in events]
    # A manual step still waits for a person, and moves on their word.
    code, moved = ws.rg_json("promote-step", "--env", "staging", "web")
    assert code == 0 and moved["canary"]["weight"] == 50, moved
    assert wait_for(lambda: (_canary(ws) or {}).get("weight") == 50, what="the canary at 50%")

    code, moved = ws.rg_json("abort", "--env", "staging", "web")
    assert code == 0 and moved["canary"]["action"] == "aborted", moved
    assert wait_for(lambda: _canary(ws) is None, what="the canary gone")

    def records() -> dict[int, str]:
        return {r["number"]: r["status"] for r in ws.rg_json("releases", "--env", "staging")[1]["releases"]}

    assert wait_for(lambda: records() == {2: "aborted", 1: "live"} and records(), what="the abort recorded")
    assert ws.status()["services"][0]["release"] == 1
    assert ws.version() == "v1"
    # The aborted release is no rollback target (it never served every request): nothing to roll back to.
    code, refused = ws.rg_json("rollback", "--env", "staging", "--yes")
    assert code != 0, refused
    # What runs is what the record says was applied: no drift.
    assert ws.status()["drift"]["live_differs"] is False


def _caddy_socket(ws: Workspace) -> Path:
    from railguard.providers.local.edge import CaddyEdge

    return CaddyEdge(ws.root / ".railguard" / "edge" / "staging").socket_path


@pytest.mark.timeout(240)
def test_edge_config_changed_behind_railguard_opens_a_drift_incident(ws: Workspace) -> None:
    alerts = ws.root / "alerts.jsonl"
    _write(ws, "1", alerts=alerts)
    assert ws.deploy()[0] == 0
    assert ws.version() == "v1"
    # Someone removes the environment's server from Caddy through its admin API.
    transport = httpx.HTTPTransport(uds=str(_caddy_socket(ws)))
    with httpx.Client(transport=transport, base_url="http://localhost", trust_env=False) as admin:
        answer = admin.delete("/config/apps/http/servers/rg-staging")
        assert answer.status_code == 200, answer.text

    def drift() -> dict[str, Any] | None:
        rows = ws.rg_json("incidents", "--env", "staging")[1]["incidents"]
        return next((i for i in rows if i["kind"] == "drift"), None)

    incident = wait_for(drift, what="a drift incident", timeout=60)
    assert incident["state"] == "open" and "staging/edge" in incident["summary"], incident
    lines = [line for e in incident["evidence"] if e["kind"] == "drift" for line in e["lines"]]
    assert any("staging/edge" in line for line in lines), incident
    assert any(e["kind"] == "incident.opened" for e in ws.rg_json("events", "--env", "staging")[1]["events"])
    # Still there a moment later: one incident, not one per look.
    assert len([i for i in ws.rg_json("incidents", "--env", "staging")[1]["incidents"] if i["kind"] == "drift"]) == 1
    # The deploy that puts the edge back resolves it.
    code, done = ws.deploy()
    assert code == 0, done
    assert ws.version() == "v1"
    wait_for(lambda: (found := drift()) is not None and found["state"] == "resolved", what="the drift resolved",
             timeout=60)
    # Alerts fire for it as for any incident: opened, then resolved.

    def delivered() -> list[str]:
        lines = alerts.read_text().splitlines() if alerts.exists() else []
        return [d["transition"] for d in map(json.loads, lines) if d["incident"]["id"] == incident["id"]]

    assert wait_for(lambda: delivered()[-1:] == ["resolved"] and delivered(), what="the alerts")[0] == "opened"
