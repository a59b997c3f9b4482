"""What the tests' Kubernetes control plane costs: start-up times and memory of etcd + API server + controllers.

Why it exists: the Kubernetes provider's tests and benchmarks (issue 17) run against the real control plane of
tests/k8s/cluster.py; its own start time and memory are reported beside the provider's figures so they are not
mistaken for the provider's. Each run starts the whole set in a fresh folder (empty etcd) and records, in seconds
from the start: etcd healthy, API server ``/readyz``, controllers up (the default ServiceAccount has its token), the
simulated node registered, and a first 3-replica Deployment Available (server-side apply, polled every 0.1 s); then
the resident memory (RSS) of the four processes after 5 s idle. ``--deployments N`` also applies N one-replica
Deployments at once (16 requests in flight) on the last run and times them all Available: the control plane's own
floor for a provider's "apply 100 services".

Usage: .venv/bin/python bench/k8s_control_plane.py [--runs 3] [--deployments 100] [--json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from rgbench import machine_line  # noqa: E402
from tests.k8s.cluster import Cluster, start_cluster  # noqa: E402

MB = 1024 * 1024


def deployment(ns: str, name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)},
                     "template": {"metadata": {"labels": dict(labels)}, "spec": {
                         "automountServiceAccountToken": False,
                         "containers": [{"name": "app", "image": "python:3.11-slim"}]}}}}


def available(cluster: Cluster, ns: str, name: str, replicas: int) -> bool:
    got = cluster.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}") or {}
    status = got.get("status", {})
    return status.get("availableReplicas") == replicas and status.get("updatedReplicas") == replicas and any(
        c["type"] == "Available" and c["status"] == "True" for c in status.get("conditions") or [])


def wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def one_run(deployments: int) -> dict[str, Any]:
    timings: dict[str, float] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="k8s-bench-") as tmp, \
            start_cluster(Path(tmp) / "cluster", timings=timings) as cluster:
        cluster.create_namespace("bench")
        cluster.apply(deployment("bench", "web", 3))
        wait(lambda: available(cluster, "bench", "web", 3), 300, "web Available")
        out: dict[str, Any] = {k: round(v, 2) for k, v in timings.items()}
        out["deployment_available"] = round(time.monotonic() - started, 2)
        time.sleep(5)
        out["rss_mb"] = round(cluster.rss_bytes() / MB)
        if deployments:
            cluster.create_namespace("many")
            t0 = time.monotonic()
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda i: cluster.apply(deployment("many", f"svc-{i}", 1)), range(deployments)))
            out["many_applied"] = round(time.monotonic() - t0, 2)
            names = [f"svc-{i}" for i in range(deployments)]

            def all_available() -> bool:
                listed = cluster.get("/apis/apps/v1/namespaces/many/deployments") or {}
                done = {d["metadata"]["name"] for d in listed.get("items", [])
                        if d.get("status", {}).get("availableReplicas") == 1}
                return done >= set(names)

            wait(all_available, 600, f"{deployments} deployments Available")
            out["many_available"] = round(time.monotonic() - t0, 2)
            out["rss_mb_after_many"] = round(cluster.rss_bytes() / MB)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--deployments", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    facts = {"machine": machine_line(), "nproc": os.cpu_count(),
             "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
             "load_before": [round(x, 1) for x in os.getloadavg()]}
    runs = [one_run(args.deployments if i == args.runs - 1 else 0) for i in range(args.runs)]
    facts["load_after"] = [round(x, 1) for x in os.getloadavg()]
    if args.json:
        print(json.dumps({"facts": facts, "runs": runs}, indent=2))
        return
    print(f"{facts['machine']}; {facts['date']}; load {facts['load_before']} -> {facts['load_after']}")
    keys = ["etcd", "apiserver", "controllers", "node", "deployment_available", "rss_mb"]
    print("| run | " + " | ".join(keys) + " |")
    for i, run in enumerate(runs, 1):
        print(f"| {i} | " + " | ".join(str(run.get(k, "")) for k in keys) + " |")
    print("| median | " + " | ".join(str(round(statistics.median(r[k] for r in runs), 2)) for k in keys) + " |")
    last = runs[-1]
    if "many_available" in last:
        print(f"{args.deployments} Deployments: applied in {last['many_applied']} s, all Available after "
              f"{last['many_available']} s; RSS then {last['rss_mb_after_many']} MB")


if __name__ == "__main__":
    main()
