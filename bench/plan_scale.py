"""Planning at scale: N services desired vs N observed, timed and measured.

Usage: python bench/plan_scale.py [N ...]   (default 1000 10000 50000)
       python bench/plan_scale.py --cli [N ...]   (default 10000; whole-process `railguard plan --json`)
       python bench/plan_scale.py --cli-edited [N ...]   (the same for the new app, the spec edited after a plan)

Each size runs in a fresh subprocess so peak RSS is per size. For each size it reports:
validate (parse + check the TOML text), resources (normalise + fingerprint), plan (the
pure planner), json (serialise the whole plan as `--json` does), and peak RSS.
The observed state is the desired one with 10% of services changed (half replace, half
in-place), 2% missing and 2% extra (to delete), so every planner path runs.

``--cli`` measures what a user waits for: the real ``railguard plan --env staging --json > plan.json``
as a process, against a freshly started daemon (not counted), for a new app (nothing live: every
service a create) and for N against N live (the same 10%/2%/2% mix). Nothing can run 10,000 real
processes on this machine, so for the live case the daemon runs with the in-memory fake provider
holding the live resources (started through ``--fake-daemon``: the daemon's own code, only the
provider swapped); the new-app case uses the real local provider. It reports the CLI's wall time,
its CPU time and peak RSS, the daemon's CPU time (with its children's: the TOML parse of a large spec runs in
one, engine/tomlchild.py), the daemon's peak RSS (and its RSS before and after the plan), the size of the JSON
written, and whether the daemon's TOML child answered (``toml-child``) or fell back to ``tomllib``
(``toml-child-fallback``) in that plan or at the daemon's start (``-``: neither, as before the child existed).
The JSON goes beside the app folder: inside it, it would be part of the source snapshot and make
every live service a replace (as it did in runs before 2026-12-02 15:00 UTC: 10,201 changes instead of 2,401).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def synthetic_spec(n: int) -> str:
    parts = ['[app]\nname = "bench"\n\n[environments.staging]\nedge_port = 8080\n']
    for i in range(n):
        dep = f'depends_on = ["s{i - 1}"]\n' if i % 10 else ""
        parts.append(
            f'\n[services.s{i}]\nrun = ["python", "svc.py", "{i}"]\nreplicas = 2\n{dep}'
            f'env = {{ LOG_LEVEL = "info", SHARD = "{i}" }}\n'
            f'[services.s{i}.health]\nhttp = "/healthz"\n'
            f'[[services.s{i}.routes]]\nhost = "s{i}.example.test"\n'
        )
    return "".join(parts)


def mixed_observed(desired: list[Any], n: int) -> list[Any]:
    """The desired resources as if live, 10% changed, 2% missing and 2% extra (see the module docstring)."""
    from railguard.model.resources import LiveStatus, ObservedResource

    observed = []
    for i, r in enumerate(desired):
        if i % 50 == 1:
            continue  # missing -> create
        config, fingerprint = r.config, r.fingerprint
        if i % 10 == 3:
            config = {**config, "run": ["python", "old.py"]}
            fingerprint = "sha256:old-run"
        elif i % 10 == 7:
            config = {**config, "replicas": 1}
            fingerprint = "sha256:old-replicas"
        observed.append(ObservedResource(address=r.address, kind=r.kind, fingerprint=fingerprint, config=config,
                                         depends_on=r.depends_on, status=LiveStatus.running))
    for i in range(n // 50):
        observed.append(ObservedResource(address=f"staging/service.gone{i}", kind="service", fingerprint="x",
                                         config={"replicas": 1}, depends_on=[]))
    return observed


def one(n: int) -> dict[str, float]:
    from railguard.engine import planner
    from railguard.model.resources import desired_resources
    from railguard.model.specfile import parse_spec

    text = synthetic_spec(n)
    t0 = time.perf_counter()
    spec, diagnostics = parse_spec(text)
    t1 = time.perf_counter()
    assert spec is not None and not diagnostics, diagnostics[:3]
    desired = desired_resources(spec, "staging")
    t2 = time.perf_counter()
    observed = mixed_observed(desired, n)
    t3 = time.perf_counter()
    plan = planner.plan("staging", desired, observed, 1)
    t4 = time.perf_counter()
    body = plan.model_dump_json()
    t5 = time.perf_counter()
    return {"n": n, "validate_s": t1 - t0, "resources_s": t2 - t1, "plan_s": t4 - t3, "json_s": t5 - t4,
            "json_mb": len(body) / 1e6, "changes": len(plan.actionable),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def fake_daemon(home: str, spec_path: str, n: int) -> None:
    """Run the daemon of ``home`` in this process with a fake provider that holds N live services."""
    from railguard.daemon import lifecycle, service
    from railguard.engine import specmemo
    from railguard.engine.facts import Facts
    from railguard.engine.workspace import Workspace
    from railguard.providers.fake import FakeProvider

    desired = Facts(Workspace(Path(spec_path), Path(home))).desired("staging", {})
    # Dropped before the live resources are made, which then reuse its memory (as they did before the parse was
    # kept): the plan measured parses the spec itself, as a real daemon's first plan does.
    specmemo.forget()
    live = {"staging": {o.address: o for o in mixed_observed(desired, n)}}
    del desired
    service.open_provider = lambda home, **_: FakeProvider(live=live)  # type: ignore[assignment]
    lifecycle.run(Path(home))


def _peak_kb(pid: int, field: str = "VmHWM:") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def _cpu_s(pid: int) -> float:
    """The process's CPU time plus that of its children it waited for (the spec's TOML child, tomlchild.py)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime + stime + cutime + cstime


