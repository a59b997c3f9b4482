"""The scripted-agent scenario "crash loop, then rollback": it ends on the healthy release and stays there.

The notes example goes live healthy (release 1); a release whose process dies on every request to `/` passes
its readiness gate and goes live. Users keep opening the page, so it crash-loops; the verification window sees
the restarts, opens an incident and rolls back on its own. Then an agent that only follows `next_actions`
(from `get_status`, `diagnose`, the incident) for a bounded number of calls must never bring the crashing
code back: the plan of that source is refused as known-bad, so no apply is ever suggested for it.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from ..e2e.harness import wait_for
from .harness import Notes, stdio_agent

MAX_CALLS = 12
# Tools that change what runs: the agent may follow them, and the test checks where they lead.
CHANGES = {"apply_plan", "rollback"}


def _status(notes: Notes) -> dict[str, Any]:
    done = notes.rg("status", "--env", "staging", "--json")
    return dict(json.loads(done.stdout)["status"])


def _incidents(notes: Notes) -> list[dict[str, Any]]:
    return list(json.loads(notes.rg("incidents", "--env", "staging", "--json").stdout)["incidents"])


def _users(url: str, stop: threading.Event) -> None:
    with httpx.Client(timeout=3, trust_env=False) as client:
        while not stop.is_set():
            try:
                client.get(url)
            except httpx.HTTPError:
                pass
            stop.wait(0.1)


async def _follow(notes: Notes, token: str, errlog: Path) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    """From get_status, always take the first next action not taken before with the same arguments."""
    calls: list[tuple[str, dict[str, Any]]] = []
    taken: set[str] = set()
    async with stdio_agent(notes, token, errlog) as agent:
        listed = await agent.session.read_resource("railguard://incidents")
        resource = "".join(getattr(c, "text", "") for c in listed.contents)
        result = await agent.call("get_status", {"env": "staging"})
        queue = list(result.data["next_actions"]) + [{"tool": "diagnose", "arguments": {"env": "staging"}}]
        while queue and len(calls) < MAX_CALLS:
            nxt = queue.pop(0)
            key = json.dumps(nxt, sort_keys=True, default=str)
            if key in taken or nxt["tool"] not in {t.name for t in await agent.tools()}:
                continue
            taken.add(key)
            result = await agent.call(nxt["tool"], nxt["arguments"])
            calls.append((nxt["tool"], result.data))
            queue = list(result.data["next_actions"]) + queue
    return calls, resource


@pytest.mark.timeout(300)  # two deploys, a crash loop, a rollback and 12 MCP calls: ~80 s, more on a busy machine
def test_crash_loop_then_rollback_and_the_agent_stays_on_the_healthy_release(
        notes: Notes, tmp_path_factory: pytest.TempPathFactory) -> None:
    errlog = tmp_path_factory.mktemp("mcp-log") / "server.log"
    token = notes.token("claude", "agent")
    assert notes.rg("deploy", "--env", "staging", "--yes").returncode == 0
    url = f"http://127.0.0.1:{notes.staging_port}/"
    assert httpx.get(url, timeout=5, trust_env=False).json()["version"] == "1"

    (notes.root / "app.py").write_text(notes.app_text(bug=True))
    stop = threading.Event()
    users = threading.Thread(target=_users, args=(url, stop), daemon=True)
    users.start()
    try:
        done = notes.rg("deploy", "--env", "staging", "--yes")
        assert done.returncode == 0, done.stdout + done.stderr  # the gate only sees /healthz: it goes live
        incident = wait_for(lambda: next(iter(_incidents(notes)), None), what="the crash-loop incident", timeout=60)
        wait_for(lambda: _incidents(notes)[0]["state"] == "mitigated", what="the automatic rollback", timeout=60)
    finally:
        stop.set()
        users.join()
    assert incident["kind"] == "verification_failed" and incident["release"] == 2
    # Users see the crashes as failed requests too: whichever check saw it first, the evidence is on the incident.
    assert "crash-loops" in incident["summary"] or "5xx" in incident["summary"], incident
    wait_for(lambda: _status(notes)["services"][0]["release"] == 1, what="release 1's replicas live again")

    calls, resource = anyio.run(_follow, notes, token, errlog)
    assert json.loads(resource)["incidents"][0]["id"] == incident["id"]  # the resource of unresolved incidents
    tools = [tool for tool, _ in calls]
    assert "get_incident" in tools or "diagnose" in tools
    # Whatever it followed, nothing re-deployed the crashing code: every plan of it was refused as known-bad.
    for tool, data in calls:
        if tool == "plan":
            assert "plan.known_bad" in [d["code"] for d in data["diagnostics"]], data
            assert not any(a["tool"] == "apply_plan" for a in data["next_actions"]), data
        if tool in CHANGES:
            assert data.get("operation", {}).get("kind") != "apply", data
    status = _status(notes)
    assert status["services"][0]["release"] == 1 and status["operation"] is None
    assert httpx.get(url, timeout=5, trust_env=False).json()["version"] == "1"
    assert [i["id"] for i in _incidents(notes)] == [incident["id"]]  # and nothing new went wrong


async def _doctor(notes: Notes, token: str, errlog: Path) -> tuple[Any, list[tuple[float, float | None, str | None]]]:
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async with stdio_agent(notes, token, errlog) as agent:
        assert "doctor" in {t.name for t in await agent.tools()}  # a viewer may run it: it only reads
        answer = await agent.session.call_tool("doctor", {"env": "staging", "checks": ["monitoring", "env-parity"]},
                                               read_timeout_seconds=120, progress_callback=on_progress)
        return answer.structured_content, progress


def test_doctor_over_mcp_runs_in_scratch_for_a_viewer_and_reports_progress(
        notes: Notes, tmp_path_factory: pytest.TempPathFactory) -> None:
    errlog = tmp_path_factory.mktemp("mcp-log") / "server.log"
    viewer = notes.token("eyes", "viewer")
    data, progress = anyio.run(_doctor, notes, viewer, errlog)
    assert data is not None and [c["id"] for c in data["doctor"]["checks"]] == ["env-parity", "monitoring"]
    assert data["doctor"]["env"] == "staging" and "counts" in data["doctor"]
    # One notification per finished check, counting up to the total.
    assert [(done, total) for done, total, _ in progress] == [(1.0, 2.0), (2.0, 2.0)]
    assert progress[0][2] is not None and progress[0][2].startswith("env-parity: ")
    assert not (notes.root / ".railguard" / "runtime.json").exists() or "staging" not in json.loads(
        (notes.root / ".railguard" / "runtime.json").read_text()).get("envs", {})  # nothing real was deployed
