"""A whole agent session over stdio, with the official MCP client library, against a real daemon and real
processes: tools filtered by role; deploy the notes example to staging; a failed rollout and its diagnosis; a
bad release rolled back by following next_actions; a production change that waits for a person's approval.
Every output is scanned for the planted secrets. Writes docs/agents-transcript.md."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from ..e2e.harness import run_on_terminal
from .harness import PRODUCTION_SECRET, ROOT, STAGING_SECRET, Agent, Notes, action, stdio_agent, transcript

READ_TOOLS = {"whoami", "get_status", "diagnose", "list_releases", "read_logs", "list_events", "list_operations",
              "get_operation", "list_policies", "get_spec_schema", "validate_spec", "show_plan", "list_plans",
              "approval_status", "list_incidents", "get_incident", "doctor"}
CHANGE_TOOLS = {"plan", "promote", "request_approval", "apply_plan", "rollback", "run_command", "canary_promote",
                "canary_abort", "incident_ack"}
TYPO = '["python", "notez.py"]'
INTRO = """# A session with the Railguard MCP server

This transcript is written by `tests/mcp/test_session.py`: a test drives `railguard mcp` over stdio with the
official MCP client library, as an `agent` token, against a real daemon and real processes (the notes example).
Each step shows the tool call and the text the client gets (the structured content carries the same, plus
every field); ids, times, ports and hashes are replaced by placeholders, and the app's health-check access-log
lines are left out of log tails (how many there are depends on timing). See [agents.md](agents.md).
"""


async def _poll(agent: Agent, what: str, check: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await agent.call("get_status", {"env": "staging"})
        if check(result.data):
            return result
        await anyio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def _roles(notes: Notes, viewer: str, errlog: Path) -> Agent:
    async with stdio_agent(notes, viewer, errlog) as agent:
        assert {t.name for t in await agent.tools()} == READ_TOOLS  # a viewer is not even shown the others
        refused = await agent.call("apply_plan", {"plan_id": "plan-000000000000", "env": "staging"})
        assert refused.is_error and refused.codes == ["auth.forbidden"]  # and is refused if it calls one anyway
        return agent


async def _session(notes: Notes, token: str, errlog: Path) -> Agent:
    async with stdio_agent(notes, token, errlog) as agent:
        tools = {t.name: t for t in await agent.tools()}
        assert set(tools) == READ_TOOLS | CHANGE_TOOLS and not any("approve" in name for name in tools)
        for name, t in tools.items():
            hints = t.annotations
            assert hints is not None and t.output_schema and t.input_schema["type"] == "object"
            assert hints.read_only_hint is (name in READ_TOOLS)
            assert hints.destructive_hint is (name in ("apply_plan", "rollback", "run_command", "canary_promote",
                                                    "canary_abort"))

        # -- a first deploy ---------------------------------------------------------------------------------
        who = await agent.call("whoami", note="Who am I, and what may I do?")
        assert who.data["principal"]["role"] == "agent" and who.data["environments"] == ["staging", "production"]
        valid = await agent.call("validate_spec", note="Check the spec before anything else.")
        planned = await agent.follow(action(valid, "plan"), "Plan staging, as the next action says.")
        assert planned.data["plan"]["decision"] == "allow" and planned.data["plan"]["counts"]["create"] == 3
        applied = await agent.follow(action(planned, "apply_plan"), "Apply exactly that plan; it returns at once.")
        done = await agent.follow(action(applied, "get_operation"), "Follow the operation until it ends.")
        assert done.data["operation"]["status"] == "succeeded", done.data
        await _poll(agent, "the first health check", lambda d: d["counts"] == {"healthy": 1})
        status = await agent.follow(action(done, "get_status"), "Check what runs.")
        url = status.data["url"]
        assert status.data["counts"] == {"healthy": 1} and httpx.get(url, timeout=5).json()["version"] == "1"

        # -- a failed rollout: a typo in the proposed spec --------------------------------------------------
        proposed = await agent.call("plan", {"env": "staging", "spec_text": notes.spec_text(run=TYPO)},
                                    "Propose a spec change (a typo in `run`) and plan it without touching the file.")
        agent.steps[-1].arguments = {"env": "staging", "spec_text": f"<railguard.toml with run = {TYPO}>"}
        plan_id = proposed.data["plan"]["id"]
        assert "plan.proposed" in proposed.codes and proposed.data["changes"][0]["action"] == "replace"
        refused = await agent.call("apply_plan", {"plan_id": plan_id, "env": "staging"},
                                   "Applying it before the file says the same is refused.")
        assert refused.codes == ["plan.spec_changed"]
        notes.spec_path.write_text(notes.spec_text(run=TYPO))
        agent.narrate("The agent saves the proposed text as railguard.toml.")
        applied = await agent.call("apply_plan", {"plan_id": plan_id, "env": "staging"}, "Now the plan applies.")
        failed = await agent.follow(action(applied, "get_operation"), "Follow it: the rollout fails.")
        assert failed.data["operation"]["status"] == "failed" and failed.codes == ["rollout.crashed"]
        diagnosis = await agent.follow(action(failed, "diagnose"), "Diagnose, as the next action says.")
        assert diagnosis.data["verdict"] == "failed" and diagnosis.data["cause"]["code"] == "rollout.crashed"
        assert "rollback" not in {a["tool"] for a in diagnosis.data["next_actions"]}  # traffic never moved
        logs = await agent.follow(action(diagnosis, "read_logs"), "Read the failed release's logs.")
        assert "notez.py" in logs.text and httpx.get(url, timeout=5).json()["version"] == "1"

        # -- a bad release that goes live, rolled back by following next_actions ----------------------------
        notes.spec_path.write_text(notes.spec_text())
        (notes.root / "app.py").write_text(notes.app_text(bug=True))
        agent.narrate("The agent fixes the spec, and changes app.py (with a bug that kills the process on /).")
        planned = await agent.call("plan", {"env": "staging"}, "Plan the code change.")
        applied = await agent.follow(action(planned, "apply_plan"), "Apply it.")
        done = await agent.follow(action(applied, "get_operation"), "It passes the readiness gate and goes live.")
        assert done.data["operation"]["status"] == "succeeded"
        port = json.loads(notes.rg("status", "--env", "staging", "--json").stdout)["status"]["services"][0][
            "replicas"][0]["port"]
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=5)  # a user opens the index page: the process dies
        agent.narrate("A user opens the index page; the new release's process dies and is restarted.")
        await _poll(agent, "the restart", lambda d: d["services"][0]["restarts"] >= 1 and d["services"][0]["healthy"])
        diagnosis = await agent.call("diagnose", {"env": "staging", "service": "web"}, "Diagnose the service.")
        assert diagnosis.data["verdict"] == "crashing" and diagnosis.data["cause"]["code"] == "service.degraded"
        # The rollback comes first, unless the daemon has already opened an incident about it (a crash within
        # the verification window, a lasting unhealthiness: how soon depends on the machine's load); then
        # reading that incident comes first and the rollback right after it.
        actions = diagnosis.data["next_actions"]
        lead = 1 if actions[0]["tool"] == "get_incident" else 0
        first = actions[lead]
        assert first == {"tool": "rollback", "arguments": {"env": "staging", "to": 1}, "why": first["why"]}
        rolled = await agent.follow(first, "Roll back, exactly as the first next action says.")
        done = await agent.follow(action(rolled, "get_operation"), "Follow the rollback.")
        assert done.data["operation"]["status"] == "succeeded"
        await _poll(agent, "health", lambda d: d["counts"] == {"healthy": 1})
        status = await agent.follow(action(done, "get_status"), "Staging runs release 1's code again.")
        assert status.data["services"][0]["release"] == 1 and httpx.get(url, timeout=5).json()["version"] == "1"

        # -- production waits for a person ------------------------------------------------------------------
        (notes.root / "app.py").write_text(notes.app_text())
        agent.narrate("The agent reverts the bug, so the code on disk is release 1's again.")
        promoted = await agent.call("promote", {"from_env": "staging", "to_env": "production"},
                                    "Promote staging's live artifact to production.")
        plan_id, short = promoted.data["plan"]["id"], promoted.data["plan"]["short_hash"]
        assert promoted.data["plan"]["decision"] == "require_approval"
        refused = await agent.call("apply_plan", {"plan_id": plan_id, "env": "production"}, "Try to apply it.")
        assert refused.codes == ["policy.approval_required"]
        asked = await agent.follow(action(refused, "request_approval"), "Ask for an approval, as suggested.")
        assert asked.data["approval"]["state"] == "requested"
        waiting = await agent.follow(action(asked, "approval_status"), "Check: still waiting for a person.")
        assert waiting.data["approval"]["state"] == "requested"
        code, text = run_on_terminal(notes.root, ["approve", plan_id], short)
        assert code == 0, text
        agent.narrate("A person reviews the plan and runs `railguard approve PLAN_ID` on a terminal.")
        approved = await agent.call("approval_status", {"plan_id": plan_id}, "Check again.")
        assert approved.data["approval"]["state"] == "approved"
        applied = await agent.follow(action(approved, "apply_plan"), "Apply the approved plan.")
        done = await agent.follow(action(applied, "get_operation"), "Follow it.")
        assert done.data["operation"]["status"] == "succeeded", done.data

        # -- everything else a model could read, for the secret scan -----------------------------------------
        for tool, args in (("list_events", {"limit": 100}), ("read_logs", {"env": "production", "service": "web"}),
                           ("read_logs", {"env": "staging", "service": "web", "lines": 500}),
                           ("list_releases", {"env": "staging"}), ("list_operations", {}), ("list_plans", {}),
                           ("show_plan", {"plan_id": plan_id}), ("list_policies", {"env": "production"}),
                           ("get_status", {"env": "production"}), ("diagnose", {"env": "production"}),
                           ("get_spec_schema", {})):
            result = await agent.call(tool, args)
            assert not result.is_error, result.data
            if tool == "read_logs":
                assert "(sensitive:NOTES_TOKEN)" in result.text  # the app printed it; Railguard hid it
        for uri in ("railguard://spec/schema", "railguard://spec/current"):
            agent.seen.append((await agent.session.read_resource(uri)).model_dump_json())
        agent.seen.append((await agent.session.get_prompt("safe_first_deploy", {"env": "staging"})).model_dump_json())
        return agent


def test_an_agent_deploys_breaks_diagnoses_rolls_back_and_waits_for_approval(
        notes: Notes, tmp_path_factory: pytest.TempPathFactory) -> None:
    errlog = tmp_path_factory.mktemp("mcp-log") / "server.log"  # outside the app folder (part of its source)
    viewer, agent_token = notes.token("eyes", "viewer"), notes.token("claude", "agent")
    viewer_agent = anyio.run(_roles, notes, viewer, errlog)
    agent = anyio.run(_session, notes, agent_token, errlog)

    raw_logs = "".join(p.read_text() for p in (notes.root / ".railguard" / "logs").rglob("*.log"))
    assert STAGING_SECRET in raw_logs and PRODUCTION_SECRET in raw_logs  # the plant worked...
    blob = "\n".join(agent.seen + viewer_agent.seen) + errlog.read_text()
    for secret in (STAGING_SECRET, PRODUCTION_SECRET, viewer, agent_token):
        assert secret not in blob  # ...and nothing the server said holds a secret value or a token

    text = transcript(agent.steps, notes.root, INTRO)
    assert STAGING_SECRET not in text and "plan-1" in text
    target = ROOT / "docs" / "agents-transcript.md"
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
