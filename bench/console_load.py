"""How fast the console's pages answer with 200 services live, and what the console process weighs.

Why it exists: the issue's targets are the environments overview in ≤ 150 ms of server time with 200
services, and ≤ 20 MB added by the console. This deploys a copy of the notes example plus 199 worker
services (real `sleep` processes) to staging with the real CLI, restarts the daemon with its console
(`daemon start --console`; `--beside` runs `railguard console` as its own process instead), signs in
with a viewer token over HTTP, and times each page `--calls` times after 3
warm-up loads, as the full round trip on loopback (an upper bound of server time). The console's RSS is
read after start-up and again after the run. Everything is stopped in `finally`. ~2-3 min.

Usage: .venv/bin/python bench/console_load.py [--services 200] [--calls 30] [--beside] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rgbench import Workspace, free_port, machine_line, pct

MB = 1024 * 1024
WORKER = '\n[services.w{i:03d}]\nrun = ["sleep", "3600"]\nlisten = false\nstop_timeout = "1s"\n'


def sign_in(http: httpx.Client, token: str) -> None:
    form = http.get("/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
    assert nonce, form.text
    answer = http.post("/login", data={"nonce": nonce.group(1), "token": token, "next": "/"})
    assert answer.status_code == 303, answer.text


def measure(http: httpx.Client, paths: list[str], calls: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in paths:
        times = []
        for i in range(calls + 3):
            t0 = time.perf_counter()
            page = http.get(path)
            elapsed = (time.perf_counter() - t0) * 1000
            assert page.status_code == 200, (path, page.status_code, page.text[:500])
            if i >= 3:
                times.append(elapsed)
        out[path] = {"p50_ms": round(pct(times, 0.5) or 0, 1), "p95_ms": round(pct(times, 0.95) or 0, 1),
                     "max_ms": round(max(times), 1), "bytes": len(page.content)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--beside", dest="in_daemon", action="store_false",
                        help="Run `railguard console` as its own process instead of `daemon start --console`.")
    opts = parser.parse_args()
    ws = Workspace.create(tag="console-load")
    proc = None
    try:
        ws.edit(lambda text: text + "".join(WORKER.format(i=i) for i in range(1, opts.services)))
        deployed = ws.must("deploy", "--env", "staging", "--yes", "--json", timeout=1800)
        assert deployed.payload is not None
        plan_id = deployed.payload["operation"]["plan_id"]
        token = ws.must("token", "create", "--name", "bench", "--role", "viewer", "--json").payload["token"]["token"]  # type: ignore[index]
        port = free_port()
        # The daemon's idle memory without a console, freshly started (apps and the edge keep serving).
        ws.must("daemon", "stop")
        ws.must("daemon", "start")
        time.sleep(5)
        daemon = psutil.Process(ws.daemon_pid() or 0)
        daemon_alone = daemon.memory_info().rss / MB
        if opts.in_daemon:  # restart the daemon with its console on a thread (apps and the edge keep serving)
            ws.must("daemon", "stop")
            ws.must("daemon", "start", "--console", f"127.0.0.1:{port}")
            daemon = psutil.Process(ws.daemon_pid() or 0)
        else:
            proc = subprocess.Popen([sys.executable, "-m", "railguard", "console", "--spec", str(ws.spec),
                                     "--listen", f"127.0.0.1:{port}"], env=ws.env(), cwd=str(ws.root),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        served_by = daemon if opts.in_daemon else psutil.Process(proc.pid)  # type: ignore[union-attr]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    http.get("/login")
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            time.sleep(5)
            rss_started = served_by.memory_info().rss / MB
            sign_in(http, token)
            pages = measure(http, ["/", "/env/staging", f"/plans/{plan_id}", "/approvals", "/audit"], opts.calls)
            rss_after = served_by.memory_info().rss / MB
        result: dict[str, Any] = {"machine": machine_line(), "services": opts.services, "calls": opts.calls,
                                  "mode": "in the daemon" if opts.in_daemon else "beside the daemon",
                                  "pages": pages, "daemon_alone_mb": round(daemon_alone, 1),
                                  "rss_started_mb": round(rss_started, 1), "rss_after_mb": round(rss_after, 1)}
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        ws.close()
    if opts.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['machine']}; {opts.services} services live")
    print(f"console {result['mode']}: RSS {result['rss_started_mb']} MB once serving, {result['rss_after_mb']} MB "
          f"after the run (the daemon freshly started without it, idle: {result['daemon_alone_mb']} MB)")
    print(f"{'page':<28}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'bytes':>9}")
    for path, row in pages.items():
        print(f"{path:<28}{row['p50_ms']:>9}{row['p95_ms']:>9}{row['max_ms']:>9}{row['bytes']:>9}")


if __name__ == "__main__":
    main()
