"""The hot command lines (cli/fastpath.py) answer exactly as the typer commands do, against a real daemon.

Each command line runs twice as a real CLI process: through the console entry (``python -m railguard``: the fast
path when it takes the line) and through the typer tree alone (:func:`railguard.cli.main.main`). A refusal has no
ids or times in it, so the two outputs must be the same bytes. A deploy or rollback that ran makes a new
operation each time, so the fast path's output is compared, byte for byte, with what the typer command's own code
prints for the same record (parsed into its model); the typer run passes the same check.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import typer

from railguard.cli.fastpath import parse

from .harness import Workspace

TYPER = "import sys; from railguard.cli.main import main; main()"


def run(ws: Workspace, *args: str, slow: bool = False, importtime: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RAILGUARD_HOME"}
    env.update({"NO_COLOR": "1", "COLUMNS": "200"})
    head = [sys.executable, *(["-X", "importtime"] if importtime else [])]
    command = [*head, "-c", TYPER, *args] if slow else [*head, "-m", "railguard", *args]
    return subprocess.run(command, cwd=ws.root, capture_output=True, text=True, timeout=120, env=env, check=False)


def typer_prints(record: dict[str, Any], url: str | None = None, queued: bool = False) -> tuple[str, int]:
    """What the typer command's own code prints (and exits with) for this operation record."""
    from railguard.cli.deploy import _finish_operation, _queued
    from railguard.model.api import Operation

    out = io.StringIO()
    code = -1
    with redirect_stdout(out):
        try:
            if queued:
                _queued(Operation.model_validate(record), True)
            else:
                _finish_operation(Operation.model_validate(record), True, url)
        except typer.Exit as done:
            code = done.exit_code
    return out.getvalue(), code


def typer_status(found: dict[str, Any]) -> tuple[str, int]:
    """What `railguard status --json` prints for this status (its typer command's own code)."""
    from railguard.cli.output import finish
    from railguard.model.api import EnvironmentStatus

    out = io.StringIO()
    code = -1
    with redirect_stdout(out):
        try:
            finish(True, [], {"status": EnvironmentStatus.model_validate(found).model_dump(mode="json")})
        except typer.Exit as done:
            code = done.exit_code
    return out.getvalue(), code


def same_as_typer(done: subprocess.CompletedProcess[str], queued: bool = False) -> dict[str, Any]:
    answer = json.loads(done.stdout)
    assert (done.stdout, done.returncode) == typer_prints(answer["operation"], answer.get("url"), queued)
    return dict(answer)


def unid(text: str) -> str:
    """An unconfirmed deploy saves a plan each time: its id is the only difference."""
    return re.sub(r"plan-[0-9a-f]{12}", "plan-ID", text)


def imported(done: subprocess.CompletedProcess[str]) -> set[str]:
    return {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines()
            if line.startswith("import time:")}


REFUSED = [
    ("rollback", "--env", "staging", "--json"),  # nothing to roll back to yet
    ("rollback", "--env", "nope", "--json"),
    ("rollback", "--env", "staging", "--to", "7", "--json"),
    ("rollback", "-e", "staging", "--to=0", "--no-wait", "--json"),
    ("deploy", "--env", "nope", "--yes", "--json"),
    ("deploy", "--env=staging", "-y", "--spec", "missing.toml", "--json"),
    ("deploy", "--env", "staging", "--json"),  # not confirmed: typer answers (no --yes)
    ("rollback", "--env", "staging", "--to", "x", "--json"),  # not a number: typer answers (cli.usage)
    ("rollback", "--json", "--env"),
    ("rollback", "--bogus", "--json"),
    ("status", "--env", "nope", "--json"),
    ("status", "--spec", "missing.toml", "--json"),
    ("plan", "--env", "nope", "--json"),
    ("plan", "--env", "staging", "--spec", "missing.toml", "--json"),
]


def test_hot_command_lines_answer_as_the_typer_commands(ws: Workspace) -> None:
    code, first = ws.rg_json("plan", "--env", "staging")  # starts the daemon
    assert code == 0, first
    for args in REFUSED:
        fast, slow = run(ws, *args), run(ws, *args, slow=True)
        assert [(unid(done.stdout), done.stderr, done.returncode) for done in (fast, slow)].count(
            (unid(slow.stdout), slow.stderr, slow.returncode)) == 2, (args, fast.stdout, slow.stdout)
        assert fast.returncode != 0 and fast.stdout, args

    deployed = run(ws, "deploy", "--env", "staging", "--yes", "--json", importtime=True)
    assert deployed.returncode == 0, deployed.stdout
    assert not {"pydantic", "typer", "rich", "click"} & imported(deployed)  # the fast path answered it
    answer = same_as_typer(deployed)
    assert answer["ok"] and answer["url"] == f"http://127.0.0.1:{ws.port}/" and ws.version() == "v1"
    ws.write_spec(version="2")
    again = run(ws, "deploy", "--env", "staging", "--yes", "--json", slow=True, importtime=True)
    assert again.returncode == 0 and "typer" in imported(again), again.stdout
    same_as_typer(again)

    # Nothing to change: no operation, and the answer (the plan, saved anew) is the typer command's own.
    unchanged = [run(ws, "deploy", "--env", "staging", "--yes", "--json", slow=slow) for slow in (False, True)]
    plans = [json.loads(done.stdout) for done in unchanged]
    assert [done.returncode for done in unchanged] == [0, 0] and plans[0]["operation"] is None
    assert plans[0]["plan"]["id"] != plans[1]["plan"]["id"]
    assert unchanged[0].stdout.replace(plans[0]["plan"]["id"], "ID") == unchanged[1].stdout.replace(
        plans[1]["plan"]["id"], "ID").replace(plans[1]["plan"]["hash"], plans[0]["plan"]["hash"])

    rolled = run(ws, "rollback", "--env", "staging", "--json", importtime=True)
    assert rolled.returncode == 0 and not {"pydantic", "typer", "rich"} & imported(rolled), rolled.stdout
    assert same_as_typer(rolled)["operation"]["kind"] == "rollback" and ws.version() == "v1"
    forward = run(ws, "rollback", "--env", "staging", "--to", "2", "--json", slow=True)
    assert forward.returncode == 0 and ws.version() == "v2", forward.stdout
    same_as_typer(forward)
    queued = run(ws, "rollback", "-e", "staging", "--no-wait", "--json")
    assert queued.returncode == 0, queued.stdout
    same_as_typer(queued, queued=True)
    # status: the spec is parsed in the CLI (pydantic), but neither typer nor Rich is imported.
    shown = run(ws, "status", "--env", "staging", "--json", importtime=True)
    assert shown.returncode == 0 and not {"typer", "rich", "click"} & imported(shown), shown.stdout
    assert (shown.stdout, shown.returncode) == typer_status(json.loads(shown.stdout)["status"])
    slow_shown = run(ws, "status", "--env", "staging", "--json", slow=True)
    assert (slow_shown.stdout, slow_shown.returncode) == typer_status(json.loads(slow_shown.stdout)["status"])
    # A rollback the daemon refuses (no such release) prints the typer command's diagnostics.
    busy = [run(ws, "rollback", "--env", "staging", "--to", "99", "--json", slow=slow) for slow in (False, True)]
    assert busy[0].stdout == busy[1].stdout and busy[0].returncode == busy[1].returncode == 1


