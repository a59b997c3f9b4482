"""Planning at scale: N services desired vs N observed, timed and measured.

Usage: python bench/plan_scale.py [N ...]   (default 1000 10000 50000)

Each size runs in a fresh subprocess so peak RSS is per size. For each size it reports:
validate (parse + check the TOML text), resources (normalise + fingerprint), plan (the
pure planner), json (serialise the whole plan as `--json` does), and peak RSS.
The observed state is the desired one with 10% of services changed (half replace, half
in-place), 2% missing and 2% extra (to delete), so every planner path runs.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


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


def one(n: int) -> dict[str, float]:
    from railguard.engine import planner
    from railguard.model.resources import LiveStatus, ObservedResource, desired_resources
    from railguard.model.specfile import parse_spec

    text = synthetic_spec(n)
    t0 = time.perf_counter()
    spec, diagnostics = parse_spec(text)
    t1 = time.perf_counter()
    assert spec is not None and not diagnostics, diagnostics[:3]
    desired = desired_resources(spec, "staging")
    t2 = time.perf_counter()
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
    t3 = time.perf_counter()
    plan = planner.plan("staging", desired, observed, 1)
    t4 = time.perf_counter()
    body = plan.model_dump_json()
    t5 = time.perf_counter()
    return {"n": n, "validate_s": t1 - t0, "resources_s": t2 - t1, "plan_s": t4 - t3, "json_s": t5 - t4,
            "json_mb": len(body) / 1e6, "changes": len(plan.actionable),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        print(json.dumps(one(int(sys.argv[2]))))
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
