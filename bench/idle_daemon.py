"""What the Railguard daemon costs while nothing happens: CPU and memory with 20 replicas supervised.

Why it exists: the daemon stays up for as long as apps run (it supervises replicas, health-checks
them, expires warm releases), so its idle cost is paid all day; the targets are < 1% of one CPU and
< 150 MB RSS with 20 replicas. This deploys the notes example with `replicas = 20` for web, waits
until `railguard status --json` reports all 20 healthy, lets it settle, then samples the daemon
process (pid from .railguard/daemon.pid) once a second for ~20 s with psutil: CPU% per sample, the
average over the whole window (from CPU-time deltas), RSS. Caddy's (the edge) CPU and RSS and the
replicas' total RSS are reported beside it, and how fast daemon.log grows. No client traffic is sent
during the window. `--health-interval 60s` (checks almost never run) separates the cost of the
periodic health checks from the rest of the idle loop. Loopback only; `railguard daemon stop --everything`
and a psutil sweep in `finally`. ~45 s.

Usage: .venv/bin/python bench/idle_daemon.py [--replicas 20] [--seconds 20] [--health-interval 5s] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rgbench import Workspace, machine_line

MB = 1024 * 1024


def cpu_s(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def sample(procs: dict[str, psutil.Process], replicas: list[psutil.Process], seconds: float) -> dict[str, Any]:
    for p in procs.values():
        p.cpu_percent(None)  # prime
    start_cpu = {k: cpu_s(p) for k, p in procs.items()}
    t0 = time.perf_counter()
    series: dict[str, dict[str, list[float]]] = {k: {"cpu": [], "rss": []} for k in procs}
    replica_rss: list[float] = []
    while time.perf_counter() - t0 < seconds:
        time.sleep(1.0)
        for k, p in procs.items():
            series[k]["cpu"].append(p.cpu_percent(None))
            series[k]["rss"].append(p.memory_info().rss / MB)
        total = 0.0
        for r in replicas:
            try:
                total += r.memory_info().rss / MB
            except psutil.Error:
                pass
        replica_rss.append(total)
    elapsed = time.perf_counter() - t0
    out: dict[str, Any] = {"seconds": round(elapsed, 1), "samples": len(replica_rss)}
    for k, p in procs.items():
        s = series[k]
        out[k] = {
            "pid": p.pid,
            "cpu_avg_pct": round(100.0 * (cpu_s(p) - start_cpu[k]) / elapsed, 2),
            "cpu_max_sample_pct": round(max(s["cpu"]), 1),
            "rss_avg_mb": round(sum(s["rss"]) / len(s["rss"]), 1),
            "rss_max_mb": round(max(s["rss"]), 1),
            "threads": p.num_threads(),
        }
    out["replicas_rss_total_mb"] = round(max(replica_rss), 1)
    return out


def measure(n: int, seconds: float, health_interval: str | None = None) -> dict[str, Any]:
    ws = Workspace.create()
    try:
        ws.set_replicas(n)
        if health_interval:
            ws.edit(lambda t: t.replace('interval = "1s"', f'interval = "{health_interval}"', 1))
        t0 = time.perf_counter()
        ws.must("deploy", "--env", "staging", "--yes", "--json", timeout=180)
        deploy_s = time.perf_counter() - t0
        deadline = time.monotonic() + 60
        while True:
            svc = ws.status()["services"][0]
            healthy = sum(1 for r in svc["replicas"] if r["health"] == "healthy")
            if healthy == n or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        healthy_s = time.perf_counter() - t0
        if healthy != n:
            raise RuntimeError(f"only {healthy}/{n} replicas healthy after 60 s")
        time.sleep(2.0)  # let the status call's work and the deploy's leftovers settle
        dpid, cpid = ws.daemon_pid(), ws.caddy_pid()
        if dpid is None or cpid is None:
            raise RuntimeError("daemon or caddy pid not found")
        replicas = [psutil.Process(p) for p in ws.live_pids()]
        log = ws.home / "daemon.log"
        size0 = log.stat().st_size if log.exists() else 0
        result = sample({"daemon": psutil.Process(dpid), "caddy": psutil.Process(cpid)}, replicas, seconds)
        grew = (log.stat().st_size if log.exists() else 0) - size0
        result.update(
            {
                "replicas": n,
                "healthy": healthy,
                "deploy_s": round(deploy_s, 2),
                "all_healthy_s": round(healthy_s, 2),
                "loadavg_before": os.getloadavg()[0],
                "health_interval": health_interval or "1s (as in examples/notes)",
                "daemon_log_bytes_per_s": round(grew / result["seconds"], 1),
            }
        )
        return result
    finally:
        t = time.perf_counter()
        ws.close()
        print(f"teardown (daemon stop --everything + sweep): {time.perf_counter() - t:.1f}s", file=sys.stderr)
        if ws.leftovers:
            print(f"LEFTOVER processes killed: {ws.leftovers}", file=sys.stderr)


def report(d: dict[str, Any]) -> str:
    dm, cd = d["daemon"], d["caddy"]
    return "\n".join(
        [
            f"Machine: {machine_line()}; load average before sampling: {d['loadavg_before']:.2f}",
            f"{d['replicas']} replicas: deploy returned after {d['deploy_s']:.1f}s, all healthy in status after "
            f"{d['all_healthy_s']:.1f}s; health interval {d['health_interval']}; sampled {d['samples']}x over "
            f"{d['seconds']}s, no traffic; daemon.log grew {d['daemon_log_bytes_per_s']:.0f} B/s",
            "",
            "| process | CPU avg % | CPU max 1-s sample % | RSS avg MB | RSS max MB | threads |",
            "|---|---:|---:|---:|---:|---:|",
            f"| railguard daemon | {dm['cpu_avg_pct']:.2f} | {dm['cpu_max_sample_pct']:.1f} | {dm['rss_avg_mb']:.1f} "
            f"| {dm['rss_max_mb']:.1f} | {dm['threads']} |",
            f"| caddy (edge) | {cd['cpu_avg_pct']:.2f} | {cd['cpu_max_sample_pct']:.1f} | {cd['rss_avg_mb']:.1f} "
            f"| {cd['rss_max_mb']:.1f} | {cd['threads']} |",
            f"| {d['replicas']} replicas (total, for scale) | | | | {d['replicas_rss_total_mb']:.1f} | |",
            "",
            f"Targets: daemon < 1% CPU ({'met' if dm['cpu_avg_pct'] < 1 else 'NOT met'}: {dm['cpu_avg_pct']:.2f}%), "
            f"< 150 MB RSS ({'met' if dm['rss_max_mb'] < 150 else 'NOT met'}: {dm['rss_max_mb']:.1f} MB)",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Idle CPU and RSS of the Railguard daemon with N replicas.")
    ap.add_argument("--replicas", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument(
        "--health-interval",
        default=None,
        help='override the example\'s health interval ("1s"), e.g. "5s" (the spec default) or "60s"',
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    data = measure(max(1, min(args.replicas, 100)), max(3.0, min(args.seconds, 120.0)), args.health_interval)
    print(json.dumps(data, indent=2) if args.json else report(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