@pytest.mark.parametrize(("args", "taken"), [
    (["rollback", "--env", "staging", "--json"], {"env": "staging", "as_json": True}),
    (["rollback", "--json", "-e", "s", "--to", "3", "--no-wait", "--spec", "a.toml"],
     {"env": "s", "as_json": True, "to": 3, "no_wait": True, "spec": Path("a.toml")}),
    (["deploy", "--yes", "--json"], {"yes": True, "as_json": True}),
    (["deploy", "--env=staging", "-y", "--json"], {"env": "staging", "yes": True, "as_json": True}),
    (["rollback", "--env", "staging"], None),  # people: Rich, the typer command
    (["deploy", "--env", "staging", "--json"], None),  # unconfirmed
    (["rollback", "--env", "staging", "--json", "--json"], None),
    (["rollback", "--env", "--json"], None),
    (["rollback", "--env", "", "--json"], None),
    (["rollback", "--env", "a", "--to", "-1", "--json"], None),
    (["rollback", "--env", "a", "--to", "1.5", "--json"], None),
    (["rollback", "--env", "a", "--to", "١", "--json"], None),
    (["rollback", "--env", "a", "--json=1"], None),
    (["rollback", "-ea", "--json"], None),
    (["rollback", "--help"], None),
    (["rollback", "--", "--json"], None),
    (["deploy", "-ye", "x", "--json"], None),
    (["deploy", "--env", "a", "--yes", "--allow-data-loss", "t", "--json"], None),
    (["plan", "--env", "a", "--json"], {"env": "a", "as_json": True}),
    (["plan", "--json"], {"as_json": True}),  # taken, but run() leaves it to typer: no --env
    (["plan", "--env", "a", "--json", "--out", "p.json"], None),
    (["plan", "--env", "a", "--detailed-exitcode", "--json"], None),
    (["plan", "--env", "a", "--full", "--json"], None),
    (["plan", "--env", "a"], None),
    (["status", "--json"], {"as_json": True}),
    (["status", "-e", "s", "--spec=x.toml", "--json"], {"env": "s", "spec": Path("x.toml"), "as_json": True}),
    (["status", "--env", "s"], None),
    (["status", "--env", "s", "--yes", "--json"], None),
    ([], None),
])
def test_the_fast_path_takes_only_the_forms_it_knows(args: list[str], taken: dict[str, Any] | None) -> None:
    found = parse(args)
    assert (found[1] if found else None) == taken


def unplan(done: subprocess.CompletedProcess[str]) -> str:
    """A plan's --json output with what differs between two plans of the same state (id, hash, time) named."""
    plan = json.loads(done.stdout)["plan"]
    text = done.stdout
    for key in ("id", "hash", "short_hash", "created_at"):
        text = text.replace(str(plan[key]), key.upper())
    return text


def test_plan_json_answers_as_the_typer_command(ws: Workspace) -> None:
    code, first = ws.rg_json("plan", "--env", "staging")  # starts the daemon
    assert code == 0, first
    fast = run(ws, "plan", "--env", "staging", "--json", importtime=True)
    slow = run(ws, "plan", "--env", "staging", "--json", slow=True)
    assert fast.returncode == slow.returncode == 0, (fast.stdout, fast.stderr)
    assert not {"pydantic", "typer", "rich", "click"} & imported(fast)  # the fast path answered it
    assert unplan(fast) == unplan(slow) and json.loads(fast.stdout)["plan"]["changes"]
    # A plan with a deny verdict: the typer command's own code adds the denial (ok false, exit 1) on both paths.
    with (ws.root / "railguard.toml").open("a") as spec:
        spec.write('\n[[policies]]\nname = "no-creates"\nexpression = \'change.action == "create"\'\n'
                   'effect = "deny"\nmessage = "no creates today"\n')
    denied = [run(ws, "plan", "--env", "staging", "--json", slow=slow) for slow in (False, True)]
    assert [done.returncode for done in denied] == [1, 1], denied[0].stdout
    assert [d["code"] for d in json.loads(denied[0].stdout)["diagnostics"]] == ["policy.denied"]
    assert unplan(denied[0]) == unplan(denied[1])
