"""Canary rollouts end to end, with real Caddy and the daemon: a failing canary is aborted, a healthy one promoted.

One flow: v1 serves. v2 answers 500 on every request while its health check passes; with
``strategy = "canary"`` it gets the first step's 10% of the requests beside v1; the step's analysis sees the
5xx ratio, aborts (every request back on v1, v2 stopped) and opens an incident with the evidence. During the
step, the share of failed requests stays near 10% (bounded, not timing-exact). v3 is healthy: each step passes
its pause, it advances to 100% and becomes the live release. Both show in status and the events.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..conftest import stop_daemon
from .harness import Workspace, free_port, wait_for

APP = Path(__file__).parent / "observe_app" / "app.py"
SPEC = """
[app]
name = "canaried"

[environments.staging]
edge_port = {port}
rollback_window = "2m"

[services.web]
run = ["python", "app.py"]
env = {{ VERSION = "{version}", MODE = "{mode}" }}
stop_timeout = "2s"
drain_timeout = "2s"
verify = "5s"
strategy = "canary"
steps = [10, 50, 100]
pause = "{pause}"
[services.web.thresholds]
min_requests = 5
error_ratio = 0.2
p99_factor = 1000.0  # this test is about errors: latency noise on a loaded CI machine must not abort a step
[services.web.health]
http = "/healthz"
interval = "500ms"
timeout = "400ms"
start_period = "1s"
[[services.web.routes]]
path = "/"
"""


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    shutil.copy(APP, tmp_path / "app.py")
    yield Workspace(tmp_path, free_port(), free_port())
    stop_daemon(tmp_path)


def _write(ws: Workspace, version: str, mode: str = "", pause: str = "20s") -> None:
    (ws.root / "railguard.toml").write_text(SPEC.format(port=ws.port, version=version, mode=mode, pause=pause))


def _pump(ws: Workspace, stop: threading.Event, seen: list[tuple[int, str]]) -> None:
    with httpx.Client(timeout=5, trust_env=False) as client:
        while not stop.is_set():
            try:
                answer = client.get(f"http://127.0.0.1:{ws.port}/")
                seen.append((answer.status_code, answer.text.strip()))
            except httpx.HTTPError:
                seen.append((0, ""))
            stop.wait(0.01)


def _canary(ws: Workspace) -> dict[str, object] | None:
    found: dict[str, object] | None = ws.status()["services"][0]["canary"]
    return found


@pytest.mark.timeout(300)
def test_a_failing_canary_is_aborted_and_a_healthy_one_promoted(ws: Workspace) -> None:
    _write(ws, "1")
    code, done = ws.deploy()
    assert code == 0, done
    code, refused = ws.rg_json("abort", "--env", "staging", "web")
    assert code != 0 and refused["diagnostics"][0]["code"] == "canary.none"

    stop, seen = threading.Event(), []
    pump = threading.Thread(target=_pump, args=(ws, stop, seen), daemon=True)
    pump.start()
    try:
        _write(ws, "2", "error500")
        code, done = ws.deploy()
        assert code == 0, done  # its health check passes: the canary starts
        incident = wait_for(lambda: next(iter(ws.rg_json("incidents", "--env", "staging")[1]["incidents"]), None),
                            what="the canary's incident", timeout=60)
        assert incident["kind"] == "verification_failed" and incident["release"] == 2
        assert "canary at 10%" in incident["summary"]
        assert wait_for(lambda: _canary(ws) is None, what="the canary gone")
        after = len(seen)
        wait_for(lambda: len(seen) >= after + 50, what="requests after the abort")
    finally:
        stop.set()
        pump.join()
    # The step: from the first failed request to the last one (the canary takes requests before the deploy
    # command returns). Starting and ending on a failure biases the share up; it still stays near 10%.
    failures = [i for i, (status, _) in enumerate(seen) if status != 200]
    step = seen[failures[0]:failures[-1] + 1]
    assert len(failures) >= 5 and len(failures) / len(step) <= 0.3, (len(failures), len(step))
    assert {text for status, text in seen[after:] if status == 200} == {"v1"}
    assert all(status == 200 for status, _ in seen[after:])
    metrics = [m for e in incident["evidence"] if e["kind"] == "metrics" for m in e["metrics"]]
    assert any(m["release"] == 2 and m["status_5xx"] >= 5 for m in metrics)
    assert ws.status()["services"][0]["release"] == 1

    # A healthy release: every step passes its pause, it advances to 100% and becomes the live release.
    stop, seen = threading.Event(), []
    pump = threading.Thread(target=_pump, args=(ws, stop, seen), daemon=True)
    pump.start()
    try:
        _write(ws, "3", pause="2s")
        code, done = ws.deploy()
        assert code == 0, done
        canary = _canary(ws)
        assert canary is not None and canary["release"] == 3 and canary["weight"] in (10, 50)
        wait_for(lambda: ws.status()["services"][0]["release"] == 3, what="the canary promoted", timeout=120)
        after = len(seen)
        wait_for(lambda: len(seen) >= after + 30, what="requests after the promotion")
    finally:
        stop.set()
        pump.join()
    assert {text for _, text in seen[after:]} == {"v3"}
    # The deploy's operation journals each step of its canary: 10%, 50%, 100%.
    journal = ws.rg_json("operations", done["operation"]["id"])[1]["operation"]["journal"]
    moves = [e["detail"]["weight"] for e in journal if e["step"] == "staging/service.web: canary step"]
    assert moves[0] == 10 and moves[-1] == 100 and 50 in moves, journal
    events = ws.rg_json("events", "--env", "staging")[1]
    kinds = [e["kind"] for e in events["events"]]
    assert "canary.aborted" in kinds and "canary.promoted" in kinds and kinds.count("canary.step") >= 3
