"""CPU time of the hot CLI commands and of the daemon's share of a warm rollback.

Why it exists: on a shared machine the wall times of bench/deploy_timing.py follow the load; CPU time does not
(much). This measures, against a running daemon (a temp copy of examples/notes, deployed twice so a warm
rollback has a target): the user+system CPU of one `railguard` process for `--version`, `deploy --yes --json`
(with no changes, and with a new version), `status --json`, `plan --json` and `rollback --json` (back and forth
between the two newest versions, both warm); and the daemon's mean CPU per warm rollback (its process's CPU over
the rollbacks minus what it spends idle over as long, measured just before). Medians of --runs, with the load
average.

Usage: .venv/bin/python bench/cli_cpu.py [--runs 7]
       (PYTHONPATH=<another checkout>/src measures that code with this venv's interpreter and `railguard` script.)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rgbench import RG, Workspace, machine_line, median


def child_cpu(args: list[str], ws: Workspace) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """(CPU s, wall s, the run) of one CLI process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(args, cwd=ws.root, env=ws.env(), capture_output=True, text=True, timeout=120, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, wall, done


def daemon_cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def measure(runs: int) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    ws = Workspace.create()
    try:
        ws.must("deploy", "--env", "staging", "--yes", "--json")
        ws.set_version("2")
        ws.must("deploy", "--env", "staging", "--yes", "--json")
        daemon = psutil.Process(int(json.loads((ws.home / "daemon.pid").read_text())["pid"]))
        commands = {
            "--version": ["--version"],
            "deploy --yes --json (no changes)": ["deploy", "--env", "staging", "--yes", "--json"],
            "status --json": ["status", "--env", "staging", "--json"],
            "plan --json (no changes)": ["plan", "--env", "staging", "--json"],
        }
        for name, args in commands.items():
            for _ in range(runs):
                cpu, _, done = child_cpu([RG, *args], ws)
                assert done.returncode == 0, (args, done.stdout[-400:], done.stderr[-400:])
                found.setdefault(name, []).append(cpu)
        for i in range(runs):
            ws.set_version(str(3 + i))
            cpu, _, done = child_cpu([RG, "deploy", "--env", "staging", "--yes", "--json"], ws)
            assert done.returncode == 0, done.stdout[-400:]
            found.setdefault("deploy --yes --json (a new version)", []).append(cpu)
        time.sleep(1.0)
        idle0, t0 = daemon_cpu(daemon), time.perf_counter()
        time.sleep(3.0)
        idle_rate = (daemon_cpu(daemon) - idle0) / (time.perf_counter() - t0)
        busy0, t1 = daemon_cpu(daemon), time.perf_counter()
        for _ in range(runs):  # back and forth between the two newest versions, both warm
            cpu, _, done = child_cpu([RG, "rollback", "--env", "staging", "--json"], ws)
            assert done.returncode == 0, done.stdout[-400:]
            found.setdefault("rollback --json (warm)", []).append(cpu)
        spent = daemon_cpu(daemon) - busy0 - idle_rate * (time.perf_counter() - t1)
        found["daemon per warm rollback (mean)"] = [max(0.0, spent) / runs]
    finally:
        ws.close()
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    load = os.getloadavg()
    found = measure(args.runs)
    print(machine_line())
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; after: "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    for name, values in found.items():
        print(f"{name:<36} CPU median {median(values) * 1000:6.0f} ms (min {min(values) * 1000:.0f}, "
              f"max {max(values) * 1000:.0f}, n={len(values)})")


if __name__ == "__main__":
    main()
