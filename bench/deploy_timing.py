"""Deploy overhead and warm-rollback time of Railguard, split by step.

Why it exists: the target is that Railguard adds < 1.0 s to a deploy beyond the app's own start-up,
and that a rollback to a warm release moves traffic in < 1.0 s. "Added" is measured from the client
side, not from Railguard's own log: the time from issuing `railguard deploy` to the first response
of the new version at the edge (polled on fresh connections, 1 ms apart), minus the app's own time
from exec to its first healthy /healthz (measured here by starting `python app.py` directly, after
migrate.py, with PORT and RAILGUARD_DATA_DIR set). The operation journal's timestamps then say
where Railguard's part went: CLI start + plan + submit (before the first journal entry), build,
snapshot and rehearse (the data guard: a copy of the databases, and the release command run twice on
another copy), release-command (the app's migrate.py), start, gate (includes the app's start-up), switch
(edge config), and drain and the CLI's own return (after traffic moved, so not in the overhead).

Scenario (no load): deploy v1 (cold: also starts the daemon and Caddy), then `--cycles` times:
deploy v(k+1) (new replicas), rollback (to v1, still warm). Loopback only; a temp copy of
examples/notes; `railguard daemon stop --everything` and a psutil sweep in `finally`. ~15 s.

With --isolation on|off (default: whatever the machine gives) the same run is made with workload isolation
forced off (RAILGUARD_ISOLATION=off) or with a workspace other users can traverse, so a root daemon runs each
environment as its own user; compare the two for the cost of isolation (target: <= 50 ms per deploy). Isolation
also needs a Python other users can run: run the bench with such an interpreter (and its `railguard` script).

Usage: .venv/bin/python bench/deploy_timing.py [--cycles 3] [--isolation on|off] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rgbench import RG, Workspace, app_ready_time, journal_time, machine_line, median, wait_version

STEPS = ["build", "snapshot", "rehearse", "release-command", "start", "gate", "switch", "drain"]


@dataclass
class Timed:
    op: str  # e.g. "deploy v2"
    version: str
    cli_s: float
    traffic_s: float | None  # issue -> first answer of the new version at the edge
    pre_s: float | None  # issue -> first journal entry (CLI start, plan through the daemon, submit, queue)
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds, from the journal
    op_s: float | None = None  # first -> last journal entry
    seen_after_switch_s: float | None = None  # switch end (journal) -> first new answer (client)
    ok: bool = True


def split(journal: list[dict[str, Any]]) -> tuple[dict[str, float], float | None, float | None, float | None]:
    """Step durations, first entry, switch end and last entry (epoch s) of one operation's journal."""
    begins: dict[str, float] = {}
    steps: dict[str, float] = {}
    switch_end = None
    for entry in journal:
        name = entry["step"].rsplit(": ", 1)[-1] if ": " in entry["step"] else None
        at = journal_time(entry["at"])
        if name is None:
            continue
        if entry["phase"] == "begin":
            begins[name] = at
        elif entry["phase"] == "end" and name in begins:
            steps[name] = steps.get(name, 0.0) + at - begins.pop(name)
            if name == "switch":
                switch_end = at
    first = journal_time(journal[0]["at"]) if journal else None
    last = journal_time(journal[-1]["at"]) if journal else None
    return steps, first, switch_end, last


def timed(ws: Workspace, op: str, version: str, args: list[str]) -> Timed:
    wall0, t0 = time.time(), time.perf_counter()
    proc = ws.popen(*args)
    seen = wait_version(ws.edge_port, version, timeout=60.0)
    run = ws.finish(proc, t0, wall0)
    ok = run.returncode == 0 and bool(run.payload and run.payload.get("ok"))
    journal = (run.payload or {}).get("operation", {}).get("journal", []) if run.payload else []
    steps, first, switch_end, last = split(journal)
    traffic = None if seen is None else seen - t0
    return Timed(
        op=op,
        version=version,
        cli_s=run.seconds,
        traffic_s=traffic,
        pre_s=None if first is None else first - wall0,
        steps=steps,
        op_s=None if first is None or last is None else last - first,
        seen_after_switch_s=None if switch_end is None or traffic is None else wall0 + traffic - switch_end,
        ok=ok,
    )


