"""Each sample app's failure is caught by the right check, with the right evidence (cases.toml).

Real processes, real HTTP, the real CLI: a case copies its app, applies its setup, runs
`railguard doctor --check ...` and compares every check's status and findings with the case. The
scratch environment must be gone afterwards and no process may be left (the suite checks that too).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import SampleApp, check, make_app, text_of

SECRET_VALUE = "django-insecure-5c1f0e8a9b7d4c2e"
CASES: list[dict[str, Any]] = tomllib.loads((Path(__file__).parent / "cases.toml").read_text())["case"]


def _render(text: str, app: SampleApp) -> str:
    for key, port in app.ports.items():
        text = text.replace("{" + key + "}", str(port))
    return text


@pytest.fixture
def stop_after() -> Iterator[list[SampleApp]]:
    apps: list[SampleApp] = []
    yield apps
    for app in apps:
        app.stop()


@pytest.mark.parametrize("case", CASES, ids=[c.get("name", c["app"]) for c in CASES])
def test_sample_app(case: dict[str, Any], tmp_path: Path, stop_after: list[SampleApp]) -> None:
    setup = case.get("setup", "")
    app = make_app(tmp_path, "healthy" if setup.startswith("deploy") else case["app"])
    stop_after.append(app)
    if setup == "seed":
        app.seed()
    for old, new in case.get("edits", []) if setup == "secret" else []:
        app.edit_spec(old, _render(new, app))  # the secret's declaration comes first
    if setup == "secret":  # a Django-style SECRET_KEY, set the way a user does (stdin only)
        done = subprocess.run([sys.executable, "-m", "railguard", "secret", "set", "SECRET_KEY", "--env", "staging"],
                              cwd=app.root, input=SECRET_VALUE, capture_output=True, text=True, env=app.env(),
                              timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    if setup.startswith("deploy"):
        app.deploy()
        app.overlay(case["app"])
    if setup == "deploy-without-artifacts":
        shutil.rmtree(app.root / ".railguard" / "artifacts")
    for old, new in case.get("edits", []) if setup != "secret" else []:
        app.edit_spec(old, _render(new, app))
    done = app.rg("doctor", "--env", "staging", "--json", *(f"--check={c}" for c in case["checks"]))
    assert SECRET_VALUE not in done.stdout + done.stderr, "a secret value reached the doctor's output"
    code, payload = done.returncode, json.loads(done.stdout)
    assert not Path(payload["doctor"]["scratch"]).exists(), "the scratch folder was not removed"
    assert payload["doctor"]["cleanup"] == [], "the teardown had to kill leftovers"
    statuses = {check_id: check(payload, check_id)["status"] for check_id in case["checks"]}
    assert statuses == {k: v["status"] for k, v in case["expect"].items()}, payload
    for check_id, want in case["expect"].items():
        text = text_of(check(payload, check_id))
        for needle in want.get("has", []):
            assert _render(needle, app) in text, f"{check_id}: {needle!r} not in:\n{text}"
    failed = any(s == "fail" for s in statuses.values())
    assert code == case.get("exit", 2 if failed else 0), payload
    assert payload["ok"] is (code == 0)
    codes = {d["code"] for d in payload["diagnostics"]}
    assert ("doctor.check_failed" in codes) is failed
