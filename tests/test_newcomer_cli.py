"""The CLI as a newcomer meets it, through the real command and daemon: shapes of `--json` answers."""

from __future__ import annotations

from pathlib import Path

from .test_cli import rg_json


def test_token_create_json_gives_the_record_like_token_list_and_the_value_once(workspace: Path) -> None:
    code, made = rg_json("token", "create", "--name", "ci", "--role", "agent", "--env", "staging", cwd=workspace)
    assert code == 0, made
    value = made["value"]
    assert value.startswith("rg_"), made
    assert made["token"]["token"] == value  # kept: scripts written before "value" read token.token
    code, listed = rg_json("token", "list", cwd=workspace)
    assert code == 0, listed
    row = next(t for t in listed["tokens"] if t["name"] == "ci")
    assert {k: v for k, v in made["token"].items() if k != "token"} == {**row, "last_used_at": None}
    assert value not in str(listed)
