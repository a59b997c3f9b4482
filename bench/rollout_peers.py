"""Failed requests during a redeploy of the notes example under peer tools (PM2, supervisord).

Why it exists: Railguard claims rollouts that clients do not notice; that claim needs a
baseline. This script runs the same app (examples/notes/app.py, stdlib only) under the tools
people already use to keep a Python web process up, puts a steady loopback load on it with
bench/loadgen.py, redeploys twice (v1 -> v2 -> v1, i.e. two restarts) and counts what the
clients saw. Railguard's own numbers are meant to be reported beside these later, using the
same LoadGen and the same timeline (3 s load, redeploy, wait healthy, 1 s, redeploy, 3 s).

Peers, each with its default settings (kill timeouts, start checks) and skipped with a message
if it cannot be installed or started:
  baseline    the app run directly, no redeploy: shows the generator reaches its rate with 0 failures
  pm2         `pm2 reload rg-notes`; a Python app runs in fork mode, where reload == restart
              (stop, then start: no overlap). Installed with npm into /tmp/rg-bench/pm2.
  supervisor  `supervisorctl restart rg-notes` (stop, then start). Needs `pip install supervisor`
              in the venv (benchmark-only, not a project dependency); installed on demand.

Usage: .venv/bin/python bench/rollout_peers.py [--json] [--only pm2,supervisor] [--keepalive]
       [--rate 250] [--no-install]
Everything spawned carries RG_BENCH_RUN=<token> in its environment; after teardown psutil checks
no such process is left (and kills leftovers by pid). Total runtime is bounded (< 2 min).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import LoadGen, Result

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "examples" / "notes" / "app.py"
MIGRATE = REPO / "examples" / "notes" / "migrate.py"
PY = sys.executable
BENCH_ROOT = Path("/tmp/rg-bench")
PM2_PREFIX = BENCH_ROOT / "pm2"
PM2_BIN = PM2_PREFIX / "node_modules" / ".bin" / "pm2"
APP_NAME = "rg-notes"
PORTS = {"baseline": 18180, "pm2": 18181, "supervisor": 18182}
DEADLINE_S = 110.0


class Skip(Exception):
    """The peer cannot run here (install or start failed); reported, not fatal."""


@dataclass
class Redeploy:
    command: str
    seconds: float
    returncode: int
    pid_before: int | None
    pid_after: int | None
    healthy_after_s: float | None  # from command start until /healthz answers 200 again


@dataclass
class PeerRun:
    tool: str
    action: str
    status: str = "ok"  # ok | skipped | error
    message: str = ""
    load: Result | None = None
    redeploys: list[Redeploy] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)


# -- helpers ---------------------------------------------------------------------------
def run(cmd: list[str], env: dict[str, str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise Skip(f"{' '.join(cmd)} timed out after {timeout}s") from exc


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the app does; TIME_WAIT is not "in use"
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=0.5) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def wait_healthy(port: int, timeout: float = 15.0) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if healthy(port):
            return time.perf_counter() - t0
        time.sleep(0.02)
    raise Skip(f"app on port {port} not healthy after {timeout}s")


def tagged_processes(token: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["pid"]):
        try:
            if p.environ().get("RG_BENCH_RUN") == token:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def reap_leftovers(token: str, grace: float = 5.0) -> list[str]:
    """Wait for everything tagged with this run's token to exit; kill (by pid) what does not."""
    t0 = time.perf_counter()
    procs = tagged_processes(token)
    while procs and time.perf_counter() - t0 < grace:
        time.sleep(0.1)
        procs = tagged_processes(token)
    described = []
    for p in procs:
        try:
            described.append(f"{p.pid} {' '.join(p.cmdline())[:100]}")
            p.kill()
        except psutil.Error:
            continue
    return described


# -- peers -----------------------------------------------------------------------------
class Peer:
    tool = ""
    action = ""

    def __init__(self, env: dict[str, str], port: int, workdir: Path, allow_install: bool) -> None:
        self.env = env
        self.port = port
        self.workdir = workdir
        self.allow_install = allow_install
        self.app_env = {"PORT": str(port), "RAILGUARD_DATA_DIR": str(workdir / "data"), "APP_VERSION": "1"}

    def setup(self) -> None: ...
    def pid(self) -> int | None: ...
    def redeploy(self, version: str) -> subprocess.CompletedProcess[str] | None: ...
    def teardown(self) -> None: ...
    def notes(self) -> list[str]:
        return []


