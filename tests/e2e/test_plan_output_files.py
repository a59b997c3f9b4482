"""`railguard plan --json > plan.json` in the app folder: the saved answer stays out of the next snapshot (so the
next plan does not replace every service for it) with a warning, and a plan names the files its source adds,
removes or changes against the live release's. Real daemon, processes and Caddy."""

from __future__ import annotations

import json
from pathlib import Path

from ..conftest import stop_daemon
from .harness import make_workspace


def test_a_saved_plan_answer_is_not_deployed_and_a_plan_names_changed_files(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    try:
        code, result = ws.deploy()
        assert code == 0, result
        saved = ws.rg("plan", "--env", "staging", "--json")
        (ws.root / "plan.json").write_text(saved.stdout)
        (ws.root / "status.json").write_text(ws.rg("status", "--env", "staging", "--json").stdout)
        code, again = ws.rg_json("plan", "--env", "staging")
        assert code == 0, again
        assert again["plan"]["counts"]["replace"] == 0, again["plan"]["counts"]  # nothing to deploy
        found = {d["code"]: d for d in again["diagnostics"]}
        assert found["source.output_excluded"]["extra"]["files"] == ["plan.json", "status.json"], found
        assert "source.changed" not in found, found

        (ws.root / "app.py").write_text((ws.root / "app.py").read_text() + "\n# edited\n")
        (ws.root / "notes.txt").write_text("a new file\n")
        (ws.root / ".railguardignore").write_text("!plan.json\n")  # shipped on purpose: taken, and named
        code, third = ws.rg_json("plan", "--env", "staging")
        assert code == 0, third
        changed = next(d for d in third["diagnostics"] if d["code"] == "source.changed")
        assert changed["severity"] == "info"
        assert changed["extra"]["added"] == [".railguardignore", "notes.txt", "plan.json"], changed
        assert changed["extra"]["changed"] == ["app.py"] and changed["extra"]["removed"] == [], changed
        assert "plan.json" in changed["summary"] and "app.py changed" in changed["summary"], changed["summary"]
        done = ws.rg("plan", "--env", "staging")
        human = done.stdout + done.stderr
        assert "plan.json" in human and "added" in human, human
        assert json.loads(saved.stdout)["ok"] is True
    finally:
        stop_daemon(ws.root)
