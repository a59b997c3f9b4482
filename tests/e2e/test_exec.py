"""`railguard exec`: a one-off command in an environment's exact context, on the user's terminal, audited.

Real daemon, real processes: the command sees the release's variables, secret and data folder and runs in its
artifact; on a terminal it is interactive; its exit status is the CLI's; with --json its output comes back
captured and redacted; an older release runs with --release. In a protected environment it becomes a plan
that runs once approved and applied.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import Workspace, run_on_terminal
from .test_guardrails import Guarded, codes, guarded

SHOW = ("import os, sys; print(os.environ['VERSION'], os.environ['API_TOKEN'], os.environ['RAILGUARD_DATA_DIR'], "
        "os.getcwd(), 'PORT' in os.environ, sys.stdin.read().upper()); sys.exit(int(os.environ['VERSION']) + 40)")
SECRET = "tok-3c2b1a-very-secret"


def _exec_json(ws: Workspace, *args: str) -> tuple[int, dict[str, Any]]:
    """`railguard exec ... --json -- CMD`: --json must come before the command's own arguments."""
    split = args.index("--")
    done = ws.rg("exec", *args[:split], "--json", *args[split:])
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def test_exec_runs_in_the_release_context_interactive_captured_and_audited(ws: Workspace) -> None:
    spec = (ws.root / "railguard.toml").read_text()
    spec = spec.replace('[services.web]\n', '[services.web]\nsecrets = ["API_TOKEN"]\n')
    (ws.root / "railguard.toml").write_text(spec)
    done = subprocess.run([sys.executable, "-m", "railguard", "secret", "set", "API_TOKEN", "--env", "staging"],
                          input=SECRET, text=True, capture_output=True, cwd=ws.root, check=False)
    assert done.returncode == 0, done.stderr
    assert ws.deploy()[0] == 0
    data_dir = str((ws.root / ".railguard" / "data" / "staging").resolve())

    # Attached: stdin and stdout are the caller's own; the exit status is the command's.
    ran = subprocess.run([sys.executable, "-m", "railguard", "exec", "web", "--env", "staging", "--", "python", "-c",
                          SHOW], input="piped in", text=True, capture_output=True, cwd=ws.root, timeout=60,
                         check=False)
    assert ran.returncode == 41, ran.stderr
    version, token, data, cwd, has_port, text = ran.stdout.split(" ", 5)
    assert (version, token, data, has_port, text.strip()) == ("1", SECRET, data_dir, "False", "PIPED IN")
    assert "/.railguard/artifacts/" in cwd and cwd.endswith("/src")  # the release's artifact, not the work tree

    # On a terminal it is interactive: the command reads what the user types.
    code, screen = run_on_terminal(ws.root, ["exec", "web", "--env", "staging", "--", "python", "-c",
                                             "import sys; x = input('name: '); print('hello', x.upper(), "
                                             "sys.stdin.isatty())"], "bob")
    assert code == 0 and "hello BOB True" in screen, screen

    # A redeploy makes release 2 live; --release 1 still runs the first one's context.
    ws.write_spec(version="2")
    (ws.root / "railguard.toml").write_text((ws.root / "railguard.toml").read_text().replace(
        '[services.web]\n', '[services.web]\nsecrets = ["API_TOKEN"]\n'))
    assert ws.deploy()[0] == 0
    code, result = _exec_json(ws, "web", "--env", "staging", "--", "python", "-c", SHOW)
    assert code == 42 and not result["ok"]
    record = result["exec"]
    assert record["release"] == 2 and record["exit_code"] == 42
    assert SECRET not in str(result) and "(sensitive:API_TOKEN)" in record["output"][0]  # captured, redacted
    code, result = _exec_json(ws, "web", "--env", "staging", "--release", "1", "--", "python", "-c", SHOW)
    assert code == 41 and result["exec"]["release"] == 1

    # Refusals explain themselves and run nothing.
    code, result = _exec_json(ws, "web", "--env", "staging", "--", "no-such-tool")
    assert code == 1 and result["diagnostics"][0]["code"] == "exec.not_found", result
    assert "not installed in the release environment" in result["diagnostics"][0]["detail"]
    code, result = _exec_json(ws, "web", "--env", "staging", "--release", "9", "--", "true")
    assert code == 1 and result["diagnostics"][0]["code"] == "exec.no_release"
    spec = (ws.root / "railguard.toml").read_text()
    (ws.root / "railguard.toml").write_text(spec.replace("[services.web]", "[environments.production]\n"
                                                         f"edge_port = {ws.port + 1}\nprotected = true\n\n"
                                                         "[services.web]", 1))
    code, result = _exec_json(ws, "web", "--env", "production", "--", "true")  # protected, never deployed
    assert code == 1 and result["diagnostics"][0]["code"] == "exec.no_release"

    # Audited and recorded, with the secret nowhere in Railguard's own records.
    code, events = ws.rg_json("events", "--env", "staging")
    kinds = [e["kind"] for e in events["events"]]
    assert kinds.count("exec.started") >= 5 and kinds.count("exec.finished") >= 5
    assert any("exit 41" in e["message"] for e in events["events"])
    code, audit = ws.rg_json("audit", "--env", "staging")
    assert any(a["action"] == "exec.finished" for a in audit["audit"])
    assert SECRET not in str(events) + str(audit)


