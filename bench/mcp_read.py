"""How fast the MCP server's read tools answer with 200 services live, and what the idle server weighs.

Why it exists: a model calls read tools in a loop (status, logs, diagnose...), so each must answer in
under 100 ms p95 with 200 services in the environment, and the server (one per agent session) must stay
under 100 MB RSS when idle. This deploys a copy of the notes example plus 199 worker services (each a
real `sleep` process: light, so 200 fit on a laptop) to staging with the real CLI, then starts
`railguard mcp` over stdio with the official client library (an `agent` token), measures the server's RSS
before any call, calls every read tool `--calls` times (after 3 warm-up calls each) timing the full
round trip as the client sees it (and the CPU time the server and the daemon spent per call), and measures
the RSS again after a few idle seconds. The daemon, the edge and every process are stopped in `finally`
(bench/rgbench.py sweeps stragglers). ~2-3 min.

Usage: .venv/bin/python bench/mcp_read.py [--services 200] [--calls 50] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import psutil
from mcp import ClientSession, StdioServerParameters, stdio_client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rgbench import Workspace, machine_line, pct

MB = 1024 * 1024
WORKER = '\n[services.w{i:03d}]\nrun = ["sleep", "3600"]\nlisten = false\nstop_timeout = "1s"\n'


def server_process() -> psutil.Process:
    """The `railguard mcp` child the client library started."""
    for child in psutil.Process().children(recursive=True):
        try:
            if "mcp" in child.cmdline() and "railguard" in " ".join(child.cmdline()):
                return child
        except psutil.Error:
            continue
    raise RuntimeError("the MCP server process was not found")


def server_rss() -> float:
    return float(server_process().memory_info().rss / MB)


def cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


async def measure(ws: Workspace, token: str, calls: int, plan_id: str, op_id: str) -> dict[str, Any]:
    env = {**ws.env(), "RAILGUARD_TOKEN": token}
    params = StdioServerParameters(command=sys.executable, args=["-m", "railguard", "mcp", "--spec", str(ws.spec)],
                                   env=env, cwd=str(ws.root))
    reads: list[tuple[str, dict[str, Any]]] = [
        ("whoami", {}), ("get_status", {"env": "staging"}), ("list_releases", {"env": "staging"}),
        ("read_logs", {"env": "staging", "service": "web"}), ("list_events", {"env": "staging"}),
        ("list_operations", {"env": "staging"}), ("get_operation", {"operation_id": op_id, "wait_s": 0}),
        ("list_policies", {"env": "staging"}), ("show_plan", {"plan_id": plan_id}),
        ("approval_status", {"plan_id": plan_id}), ("list_plans", {"env": "staging"}),
        ("diagnose", {"env": "staging", "service": "web"}), ("validate_spec", {}), ("get_spec_schema", {}),
    ]
    out: dict[str, Any] = {"tools": {}}
    with open(os.devnull, "w") as quiet:
        async with stdio_client(params, errlog=quiet) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=120) as session:
                await session.initialize()
                await anyio.sleep(2)
                out["rss_started_mb"] = round(server_rss(), 1)
                await session.list_tools()
                # CPU time of the server and the daemon per call: on a shared machine wall times follow the load,
                # CPU times much less (the daemon's includes its background passes during the calls).
                server, daemon = server_process(), psutil.Process(ws.daemon_pid() or 0)
                for name, args in reads:
                    times = []
                    for i in range(calls + 3):
                        if i == 3:
                            cpu0 = (cpu_s(server), cpu_s(daemon))
                        t0 = time.perf_counter()
                        result = await session.call_tool(name, args)
                        elapsed = (time.perf_counter() - t0) * 1000
                        if result.is_error:
                            raise RuntimeError(f"{name} failed: {result.content}")
                        if i >= 3:
                            times.append(elapsed)
                    size = len(json.dumps(result.structured_content))
                    out["tools"][name] = {"p50_ms": round(pct(times, 0.5) or 0, 1),
                                          "p95_ms": round(pct(times, 0.95) or 0, 1),
                                          "max_ms": round(max(times), 1), "bytes": size,
                                          "server_cpu_ms": round((cpu_s(server) - cpu0[0]) * 1000 / calls, 1),
                                          "daemon_cpu_ms": round((cpu_s(daemon) - cpu0[1]) * 1000 / calls, 1)}
                status = await session.call_tool("get_status", {"env": "staging", "limit": 1})
                out["services_live"] = sum((status.structured_content or {}).get("counts", {}).values())
                await anyio.sleep(3)
                out["rss_idle_after_mb"] = round(server_rss(), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    ws = Workspace.create(tag="mcp-read")
    try:
        ws.edit(lambda text: text + "".join(WORKER.format(i=i) for i in range(1, opts.services)))
        t0 = time.perf_counter()
        deployed = ws.must("deploy", "--env", "staging", "--yes", "--json", timeout=1800)
        deploy_s = time.perf_counter() - t0
        assert deployed.payload is not None
        op_id = deployed.payload["operation"]["id"]
        plan_id = deployed.payload["operation"]["plan_id"]
        token = ws.must("token", "create", "--name", "bench", "--role", "agent", "--json").payload["token"]["token"]  # type: ignore[index]
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        result = anyio.run(measure, ws, token, opts.calls, plan_id, op_id)
        result.update(machine=machine_line(), services=opts.services, deploy_s=round(deploy_s, 1), calls=opts.calls,
                      load=load, load_after=" ".join(f"{x:.2f}" for x in os.getloadavg()))
    finally:
        ws.close()
    if ws.leftovers:
        result["leftovers"] = ws.leftovers
    if opts.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['machine']}; {result['services_live']} services live (deployed in {result['deploy_s']} s)")
    print(f"server RSS: {result['rss_started_mb']} MB at start, {result['rss_idle_after_mb']} MB idle after the run")
    print(f"load average {result['load']} before, {result['load_after']} after")
    print(f"{'tool':<18}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'bytes':>9}{'srv cpu':>9}{'dmn cpu':>9}")
    for name, row in result["tools"].items():
        print(f"{name:<18}{row['p50_ms']:>9}{row['p95_ms']:>9}{row['max_ms']:>9}{row['bytes']:>9}"
              f"{row['server_cpu_ms']:>9}{row['daemon_cpu_ms']:>9}")


if __name__ == "__main__":
    main()
