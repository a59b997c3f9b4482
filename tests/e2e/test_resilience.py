"""Crashes, a killed daemon, a fault injected at every journaled step, and two applies at once."""

from __future__ import annotations

import http.client
import os
import signal
import time

import pytest

from .harness import Workspace, gone, wait_for


def _replica_pids(ws: Workspace) -> list[int]:
    return [r["pid"] for s in ws.status()["services"] for r in s["replicas"] if r["pid"]]


def test_a_crashed_replica_is_restarted(ws: Workspace) -> None:
    ws.write_spec(replicas=2)
    assert ws.deploy()[0] == 0
    first, second = _replica_pids(ws)
    os.kill(first, signal.SIGKILL)
    # The other replica keeps serving while the first one is restarted with backoff.
    for _ in range(20):
        assert ws.get().status_code == 200
    web = wait_for(lambda: (s := ws.status()["services"][0])["replicas"][0]["restarts"] == 1 and
                   s["replicas"][0]["pid"] not in (None, first) and s, "the restart")
    assert web["replicas"][1]["pid"] == second
    code, events = ws.rg_json("events", "--env", "staging")
    assert any(e["kind"] == "replica.restarted" for e in events["events"])


def test_each_restart_is_seen_and_reported_once_while_passes_skip_what_did_not_move(ws: Workspace) -> None:
    """The supervisor reads only processes whose pidfd turned readable, and the provider's tick looks at the
    restart counts only when the supervisor's total moved: a second kill of the restarted process is still seen,
    restarted and reported, and no restart is reported twice."""
    ws.write_spec(replicas=1)
    assert ws.deploy()[0] == 0
    (first,) = _replica_pids(ws)
    os.kill(first, signal.SIGKILL)
    second = wait_for(lambda: (r := ws.status()["services"][0]["replicas"][0])["restarts"] == 1
                      and r["pid"] not in (None, first) and r["pid"], "the first restart")
    os.kill(second, signal.SIGKILL)
    wait_for(lambda: (r := ws.status()["services"][0]["replicas"][0])["restarts"] == 2
             and r["pid"] not in (None, first, second), "the second restart")

    def reported() -> list[str]:
        _, events = ws.rg_json("events", "--env", "staging")
        return [e["message"] for e in events["events"] if e["kind"] == "replica.restarted"]

    wait_for(lambda: len(reported()) >= 2, "both restarts on the timeline")
    time.sleep(1.5)  # three more of the daemon's passes: nothing is reported again
    messages = reported()
    assert len(messages) == 2, messages
    assert sum("(restart #1)" in m for m in messages) == 1 and sum("(restart #2)" in m for m in messages) == 1


def test_killed_daemon_leaves_apps_serving_and_is_readopted(ws: Workspace) -> None:
    assert ws.deploy()[0] == 0
    pids = _replica_pids(ws)
    daemon = ws.daemon_pid()
    assert daemon is not None
    kept = http.client.HTTPConnection("127.0.0.1", ws.port, timeout=10)  # idle across the daemon's restart
    kept.request("GET", "/")
    assert kept.getresponse().read().startswith(b"v1")
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: gone(daemon),
             "the daemon to die")
    for _ in range(10):
        assert ws.version() == "v1"  # the edge and the replicas do not need the daemon
    assert _replica_pids(ws) == pids  # a new daemon started on demand and adopted them, no restart
    assert ws.daemon_pid() not in (None, daemon)
    # Adoption re-applies the routes without a Caddy reload: the idle connection still serves.
    kept.request("GET", "/")
    assert kept.getresponse().read().startswith(b"v1")
    kept.close()
    code, events = ws.rg_json("events")
    assert any(e["kind"] == "daemon.adopted" and str(pids[0]) in e["message"] for e in events["events"])


def test_a_replica_with_worker_processes_is_adopted_not_killed(ws: Workspace) -> None:
    """gunicorn runs a master and workers: the workers carry the replica's instance mark but are no replica, so
    every daemon restart took them for orphans and SIGKILLed their process group, the master with them (Django
    polls under gunicorn was restarted at each `railguard daemon stop` + start: 'exited ... not a child')."""
    ws.write_spec(mode="workers")
    assert ws.deploy()[0] == 0
    pids = _replica_pids(ws)
    worker = int(wait_for(lambda: next(ws.root.glob(".railguard/data/staging/worker.pid"), None), "the worker")
                 .read_text())
    assert ws.rg("daemon", "stop").returncode == 0
    assert _replica_pids(ws) == pids  # status starts a daemon that adopts them
    assert not gone(worker) and not gone(pids[0])
    code, events = ws.rg_json("events")
    assert not any("orphan" in e["message"] for e in events["events"]), events