def measure(cycles: int) -> dict[str, Any]:
    versions = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([RG, "--version"], capture_output=True, check=True)
        versions.append(time.perf_counter() - t0)
    ready = app_ready_time(runs=5)
    runs: list[Timed] = []
    plans: list[float] = []
    leftovers: list[str] = []
    isolation = "unknown"
    ws = Workspace.create()
    if os.environ.get("RAILGUARD_ISOLATION") != "off":  # let an environment user reach its artifact
        for folder in (ws.tmp, ws.root):
            folder.chmod(0o755)
    try:
        runs.append(
            timed(ws, "deploy v1 (cold: starts daemon + Caddy)", "1", ["deploy", "--env", "staging", "--yes", "--json"])
        )
        for _ in range(3):  # CLI start + a no-change plan through the (running) daemon
            plans.append(ws.must("plan", "--env", "staging", "--json").seconds)
        for k in range(2, 2 + cycles):
            ws.set_version(str(k))
            runs.append(timed(ws, f"deploy v{k}", str(k), ["deploy", "--env", "staging", "--yes", "--json"]))
            runs.append(timed(ws, f"rollback v{k}→v1 (warm)", "1", ["rollback", "--env", "staging", "--json"]))
        isolation = ws.status()["isolation"]
    finally:
        ws.close()
        leftovers = ws.leftovers
    return {
        "cli_version_s": versions,
        "app_ready_s": ready,
        "plan_cli_s": plans,
        "runs": [asdict(r) for r in runs],
        "leftovers": leftovers,
        "isolation": isolation,
    }


def _f(v: float | None, ms: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v * 1000:.0f}" if ms else f"{v:.3f}"


def report(data: dict[str, Any]) -> str:
    ready = median(data["app_ready_s"]) or 0.0
    cli = median(data["cli_version_s"]) or 0.0
    lines = [
        f"Machine: {machine_line()}; isolation: {data.get('isolation')}",
        f"`railguard --version` (CLI start-up): median {cli * 1000:.0f} ms of {len(data['cli_version_s'])}; "
        f"app exec → first healthy /healthz: median {ready * 1000:.0f} ms "
        f"(min {min(data['app_ready_s']) * 1000:.0f}, max {max(data['app_ready_s']) * 1000:.0f}, "
        f"n={len(data['app_ready_s'])}); `railguard plan --json` with no changes (CLI + plan through the "
        f"daemon): median {(median(data['plan_cli_s']) or 0) * 1000:.0f} ms",
        "",
        "| operation | → new version at edge ms | overhead ms (minus app start) | CLI returns ms | "
        "CLI+plan+submit ms | build | snapshot | rehearse | release-cmd | start | gate | switch | switch→seen "
        "| drain |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in data["runs"]:
        starts_app = "start" in r["steps"]
        over = None if r["traffic_s"] is None else r["traffic_s"] - (ready if starts_app else 0.0)
        cells = [_f(r["steps"].get(s), ms=True) for s in STEPS]
        lines.append(
            f"| {r['op']}{'' if r['ok'] else ' (FAILED)'} | {_f(r['traffic_s'], True)} | {_f(over, True)} "
            f"| {_f(r['cli_s'], True)} | {_f(r['pre_s'], True)} | {' | '.join(cells[:-1])} "
            f"| {_f(r['seen_after_switch_s'], True)} | {cells[-1]} |"
        )
    deploys = [r for r in data["runs"] if r["op"].startswith("deploy v") and "cold" not in r["op"]]
    rollbacks = [r for r in data["runs"] if r["op"].startswith("rollback")]
    if deploys:
        over = [r["traffic_s"] - ready for r in deploys if r["traffic_s"] is not None]
        lines.append(
            f"\nDeploy overhead (warm daemon): median {median(over) * 1000:.0f} ms, "  # type: ignore[operator]
            f"max {max(over) * 1000:.0f} ms (target: median ≤ 300 ms, issue 14)"
        )
    if rollbacks:
        rb = [r["traffic_s"] for r in rollbacks if r["traffic_s"] is not None]
        lines.append(
            f"Warm rollback → traffic: median {median(rb) * 1000:.0f} ms, "  # type: ignore[operator]
            f"max {max(rb) * 1000:.0f} ms (target: median ≤ 150 ms, issue 14)"
        )
    if data["leftovers"]:
        lines.append(f"LEFTOVER processes killed: {data['leftovers']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Railguard deploy overhead and warm rollback time.")
    ap.add_argument("--cycles", type=int, default=3, help="deploy+rollback cycles after the first deploy")
    ap.add_argument("--isolation", choices=["on", "off"], help="force workload isolation off, or allow it")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.isolation:
        os.environ["RAILGUARD_ISOLATION"] = "off" if args.isolation == "off" else "auto"
    data = measure(max(1, min(args.cycles, 10)))
    print(json.dumps(data, indent=2) if args.json else report(data))
    return 1 if data["leftovers"] or not all(r["ok"] for r in data["runs"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