def cli(n: int, live: bool, edited: bool = False) -> dict[str, Any]:
    """One whole-process `railguard plan --env staging --json > plan.json` against a fresh daemon.

    ``edited``: the plan measured is the second one: the daemon planned the spec once (so it serves it), the
    spec was then edited (a comment added) and the plan comes 3 s later, as after a user's edit."""
    root = Path(tempfile.mkdtemp(prefix="rg-plan-cli-"))
    out_path = root.with_name(root.name + ".plan.json")
    (root / "railguard.toml").write_text(synthetic_spec(n))
    (root / "svc.py").write_text("print('hi')\n")
    counts = root.with_name(root.name + ".counts")
    env = {**os.environ, "NO_COLOR": "1", "RAILGUARD_DEBUG_COUNTS": str(counts)}  # the TOML child's use, below
    env.pop("RAILGUARD_TOKEN", None)
    home = root / ".railguard"
    rg = [sys.executable, "-m", "railguard"]
    if live:
        home.mkdir(mode=0o700)
        daemon = subprocess.Popen([sys.executable, __file__, "--fake-daemon", str(home), str(root / "railguard.toml"),
                                   str(n)], cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        subprocess.run([*rg, "daemon", "start"], cwd=root, env=env, check=True, capture_output=True)
    deadline = time.monotonic() + 300
    while subprocess.run([*rg, "daemon", "status", "--json"], cwd=root, env=env, capture_output=True,
                         text=True).stdout.find('"running": true') < 0:
        assert time.monotonic() < deadline, "the daemon did not start"
        time.sleep(0.2)
    pid = int(json.loads((home / "daemon.pid").read_text())["pid"])
    try:
        if edited:
            subprocess.run([*rg, "plan", "--env", "staging", "--json"], cwd=root, env=env, check=True,
                           stdout=subprocess.DEVNULL)
            with (root / "railguard.toml").open("a") as spec:
                spec.write("# edited\n")
            time.sleep(3.0)
        daemon_cpu, daemon_before = _cpu_s(pid), _peak_kb(pid, "VmRSS:")
        # Beside the app folder, not in it: a plan.json inside would be part of the source snapshot, so every
        # service's source digest would differ from the one the fake daemon's live services were made with.
        with open(out_path, "wb") as out:
            started = time.perf_counter()
            proc = subprocess.Popen([*rg, "plan", "--env", "staging", "--json"], cwd=root, env=env, stdout=out)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - started
        daemon_cpu = _cpu_s(pid) - daemon_cpu
        counted = counts.read_text().split("\n") if counts.exists() else []
        toml = ",".join(sorted({line.split()[1] for line in counted if line.startswith(f"{pid} toml-child")})) or "-"
        time.sleep(0.3)  # the daemon gives a large request's memory back once its answer is written
        daemon_after = _peak_kb(pid, "VmRSS:")
        assert os.waitstatus_to_exitcode(status) == 0, "railguard plan failed"
        body = json.loads(out_path.read_bytes())
        return {"n": n, "live": live, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
                "cli_rss_mb": usage.ru_maxrss / 1024, "daemon_cpu_s": daemon_cpu, "daemon_rss_mb": _peak_kb(pid) / 1024,
                "daemon_before_mb": daemon_before / 1024, "daemon_after_mb": daemon_after / 1024,
                "json_mb": out_path.stat().st_size / 1e6, "toml": toml, "changes": sum(
                    v for k, v in body["plan"]["counts"].items() if k != "no-op"),
                "load": os.getloadavg()[0]}
    finally:
        subprocess.run([*rg, "daemon", "stop"], cwd=root, env=env, capture_output=True)
        if live:
            daemon.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)
        out_path.unlink(missing_ok=True)
        counts.unlink(missing_ok=True)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        print(json.dumps(one(int(sys.argv[2]))))
        return
    if len(sys.argv) > 4 and sys.argv[1] == "--fake-daemon":
        fake_daemon(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    if len(sys.argv) > 1 and sys.argv[1] in ("--cli", "--cli-edited"):
        edited = sys.argv[1] == "--cli-edited"
        print("| services | live | `plan --json` wall | CLI CPU | daemon CPU | CLI peak RSS | daemon peak RSS "
              "(before the plan) | daemon RSS after | JSON | changes | TOML | load (1 min) |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
        for n in [int(a) for a in sys.argv[2:]] or [10000]:
            for live in (False,) if edited else (False, True):
                r = cli(n, live, edited)
                print(f"| {n:,} | {'N live (fake provider)' if live else 'none (new app)'} | {r['wall_s']:.2f} s | "
                      f"{r['cpu_s']:.2f} s | {r['daemon_cpu_s']:.2f} s | {r['cli_rss_mb']:.0f} MB | "
                      f"{r['daemon_rss_mb']:.0f} MB ({r['daemon_before_mb']:.0f} MB) | {r['daemon_after_mb']:.0f} MB | "
                      f"{r['json_mb']:.1f} MB | {r['changes']:,} | {r['toml']} | {r['load']:.1f} |", flush=True)
        return
    sizes = [int(a) for a in sys.argv[1:]] or [1000, 10000, 50000]
    print("| services | validate | resources | plan | --json | JSON size | changes | peak RSS |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True,
                             check=True).stdout
        r = json.loads(out)
        print(f"| {n:,} | {r['validate_s']:.2f} s | {r['resources_s']:.2f} s | {r['plan_s']:.2f} s | "
              f"{r['json_s']:.2f} s | {r['json_mb']:.1f} MB | {r['changes']:,} | {r['peak_rss_mb']:.0f} MB |")


if __name__ == "__main__":
    main()
