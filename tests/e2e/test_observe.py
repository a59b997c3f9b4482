"""Observation end to end, with real Caddy: request metrics, verification, automatic rollback, incidents, alerts.

One flow: v1 serves; its requests show in status. v2 answers 500 on every request while its health check
passes; the verification window sees the 5xx ratio, opens an incident with the evidence, rolls back
automatically (an operation), and traffic is back on v1. A real local webhook receiver that fails its
first delivery gets the incident on the retry, signed. A plan of v2's source again is flagged known-bad.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..conftest import stop_daemon
from .harness import Workspace, free_port, wait_for

APP = Path(__file__).parent / "observe_app" / "app.py"
SPEC = """
[app]
name = "watched"

[alerts]
webhook = "http://127.0.0.1:{hook}/hook"

[environments.staging]
edge_port = {port}
rollback_window = "2m"

[services.web]
run = ["python", "app.py"]
env = {{ VERSION = "{version}", MODE = "{mode}" }}
stop_timeout = "2s"
drain_timeout = "2s"
verify = "20s"
[services.web.thresholds]
min_requests = 5
error_ratio = 0.2
[services.web.health]
http = "/healthz"
interval = "500ms"
timeout = "400ms"
start_period = "1s"
[[services.web.routes]]
path = "/"
"""


class Receiver(BaseHTTPRequestHandler):
    got: list[tuple[dict[str, Any], str]] = []
    calls = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).calls += 1
        if type(self).calls == 1:  # the first delivery fails: Railguard must retry
            self.send_response(500)
        else:
            type(self).got.append((json.loads(body), self.headers.get("X-Railguard-Signature", "")))
            type(self).got[-1][0]["_raw"] = body.decode()
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def watched(tmp_path: Path, hook: ThreadingHTTPServer) -> Iterator[tuple[Workspace, int]]:
    shutil.copy(APP, tmp_path / "app.py")
    ws = Workspace(tmp_path, free_port(), free_port())
    yield ws, hook.server_address[1]
    stop_daemon(tmp_path)


def _write(ws: Workspace, hook: int, version: str, mode: str = "") -> None:
    (ws.root / "railguard.toml").write_text(SPEC.format(port=ws.port, hook=hook, version=version, mode=mode))


def _traffic(ws: Workspace, stop: threading.Event, seen: list[int]) -> None:
    with httpx.Client(timeout=5, trust_env=False) as client:
        while not stop.is_set():
            try:
                seen.append(client.get(f"http://127.0.0.1:{ws.port}/").status_code)
            except httpx.HTTPError:
                seen.append(0)
            stop.wait(0.05)


@pytest.mark.timeout(300)  # two deploys, a verification, a rollback, alert retries: ~60 s, more on a busy machine
def test_a_release_answering_500_is_rolled_back_with_an_incident_and_an_alert(
        watched: tuple[Workspace, int]) -> None:
    ws, hook = watched
    Receiver.got, Receiver.calls = [], 0
    _write(ws, hook, "1")
    metrics_port = free_port()  # the opt-in Prometheus listener of the daemon this deploy starts
    code, done = ws.rg_json("deploy", "--env", "staging", "--yes",
                            env={"RAILGUARD_METRICS_ADDR": f"127.0.0.1:{metrics_port}"})
    assert code == 0, done
    # Right after "succeeded" the status says what the operation finished in: the gate proved the replica healthy.
    assert ws.status()["services"][0]["status"] == "healthy"
    for _ in range(10):
        assert ws.get().status_code == 200
    # The edge's access log is the source: status shows the live release's requests.
    windows = wait_for(lambda: (w := ws.status()["services"][0]["requests"]) and w[0]["requests"] >= 10 and w,
                       what="request metrics in status")
    assert {w["window"] for w in windows} == {"1m", "5m", "since_switch"}
    assert windows[0]["status_2xx"] >= 10 and windows[0]["status_5xx"] == 0 and windows[0]["p99_ms"] is not None
    scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5, trust_env=False).text
    assert 'railguard_requests_total{code="2xx",env="staging",release="1",service="web"}' in scraped
    assert 'railguard_service_health{env="staging",health="healthy",service="web"} 1.0' in scraped
    assert 'railguard_operations_total{env="staging",kind="apply",status="succeeded"} 1.0' in scraped

    stop, seen = threading.Event(), []
    pump = threading.Thread(target=_traffic, args=(ws, stop, seen), daemon=True)
    pump.start()
    try:
        _write(ws, hook, "2", "error500")
        code, done = ws.deploy()
        assert code == 0, done  # its health check passes: the rollout itself succeeds
        incident = wait_for(lambda: next(iter(ws.rg_json("incidents", "--env", "staging")[1]["incidents"]), None),
                            what="an incident", timeout=30)
        print(incident)
        assert incident["kind"] == "verification_failed" and incident["release"] == 2
        mitigated = wait_for(lambda: (i := ws.rg_json("incident", incident["id"])[1]["incident"])["state"]
                             == "mitigated" and i, what="the rollback to mitigate it", timeout=30)
        assert wait_for(lambda: ws.get().text.strip() == "v1", what="traffic back on v1")
    finally:
        stop.set()
        pump.join()
    assert 500 in seen
    # The evidence: the 5xx ratio of release 2 against release 1, its log lines, the rollback operation.
    metrics = [m for e in mitigated["evidence"] if e["kind"] == "metrics" for m in e["metrics"]]
    bad = next(m for m in metrics if m["release"] == 2)
    assert bad["status_5xx"] >= 5 and bad["error_ratio"] > 0.2
    assert any("cannot serve" in line for e in mitigated["evidence"] if e["kind"] == "log" for line in e["lines"])
    operation = ws.rg_json("operations", mitigated["operation"])[1]["operation"]
    assert operation["kind"] == "rollback" and operation["status"] == "succeeded"
    assert operation["principal"] == "railguard:verification"
    assert [t["kind"] for t in mitigated["timeline"]][:1] == ["opened"]
    assert {"rollback", "mitigated"} <= {t["kind"] for t in mitigated["timeline"]}
    # The webhook failed once, then got the incident, signed with the state folder's alert key.
    got = wait_for(lambda: Receiver.got, what="the webhook delivery", timeout=20)
    body, signature = got[0]
    assert body["incident"]["id"] == incident["id"] and body["transition"] == "opened"
    key = (Path(os.environ["XDG_CONFIG_HOME"]) / "railguard" / "keys").glob("*.alert-key")
    expected = "sha256=" + hmac.new(next(key).read_bytes().strip(), body["_raw"].encode(), hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature, expected)
    deliveries = wait_for(lambda: [d for d in ws.rg_json("incident", incident["id"])[1]["incident"]["deliveries"]
                                   if d["transition"] == "opened"], what="the delivery on the incident")
    assert deliveries[0]["ok"] and deliveries[0]["attempts"] == 2
    scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5, trust_env=False).text
    assert 'railguard_incidents{env="staging",kind="verification_failed",state="mitigated"} 1.0' in scraped
    # The spec on disk still asks for v2: its plan names the rolled-back release and is not applyable.
    code, planned = ws.rg_json("plan", "--env", "staging")
    bad_plan = [d for d in planned["diagnostics"] if d["code"] == "plan.known_bad"]
    assert bad_plan and incident["id"] in bad_plan[0]["summary"] and not planned["plan"]["applyable"]
    # Traffic stays on v1: no other incident (the rollback target is not judged against the failed release).
    assert [i["id"] for i in ws.rg_json("incidents")[1]["incidents"]] == [incident["id"]]
