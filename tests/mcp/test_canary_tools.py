"""Canary and incident tools over MCP, with the official client, a real daemon, real Caddy and real replicas.

A protected environment whose service rolls out as a canary with manual steps. An agent (token role
``agent``) ships v1 and v2 through plans a person approves on a terminal; v2 waits at 10%. ``canary_promote``
moves nothing there: it saves the step as a plan; promoting with that plan before a person approved it is
refused, after the approval it moves exactly that step (10 -> 50) once, and never again. ``canary_abort``
needs no approval, and the audit log records who aborted. Then v3 answers 500: its canary is aborted by the
analysis with an incident, and ``incident_ack`` resolves it and lifts the known-bad mark (an approver's: the
agent's own is refused).
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from ..conftest import stop_daemon
from ..e2e.harness import free_port, run_on_terminal, wait_for
from .harness import Notes, stdio_agent

APP = Path(__file__).parents[1] / "e2e" / "observe_app" / "app.py"
SPEC = """
[app]
name = "guarded-canary"

[environments.staging]
edge_port = {port}
protected = true
rollback_window = "5m"

[services.web]
run = ["python", "app.py"]
env = {{ VERSION = "{version}", MODE = "{mode}" }}
stop_timeout = "2s"
drain_timeout = "2s"
verify = "2s"
strategy = "canary"
steps = [10, 50, 100]
pause = "{pause}"
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


@pytest.fixture
def ws(tmp_path: Path) -> Any:
    shutil.copy(APP, tmp_path / "app.py")
    yield Notes(tmp_path, free_port(), free_port())
    stop_daemon(tmp_path)


def _write(ws: Notes, version: str, mode: str = "", pause: str = "manual") -> None:
    ws.spec_path.write_text(SPEC.format(port=ws.staging_port, version=version, mode=mode, pause=pause))


def _json(ws: Notes, *args: str, token: str | None = None) -> dict[str, Any]:
    done = ws.rg(*args, "--json", token=token)
    assert "Traceback" not in done.stderr, done.stderr
    return dict(json.loads(done.stdout))


def _ship(ws: Notes, token: str) -> None:
    """The agent plans, a person approves on a terminal, the agent applies and waits."""
    plan = _json(ws, "plan", "--env", "staging", token=token)["plan"]
    code, text = run_on_terminal(ws.root, ["approve", plan["id"]], plan["short_hash"])
    assert code == 0, text
    done = _json(ws, "apply", plan["id"], token=token)
    assert done["ok"], done


def _canary(ws: Notes) -> dict[str, Any] | None:
    found: dict[str, Any] | None = _json(ws, "status", "--env", "staging")["status"]["services"][0]["canary"]
    return found


async def _steps(ws: Notes, token: str, errlog: Path) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    async with stdio_agent(ws, token, errlog) as agent:
        names = {t.name for t in await agent.tools()}
        assert {"canary_promote", "canary_abort", "incident_ack"} <= names
        asked = await agent.call("canary_promote", {"env": "staging", "service": "web"})
        assert not asked.is_error, asked.data
        plan = asked.data["plan"]
        assert plan["decision"] == "require_approval" and "canary" not in asked.data
        assert [a["tool"] for a in asked.data["next_actions"]][0] == "request_approval"
        assert (await anyio.to_thread.run_sync(_canary, ws) or {}).get("weight") == 10  # nothing moved
        early = await agent.call("canary_promote", {"env": "staging", "service": "web", "plan_id": plan["id"]})
        assert early.is_error and early.codes == ["policy.approval_required"], early.data
        code, text = await anyio.to_thread.run_sync(run_on_terminal, ws.root, ["approve", plan["id"]],
                                                    plan["short_hash"])
        assert code == 0, text
        moved = await agent.call("canary_promote", {"env": "staging", "service": "web", "plan_id": plan["id"]})
        assert not moved.is_error and moved.data["canary"] == {"env": "staging", "service": "web",
                                                               "action": "advanced", "weight": 50}, moved.data
        again = await agent.call("canary_promote", {"env": "staging", "service": "web", "plan_id": plan["id"]})
        assert again.is_error and again.codes == ["canary.step_mismatch"], again.data
        aborted = await agent.call("canary_abort", {"env": "staging", "service": "web"})
        assert not aborted.is_error and aborted.data["canary"]["action"] == "aborted", aborted.data
        seen["plan"] = plan["id"]
    return seen


