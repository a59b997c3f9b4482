"""Observation benchmarks: how fast trouble is noticed and undone, and what request metrics cost.

Why it exists: docs/observe.md promises that a killed replica is noticed and restarted within about a second,
that a release answering 500s is rolled back within its verification window plus a second of the first 500,
and that reading Caddy's access log costs little at the edge and in the daemon. This measures all three on a
temp workspace (the observation test app, one replica, a free edge port), torn down in `finally`.

1. **kill → restart**: SIGKILL the live replica `--kills` times; for each, the time from the kill to the
   `replica.restarted` event (its timestamp in the store) and to a new process answering through the edge.
2. **first 500 → traffic back**: a client sends `GET /` every 20 ms while a release answering 500 on every
   request (health check passing) is deployed with `verify = "10s"`; from the first 500 the client saw to the
   first answer of the previous release after it.
3. **overhead at 250 req/s**: the same load (bench/loadgen.py, keep-alive, 16 threads, `--seconds`) against a
   daemon with the access log on and one started with `RAILGUARD_ACCESS_LOG=0`; edge latency p50/p99 and the
   daemon's CPU (user+system seconds over the run / its length).

Usage: .venv/bin/python bench/observe_bench.py [--kills 5] [--seconds 20] [--json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import LoadGen
from rgbench import Workspace, machine_line, median, pct

APP = Path(__file__).resolve().parents[1] / "tests" / "e2e" / "observe_app" / "app.py"
SPEC = """
[app]
name = "watched"

[environments.staging]
edge_port = {port}
rollback_window = "2m"

