"""How long after a new replica is ready the readiness gate passes it, and what starting a child costs the daemon.

Why it exists: a deploy's critical path waits for the gate (the app's own start-up plus the gate's lag) and starts
four children (the release command three times with its rehearsal, then the replica). Wall times of whole deploys
swing with the machine's load; these two quantities are measured side by side in the same seconds, so their
difference holds under load.

1. Gate lag: the notes example's app.py is started (with a database migrate.py made); one thread polls its
   /healthz every 1 ms (when it is ready), another runs the readiness gate as a rollout does (healthy_threshold 2).
   The lag is gate pass minus first healthy answer, with the gate's polling of a refusing port on (now) and off
   (``refused_window=0``: the doubling wait alone, as before), alternating.
2. Child start: ``sandbox.popen`` (namespace made by a thread, vfork) against ``subprocess.Popen`` with a
   ``preexec_fn`` (fork), from a process holding ``--heap-mb`` of Python objects (a daemon is 60-200 MB).

Usage: .venv/bin/python bench/gate_lag.py [--runs 10] [--heap-mb 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rgbench import EXAMPLE, free_port, machine_line

from railguard.providers.local import sandbox
from railguard.providers.local.health import check_http, readiness_gate


def gate_lag(fast: bool, data: Path) -> tuple[float, float]:
    """(app exec -> first healthy answer, gate pass - first healthy answer), seconds."""
    port = free_port()
    env = {**os.environ, "PORT": str(port), "RAILGUARD_DATA_DIR": str(data)}
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=EXAMPLE, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    first: list[float] = []

    def poll() -> None:
        while time.monotonic() - t0 < 30:
            if check_http(port, "/healthz", 1.0).ok:
                first.append(time.monotonic())
                return
            time.sleep(0.001)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        result = readiness_gate(lambda: check_http(port, "/healthz", 1.0), interval=0.05, healthy_threshold=2,
                                deadline=t0 + 30, still_running=lambda: proc.poll() is None,
                                refused_window=3.0 if fast else 0.0)
        passed = time.monotonic()
        poller.join()
        assert result.passed and first, result.reason
        return first[0] - t0, passed - first[0]
    finally:
        proc.terminate()
        proc.wait()


def child_start(heap_mb: int, runs: int) -> dict[str, float]:
    heap = [bytearray(1000) for _ in range(heap_mb * 1000)]
    folder = tempfile.mkdtemp(prefix="rg-gatelag-")
    out: dict[str, list[float]] = {"sandbox.popen (vfork)": [], "Popen + preexec_fn (fork)": []}
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = sandbox.popen(["/bin/true"], (folder,), start_new_session=True, stdin=subprocess.DEVNULL)
        out["sandbox.popen (vfork)"].append(time.perf_counter() - t0)
        proc.wait()
        t0 = time.perf_counter()
        proc = subprocess.Popen(["/bin/true"], start_new_session=True, stdin=subprocess.DEVNULL,
                                preexec_fn=lambda: None)
        out["Popen + preexec_fn (fork)"].append(time.perf_counter() - t0)
        proc.wait()
    del heap
    os.rmdir(folder)
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--heap-mb", type=int, default=100)
    args = ap.parse_args()
    print(f"Machine: {machine_line()}; load {os.getloadavg()[0]:.1f}; namespaces: {sandbox.available()}")
    with tempfile.TemporaryDirectory(prefix="rg-gatelag-") as tmp:
        data = Path(tmp)
        subprocess.run([sys.executable, "migrate.py"], cwd=EXAMPLE, env={**os.environ, "RAILGUARD_DATA_DIR": tmp},
                       check=True, capture_output=True)
        lags: dict[bool, list[float]] = {True: [], False: []}
        ready: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.runs):
            for fast in (False, True):
                up, lag = gate_lag(fast, data)
                ready[fast].append(up)
                lags[fast].append(lag)
    for fast, label in ((False, "doubling wait only (before)"), (True, "5 ms while refused (now)")):
        values = sorted(lags[fast])
        # The app's own start-up per mode too: close polling must not slow the app it waits for.
        print(f"{label}: app exec -> first healthy answer median {statistics.median(ready[fast]) * 1000:.0f} ms; "
              f"gate lag after it median {statistics.median(values) * 1000:.1f} ms, min {values[0] * 1000:.1f}, "
              f"max {values[-1] * 1000:.1f} (n={len(values)})")
    for label, seconds in child_start(args.heap_mb, max(args.runs, 10)).items():
        print(f"child start with a {args.heap_mb} MB heap, {label}: median {seconds * 1000:.2f} ms")
    print(f"load after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
