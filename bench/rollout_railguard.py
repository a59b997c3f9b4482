"""Failed requests during a Railguard rollout and warm rollback, beside PM2 and supervisord.

Why it exists: bench/rollout_peers.py measured what clients see while PM2 and supervisord restart
the notes example; Railguard claims its blue-green rollouts are not noticed. This script adds
Railguard as one more peer of that same harness (same LoadGen, same timeline: 3 s load, redeploy,
wait healthy, 1 s, redeploy, 3 s), so one command prints one table with baseline, railguard, pm2
and supervisord rows, for each load mode (new connection per request, and keep-alive).

Railguard's scenario: copy examples/notes into the run folder, point its staging edge at a fixed
loopback port, `railguard deploy` v1 (not under load); then under load through the edge:
redeploy 1 = set APP_VERSION "2" and `railguard deploy --env staging --yes --json` (new replicas
beside the old, gate, edge switch, drain, old kept warm), redeploy 2 = `railguard rollback` (to v1,
still warm). During each, the edge is also polled (fresh connections, 1 ms apart, not counted in
the load) until it answers with the new version, to report issue -> traffic-moved time.

Usage: .venv/bin/python bench/rollout_railguard.py [--modes close,keepalive] [--only baseline,railguard,pm2,
       supervisor] [--rate 250] [--json] [--no-install]
Everything is loopback; every peer is torn down in `finally` (Railguard: `daemon stop --everything`, then a
psutil sweep of processes mentioning its folder). Bounded: ~2 min for both modes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rollout_peers as rp
from rgbench import CliRun, Workspace, free_port, machine_line, wait_version
from rollout_peers import Peer, PeerRun, Skip

rp.PORTS["railguard"] = 18183
DEADLINE_PER_MODE_S = 100.0


class Railguard(Peer):
    tool, action = "railguard", "deploy v2, rollback (warm)"

    def __init__(self, env: dict[str, str], port: int, workdir: Path, allow_install: bool) -> None:
        super().__init__(env, port, workdir, allow_install)
        self.ws: Workspace | None = None
        self.moves: list[str] = []
        self.timings: list[dict[str, object]] = []

    def setup(self) -> None:
        self.ws = Workspace.create(edge_port=self.port, parent=self.workdir, tag=self.env.get("RG_BENCH_RUN", ""))
        first = self.ws.cli("deploy", "--env", "staging", "--yes", "--json")
        if first.returncode != 0:
            raise Skip(f"railguard deploy v1 failed: {(first.stderr or str(first.payload))[-300:]}")

    def pid(self) -> int | None:
        pids = self.ws.live_pids() if self.ws else []
        return pids[0] if pids else None

    def redeploy(self, version: str) -> subprocess.CompletedProcess[str] | None:
        assert self.ws is not None
        if version == "2":
            self.ws.set_version("2")
            args = ["deploy", "--env", "staging", "--yes", "--json"]
        else:
            args = ["rollback", "--env", "staging", "--json"]
        seen: list[float] = []
        wall0, t0 = time.time(), time.perf_counter()
        proc = self.ws.popen(*args)
        poller = threading.Thread(target=lambda: seen.append(wait_version(self.port, version, 30.0) or -1.0))
        poller.start()
        run: CliRun = self.ws.finish(proc, t0, wall0)
        poller.join(31.0)
        moved = seen[0] - t0 if seen and seen[0] > 0 else None
        ok = bool(run.payload and run.payload.get("ok"))
        self.timings.append(
            {
                "command": " ".join(args[:1]),
                "cli_s": round(run.seconds, 3),
                "traffic_moved_s": None if moved is None else round(moved, 3),
                "ok": ok,
            }
        )
        self.moves.append(
            f"`railguard {args[0]}` → v{version} served at the edge after "
            f"{'-' if moved is None else f'{moved:.2f}'}s, CLI returned after {run.seconds:.2f}s"
            f"{'' if ok else ' (FAILED: ' + json.dumps(run.payload)[-300:] + ')'}"
        )
        return run.completed

    def teardown(self) -> None:
        if self.ws is not None:
            self.ws.close()

    def notes(self) -> list[str]:
        out = list(self.moves)
        if self.ws is not None and self.ws.leftovers:
            out.append(f"LEFTOVER processes killed: {self.ws.leftovers}")
        return out


PEERS: dict[str, type[Peer]] = {
    "baseline": rp.Baseline,
    "railguard": Railguard,
    "pm2": rp.Pm2,
    "supervisor": rp.Supervisor,
}


def run_mode(names: list[str], keepalive: bool, args: argparse.Namespace) -> tuple[list[PeerRun], float]:
    ns = argparse.Namespace(
        rate=args.rate,
        keepalive=keepalive,
        threads=16 if keepalive else 4,
        pre=args.pre,
        post=args.post,
        no_install=args.no_install,
    )
    token = uuid.uuid4().hex
    deadline = time.monotonic() + DEADLINE_PER_MODE_S
    t0 = time.perf_counter()
    runs: list[PeerRun] = []
    try:
        for name in names:
            if time.monotonic() > deadline - 20:
                runs.append(PeerRun(PEERS[name].tool, PEERS[name].action, "skipped", "time budget used up"))
                continue
            print(
                f"… {name} ({'keep-alive' if keepalive else 'new connection per request'})", file=sys.stderr, flush=True
            )
            runs.append(rp.bench_peer(PEERS[name], name, ns, token, deadline))
    finally:
        shutil.rmtree(rp.BENCH_ROOT / f"run-{token[:8]}", ignore_errors=True)
    return runs, time.perf_counter() - t0


def details(runs: list[PeerRun]) -> list[str]:
    lines = []
    for r in runs:
        for d in r.redeploys:
            heal = "-" if d.healthy_after_s is None else f"{d.healthy_after_s:.2f}"
            lines.append(
                f"- {r.tool}: `{d.command}` took {d.seconds:.2f}s (exit {d.returncode}), "
                f"pid {d.pid_before} -> {d.pid_after}, healthy {heal}s after it began"
            )
        lines += [f"- {r.tool}: {n}" for n in r.notes]
        if r.load and r.load.first_failure_s is not None:
            marks = "; ".join(f"{t:.2f}s {label}" for t, label in r.load.marks)
            lines.append(
                f"- {r.tool}: failures between {r.load.first_failure_s:.2f}s and "
                f"{r.load.last_failure_s:.2f}s of load [{marks}]"
            )
        if r.leftovers:
            lines.append(f"- {r.tool}: LEFTOVER processes killed: {r.leftovers}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Railguard vs PM2 vs supervisord: failed requests during redeploys.")
    ap.add_argument("--modes", default="close,keepalive", help="close (new connection per request), keepalive")
    ap.add_argument("--only", default=",".join(PEERS), help=f"comma-separated subset of {','.join(PEERS)}")
    ap.add_argument("--rate", type=float, default=250.0)
    ap.add_argument("--pre", type=float, default=3.0)
    ap.add_argument("--post", type=float, default=3.0)
    ap.add_argument("--no-install", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    for name, port in list(rp.PORTS.items()):  # a fixed port taken by something else: use a free one instead
        if not rp.port_free(port):
            rp.PORTS[name] = free_port()
            print(f"port {port} ({name}) is in use; using {rp.PORTS[name]}", file=sys.stderr)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if any(n not in PEERS for n in names) or any(m not in ("close", "keepalive") for m in modes):
        ap.error("unknown peer or mode")
    results = []
    for mode in modes:
        runs, secs = run_mode(names, mode == "keepalive", args)
        results.append((mode, runs, secs))
    if args.json:
        print(
            json.dumps(
                {
                    "machine": rp.machine(),
                    "modes": [
                        {"mode": m, "total_s": round(s, 1), "runs": [asdict(r) for r in runs]} for m, runs, s in results
                    ],
                },
                indent=2,
            )
        )
    else:
        print(f"Machine: {machine_line()}; load {args.rate:.0f} req/s")
        for mode, runs, secs in results:
            threads = 16 if mode == "keepalive" else 4
            print(
                f"\n### {'Keep-alive' if mode == 'keepalive' else 'New connection per request'} "
                f"({threads} threads, {secs:.0f}s)\n"
            )
            print(rp.table(runs))
            print("\n" + "\n".join(details(runs)))
    bad = any(r.leftovers or r.status == "error" for _, runs, _ in results for r in runs)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
