"""Latency the Caddy edge adds in front of a replica: same requests, through the edge vs direct.

Why it exists: every request to a Railguard app goes through the embedded Caddy edge (that is what
makes blue-green switches and instant rollbacks possible); this measures what that hop costs. It
deploys the notes example with one replica, reads the replica's port from
`railguard status --json`, then sends sequential GET / requests over one keep-alive connection each
way (default 2000 each, after 200 warm-up each), interleaved in blocks of 100 so drift on a shared
machine hits both sides alike. A smaller run on new connections (one per request, as the rollout
benchmark's default load does) is reported too. Loopback only; torn down in `finally`. ~15 s.

Usage: .venv/bin/python bench/edge_overhead.py [--requests 2000] [--new-conn 500] [--json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rgbench import Workspace, machine_line, pct

BLOCK = 100


class Side:
    """One target (edge or direct) with a persistent connection and its latency samples (ms)."""

    def __init__(self, name: str, port: int, keepalive: bool) -> None:
        self.name, self.port, self.keepalive = name, port, keepalive
        self.conn: http.client.HTTPConnection | None = None
        self.samples: list[float] = []
        self.errors = 0

    def one(self, record: bool = True) -> None:
        t0 = time.perf_counter()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2.0)
            self.conn.request("GET", "/", headers={} if self.keepalive else {"Connection": "close"})
            resp = self.conn.getresponse()
            resp.read()
            ok = resp.status == 200
            if not self.keepalive or resp.will_close:
                self.conn.close()
                self.conn = None
        except (OSError, http.client.HTTPException):
            ok = False
            if self.conn is not None:
                self.conn.close()
                self.conn = None
        dt = (time.perf_counter() - t0) * 1000.0
        if not ok:
            self.errors += 1
        elif record:
            self.samples.append(dt)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def stats(self) -> dict[str, Any]:
        s = self.samples
        return {
            "side": self.name,
            "n": len(s),
            "errors": self.errors,
            "p50_ms": pct(s, 0.5),
            "p90_ms": pct(s, 0.9),
            "p99_ms": pct(s, 0.99),
            "mean_ms": sum(s) / len(s) if s else None,
            "max_ms": max(s) if s else None,
        }


def compare(edge_port: int, replica_port: int, n: int, keepalive: bool, warmup: int) -> list[dict[str, Any]]:
    edge, direct = Side("edge (Caddy)", edge_port, keepalive), Side("direct (replica)", replica_port, keepalive)
    try:
        for _ in range(warmup):
            edge.one(record=False)
            direct.one(record=False)
        done = 0
        while done < n:
            k = min(BLOCK, n - done)
            for side in (edge, direct) if (done // BLOCK) % 2 == 0 else (direct, edge):
                for _ in range(k):
                    side.one()
            done += k
    finally:
        edge.close()
        direct.close()
    return [edge.stats(), direct.stats()]


def measure(n: int, new_conn: int) -> dict[str, Any]:
    ws = Workspace.create()
    try:
        ws.must("deploy", "--env", "staging", "--yes", "--json")
        replicas = ws.status()["services"][0]["replicas"]
        port = int(replicas[0]["port"])
        out = {
            "replica_port": port,
            "edge_port": ws.edge_port,
            "loadavg_before": os.getloadavg()[0],
            "keepalive": compare(ws.edge_port, port, n, True, 200),
        }
        if new_conn:
            out["new_connection"] = compare(ws.edge_port, port, new_conn, False, 50)
        return out
    finally:
        ws.close()
        if ws.leftovers:
            print(f"LEFTOVER processes killed: {ws.leftovers}", file=sys.stderr)


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def report(data: dict[str, Any]) -> str:
    lines = [
        f"Machine: {machine_line()}; load average before: {data['loadavg_before']:.2f}",
        "",
        "| connection | path | requests | errors | p50 ms | p90 ms | p99 ms | mean ms | max ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, label in (("keepalive", "keep-alive"), ("new_connection", "new per request")):
        rows = data.get(key)
        if not rows:
            continue
        for r in rows:
            lines.append(
                f"| {label} | {r['side']} | {r['n']} | {r['errors']} | {_f(r['p50_ms'])} | "
                f"{_f(r['p90_ms'])} | {_f(r['p99_ms'])} | {_f(r['mean_ms'])} | {_f(r['max_ms'])} |"
            )
        e, d = rows
        if e["p50_ms"] is not None and d["p50_ms"] is not None:
            lines.append(
                f"| {label} | **added by the edge** | | | **{e['p50_ms'] - d['p50_ms']:+.3f}** | "
                f"{e['p90_ms'] - d['p90_ms']:+.3f} | **{e['p99_ms'] - d['p99_ms']:+.3f}** | "
                f"{e['mean_ms'] - d['mean_ms']:+.3f} | |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Latency added by Railguard's Caddy edge.")
    ap.add_argument("--requests", type=int, default=2000, help="keep-alive requests each way (default 2000)")
    ap.add_argument("--new-conn", type=int, default=500, help="new-connection requests each way (0: skip)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    data = measure(max(100, min(args.requests, 20000)), max(0, min(args.new_conn, 5000)))
    print(json.dumps(data, indent=2) if args.json else report(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
