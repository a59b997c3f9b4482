"""Whole doctor runs: the healthy app passes everything without touching its real environment; bad input.

The healthy app is deployed for real first (so the rollback drill has a previous release and there is a
real environment to leave alone), then its working tree moves to version 2 and every check runs.
Interruptions (SIGTERM, Ctrl-C) and a scratch port another program holds must still end with a clear
report and nothing left behind.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from railguard.doctor.runner import CHECKS, run
from railguard.engine.workspace import Workspace
from railguard.model.diagnostics import RailguardError
from railguard.providers.local.processes import allocate_port

from .harness import SampleApp, check, make_app, text_of

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def healthy(tmp_path: Path) -> Iterator[SampleApp]:
    app = make_app(tmp_path)
    yield app
    app.stop()


def _scratch_processes(app: SampleApp) -> list[str]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            where = " ".join(proc.info["cmdline"] or []) + " " + proc.cwd()
            if str(app.tmp) in where and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(where)
        except psutil.Error:
            continue
    return found


def test_healthy_app_passes_every_check_and_its_real_environment_is_untouched(healthy: SampleApp) -> None:
    healthy.deploy()
    edge = f"http://127.0.0.1:{healthy.ports['STAGING_PORT']}/"
    assert httpx.post(edge, content=b"kept", timeout=5, trust_env=False).status_code == 201
    data, processes = healthy.data_bytes(), healthy.processes()
    assert data and len(processes) >= 3  # daemon, edge, replica
    healthy.edit_spec('APP_VERSION = "1"', 'APP_VERSION = "2"')

    code, payload = healthy.doctor()

    statuses = {c["id"]: c["status"] for c in payload["doctor"]["checks"]}
    not_passed = {c["id"]: text_of(c) for c in payload["doctor"]["checks"] if c["status"] != "pass"}
    # Workload isolation is a property of the machine, not of the app: where the daemon cannot isolate (the test's
    # temp folder is not traversable by other users), env-isolation warns "shared-user" and says why, and only that.
    isolation = check(payload, "env-isolation")
    if isolation["status"] == "warn":
        assert "shared-user" in text_of(isolation) and "fail" not in statuses.values(), not_passed
        statuses["env-isolation"] = "pass"
    assert statuses == {c.id: "pass" for c in CHECKS}, not_passed
    assert code == 0 and payload["ok"] is True
    assert "release 1 → current → rollback" in text_of(check(payload, "rollback-drill"))
    assert healthy.data_bytes() == data, "the real data folder changed"
    now = healthy.processes()
    assert now == processes, f"the real environment's processes changed: gone {processes - now}, new {now - processes}"
    answer = httpx.get(edge, timeout=5, trust_env=False).json()
    assert answer["version"] == "1" and answer["notes"] == [{"id": 1, "text": "kept"}]
    assert not Path(payload["doctor"]["scratch"]).exists()
    assert _scratch_processes(healthy) == []


def test_ci_github_prints_the_workflow_the_healthy_app_uses(healthy: SampleApp) -> None:
    done = healthy.rg("ci", "github", "--env", "staging")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (healthy.root / ".github" / "workflows" / "railguard.yml").read_text()
    for line in ("railguard validate", "railguard plan --env production --detailed-exitcode", "railguard doctor"):
        assert line in done.stdout
    done = healthy.rg("ci", "github", "--json")
    assert json.loads(done.stdout)["path"] == ".github/workflows/railguard.yml"


def _wait(predicate: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "ctrl-c"])
def test_an_interrupted_run_reports_and_tears_the_scratch_down(tmp_path: Path, sig: signal.Signals) -> None:
    app = make_app(tmp_path, "hangs")
    app.edit_spec('start_timeout = "5s"', 'start_timeout = "60s"')
    proc = app.popen("doctor", "--env", "staging", "--json", "--check", "timeouts,port-binding,monitoring")
    try:
        _wait(lambda: any("app.py" in p for p in _scratch_processes(app)), "the hanging app to start in scratch")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    payload = json.loads(out)
    assert payload["doctor"]["interrupted"] == ("SIGTERM" if sig == signal.SIGTERM else "SIGINT")
    assert [c["status"] for c in payload["doctor"]["checks"]] == ["pass", "skipped", "skipped"]
    assert "interrupted by" in check(payload, "port-binding")["summary"]
    assert "doctor.interrupted" in {d["code"] for d in payload["diagnostics"]}
    assert _scratch_processes(app) == []
    assert list(app.tmp.iterdir()) == []


def test_a_scratch_port_already_taken_is_skipped_not_blamed_on_the_app(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        first = [int(taken.getsockname()[1])]

        def allocate() -> int:
            return first.pop() if first else allocate_port()

        report = run(Workspace.locate(app.root / "railguard.toml"), "staging", ["port-binding"], base=app.tmp,
                     allocate=allocate)
    result = report.checks[0]
    assert result.status.value == "pass", result
    assert any("was already taken by another program" in line for f in result.findings for line in f.evidence)
    assert list(app.tmp.iterdir()) == []


def test_an_unknown_check_is_a_diagnostic_with_a_suggestion(healthy: SampleApp) -> None:
    done = healthy.rg("doctor", "--env", "staging", "--check", "timeout", "--json")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    diagnostic = json.loads(done.stdout)["diagnostics"][0]
    assert diagnostic["code"] == "doctor.unknown_check" and diagnostic["extra"]["suggestion"] == "timeouts"


def test_an_unusable_scratch_folder_is_a_diagnostic(healthy: SampleApp) -> None:
    wall = healthy.tmp / "a-file"
    wall.write_text("not a folder")
    with pytest.raises(RailguardError) as raised:
        run(Workspace.locate(healthy.root / "railguard.toml"), "staging", ["timeouts"], base=wall)
    assert raised.value.diagnostics[0].code == "doctor.no_scratch"


def test_people_see_each_check_and_the_exit_code_says_fail_or_warn(tmp_path: Path) -> None:
    app = make_app(tmp_path, "ci-without-gates")
    done = app.rg("doctor", "--env", "staging", "--check", "ci-gate,monitoring")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "FAIL  ci-gate" in done.stdout and "PASS  monitoring" in done.stdout
    assert "→ Run it on every push and pull request" in done.stdout
    assert "Exit 2." in done.stdout
    app.edit_spec('webhook = "https://hooks.example.com/railguard"', "")
    app.edit_spec("[alerts]", "")
    assert app.doctor("monitoring")[0] == 0  # a warning alone passes CI...
    code, payload = app.doctor("monitoring", strict=True)
    assert code == 2 and payload["ok"] is False  # ...unless --strict


def test_every_check_is_listed_and_documented(healthy: SampleApp) -> None:
    done = healthy.rg("doctor", "--list", "--json")
    listed = [c["id"] for c in json.loads(done.stdout)["checks"]]
    assert listed == [c.id for c in CHECKS] and len(listed) == 11
    docs = (ROOT / "docs" / "doctor.md").read_text()
    for check_id in listed:
        assert f"### `{check_id}`" in docs, check_id