async def _ack(ws: Notes, token: str, errlog: Path, incident_id: str) -> None:
    async with stdio_agent(ws, token, errlog) as agent:
        # The incident marks the agent's own release source known-bad: the agent may not clear it.
        refused = await agent.call("incident_ack", {"incident_id": incident_id, "reason": "mine is fine"})
        assert refused.is_error and refused.codes == ["auth.forbidden"], refused.data
        assert "known-bad" in refused.data["diagnostics"][0]["detail"], refused.data


def _pump(port: int, stop: threading.Event) -> None:
    with httpx.Client(timeout=5, trust_env=False) as client:
        while not stop.is_set():
            try:
                client.get(f"http://127.0.0.1:{port}/")
            except httpx.HTTPError:
                pass
            stop.wait(0.01)


@pytest.mark.timeout(300)
def test_canary_steps_need_an_approval_in_a_protected_environment_and_abort_and_ack_work_over_mcp(
        ws: Notes, tmp_path_factory: pytest.TempPathFactory) -> None:
    errlog = tmp_path_factory.mktemp("mcp-log") / "server.log"
    token = ws.token("claude", "agent")
    _write(ws, "1")
    _ship(ws, token)
    _write(ws, "2")
    _ship(ws, token)
    assert wait_for(lambda: (_canary(ws) or {}).get("weight") == 10, what="the canary at 10%")
    # The CLI too: in a protected environment `promote-step` saves the step as a plan and moves nothing.
    asked = _json(ws, "promote-step", "--env", "staging", "web")
    assert asked["ok"] and asked["plan"]["changes"][0]["action"] == "canary-step", asked
    assert "from 10% to 50%" in asked["plan"]["changes"][0]["reason"]
    assert (_canary(ws) or {}).get("weight") == 10

    seen = anyio.run(_steps, ws, token, errlog)
    assert wait_for(lambda: _canary(ws) is None, what="the canary gone")
    # The approved step's plan is used up.
    assert {p["id"]: p["status"] for p in _json(ws, "plans")["plans"]}[seen["plan"]] == "applied"
    entries = _json(ws, "audit")["audit"]
    aborts = [e for e in entries if e["action"].endswith("/abort")]
    assert aborts and aborts[-1]["principal"].startswith("token:") and aborts[-1]["env"] == "staging", aborts
    # `railguard apply` never runs a step plan.
    refused = _json(ws, "apply", seen["plan"], token=token)
    assert refused["diagnostics"][0]["code"] == "canary.step_plan", refused

    # v3 answers 500: the analysis aborts its canary with an incident; the agent acknowledges it.
    _write(ws, "3", mode="error500", pause="20s")
    stop = threading.Event()
    pump = threading.Thread(target=_pump, args=(ws.staging_port, stop), daemon=True)
    pump.start()
    try:
        _ship(ws, token)
        incident = wait_for(lambda: next(iter(_json(ws, "incidents", "--env", "staging")["incidents"]), None),
                            what="the canary's incident", timeout=60)
    finally:
        stop.set()
        pump.join()
    assert incident["kind"] == "verification_failed" and incident["release"] == 3
    planned = _json(ws, "plan", "--env", "staging", token=token)
    assert "plan.known_bad" in [d["code"] for d in planned["diagnostics"]], planned
    code, text = run_on_terminal(ws.root, ["token", "create", "--name", "boss", "--role", "approver", "--json"],
                                 "approver:boss")
    assert code == 0, text
    approver = str(json.loads(text[text.index("{"):])["token"]["token"])
    anyio.run(_ack, ws, token, errlog, incident["id"])
    # A person with the approver role acknowledges it.
    acked = _json(ws, "incident", incident["id"], "--ack", "--reason", "shipping it anyway", token=approver)
    assert acked["incident"]["state"] == "resolved", acked
    assert any("shipping it anyway" in t["message"] for t in acked["incident"]["timeline"])
    planned = _json(ws, "plan", "--env", "staging", token=token)
    assert "plan.known_bad" not in [d["code"] for d in planned.get("diagnostics", [])], planned
