"""Scaling in place, logs, daemon status: what an operator reads and does day to day."""

from __future__ import annotations

import subprocess
import sys
import time

from .harness import Workspace, wait_for


def test_scaling_is_in_place_and_keeps_existing_replicas(ws: Workspace) -> None:
    assert ws.deploy()[0] == 0
    first = ws.status()["services"][0]["replicas"][0]["pid"]
    ws.write_spec(replicas=3)
    code, result = ws.deploy()
    assert code == 0, result
    steps = [j["step"] for j in result["operation"]["journal"]]
    assert "update staging/service.web" in steps and not any(s.endswith(": start") for s in steps)
    replicas = ws.status()["services"][0]["replicas"]
    assert len(replicas) == 3 and replicas[0]["pid"] == first
    assert all(r["health"] in ("healthy", "unknown") for r in replicas)
    served = {ws.get().text.split()[2] for _ in range(12)}  # "v1 pid <pid> ..." round robin
    assert len(served) == 3
    ws.write_spec(replicas=1)
    code, result = ws.deploy()
    assert code == 0, result
    assert [r["pid"] for r in ws.status()["services"][0]["replicas"]] == [first]


def test_logs_show_replica_and_release_output(ws: Workspace) -> None:
    assert ws.deploy()[0] == 0
    ws.get("/hello-from-test")
    code, found = ws.rg_json("logs", "web", "--env", "staging")
    assert code == 0
    names = {f["name"] for f in found["logs"]["files"]}
    assert names == {"staging.web.r1.0", "staging.web.r1.release"}
    text = "\n".join(line for f in found["logs"]["files"] for line in f["lines"])
    assert "migrated" in text and "v1 listening on" in text and "/hello-from-test" in text
    code, only = ws.rg_json("logs", "web", "--env", "staging", "--release", "2")
    assert only["logs"]["files"] == []
    # -f follows new lines as they are written
    follower = subprocess.Popen([sys.executable, "-m", "railguard", "logs", "web", "--env", "staging", "-f"],
                                cwd=ws.root, stdout=subprocess.PIPE, text=True)
    try:
        assert follower.stdout is not None
        time.sleep(1.0)
        ws.get("/while-following")
        wait_for(lambda: "/while-following" in follower.stdout.readline(), "the followed line", timeout=15)
    finally:
        follower.terminate()
        follower.wait(timeout=10)


def test_daemon_status_start_stop(ws: Workspace) -> None:
    code, found = ws.rg_json("daemon", "status")
    assert code == 0 and found["running"] is False
    code, started = ws.rg_json("daemon", "start")
    assert code == 0 and started["pid"] == ws.daemon_pid()
    code, found = ws.rg_json("daemon", "status")
    assert found["running"] and found["daemon"]["pid"] == started["pid"]
    code, stopped = ws.rg_json("daemon", "stop")
    assert stopped["stopped"] is True
    code, found = ws.rg_json("daemon", "status")
    assert found["running"] is False
