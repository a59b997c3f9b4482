"""A canary's moves are made once and recorded, with the real CLI, daemon and Caddy (the review's gaps 1-3).

One flow on a local environment, steps 10/50/100 with a manual pause:

- two ``promote-step --from 10`` at once (a double click, two agents): exactly one moves the canary to 50 %, the
  other answers ``canary.step_moved`` and nothing else moves; the same request retried later is a no-op too;
- a deploy while the canary runs is refused by its plan (``canary.in_progress``): the canary keeps its release,
  share and replicas, no release is recorded; after an abort the same deploy goes out as a new canary;
- a daemon killed between the runtime's abort and its record (fault point ``canary-aborted``): the next daemon
  finds the canary gone and records the abort (the canary's release ``aborted``, the stable one ``live``), and
  the edge serves the stable release only.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from railguard.engine.execute import FAULT_ENV

from ..conftest import stop_daemon
from .harness import Workspace, free_port, gone, wait_for

APP = Path(__file__).parent / "observe_app" / "app.py"
SPEC = """
[app]
name = "guarded"

[environments.staging]
edge_port = {port}
rollback_window = "2m"

[services.web]
run = ["python", "app.py"]
env = {{ VERSION = "{version}" }}
stop_timeout = "2s"
drain_timeout = "1s"
verify = "2s"
strategy = "canary"
steps = [10, 50, 100]
pause = "manual"
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


def _write(ws: Workspace, version: str) -> None:
    (ws.root / "railguard.toml").write_text(SPEC.format(port=ws.port, version=version))


def _canary(ws: Workspace) -> dict[str, Any] | None:
    found: dict[str, Any] | None = ws.status()["services"][0]["canary"]
    return found


def _records(ws: Workspace) -> dict[int, str]:
    code, found = ws.rg_json("releases", "--env", "staging")
    assert code == 0, found
    return {r["number"]: r["status"] for r in found["releases"]}


def _events(ws: Workspace) -> list[dict[str, Any]]:
    return list(ws.rg_json("events", "--env", "staging")[1]["events"])


def _begun(ws: Workspace, release: int, weight: int) -> Any:
    """The controller began the step (its event): only then is the step the canary's for promote-step."""
    said = f"release {release} takes {weight}%"
    return wait_for(lambda: any(e["kind"] in ("canary.step", "canary.resumed") and said in e["message"]
                                for e in _events(ws)), what=f"the controller at {weight}%", timeout=60)


@pytest.mark.timeout(400)
def test_a_canary_step_is_made_once_a_deploy_never_replaces_it_and_a_killed_abort_is_recorded(
        ws: Workspace) -> None:
    _write(ws, "1")
    code, done = ws.deploy()
    assert code == 0, done
    _write(ws, "2")
    code, done = ws.deploy()
    assert code == 0, done
    canary = _canary(ws)
    assert canary is not None and canary["release"] == 2 and canary["weight"] == 10, canary
    _begun(ws, 2, 10)

    # Gap 1: two promote-steps at once from the same step: one moves, the other moves nothing.
    answers: list[tuple[int, dict[str, Any]]] = []

    def promote() -> None:
        answers.append(ws.rg_json("promote-step", "--env", "staging", "web", "--from", "10"))

    racers = [threading.Thread(target=promote) for _ in range(2)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    moved = [a for code, a in answers if code == 0]
    refused = [a for code, a in answers if code != 0]
    assert len(moved) == 1 and moved[0]["canary"]["weight"] == 50, answers
    assert len(refused) == 1 and [d["code"] for d in refused[0]["diagnostics"]] == ["canary.step_moved"], answers
    diagnostic = refused[0]["diagnostics"][0]
    assert diagnostic["remediation"] and diagnostic["detail"] and diagnostic["extra"]["weight"] == 50, diagnostic
    assert (_canary(ws) or {}).get("weight") == 50
    # The same request retried (a client that lost the answer): a no-op with the same diagnostic.
    code, again = ws.rg_json("promote-step", "--env", "staging", "web", "--from", "10")
    assert code != 0 and [d["code"] for d in again["diagnostics"]] == ["canary.step_moved"], again
    assert (_canary(ws) or {}).get("weight") == 50
    steps = [e["message"] for e in _events(ws) if e["kind"] in ("canary.step", "canary.promoted")
             and "moved from" in e["message"]]
    assert len(steps) == 1 and "from 10% to 50%" in steps[0], steps
    _begun(ws, 2, 50)

    # Gap 2: a deploy while the canary runs is refused by its plan; the canary stays as it was.
    before = _records(ws)
    _write(ws, "3")
    code, planned = ws.rg_json("plan", "--env", "staging")
    assert "canary.in_progress" in json.dumps(planned), planned
    code, refused_deploy = ws.deploy()
    assert code != 0 and "canary.in_progress" in json.dumps(refused_deploy), refused_deploy
    canary = _canary(ws)
    assert canary is not None and canary["release"] == 2 and canary["weight"] == 50, canary
    assert _records(ws) == before, (before, _records(ws))
    served = {ws.get().text.strip() for _ in range(40)}
    assert served <= {"v1", "v2"} and "v2" in served, served

    # Gap 3: a daemon killed after the runtime aborted the canary, before it recorded the abort.
    pid = ws.daemon_pid()
    stopped = ws.rg("daemon", "stop")  # a clean stop leaves the apps, the edge and the canary running
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    wait_for(lambda: gone(pid), what="the daemon stopped")
    code, seen = ws.rg_json("status", "--env", "staging", env={FAULT_ENV: "canary-aborted"})  # an armed daemon
    assert code == 0 and seen["status"]["services"][0]["canary"]["weight"] == 50, seen
    armed = ws.daemon_pid()
    wait_for(lambda: any(e["kind"] == "canary.resumed" for e in _events(ws)), what="the canary resumed")
    code, killed = ws.rg_json("abort", "--env", "staging", "web")
    assert code != 0 and [d["code"] for d in killed["diagnostics"]] == ["daemon.unavailable"], killed
    wait_for(lambda: gone(armed), what="the armed daemon killed")
    assert wait_for(lambda: _canary(ws) is None, what="no canary (a new daemon)")
    records = wait_for(lambda: (r := _records(ws)).get(2) == "aborted" and r, what="the abort recorded")
    assert records == {1: "live", 2: "aborted"}, records
    assert {ws.get().text.strip() for _ in range(40)} == {"v1"}
    assert "release.aborted" in {e["kind"] for e in _events(ws)}
    assert ws.status()["services"][0]["release"] == 1

    # Decided: the deploy that was refused goes out now, as a new canary beside release 1.
    code, done = ws.deploy()
    assert code == 0, done
    canary = _canary(ws)
    assert canary is not None and canary["release"] == 3 and canary["weight"] == 10 and canary["stable"] == 1, canary
    assert os.environ.get(FAULT_ENV) is None