def test_an_orphan_replica_is_killed_on_adoption(ws: Workspace) -> None:
    assert ws.deploy()[0] == 0
    # A replica the runtime file does not know (as if the daemon died between spawn and save).
    import subprocess
    import sys

    from railguard.providers.local.replicas import instance_id

    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True,
                              env={"RAILGUARD_INSTANCE": instance_id(ws.root / ".railguard"), "PATH": "/usr/bin"})
    daemon = ws.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    ws.status()  # restarts the daemon, which adopts and cleans up
    assert orphan.wait(timeout=10) == -signal.SIGKILL


PRE_SWITCH = ["replace staging/service.web", "build", "release-command", "start", "gate", "switch"]
POST_SWITCH = ["switch:end", "drain", "replace staging/service.web:end"]


@pytest.mark.parametrize("step", PRE_SWITCH + POST_SWITCH)
def test_daemon_killed_at_a_step_never_leaves_a_half_switch(ws: Workspace, step: str) -> None:
    assert ws.deploy()[0] == 0
    v1_pids = _replica_pids(ws)
    assert ws.rg("daemon", "stop").returncode == 0
    ws.write_spec(version="2")
    code, planned = ws.rg_json("plan", "--env", "staging")
    assert code == 0
    assert ws.rg("daemon", "stop").returncode == 0
    assert ws.rg("daemon", "start", env={"RAILGUARD_FAULT_STEP": step}).returncode == 0
    doomed = ws.daemon_pid()
    code, submitted = ws.rg_json("apply", planned["plan"]["id"], "--no-wait")
    assert code == 0, submitted
    wait_for(lambda: gone(doomed), f"the fault at {step}")
    for _ in range(5):
        assert ws.get().status_code == 200  # traffic flows while no daemon runs
    code, op = ws.rg_json("operations", submitted["operation"]["id"])  # a new daemon recovers it
    record = op["operation"]
    if step in PRE_SWITCH:
        assert record["status"] == "failed"
        assert record["error"]["diagnostics"][0]["code"] == "operation.interrupted"
        assert ws.version() == "v1"
        assert _replica_pids(ws) == v1_pids
    else:
        assert record["status"] == "succeeded"
        assert ws.version() == "v2"
    # Exactly one replica set is routed and no unproven replica is left running.
    status = ws.status()
    assert len(status["services"][0]["replicas"]) == 1
    assert status["live_sets"] == 1
    code, listed = ws.rg_json("releases", "--env", "staging")
    assert listed["releases"][0]["status"] == ("failed" if step in PRE_SWITCH else "live")
    # The environment can move on: a fresh plan applies cleanly.
    ws.write_spec(version="3")
    code, result = ws.deploy()
    assert code == 0, result
    assert ws.version() == "v3"


def test_two_applies_at_once(ws: Workspace) -> None:
    assert ws.deploy()[0] == 0
    # The new release's replica waits until the test lets it start: the first apply is surely still running
    # when the second arrives, however slow the machine is.
    hold = ws.root / ".railguard" / "data" / "staging" / "hold"
    hold.write_text("")
    ws.write_spec(version="2", mode="hold")
    code, first = ws.rg_json("plan", "--env", "staging")
    code, submitted = ws.rg_json("apply", first["plan"]["id"], "--no-wait")
    assert code == 0
    try:
        code, second = ws.rg_json("plan", "--env", "staging")
        code, refused = ws.rg_json("apply", second["plan"]["id"])
    finally:
        hold.unlink()
    assert code == 1
    assert refused["diagnostics"][0]["code"] in ("operation.busy", "state.locked")
    code, done = ws.rg_json("operations", submitted["operation"]["id"])
    deadline = time.monotonic() + 30
    while done["operation"]["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.2)
        code, done = ws.rg_json("operations", submitted["operation"]["id"])
    assert done["operation"]["status"] == "succeeded"
    assert ws.version() == "v2"
