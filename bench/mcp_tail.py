"""What the MCP read tools' tail is made of with 200 live services, for several daemon variants in the same minutes.

Why it exists: on a shared 2-core machine `bench/mcp_read.py`'s wall-clock p95 follows the other sessions' load.
This deploys the same 200 services once (the notes example plus 199 `sleep` workers), then for each round and
each variant restarts the daemon (replicas are adopted, nothing is redeployed) and runs `get_status` and
`diagnose` through `railguard mcp` (the official client library, an `agent` token), with the probe of
`bench/gilprobe/` loaded into the daemon. Per variant it reports the client's p50/p95, and from inside the daemon:
each status request's wall time and its thread's CPU time (the difference is time it was ready but waited: for
the GIL behind a background pass, or for a CPU), the cyclic GC's collections, and the CPU/s of each background
thread (supervisor, loop, observer) during the calls. Variants alternate (A B A B ...), so each pair met the same
load. A variant is `name=SRC[:SWITCH]`: SRC a folder holding the `railguard` package to run (`.` = this
checkout's `src`), SWITCH a `sys.setswitchinterval` value in seconds forced by the probe (default: the code's).

Usage: .venv/bin/python bench/mcp_tail.py [--services 200] [--calls 30] [--rounds 2] \
           [--variant base=/tmp/main-src] [--variant new=.] [--variant new1ms=.:0.001]
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

HERE = Path(__file__).resolve().parent
WORKER = '\n[services.w{i:03d}]\nrun = ["sleep", "3600"]\nlisten = false\nstop_timeout = "1s"\n'
BACKGROUND = ("railguard-supervisor", "railguard-loop", "railguard-observe")


def cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def probe_dump(out: Path, pid: int) -> dict[str, Any]:
    target = out / f"{pid}.json"
    target.unlink(missing_ok=True)
    (out / f"dump-{pid}").touch()
    for _ in range(100):
        time.sleep(0.05)
        if target.exists():
            return dict(json.loads(target.read_text()))
    raise RuntimeError("the daemon's probe did not answer")


def variant_env(ws: Workspace, src: str, switch: str | None, out: Path) -> dict[str, str]:
    env = ws.env()
    src_dir = str((HERE.parent / "src") if src == "." else Path(src).resolve())
    env["PYTHONPATH"] = os.pathsep.join([str(HERE / "gilprobe"), src_dir])
    env["RG_PROBE_OUT"] = str(out)
    for key in ("RG_PROBE_SWITCH", "RG_PROBE_GC", "RG_PROBE_FREEZE_S"):
        env.pop(key, None)
    # SWITCH is "[seconds][/gc=t0,t1,t2][/freeze=seconds]" (probe knobs, to try settings without code)
    for part in (switch or "").split("/"):
        if part.startswith("gc="):
            env["RG_PROBE_GC"] = part[3:]
        elif part.startswith("freeze="):
            env["RG_PROBE_FREEZE_S"] = part[7:]
        elif part:
            env["RG_PROBE_SWITCH"] = part
    return env


async def calls(ws: Workspace, env: dict[str, str], token: str, n: int, out: Path) -> dict[str, Any]:
    params = StdioServerParameters(command=sys.executable, args=["-m", "railguard", "mcp", "--spec", str(ws.spec)],
                                   env={**env, "RAILGUARD_TOKEN": token}, cwd=str(ws.root))
    result: dict[str, Any] = {}
    pid = ws.daemon_pid() or 0
    daemon = psutil.Process(pid)
    with open(os.devnull, "w") as quiet:
        async with stdio_client(params, errlog=quiet) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=120) as session:
                await session.initialize()
                server = next(c for c in psutil.Process().children(recursive=True) if "mcp" in c.cmdline())
                for name, args in (("get_status", {"env": "staging"}),
                                   ("diagnose", {"env": "staging", "service": "web"})):
                    for _ in range(3):
                        await session.call_tool(name, args)
                    before = probe_dump(out, pid)
                    t_start, cpu0 = time.time(), (cpu_s(server), cpu_s(daemon))
                    times = []
                    for _ in range(n):
                        t0 = time.perf_counter()
                        answer = await session.call_tool(name, args)
                        times.append((time.perf_counter() - t0) * 1000)
                        if answer.is_error:
                            raise RuntimeError(f"{name} failed: {answer.content}")
                    t_end, cpu1 = time.time(), (cpu_s(server), cpu_s(daemon))
                    after = probe_dump(out, pid)
                    result[name] = summarize(times, before, after, t_start, t_end, n, cpu0, cpu1)
    return result


def summarize(times: list[float], before: dict[str, Any], after: dict[str, Any], t0: float, t1: float, n: int,
              cpu0: tuple[float, float], cpu1: tuple[float, float]) -> dict[str, Any]:
    reqs = [r for r in after["requests"] if t0 <= r[1] <= t1 and r[0].startswith("/v1/status")]
    waits = [r[2] - r[3] for r in reqs]
    span = t1 - t0
    background = {}
    for key, cpu in after["threads"].items():
        name = key.split(":")[0]
        if name in BACKGROUND:
            background[name] = round(background.get(name, 0.0)
                                     + (cpu - before["threads"].get(key, cpu)) * 1000 / span, 1)
    collections = [c for c in after["gc"] if t0 <= c[1] <= t1]
    return {
        "p50_ms": round(pct(times, 0.5) or 0, 1), "p95_ms": round(pct(times, 0.95) or 0, 1),
        "max_ms": round(max(times), 1),
        "server_cpu_ms": round((cpu1[0] - cpu0[0]) * 1000 / n, 1),
        "daemon_cpu_ms": round((cpu1[1] - cpu0[1]) * 1000 / n, 1),
        "status_wall_p50_p95": [round(pct([r[2] for r in reqs], q) or 0, 1) for q in (0.5, 0.95)],
        "status_cpu_p50_p95": [round(pct([r[3] for r in reqs], q) or 0, 1) for q in (0.5, 0.95)],
        "status_wait_p50_p95": [round(pct(waits, q) or 0, 1) for q in (0.5, 0.95)],
        "background_cpu_ms_per_s": background,
        "gc": {"count": len(collections), "max_ms": round(max((c[2] for c in collections), default=0), 1),
               "total_ms": round(sum(c[2] for c in collections), 1),
               "full": [round(c[2], 1) for c in collections if c[0] == 2]},
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()), "switch": after["switch"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variant", action="append", default=[])
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after the daemon's start")
    opts = parser.parse_args()
    variants = [(v.split("=", 1)[0], *(v.split("=", 1)[1].split(":", 1) + [None])[:2]) for v in opts.variant] \
        or [("here", ".", None)]
    ws = Workspace.create(tag="mcp-tail")
    out = ws.tmp / "probe"
    out.mkdir()
    rows: list[dict[str, Any]] = []
    try:
        ws.edit(lambda text: text + "".join(WORKER.format(i=i) for i in range(1, opts.services)))
        ws.must("deploy", "--env", "staging", "--yes", "--json", timeout=1800)
        token = ws.must("token", "create", "--name", "bench", "--role", "agent", "--json").payload["token"]["token"]  # type: ignore[index]
        for rnd in range(opts.rounds):
            for name, src, switch in variants:
                ws.must("daemon", "stop")
                env = variant_env(ws, src, switch, out)
                saved = dict(os.environ)
                os.environ.clear()
                os.environ.update(env)  # the CLI that starts the daemon passes its environment on
                try:
                    ws.must("daemon", "start")
                finally:
                    os.environ.clear()
                    os.environ.update(saved)
                time.sleep(opts.settle)
                found = anyio.run(calls, ws, env, token, opts.calls, out)
                for tool, row in found.items():
                    rows.append({"round": rnd, "variant": name, "tool": tool, **row})
                    print(json.dumps(rows[-1]), flush=True)
    finally:
        ws.close()
    print(machine_line())
    print(f"{'variant':<10}{'tool':<12}{'p50':>7}{'p95':>7}{'srv':>6}{'dmn':>6}  status wall/cpu/wait p50,p95"
          "   gc n/max/full   background CPU ms/s (sup, loop, obs)   load")
    for r in rows:
        bg = r["background_cpu_ms_per_s"]
        print(f"{r['variant']:<10}{r['tool']:<12}{r['p50_ms']:>7}{r['p95_ms']:>7}{r['server_cpu_ms']:>6}"
              f"{r['daemon_cpu_ms']:>6}  {r['status_wall_p50_p95']}/{r['status_cpu_p50_p95']}/"
              f"{r['status_wait_p50_p95']}   {r['gc']['count']}/{r['gc']['max_ms']}/{len(r['gc']['full'])}   "
              f"{[bg.get(b, 0) for b in BACKGROUND]}   {r['load']}")


if __name__ == "__main__":
    main()
