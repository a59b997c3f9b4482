"""A saved plan carries its source, end to end (real daemon, real processes, real Caddy).

One flow: a plan is made while the app folder holds a FIFO and a `.env`; then the app code is edited and
the plan's own JSON is written into the folder; applying the plan runs the planned code (HTTP answer), the
edit shows as drift, and a second plan picks it up. A production plan approved while the tree keeps
changing then applies without a new approval, and runs what was approved.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .harness import run_on_terminal, wait_for
from .test_guardrails import Guarded, codes, guarded


@pytest.fixture
def g(tmp_path: Path) -> Iterator[Guarded]:
    yield from guarded(tmp_path)


def _edit_app(root: Path, marker: str) -> None:
    """Change what the app answers on `/`: an edit of the app's code, not of the spec."""
    code = (root / "app.py").read_text()
    start = code.index('body, status = f"') + len('body, status = f"')
    end = code.index("v{VERSION}", start)
    (root / "app.py").write_text(code[:start] + f"{marker} " + code[end:])


def _answer(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/", timeout=5, trust_env=False).text


def test_a_plan_applies_its_own_snapshot_whatever_happens_to_the_tree(g: Guarded) -> None:
    os.mkfifo(g.root / "pipe")  # opening it would block: the snapshot must skip it, never open it
    (g.root / ".env").write_text("API_TOKEN=local-dev-value\n")

    done = g.rg("plan", "--env", "staging", "--json", timeout=60)  # `railguard plan --json > plan.json`
    (g.root / "plan.json").write_text(done.stdout)
    planned = json.loads(done.stdout)
    plan = planned["plan"]
    assert done.returncode == 0, planned
    assert {"source.special_skipped", "source.secret_excluded"} <= set(codes(planned))
    assert plan["source"]["files"] == 2 and plan["source"]["bytes"] > 0  # app.py and migrate.py
    _edit_app(g.root, "EDITED")  # the agent goes on with the next change

    code, applied = g.rg_json("apply", plan["id"])
    assert code == 0 and applied["operation"]["status"] == "succeeded", applied
    wait_for(lambda: _answer(g.port).startswith("v1 "), "the planned code to answer")
    code, listed = g.rg_json("show", plan["id"], "--files")
    assert code == 0 and [f["path"] for f in listed["files"]["files"]] == ["app.py", "migrate.py"]
    assert listed["files"]["digest"] == plan["source"]["digest"] and listed["files"]["stored"]
    human = g.rg("show", plan["id"], "--files").stdout
    assert "app.py" in human and ".env" not in human and "plan.json" not in human

    status = g.status()
    assert status["drift"]["spec_changed_since_apply"] is True  # the edit is visible as drift

    human_plan = g.rg("plan", "--env", "staging")
    # app.py and migrate.py: the saved plan.json is Railguard's own answer, left out (with a warning), and the
    # plan names the one file that changed.
    assert "source: 2 files" in human_plan.stdout, human_plan.stdout
    assert "source.output_excluded" in human_plan.stderr and "app.py changed" in human_plan.stderr, human_plan.stderr
    code, second = g.rg_json("plan", "--env", "staging")
    assert code == 0 and any(c["action"] == "replace" for c in second["plan"]["changes"])
    code, applied = g.rg_json("apply", second["plan"]["id"])
    assert code == 0 and applied["operation"]["status"] == "succeeded", applied
    wait_for(lambda: _answer(g.port).startswith("EDITED v1 "), "the edit, once planned and applied")
    assert g.status()["drift"]["spec_changed_since_apply"] is False

    # Production: an agent's plan is approved by a person while the agent keeps editing code and spec.
    agent = g.token("claude", "agent")
    code, prod = g.as_(agent, "plan", "--env", "production")
    assert code == 0 and prod["plan"]["decision"] == "require_approval", prod
    _edit_app(g.root, "NEXT")
    g.spec(version="2")
    code, text = run_on_terminal(g.root, ["approve", prod["plan"]["id"]], prod["plan"]["hash"][7:15])
    assert code == 0, text
    _edit_app(g.root, "AFTER-APPROVAL")
    code, result = g.as_(agent, "apply", prod["plan"]["id"])
    assert code == 0 and result["operation"]["status"] == "succeeded", result  # no new approval needed
    wait_for(lambda: _answer(g.production).startswith("EDITED v1 "), "production to run what was approved")
    code, refused = g.as_(agent, "apply", prod["plan"]["id"])
    assert code == 1 and codes(refused) == ["plan.already_applied"]
