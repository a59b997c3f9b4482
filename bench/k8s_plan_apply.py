"""Plan and apply of N services (default 100) on the test Kubernetes control plane (issue 17's measured target).

Usage: python bench/k8s_plan_apply.py [N] [--workers W]   (default 100 services, 8 parallel dry-runs/applies)

Starts the tests' control plane (tests/k8s/cluster.py: real etcd + kube-apiserver + controllers + scheduler v1.20.2
and the simulated node), reports its start-up, then drives the Kubernetes provider through the registry as the
daemon does (each service one replica, an image by digest, an HTTP health check):

- plan (new app): observe the empty namespace + the planner — what `railguard plan` costs for the provider;
- dry-run: every service's manifests (Secret, Deployment, Service) as a server-side dry-run apply, W in parallel
  (bounded) — the server's validation and defaulting for the whole plan;
- apply, sequential: every change through ``apply_change`` one after the other (the engine's order today), each
  waiting for its Deployment to be Available;
- apply, parallel: the same for N other services in a fresh namespace, W services at a time (the bound an
  engine running independent services concurrently would use);
- apply, engine: N other services in a third namespace through the engine's ``run_changes`` (journal, inventory
  and all), as the daemon applies a plan: independent service changes run 8 at a time on a cluster
  (``Router.parallel_changes``);
- plan (no changes): observe the N live services + the planner.

Figures go to docs/benchmarks.md with the machine and date; nothing here is a test assertion.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.k8s.cluster import Cluster, resource_path, start_cluster, wait_until

from railguard.engine import planner
from railguard.engine.execute import Context, run_changes
from railguard.model.plans import Action, Change
from railguard.model.resources import Resource, desired_resources
from railguard.model.specfile import parse_spec
from railguard.providers.base import ApplyRequest, ObserveRequest, ShutdownRequest
from railguard.providers.kubernetes.manifests import service_manifests
from railguard.providers.registry import open_provider
from railguard.state.store import Store

IMAGE = "registry.example/bench@sha256:" + "0123456789abcdef" * 4
DIGEST = "sha256:" + "ab" * 32


def spec(n: int, namespace: str, kubeconfig: Path) -> str:
    parts = [f'[app]\nname = "bench"\n\n[environments.staging]\ntarget = "kubernetes"\n\n'
             f'[environments.staging.kubernetes]\nnamespace = "{namespace}"\nkubeconfig = "{kubeconfig}"\n'
             'context = "test"\n']
    for i in range(n):
        parts.append(f'\n[services.s{i}]\nrun = ["python", "app.py"]\nimage = "{IMAGE}"\nreplicas = 1\n'
                     f'env = {{ SHARD = "{i}" }}\nstart_timeout = "120s"\nstop_timeout = "2s"\ndrain_timeout = "1s"\n'
                     f'[services.s{i}.health]\nhttp = "/healthz"\ninterval = "1s"\n')
    return "".join(parts)


class Env:
    def __init__(self, cluster: Cluster, root: Path, namespace: str, n: int) -> None:
        self.cluster, self.namespace = cluster, namespace
        kubeconfig = cluster.write_kubeconfig(root / "kubeconfig")
        parsed, diagnostics = parse_spec(spec(n, namespace, kubeconfig))
        assert parsed is not None, diagnostics
        self.desired: list[Resource] = desired_resources(parsed, "staging", DIGEST)
        self.provider = open_provider(root / ".railguard", secrets=lambda env, versions: {})

    def plan(self) -> list[Change]:
        live = self.provider.observe(ObserveRequest(env="staging", desired=self.desired)).resources
        # The environment's own resource (Caddy, ports) has no meaning on a cluster: the provider makes the namespace's
        # objects with the first service, as the provider's tests do.
        return [c for c in planner.plan("staging", self.desired, list(live), 0).changes
                if c.action is not Action.noop and c.kind != "environment"]

    def apply_one(self, change: Change, release: int) -> bool:
        wanted = {r.address: r for r in self.desired}
        answer = self.provider.apply_change(ApplyRequest(env="staging", change=change,
                                                         desired=wanted.get(change.address), operation_id="bench",
                                                         release=release, app="bench"))
        if not answer.ok:
            print(f"  {change.address}: {[d.summary for d in answer.diagnostics]}", file=sys.stderr)
        return answer.ok


def timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", nargs="?", type=int, default=100)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    n, workers = args.n, args.workers
    print(f"# {n} services, {workers} workers; {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    with tempfile.TemporaryDirectory(prefix="k8s-bench-") as tmp:
        root = Path(tmp)
        timings: dict[str, float] = {}
        started = time.perf_counter()
        with start_cluster(root / "cluster", timings=timings) as cluster:
            print(f"control plane: etcd {timings.get('etcd', 0):.1f} s, API server ready "
                  f"{timings.get('apiserver', 0):.1f} s, controllers {timings.get('controllers', 0):.1f} s, "
                  f"node Ready {timings.get('node', 0):.1f} s "
                  f"(all up {time.perf_counter() - started:.1f} s), RSS {cluster.rss_bytes() / 2**20:.0f} MiB")
            one = Env(cluster, root / "one", cluster.create_namespace("bench-seq"), n)
            plan_s, changes = timed(one.plan)
            print(f"plan (new app, observe + planner): {plan_s:.2f} s, {len(changes)} changes")

            manifests = [m for r in one.desired if r.kind == "service"
                         for m in service_manifests("bench", r, 1, {}).all()]
            client = cluster.client()

            def dry_run(manifest: dict[str, Any]) -> float:
                began = time.perf_counter()
                answer = client.patch(resource_path(manifest),
                                      params={"fieldManager": "railguard", "force": "true", "dryRun": "All"},
                                      content=_json(manifest), headers={"Content-Type": "application/apply-patch+yaml"})
                assert answer.status_code in (200, 201), answer.text[:500]
                return time.perf_counter() - began

            with ThreadPoolExecutor(workers) as pool:
                dry_s, each = timed(lambda: list(pool.map(dry_run, manifests)))
            print(f"dry-run of {len(manifests)} manifests, {workers} in parallel: {dry_s:.2f} s "
                  f"(median request {statistics.median(each) * 1000:.0f} ms)")

            seq_s, oks = timed(lambda: [one.apply_one(c, 1) for c in changes])
            print(f"apply sequential to Available: {seq_s:.1f} s ({sum(oks)}/{len(oks)} changes ok)")
            again_s, left = timed(one.plan)
            print(f"plan (after apply, observe + planner): {again_s:.2f} s, {len(left)} changes")

            two = Env(cluster, root / "two", cluster.create_namespace("bench-par"), n)
            changes2 = two.plan()
            first = [c for c in changes2 if c.kind != "service"]  # environment-wide objects before the services
            services = [c for c in changes2 if c.kind == "service"]

            def parallel() -> list[bool]:
                done = [two.apply_one(c, 1) for c in first]
                with ThreadPoolExecutor(workers) as pool:
                    return done + list(pool.map(lambda c: two.apply_one(c, 1), services))

            par_s, oks2 = timed(parallel)
            print(f"apply {workers} services at a time to Available: {par_s:.1f} s ({sum(oks2)}/{len(oks2)} ok)")

            def available(namespace: str) -> bool:
                got = cluster.get(f"/apis/apps/v1/namespaces/{namespace}/deployments") or {}
                return sum(1 for d in got.get("items", []) if d.get("status", {}).get("availableReplicas")) == n

            wait_until(lambda: available(two.namespace), 120, "every Deployment Available")

            # The test cluster's Service IP range holds 254 addresses: the first namespace's Services go first.
            one.provider.shutdown(ShutdownRequest())
            cluster.delete_namespace(one.namespace, wait=True)
            three = Env(cluster, root / "three", cluster.create_namespace("bench-engine"), n)
            changes3 = three.plan()
            store = Store.open(root / "three" / ".railguard")
            op = store.create_operation("staging", "apply", None, "bench")
            ctx = Context(source_root=root / "three", spec_root=root / "three", app="bench")
            engine_s, failed = timed(lambda: run_changes(store, op, "staging", changes3, three.desired,
                                                         three.provider, 1, ctx))
            print(f"apply through the engine (run_changes) to Available: {engine_s:.1f} s "
                  f"({'ok' if not failed else failed[0].summary}; {len(changes3)} changes)")
            if not failed:
                wait_until(lambda: available(three.namespace), 120, "every Deployment Available")
            client.close()
            for env in (two, three):
                env.provider.shutdown(ShutdownRequest())
            for ns in (two.namespace, three.namespace):
                cluster.delete_namespace(ns, wait=False)


def _json(manifest: dict[str, Any]) -> str:
    import json

    return json.dumps(manifest)


if __name__ == "__main__":
    main()
