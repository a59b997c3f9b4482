"""How often one `railguard deploy` parses the spec and snapshots the app source, and how long it takes.

Why it exists: issue 9 found that one deploy parsed the spec four times and snapshotted (hashed) the
source tree three times, because the CLI, the daemon's plan call and its apply call each gathered the
same facts again. This script counts those steps per command with the debug counters
(`RAILGUARD_DEBUG_COUNTS=<file>`: every spec parse and source snapshot appends "<pid> <name>" to the
file; see src/railguard/model/counters.py), split by process (the CLI, the daemon), and times the
whole command: wall time, and the CPU time of the CLI plus the daemon (with the children it waited
for), which a busy shared machine disturbs much less than the wall time.

Scenario, on a temp copy of examples/notes with its own state folder and a free edge port:
a cold deploy (also starts the daemon and Caddy), then `--runs` times: change the app (a comment
appended to app.py, so the source digest moves) and the spec (APP_VERSION), deploy; deploy again
unchanged (a no-op plan, nothing applied); `status`. Ends with `railguard daemon stop --everything`
and a psutil sweep (bench/rgbench.py).

`--pad-files N --pad-kb K` adds N files of K KiB of random bytes to the app (assets/), so the cost of
hashing a real app's tree shows in the times (examples/notes alone is two small files).

`--tree-only` measures just the source digest in-process on the same (padded) tree: hashed (a cache
miss: list, stat, hash) against cached (a hit: list and stat only), median of 7 each.

`--src DIR` runs another checkout's code (PYTHONPATH=DIR, inherited by the daemon), for a
before/after comparison from the same venv.

Usage: .venv/bin/python bench/deploy_counts.py [--runs 5] [--pad-files 0 --pad-kb 64] [--src DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import psutil
from rgbench import Workspace, machine_line

NAMES = ("spec-parse", "source-snapshot", "source-hash")


def _cpu(pid: int | None) -> float:
    """CPU seconds of a process and its waited-for children (the daemon's builds and release commands)."""
    if pid is None:
        return 0.0
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system + t.children_user + t.children_system)


def counted(ws: Workspace, log: Path, *args: str) -> tuple[float, float, dict[str, Counter[str]]]:
    """Run one CLI command; return its wall time, the CPU time of CLI + daemon, and the counts per process."""
    log.write_text("")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    daemon_cpu = _cpu(ws.daemon_pid())
    t0, wall0 = time.perf_counter(), time.time()
    proc = ws.popen(*args)
    run = ws.finish(proc, t0, wall0)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) + _cpu(ws.daemon_pid()) - daemon_cpu
    if run.returncode != 0:
        raise RuntimeError(f"railguard {' '.join(args)} failed (exit {run.returncode}): "
                           f"{(run.completed.stdout if run.completed else '')[-600:]} {run.stderr[-600:]}")
    daemon = ws.daemon_pid()
    by: dict[str, Counter[str]] = {"cli": Counter(), "daemon": Counter()}
    for line in log.read_text().splitlines():
        pid, name = line.split(" ", 1)
        who = "cli" if int(pid) == proc.pid else "daemon" if int(pid) == daemon else "other"
        by.setdefault(who, Counter())[name] += 1
    return run.seconds, cpu, by


def summary(rows: list[tuple[float, float, dict[str, Counter[str]]]]) -> dict[str, Any]:
    """Median wall and CPU time; counts per process and name (the same in every run, else min-max)."""
    out: dict[str, Any] = {"median_s": round(statistics.median(t for t, _, _ in rows), 3),
                           "median_cpu_s": round(statistics.median(c for _, c, _ in rows), 3), "runs": len(rows)}
    for who in sorted({w for _, _, by in rows for w in by}):
        for name in NAMES:
            values = [by.get(who, Counter())[name] for _, _, by in rows]
            lo, hi = min(values), max(values)
            out[f"{who}.{name}"] = str(lo) if lo == hi else f"{lo}-{hi}"
    return out


def tree(root: Path) -> None:
    """The source digest on its own: a cache miss (hashing) against a hit (listing and stat only)."""
    from railguard.sources.snapshot import SnapshotCache

    def timed(cache_for_each: bool) -> float:
        shared = SnapshotCache(clock=lambda: time.time_ns() + 10**10)  # the fresh tree counts as settled
        runs = []
        for _ in range(7):
            cache = SnapshotCache(clock=lambda: time.time_ns() + 10**10) if cache_for_each else shared
            if not cache_for_each:
                cache.digest(root)  # warm
            t0 = time.perf_counter()
            cache.digest(root)
            runs.append(time.perf_counter() - t0)
        return statistics.median(runs)

    files = sum(1 for _ in root.rglob("*") if _.is_file())
    print(f"# {machine_line()}; tree: {files} files")
    print(f"source digest, hashed: {timed(True) * 1000:.1f} ms; cached (list + stat): {timed(False) * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--src", type=Path, help="run this checkout's src/ instead of the installed one")
    parser.add_argument("--pad-files", type=int, default=0)
    parser.add_argument("--pad-kb", type=int, default=64)
    parser.add_argument("--tree-only", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    log = Path(tempfile.mkstemp(prefix="rg-counts-", suffix=".log")[1])
    os.environ["RAILGUARD_DEBUG_COUNTS"] = str(log)
    if args.src is not None:
        os.environ["PYTHONPATH"] = str(args.src.resolve())
    results: dict[str, list[tuple[float, float, dict[str, Counter[str]]]]] = {
        "cold deploy": [], "deploy after a change": [], "deploy, unchanged": [], "status, unchanged": []}
    ws = Workspace.create(tag="deploy-counts")
    try:
        if args.pad_files:
            (ws.root / "assets").mkdir()
            for i in range(args.pad_files):
                (ws.root / "assets" / f"blob{i:05}.bin").write_bytes(os.urandom(args.pad_kb * 1024))
        if args.tree_only:
            tree(ws.root)
            return
        deploy = ("deploy", "--env", "staging", "--yes", "--json")
        results["cold deploy"].append(counted(ws, log, *deploy))
        for i in range(args.runs):
            app = ws.root / "app.py"
            app.write_text(app.read_text() + f"# change {i}\n")
            ws.set_version(str(i + 2))
            results["deploy after a change"].append(counted(ws, log, *deploy))
            results["deploy, unchanged"].append(counted(ws, log, *deploy))
            results["status, unchanged"].append(counted(ws, log, "status", "--env", "staging", "--json"))
    finally:
        ws.close()
        log.unlink(missing_ok=True)
    report = {"machine": machine_line(), "src": str(args.src or "installed"),
              "pad": f"{args.pad_files} x {args.pad_kb} KiB",
              "results": {k: summary(v) for k, v in results.items()}, "leftovers": ws.leftovers}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"# {report['machine']}; code: {report['src']}; padding: {report['pad']}")
    for what, row in report["results"].items():
        counts = ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("median_s", "median_cpu_s", "runs"))
        print(f"{what:<22} median {row['median_s']:.3f} s (CPU {row['median_cpu_s']:.3f} s) over {row['runs']}  "
              f"{counts}")
    if ws.leftovers:
        print("LEFTOVER processes (killed):", *ws.leftovers, sep="\n  ")


if __name__ == "__main__":
    main()
