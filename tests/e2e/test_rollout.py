"""Deploy, update, roll back, and failed deploys, with real processes behind real Caddy."""

from __future__ import annotations

import http.client
import socket

from .harness import Workspace


def test_deploy_update_and_instant_rollback(ws: Workspace) -> None:
    code, result = ws.deploy()
    assert code == 0, result
    assert result["url"] == f"http://127.0.0.1:{ws.port}/"
    assert ws.version() == "v1"
    env_seen = ws.get().text
    # The replica sees exactly the declared environment plus documented variables, nothing of ours.
    assert "PYTEST_CURRENT_TEST" not in env_seen and "RAILGUARD_RELEASE" in env_seen and "'PORT'" in env_seen
    # A client that never retries keeps one keep-alive connection, idle during the deploy and the rollback.
    kept = http.client.HTTPConnection("127.0.0.1", ws.port, timeout=10)

    def ask_kept() -> str:
        kept.request("GET", "/")
        resp = kept.getresponse()
        assert resp.status == 200
        return resp.read().decode()

    assert ask_kept().startswith("v1")
    local = kept.sock.getsockname()

    ws.write_spec(version="2")
    code, result = ws.deploy()
    assert code == 0, result
    assert ws.version() == "v2"
    assert ask_kept().startswith("v2")  # the switch did not close the idle connection
    steps = [j["step"] for j in result["operation"]["journal"] if j["phase"] == "end"]
    assert [s.split(": ")[-1] for s in steps if ": " in s] == [
        "build", "release-command", "start", "gate", "switch", "drain"]

    code, result = ws.rg_json("rollback", "--env", "staging")
    assert code == 0, result
    assert ws.version() == "v1"
    assert ask_kept().startswith("v1") and kept.sock.getsockname() == local  # the same connection throughout
    kept.close()
    rollback_steps = {j["step"].split(": ")[-1] for j in result["operation"]["journal"]}
    assert "start" not in rollback_steps and "build" not in rollback_steps  # warm: no new processes

    code, listed = ws.rg_json("releases", "--env", "staging")
    assert [(r["number"], r["status"], r["rollback_of"]) for r in listed["releases"]] == [
        (3, "live", 1), (2, "superseded", None), (1, "superseded", None)]
    status = ws.status()
    web = status["services"][0]
    assert web["status"] == "healthy" and web["release"] == 1
    assert [w["release"] for w in web["warm"]] == [2]
    assert status["drift"]["spec_changed_since_apply"] is True  # the spec on disk still says v2

    code, events = ws.rg_json("events", "--env", "staging")
    kinds = [e["kind"] for e in events["events"]]
    assert kinds.count("apply.succeeded") == 2 and "rollback.succeeded" in kinds


def test_cold_rollback_restarts_the_old_artifact(ws: Workspace) -> None:
    ws.write_spec(window="0s")
    code, result = ws.deploy()
    assert code == 0, result
    (ws.root / "app.py").write_text((ws.root / "app.py").read_text().replace('f"v{VERSION}', 'f"w{VERSION}'))
    code, result = ws.deploy()
    assert code == 0, result
    assert ws.version() == "w1"
    assert ws.status()["services"][0]["warm"] == []  # window 0s: the old replicas were stopped
    code, result = ws.rg_json("rollback", "--env", "staging", "--to", "1")
    assert code == 0, result
    assert ws.version() == "v1"  # the old artifact, not the working tree
    steps = {j["step"].split(": ")[-1] for j in result["operation"]["journal"]}
    assert {"start", "gate", "switch"} <= steps


def test_failed_deploys_leave_traffic_on_the_last_good_release(ws: Workspace) -> None:
    assert ws.deploy()[0] == 0
    good_pid = ws.status()["services"][0]["replicas"][0]["pid"]
    cases = [
        (dict(mode="crash"), "rollout.crashed", "exited with status 3"),
        # The same 503 three times after start_period is conclusive: no wait for the 30 s start_timeout.
        (dict(mode="unhealthy", start_timeout="30s"), "rollout.unhealthy", "answered HTTP 503 to 3 checks in a row"),
        (dict(mode="ignore_port", start_timeout="2s"), "rollout.ignores_port", "instead of the allocated port"),
        (dict(mode="keyerror"), "rollout.crashed", "DATABASE_URL"),
        (dict(migrate="fail"), "rollout.release_failed", "exited with status 2"),
    ]
    for variant, code_expected, cause in cases:
        ws.write_spec(version="2", **variant)  # type: ignore[arg-type]
        code, result = ws.deploy()
        assert code == 1, (variant, result)
        diag = result["diagnostics"][0]
        assert diag["code"] == code_expected, (variant, diag)
        assert cause in diag["detail"] + " ".join(diag["extra"].get("log_tail", [])), (variant, diag)
        assert diag["remediation"]
        assert ws.version() == "v1", variant
        web = ws.status()["services"][0]
        assert web["release"] == 1 and [r["pid"] for r in web["replicas"]] == [good_pid], variant
    spec = (ws.root / "railguard.toml").read_text()
    spec = spec.replace('run = ["python", "app.py"]', 'run = ["no-such-program", "app.py"]')
    (ws.root / "railguard.toml").write_text(spec.replace('MIGRATE = "fail"', 'MIGRATE = ""'))
    code, result = ws.deploy()
    assert code == 1 and result["diagnostics"][0]["code"] == "rollout.start_failed"
    assert "no-such-program" in result["diagnostics"][0]["detail"]
    assert ws.version() == "v1"
    code, listed = ws.rg_json("releases", "--env", "staging")
    assert [r["status"] for r in listed["releases"]] == ["failed"] * 6 + ["live"]


def test_failing_build_is_reported_with_its_output(ws: Workspace) -> None:
    ws.write_spec(build='build = ["python", "-c", "print(\'compiling\'); raise SystemExit(4)"]')
    code, result = ws.deploy()
    assert code == 1
    diag = result["diagnostics"][0]
    assert diag["code"] == "rollout.build_failed" and "exited with 4" in diag["detail"]
    assert "compiling" in " ".join(diag["extra"]["log_tail"])


def test_edge_port_taken_by_another_program(ws: Workspace) -> None:
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", ws.port))
        blocker.listen()
        code, result = ws.deploy()
        assert code == 1
        diag = result["diagnostics"][0]
        assert diag["code"] == "edge.port_in_use" and str(ws.port) in diag["detail"]
    code, result = ws.deploy()  # once the port is free, the next plan finishes the job
    assert code == 0, result
    assert ws.version() == "v1"