[services.web]
run = ["python", "app.py"]
env = {{ VERSION = "{version}", MODE = "{mode}" }}
stop_timeout = "2s"
drain_timeout = "2s"
verify = "10s"
[services.web.thresholds]
min_requests = 20
[services.web.health]
http = "/healthz"
interval = "500ms"
timeout = "400ms"
start_period = "1s"
[[services.web.routes]]
path = "/"
"""


def prepare(ws: Workspace, version: str = "1", mode: str = "") -> None:
    shutil.copy(APP, ws.root / "app.py")
    ws.spec.write_text(SPEC.format(port=ws.edge_port, version=version, mode=mode))


def answer(port: int, timeout: float = 2.0) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace").strip()
    except (OSError, http.client.HTTPException):
        return 0, ""
    finally:
        conn.close()


def event_times(ws: Workspace, kind: str) -> list[float]:
    payload = ws.must("events", "--env", "staging", "--limit", "1000", "--json").payload or {}
    return [datetime.fromisoformat(e["at"].replace("Z", "+00:00")).timestamp()
            for e in payload.get("events", []) if e["kind"] == kind]


def kills(count: int) -> dict[str, Any]:
    to_event, to_serving = [], []
    with Workspace.create(tag="observe-kill") as ws:
        prepare(ws)
        ws.must("deploy", "--env", "staging", "--yes", "--json")
        for _ in range(count):
            before = set(event_times(ws, "replica.restarted"))
            pid = ws.live_pids()[0]
            time.sleep(1.0)  # let the previous restart settle (and its crash streak not be the reason for delay)
            wall = time.time()
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                new = ws.live_pids()
                if new and new[0] != pid and psutil.pid_exists(new[0]) and answer(ws.edge_port, 0.5)[0] == 200:
                    to_serving.append(time.time() - wall)
                    break
                time.sleep(0.01)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                found = sorted(set(event_times(ws, "replica.restarted")) - before)
                if found:
                    to_event.append(found[0] - wall)
                    break
                time.sleep(0.2)
        last = ws.status()["services"][0]["replicas"][0]
    return {"kills": count, "to_restart_event_s": to_event, "to_serving_s": to_serving,
            "last_exit": last.get("last_exit"), "recent_restarts": last.get("recent_restarts")}


def regression() -> dict[str, Any]:
    seen: list[tuple[float, int, str]] = []
    stop = threading.Event()
    with Workspace.create(tag="observe-500") as ws:
        prepare(ws)
        ws.must("deploy", "--env", "staging", "--yes", "--json")

        def client() -> None:
            while not stop.is_set():
                status, body = answer(ws.edge_port)
                seen.append((time.time(), status, body))
                stop.wait(0.02)

        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        try:
            prepare(ws, version="2", mode="error500")
            deploy_start = time.time()
            ws.must("deploy", "--env", "staging", "--yes", "--json")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                first500 = next((t for t, s, _ in seen if s == 500), None)
                back = first500 and next((t for t, s, b in seen if t > first500 and s == 200 and b == "v1"), None)
                if back:
                    break
                time.sleep(0.1)
        finally:
            stop.set()
            thread.join()
        incidents = (ws.must("incidents", "--json").payload or {}).get("incidents", [])
    failed = sum(1 for _, s, _ in seen if s >= 500 or s == 0)
    return {"verify_s": 10, "first_500_to_v1_s": (back - first500) if first500 and back else None,
            "deploy_to_first_500_s": (first500 - deploy_start) if first500 else None,
            "failed_requests": failed, "requests": len(seen),
            "incident": incidents[0]["summary"] if incidents else None}


def sequential(port: int, seconds: float) -> list[float]:
    """Latencies (ms) of back-to-back GET / on one keep-alive connection for ``seconds``."""
    samples: list[float] = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            conn.request("GET", "/")
            conn.getresponse().read()
            samples.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.005)
    finally:
        conn.close()
    return samples


def overhead(seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, env in (("on", "1"), ("off", "0")):
        os.environ["RAILGUARD_ACCESS_LOG"] = env  # read by the daemon this workspace starts (and its Caddy config)
        try:
            with Workspace.create(tag=f"observe-{label}") as ws:
                prepare(ws)
                ws.must("deploy", "--env", "staging", "--yes", "--json")
                daemon = psutil.Process(ws.daemon_pid() or 0)
                gen = LoadGen(ws.url, rate=250, threads=16, keepalive=True, max_duration=seconds + 30)
                gen.start()
                time.sleep(2.0)  # warm-up, not measured by the CPU figure
                cpu0, t0 = sum(daemon.cpu_times()[:2]), time.monotonic()
                probe = sequential(ws.edge_port, seconds)  # one keep-alive connection, beside the load
                cpu = (sum(daemon.cpu_times()[:2]) - cpu0) / (time.monotonic() - t0)
                result = gen.stop()
                access = ws.home / "edge" / "staging" / "access.log"
                out[label] = {"probe_p50_ms": pct(probe, 0.5), "probe_p99_ms": pct(probe, 0.99), "probe": len(probe),
                              "p50_ms": result.p50_ms, "p99_ms": result.p99_ms, "achieved_rate": result.achieved_rate,
                              "failed": result.failed, "daemon_cpu_pct": round(100 * cpu, 2),
                              "access_log_bytes": access.stat().st_size if access.exists() else 0}
        finally:
            os.environ.pop("RAILGUARD_ACCESS_LOG", None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--only", choices=["kill", "regression", "overhead"], default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report: dict[str, Any] = {"machine": machine_line(), "load": os.getloadavg(),
                              "at": datetime.now().isoformat(timespec="seconds")}
    parts: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("kill", lambda: kills(args.kills)), ("regression", regression), ("overhead", lambda: overhead(args.seconds))]
    for name, part in parts:
        if args.only in (None, name):
            report[name] = part()
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return
    print(report["machine"], "load", report["load"])
    if "kill" in report:
        k = report["kill"]
        print(f"kill -> restart event: median {median(k['to_restart_event_s'])} max {pct(k['to_restart_event_s'], 1)}")
        print(f"kill -> serving again: median {median(k['to_serving_s'])} max {pct(k['to_serving_s'], 1.0)}")
        print("last exit:", k["last_exit"], "recent restarts", k["recent_restarts"])
    for name in ("regression", "overhead"):
        if name in report:
            print(f"{name}:", json.dumps(report[name], indent=1))


if __name__ == "__main__":
    main()
