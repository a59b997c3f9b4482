"""What storing a plan's source costs: `railguard plan` with and without changes since the previous plan.

Why it exists: issue 16 made every plan store its source snapshot (sources/store.py) so apply deploys
exactly the reviewed content; the target is at most 100 ms added to `plan` when nothing changed. Two
measures, on a temp copy of examples/notes and on the same app padded with `--pad-files` small files
(default 5,000 of 2 KiB in 50 folders):

* in-process, the added work alone: ``Facts.plan_source`` (list + stat the tree, reuse the cached
  hashes, find the stored manifest, store the spec text, ask git) after a warm-up — unchanged, after a
  one-file edit (one new blob), and cold (every blob written: the first plan of an app);
* end to end, `railguard plan --env staging --json` through the daemon (median wall time), unchanged and
  after a one-file edit. With `--src DIR` the same runs use another checkout's code (PYTHONPATH, inherited
  by the daemon), for a before/after comparison.

Usage: .venv/bin/python bench/plan_source.py [--pad-files 5000] [--pad-kb 2] [--runs 7] [--src DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rgbench import RG, Workspace, machine_line


def pad(root: Path, files: int, kb: int) -> None:
    for i in range(files):
        folder = root / "assets" / f"d{i % 50:02}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:05}.txt").write_bytes(os.urandom(kb * 1024))


def in_process(root: Path, runs: int) -> dict[str, float]:
    """Median ms of the capture a plan adds (fresh Facts each run, the process-wide hash cache kept)."""
    from railguard.engine.facts import Facts
    from railguard.engine.workspace import Workspace as RgWorkspace
    from railguard.sources.snapshot import CACHE

    home = root.parent / "bench-state"
    ws = RgWorkspace(root / "railguard.toml", home)

    def once() -> float:
        t0 = time.perf_counter()
        Facts(ws).plan_source()
        return (time.perf_counter() - t0) * 1000

    def digest_only() -> float:  # what a plan did before it stored its source: list, stat, cached digest
        t0 = time.perf_counter()
        Facts(ws).source()
        return (time.perf_counter() - t0) * 1000

    cold = once()  # every blob written
    time.sleep(0.3)  # past one timestamp tick: the hashes may be trusted from now on
    once()
    unchanged, before = [], []
    for _ in range(runs):
        before.append(digest_only())
        unchanged.append(once())
    edited = []
    for i in range(runs):
        app = root / "app.py"
        app.write_text(app.read_text() + f"# bench edit {i}\n")
        time.sleep(0.15)  # a settled edit, as between two plans
        edited.append(once())
    CACHE.clear()
    restart = once()  # a restarted daemon: every file hashed again, no blob written
    added = statistics.median(u - b for u, b in zip(unchanged, before, strict=True))
    return {"cold_ms": round(cold, 1), "digest_only_ms": round(statistics.median(before), 1),
            "unchanged_ms": round(statistics.median(unchanged), 1), "added_unchanged_ms": round(added, 1),
            "one_edit_ms": round(statistics.median(edited), 1), "after_restart_ms": round(restart, 1)}


def end_to_end(ws: Workspace, runs: int) -> dict[str, float]:
    def plan() -> float:
        t0 = time.perf_counter()
        done = subprocess.run([RG, "plan", "--env", "staging", "--json"], cwd=ws.root, env=ws.env(),
                              capture_output=True, text=True, timeout=300, check=False)
        took = time.perf_counter() - t0
        if done.returncode != 0:
            raise RuntimeError(f"plan failed: {done.stdout[-500:]} {done.stderr[-500:]}")
        return took * 1000

    plan()  # starts the daemon and Caddy
    plan()
    unchanged = [plan() for _ in range(runs)]
    edited = []
    for i in range(runs):
        app = ws.root / "app.py"
        app.write_text(app.read_text() + f"# e2e edit {i}\n")
        edited.append(plan())
    return {"unchanged_ms": round(statistics.median(unchanged), 1),
            "one_edit_ms": round(statistics.median(edited), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pad-files", type=int, default=5000)
    parser.add_argument("--pad-kb", type=int, default=2)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--src", type=Path, help="run this checkout's src/ instead of the installed one")
    parser.add_argument("--skip-in-process", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.src is not None:
        os.environ["PYTHONPATH"] = str(args.src.resolve())
    report: dict[str, Any] = {"machine": machine_line(), "load": os.getloadavg()[0],
                              "src": str(args.src or "installed"), "results": {}}
    for label, files in (("examples/notes", 0), (f"notes + {args.pad_files} files", args.pad_files)):
        ws = Workspace.create(tag="plan-source")
        try:
            if files:
                pad(ws.root, files, args.pad_kb)
            row: dict[str, Any] = {}
            if not args.skip_in_process and args.src is None:
                row["capture"] = in_process(ws.root, args.runs)
            row["plan"] = end_to_end(ws, args.runs)
            report["results"][label] = row
        finally:
            ws.close()
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"# {report['machine']}; load {report['load']:.1f}; code: {report['src']}")
    for label, row in report["results"].items():
        print(f"{label}: " + "; ".join(f"{k} " + ", ".join(f"{n}={v}" for n, v in v.items()) for k, v in row.items()))


if __name__ == "__main__":
    main()