@pytest.fixture
def g(tmp_path: Path) -> Iterator[Guarded]:
    yield from guarded(tmp_path)


def test_exec_in_production_is_a_plan_that_runs_once_approved(g: Guarded) -> None:
    """Protected: the command becomes a plan (one `command` change, disruptive), approved on a terminal,
    applied by the daemon, its redacted output kept with the operation; no release is made."""
    agent = g.token("claude", "agent")
    assert g.as_(agent, "deploy", "--env", "staging", "--yes")[0] == 0  # production runs what soaked here
    code, planned = g.as_(agent, "plan", "--env", "production")
    run_on_terminal(g.root, ["approve", planned["plan"]["id"]], planned["plan"]["hash"][7:15])
    code, result = g.as_(agent, "apply", planned["plan"]["id"])
    assert code == 0, result
    show = "import os; print('token', os.environ['API_TOKEN'], os.environ['RAILGUARD_ENV'])"
    done = g.rg("exec", "web", "--env", "production", "--json", "--", "python", "-c", show,
                env={"RAILGUARD_TOKEN": agent})
    answer = json.loads(done.stdout)
    assert done.returncode == 0 and answer["exec"] is None, answer
    plan = answer["plan"]
    [change] = plan["changes"]
    assert change["action"] == "command" and change["risk"] == "disruptive"
    assert plan["decision"] == "require_approval" and plan["requested_by"] == "token:claude"
    code, refused = g.as_(agent, "apply", plan["id"])
    assert code == 1 and codes(refused) == ["policy.approval_required"]  # nothing ran
    code, text = run_on_terminal(g.root, ["approve", plan["id"]], plan["hash"][7:15])
    assert code == 0, text
    code, result = g.as_(agent, "apply", plan["id"])
    assert code == 0 and result["operation"]["status"] == "succeeded", result
    ended = [j for j in result["operation"]["journal"] if j["step"].endswith(": command") and j["phase"] == "end"]
    assert ended and ended[0]["detail"]["exit_code"] == 0
    assert ended[0]["detail"]["output"] == ["token (sensitive:API_TOKEN) production"]
    code, releases = g.rg_json("releases", "--env", "production")
    assert [r["number"] for r in releases["releases"]] == [1]  # a command makes no release
    # A failing command fails its operation with its output as the log tail, and changes nothing that runs.
    done = g.rg("exec", "web", "--env", "production", "--json", "--", "python", "-c",
                "print('boom'); raise SystemExit(5)", env={"RAILGUARD_TOKEN": agent})
    failing = json.loads(done.stdout)["plan"]
    run_on_terminal(g.root, ["approve", failing["id"]], failing["hash"][7:15])
    code, result = g.as_(agent, "apply", failing["id"])
    assert code == 1 and codes(result) == ["exec.failed"], result
    assert result["diagnostics"][0]["extra"]["log_tail"] == ["boom"]
    assert g.get().status_code == 200


@pytest.mark.skipif(os.geteuid() != 0, reason="read-only release mounts need root (mount namespaces)")
def test_an_exec_command_cannot_write_the_release_it_runs_in(ws: Workspace) -> None:
    """As for its replicas, the release's artifact is read-only for a one-off command (review: exec children were
    started without the sandbox, so a command could change what the next replica of that release starts from)."""
    assert ws.deploy()[0] == 0
    write = ("import pathlib, sys\ntry:\n    pathlib.Path('app.py').write_text('tampered')\n"
             "except OSError as e:\n    print(e); sys.exit(3)\n")
    code, answer = _exec_json(ws, "web", "--env", "staging", "--", "python", "-c", write)
    assert answer["exec"]["exit_code"] == 3, answer
    assert any("Read-only file system" in line for line in answer["exec"]["output"]), answer
    artifacts = list((ws.root / ".railguard" / "artifacts").glob("*/src/app.py"))
    assert artifacts and all("tampered" not in p.read_text() for p in artifacts)