class Baseline(Peer):
    tool, action = "baseline (direct)", "none (steady load)"
    proc: subprocess.Popen[bytes] | None = None

    def setup(self) -> None:
        self.proc = subprocess.Popen(
            [PY, str(APP)], env={**self.env, **self.app_env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def redeploy(self, version: str) -> None:
        return None

    def teardown(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Pm2(Peer):
    tool, action = "pm2", f"pm2 reload {APP_NAME}"

    def __init__(self, env: dict[str, str], port: int, workdir: Path, allow_install: bool) -> None:
        super().__init__(env, port, workdir, allow_install)
        self.env = {**self.env, "PM2_HOME": str(self.workdir / "pm2home")}
        self.exec_mode = "?"

    def pm2(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return run([str(PM2_BIN), *args], self.env, timeout)

    def setup(self) -> None:
        if not PM2_BIN.exists():
            if not self.allow_install:
                raise Skip(f"{PM2_BIN} missing (run: npm install --prefix {PM2_PREFIX} pm2)")
            if not shutil.which("npm"):
                raise Skip("npm not found; cannot install pm2")
            PM2_PREFIX.mkdir(parents=True, exist_ok=True)
            r = run(
                ["npm", "install", "--prefix", str(PM2_PREFIX), "--no-audit", "--no-fund", "pm2"],
                {**os.environ},
                timeout=90,
            )
            if r.returncode != 0 or not PM2_BIN.exists():
                raise Skip(f"npm install pm2 failed: {r.stderr.strip()[-300:]}")
        eco = self.workdir / "ecosystem.json"
        eco.write_text(
            json.dumps(
                {
                    "apps": [
                        {
                            "name": APP_NAME,
                            "script": str(APP),
                            "interpreter": PY,
                            "cwd": str(REPO),
                            "env": self.app_env,
                            "autorestart": True,
                        }
                    ]
                }
            )
        )
        r = self.pm2("start", str(eco))
        if r.returncode != 0:
            raise Skip(f"pm2 start failed: {(r.stderr or r.stdout).strip()[-300:]}")

    def _info(self) -> dict[str, object]:
        r = self.pm2("jlist")
        try:
            apps = json.loads(r.stdout[r.stdout.index("[") :])
        except ValueError:
            return {}
        for a in apps:
            if a.get("name") == APP_NAME:
                return {
                    "pid": a.get("pid"),
                    "exec_mode": a.get("pm2_env", {}).get("exec_mode"),
                    "version": a.get("pm2_env", {}).get("version"),
                }
        return {}

    def pid(self) -> int | None:
        info = self._info()
        self.exec_mode = str(info.get("exec_mode", "?"))
        pid = info.get("pid")
        return pid if isinstance(pid, int) and pid > 0 else None

    def redeploy(self, version: str) -> subprocess.CompletedProcess[str]:
        return self.pm2("reload", APP_NAME)

    def teardown(self) -> None:
        if PM2_BIN.exists():
            self.pm2("kill", timeout=20)

    def notes(self) -> list[str]:
        v = run([str(PM2_BIN), "--version"], self.env).stdout.strip().splitlines()
        return [
            f"pm2 {v[-1] if v else '?'}: exec_mode={self.exec_mode}. PM2 cluster mode (and its zero-downtime "
            "reload) is Node-only; for a Python app `pm2 reload` in fork mode is a restart: SIGINT, wait up to "
            "kill_timeout (1600 ms default), SIGKILL, then start, with no overlap.",
            self._stop_note(),
        ]

    def _stop_note(self) -> str:
        logs = self.workdir / "pm2home" / "logs"
        text = "".join(p.read_text(errors="replace") for p in logs.glob(f"{APP_NAME}*.log")) if logs.is_dir() else ""
        return (
            f"old process stopped: {text.count('stopped cleanly')}x clean (SIGTERM path), "
            f"{text.count('KeyboardInterrupt')}x KeyboardInterrupt (PM2's default kill signal is SIGINT, "
            "which this app does not handle, so it skips its graceful drain)"
        )


class Supervisor(Peer):
    tool, action = "supervisord", f"supervisorctl restart {APP_NAME}"
    proc: subprocess.Popen[bytes] | None = None

    def __init__(self, env: dict[str, str], port: int, workdir: Path, allow_install: bool) -> None:
        super().__init__(env, port, workdir, allow_install)
        bindir = Path(PY).parent
        self.supervisord = bindir / "supervisord"
        self.supervisorctl = bindir / "supervisorctl"
        self.conf = self.workdir / "supervisord.conf"

    def ctl(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return run([str(self.supervisorctl), "-c", str(self.conf), *args], self.env, timeout)

    def setup(self) -> None:
        if not self.supervisord.exists():
            if not self.allow_install:
                raise Skip(f"{self.supervisord} missing (run: {PY} -m pip install supervisor)")
            r = run([PY, "-m", "pip", "install", "-q", "supervisor"], {**os.environ}, timeout=90)
            if r.returncode != 0 or not self.supervisord.exists():
                raise Skip(f"pip install supervisor failed: {r.stderr.strip()[-300:]}")
        w = self.workdir
        envline = ",".join(f'{k}="{v}"' for k, v in self.app_env.items())
        self.conf.write_text(f"""\
[unix_http_server]
file={w}/supervisor.sock

[supervisord]
nodaemon=true
logfile={w}/supervisord.log
pidfile={w}/supervisord.pid
childlogdir={w}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{w}/supervisor.sock

[program:{APP_NAME}]
command={PY} {APP}
directory={REPO}
environment={envline}
autostart=true
autorestart=true
redirect_stderr=true
stdout_logfile={w}/{APP_NAME}.log
""")
        self.proc = subprocess.Popen(
            [str(self.supervisord), "-c", str(self.conf)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def pid(self) -> int | None:
        out = self.ctl("pid", APP_NAME).stdout.strip()
        return int(out) if out.isdigit() and int(out) > 0 else None

    def redeploy(self, version: str) -> subprocess.CompletedProcess[str]:
        return self.ctl("restart", APP_NAME)

    def teardown(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.ctl("shutdown", timeout=20)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def notes(self) -> list[str]:
        v = run([str(self.supervisord), "--version"], self.env).stdout.strip()
        return [
            f"supervisor {v}: restart = stop (SIGTERM, wait up to stopwaitsecs=10, SIGKILL) then start; "
            "the command returns once the new process has stayed up startsecs=1.",
            f"old process stopped: {self._log().count('stopped cleanly')}x clean (SIGTERM, graceful drain)",
        ]

    def _log(self) -> str:
        p = self.workdir / f"{APP_NAME}.log"
        return p.read_text(errors="replace") if p.exists() else ""


# -- the benchmark ---------------------------------------------------------------------
def bench_peer(peer_cls: type[Peer], name: str, args: argparse.Namespace, token: str, deadline: float) -> PeerRun:
    port = PORTS[name]
    workdir = BENCH_ROOT / f"run-{token[:8]}" / name
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "RG_BENCH_RUN": token}
    peer = peer_cls(env, port, workdir, not args.no_install)
    out = PeerRun(peer.tool, peer.action)
    if not port_free(port):
        out.status, out.message = "skipped", f"port {port} is in use"
        return out
    run([PY, str(MIGRATE)], {**env, **peer.app_env})
    gen: LoadGen | None = None
    try:
        peer.setup()
        wait_healthy(port)
        gen = LoadGen(
            f"http://127.0.0.1:{port}/",
            rate=args.rate,
            threads=args.threads,
            keepalive=args.keepalive,
            timeout=2.0,
            max_duration=40.0,
        )
        gen.start()
        time.sleep(args.pre)
        if peer_cls is Baseline:
            time.sleep(args.post + 1.0)
        else:
            for i, version in enumerate(["2", "1"], start=1):
                if time.monotonic() > deadline:
                    out.notes.append("deadline reached: skipped remaining redeploys")
                    break
                before = peer.pid()
                gen.mark(f"redeploy {i} begin (v{version})")
                t0 = time.perf_counter()
                r = peer.redeploy(version)
                secs = time.perf_counter() - t0
                gen.mark(f"redeploy {i} returned")
                h = secs + wait_healthy(port)
                gen.mark(f"redeploy {i} healthy")
                out.redeploys.append(
                    Redeploy(
                        " ".join(r.args) if r else "",
                        round(secs, 3),
                        r.returncode if r else 0,
                        before,
                        peer.pid(),
                        round(h, 3),
                    )
                )
                if r is not None and r.returncode != 0:
                    out.notes.append(f"redeploy {i} exit {r.returncode}: {(r.stderr or r.stdout).strip()[-200:]}")
                time.sleep(1.0 if i == 1 else args.post)
        out.load = gen.stop()
        gen = None
        out.notes.extend(peer.notes())
    except Skip as exc:
        out.status, out.message = "skipped", str(exc)
    except Exception as exc:  # report and carry on with the next peer
        out.status, out.message = "error", f"{type(exc).__name__}: {exc}"
    finally:
        if gen is not None:
            gen.stop()
        try:
            peer.teardown()
        except Exception as exc:
            out.notes.append(f"teardown error: {exc}")
        out.leftovers = reap_leftovers(token)
    return out


def table(runs: list[PeerRun]) -> str:
    head = (
        "| tool | action | requests | failed (non-2xx + errors) | failure types | achieved rate (req/s) "
        "| p50 ms | p99 ms | redeploy → healthy s |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in runs:
        if r.load is None:
            lines.append(f"| {r.tool} | {r.action} | {r.status}: {r.message} | | | | | | |")
            continue
        ld = r.load
        types = ", ".join(f"{k} {v}" for k, v in {**ld.non_2xx, **ld.errors}.items()) or "-"
        if ld.missed_slots:
            types += f"; {ld.missed_slots} slots missed"
        heal = ", ".join(f"{d.healthy_after_s:.2f}" for d in r.redeploys if d.healthy_after_s is not None) or "-"
        p50 = "-" if ld.p50_ms is None else f"{ld.p50_ms:.1f}"
        p99 = "-" if ld.p99_ms is None else f"{ld.p99_ms:.1f}"
        lines.append(
            f"| {r.tool} | {r.action}{' ×' + str(len(r.redeploys)) if r.redeploys else ''} | {ld.total} "
            f"| {ld.failed} ({100 * ld.failed / max(1, ld.total):.1f}%) | {types} "
            f"| {ld.achieved_rate:.0f} / {ld.target_rate:.0f} | {p50} | {p99} | {heal} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, str]:
    model = "?"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"nproc": str(os.cpu_count()), "cpu": model, "python": sys.version.split()[0]}


PEERS: dict[str, type[Peer]] = {"baseline": Baseline, "pm2": Pm2, "supervisor": Supervisor}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Failed requests during redeploys under PM2 and supervisord.")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the markdown table")
    ap.add_argument("--only", default=",".join(PEERS), help=f"comma-separated subset of {','.join(PEERS)}")
    ap.add_argument("--rate", type=float, default=250.0, help="target req/s (default 250)")
    ap.add_argument("--keepalive", action="store_true", help="reuse connections (default: one per request)")
    ap.add_argument("--threads", type=int, default=None, help="load threads (default 4, 16 with --keepalive)")
    ap.add_argument("--pre", type=float, default=3.0, help="seconds of load before the first redeploy")
    ap.add_argument("--post", type=float, default=3.0, help="seconds of load after the last redeploy")
    ap.add_argument("--no-install", action="store_true", help="skip a peer instead of installing it")
    args = ap.parse_args(argv)
    if args.threads is None:
        # On a reused connection sent back-to-back, this app answers in ~44 ms (headers and body are two small
        # writes without TCP_NODELAY: Nagle meets delayed ACK). A thread that falls behind schedule stays in that
        # regime, so 4 keep-alive threads reach only ~90 req/s; 16 leave idle gaps and answer in < 1 ms.
        args.threads = 16 if args.keepalive else 4
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        ap.error(f"unknown peer(s): {', '.join(unknown)}")

    token = uuid.uuid4().hex
    deadline = time.monotonic() + DEADLINE_S
    t_start = time.perf_counter()
    runs: list[PeerRun] = []
    for name in names:
        if time.monotonic() > deadline - 20:
            runs.append(PeerRun(PEERS[name].tool, PEERS[name].action, "skipped", "overall time budget used up"))
            continue
        if not args.json:
            print(f"… {name}", file=sys.stderr, flush=True)
        runs.append(bench_peer(PEERS[name], name, args, token, deadline))
    shutil.rmtree(BENCH_ROOT / f"run-{token[:8]}", ignore_errors=True)
    total_s = round(time.perf_counter() - t_start, 1)

    if args.json:
        print(
            json.dumps(
                {
                    "machine": machine(),
                    "keepalive": args.keepalive,
                    "total_s": total_s,
                    "runs": [asdict(r) for r in runs],
                },
                indent=2,
            )
        )
    else:
        m = machine()
        print(
            f"Machine: {m['nproc']} CPUs, {m['cpu']}, Python {m['python']}; load {args.rate:.0f} req/s, "
            f"{'keep-alive' if args.keepalive else 'new connection per request'}, {args.threads} threads; "
            f"{total_s}s total\n"
        )
        print(table(runs))
        for r in runs:
            for d in r.redeploys:
                print(
                    f"\n- {r.tool}: `{d.command}` took {d.seconds:.2f}s (exit {d.returncode}), "
                    f"pid {d.pid_before} -> {d.pid_after}, healthy {d.healthy_after_s:.2f}s after it began",
                    end="",
                )
            for n in r.notes:
                print(f"\n- {r.tool}: {n}", end="")
            if r.load and r.load.first_failure_s is not None:
                marks = "; ".join(f"{t:.2f}s {label}" for t, label in r.load.marks)
                print(
                    f"\n- {r.tool}: failures between {r.load.first_failure_s:.2f}s and "
                    f"{r.load.last_failure_s:.2f}s of load [{marks}]",
                    end="",
                )
            if r.leftovers:
                print(f"\n- {r.tool}: LEFTOVER processes killed: {r.leftovers}", end="")
        print()
    return 0 if all(not r.leftovers and r.status != "error" for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
