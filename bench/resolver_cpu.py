"""CPU of the edge's upstream resolver, Caddy and the daemon under steady load through one route.

Why it exists: Caddy looks a busy route's upstreams up again once its cached answer is older than the refresh
interval (``edgeconfig.REFRESH_S``), lazily, on the next request; a shorter interval makes a switch visible
sooner and costs lookups. This measures that cost: the notes example deployed to a temp workspace, then
LoadGen at ``--rate`` req/s through the edge for ``--seconds``, once with a new connection per request and once
with keep-alive clients, and the CPU time (user + system, psutil) each process spent per second of load, plus
the load's failed requests (expected 0: nothing is switched here).

A/B: run it with the other tree's ``src`` first on PYTHONPATH (the daemon inherits it), alternating, in the same
minutes; CPU times tick at 10 ms, so a second of load resolves ~1 ms/s at 8 s.

Usage: .venv/bin/python bench/resolver_cpu.py [--rate 250] [--seconds 8] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import LoadGen
from rgbench import Workspace, machine_line


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _processes(ws: Workspace) -> dict[str, psutil.Process]:
    found = {"caddy": psutil.Process(ws.caddy_pid()), "daemon": psutil.Process(ws.daemon_pid())}
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if "resolver" in line and "--socket" in line and str(ws.home) in line:
            found["resolver"] = proc
    return found


def measure(rate: float, seconds: float) -> dict[str, dict[str, float]]:
    ws = Workspace.create()
    out: dict[str, dict[str, float]] = {}
    try:
        ws.must("deploy", "--env", "staging", "--yes", "--json")
        procs = _processes(ws)
        for mode in ("close", "keepalive"):
            keepalive = mode == "keepalive"
            gen = LoadGen(f"http://127.0.0.1:{ws.edge_port}/", rate=rate, keepalive=keepalive,
                          threads=16 if keepalive else 4)  # keep-alive threads are closed-loop: see loadgen
            gen.start()
            time.sleep(1.0)  # connections up, caches warm
            before, t0 = {k: _cpu(p) for k, p in procs.items()}, time.perf_counter()
            time.sleep(seconds)
            after, spent = {k: _cpu(p) for k, p in procs.items()}, time.perf_counter() - t0
            result = gen.stop()
            out[mode] = {f"{k}_ms_per_s": round(1000 * (after[k] - before[k]) / spent, 1) for k in procs}
            out[mode] |= {"achieved_rate": round(result.achieved_rate, 1), "failed": result.failed}
    finally:
        ws.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Resolver, Caddy and daemon CPU under steady load through the edge.")
    ap.add_argument("--rate", type=float, default=250.0)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    found = measure(args.rate, args.seconds)
    if args.json:
        print(json.dumps(found))
    else:
        print(f"Machine: {machine_line()}")
        for mode, row in found.items():
            print(f"{mode}: " + ", ".join(f"{k} {v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
