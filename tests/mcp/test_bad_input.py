"""Bad input never crashes the MCP server: malformed arguments, unknown ids, plans of another environment,
oversized inputs, a spec that does not parse, an unknown token, the daemon down. Each call gets an isError
result with its diagnostic, and the server answers the next call."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from .harness import Agent, Notes, Result, stdio_agent
from .test_session import READ_TOOLS


async def _refused(agent: Agent, tool: str, args: dict[str, object], code: str) -> Result:
    result = await agent.call(tool, args)
    assert result.is_error and result.codes[0] == code, result.data
    assert (await agent.call("validate_spec")).data["ok"]  # the server is still there for the next call
    return result


async def _bad_input(notes: Notes, token: str, errlog: Path) -> None:
    async with stdio_agent(notes, token, errlog) as agent:
        for args in ({}, {"env": 3}, {"env": "staging", "bogus": 1}, {"env": "../etc"}, {"env": "staging", "limit": 0},
                     {"env": "staging", "offset": -1}):
            await _refused(agent, "get_status", args, "mcp.invalid_arguments")
        bad = await _refused(agent, "apply_plan", {"plan_id": "../../etc/passwd", "env": "staging"},
                             "mcp.invalid_arguments")
        assert "etc/passwd" not in json.dumps(bad.data)  # input values are never echoed back
        await _refused(agent, "apply_plan", {"plan_id": "plan-000000000000", "env": "staging"}, "plan.not_found")
        await _refused(agent, "get_operation", {"operation_id": "op-000000000000", "wait_s": 0},
                       "operation.not_found")
        await _refused(agent, "rollback", {"env": "staging"}, "rollback.no_target")
        await _refused(agent, "get_status", {"env": "qa"}, "spec.unknown_environment")
        await _refused(agent, "no_such_tool", {}, "mcp.unknown_tool")

        production = await agent.call("plan", {"env": "production"})  # saved (denied: nothing soaked in staging)
        plan_id = production.data["plan"]["id"]
        assert production.data["plan"]["decision"] == "deny"
        for tool in ("apply_plan", "request_approval"):
            wrong = await _refused(agent, tool, {"plan_id": plan_id, "env": "staging"}, "mcp.env_mismatch")
            assert wrong.data["next_actions"][0]["tool"] == "show_plan"
        refused = await _refused(agent, "apply_plan", {"plan_id": plan_id, "env": "production"}, "policy.denied")
        assert refused.data["next_actions"][0] == {"tool": "promote", "why": refused.data["next_actions"][0]["why"],
                                                   "arguments": {"from_env": "staging", "to_env": "production"}}

        await _refused(agent, "plan", {"env": "staging", "spec_text": "#" * 300_000}, "mcp.input_too_large")
        await _refused(agent, "validate_spec", {"spec_text": "[app]\n" + "x = 1\n" * 60_000}, "mcp.input_too_large")
        for tool, args in (("plan", {"env": "staging"}), ("validate_spec", {})):
            broken = await _refused(agent, tool, {**args, "spec_text": "[app\nname = "}, "spec.toml_syntax")
            assert broken.data["diagnostics"][0]["line"] == 1
        typo = notes.spec_path.read_text().replace("replicas = 1", "replicaz = 1")
        invalid = await _refused(agent, "validate_spec", {"spec_text": typo}, "spec.unknown_key")
        assert invalid.data["valid"] is False and "replicas" in json.dumps(invalid.data["diagnostics"])

        # The daemon goes down: calls that need it say so; the server does not restart it (it has a token).
        assert notes.rg("daemon", "stop").returncode == 0
        down = await _refused(agent, "get_status", {"env": "staging"}, "daemon.unavailable")
        assert not down.data["next_actions"]
        assert {t.name for t in await agent.tools()} == READ_TOOLS  # role unknown: the read tools only
        assert not (notes.root / ".railguard" / "daemon.pid").exists()
        assert notes.rg("daemon", "start").returncode == 0
        assert not (await agent.call("get_status", {"env": "staging"})).is_error

    async with stdio_agent(notes, "rg_not_a_real_token", errlog) as stranger:
        assert {t.name for t in await stranger.tools()} == READ_TOOLS
        await _refused(stranger, "whoami", {}, "auth.unknown_token")
        await _refused(stranger, "plan", {"env": "staging"}, "auth.unknown_token")


def test_bad_input_gets_a_diagnostic_and_the_server_stays_up(
        notes: Notes, tmp_path_factory: pytest.TempPathFactory) -> None:
    errlog = tmp_path_factory.mktemp("mcp-log") / "server.log"
    anyio.run(_bad_input, notes, notes.token("claude", "agent"), errlog)
    assert "Traceback" not in errlog.read_text()


async def _same_user(notes: Notes, errlog: Path) -> None:
    async with stdio_agent(notes, None, errlog) as agent:
        assert len(await agent.tools()) == 26  # the local OS user is admin
        status = await agent.call("get_status", {"env": "staging"})  # starts the daemon, as the CLI would
        assert not status.is_error and status.data["next_actions"][0]["tool"] == "plan"
        who = await agent.call("whoami")
        assert who.data["same_user_mode"] is True and who.data["principal"]["role"] == "admin"


def test_without_a_token_the_server_acts_as_the_local_user_and_starts_the_daemon(
        notes: Notes, tmp_path_factory: pytest.TempPathFactory) -> None:
    assert notes.rg("daemon", "stop").returncode == 0
    anyio.run(_same_user, notes, tmp_path_factory.mktemp("mcp-log") / "server.log")
    assert (notes.root / ".railguard" / "daemon.pid").exists()
