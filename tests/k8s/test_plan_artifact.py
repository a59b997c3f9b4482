"""The plan's server-side dry-run of a service without an image carries the artifact's init container and mount.

A plan shows the server's diff of each changed object (``cluster.server_diff``). For a service whose code comes
as an artifact bundle, the dry-run used to be sent without the init container, its volume and the app's mount and
working directory, so every plan of such a service showed the server removing them — a change the apply never
makes. Here a real API server answers: after an apply, a plan that changes one variable shows that variable and
nothing of the artifact; a plan of new code shows the artifact's digest changing, and nothing else of it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from railguard.engine import planner
from railguard.model.plans import Action
from railguard.model.resources import Resource, desired_resources
from railguard.model.specfile import parse_spec
from railguard.providers.base import ApplyRequest, ObserveRequest, Provider, ShutdownRequest
from railguard.providers.registry import open_provider
from railguard.sources.store import SnapshotStore, capture

from .cluster import Cluster

pytestmark = pytest.mark.timeout(600)

SPEC = """
[app]
name = "shop"

[environments.staging]
target = "kubernetes"
[environments.staging.kubernetes]
namespace = "{namespace}"
kubeconfig = "{kubeconfig}"
base_image = "python:3.12-slim"
artifact_store = "http://127.0.0.1:9"

[services.web]
run = ["python", "app.py"]
env = {{ VERSION = "{version}" }}
start_timeout = "30s"
[services.web.health]
http = "/healthz"
interval = "1s"
"""
ARTIFACT = ("initContainers", "volumes", "volumeMounts", "workingDir", "PYTHONPATH")


def _desired(folder: Path, home: Path, namespace: str, kubeconfig: Path, version: str) -> list[Resource]:
    spec, diagnostics = parse_spec(SPEC.format(namespace=namespace, kubeconfig=kubeconfig, version=version))
    assert spec is not None, diagnostics
    snap, _ = capture(SnapshotStore.of(home), folder)  # what `railguard plan` stores
    return desired_resources(spec, "staging", snap.digest)


def _server_diff(provider: Provider, desired: list[Resource]) -> list[str]:
    found = provider.observe(ObserveRequest(env="staging", desired=desired))
    assert not [d for d in found.diagnostics if d.severity == "error"], found.diagnostics
    return [p for d in found.diagnostics if d.code == "cluster.server_diff" and d.extra["kind"] == "Deployment"
            for p in d.extra["paths"]]


def test_the_plan_dry_run_keeps_the_artifact_mount(k8s_cluster: Cluster, tmp_path: Path) -> None:
    folder, home = tmp_path / "app", tmp_path / "app" / ".railguard"
    home.mkdir(parents=True)
    (folder / "app.py").write_text("print('v1')\n")
    namespace = k8s_cluster.create_namespace("plan-artifact")
    kubeconfig = k8s_cluster.write_kubeconfig(tmp_path / "kubeconfig")
    provider = open_provider(home, secrets=lambda env, versions: {})
    try:
        desired = _desired(folder, home, namespace, kubeconfig, "1")
        live = provider.observe(ObserveRequest(env="staging", desired=desired)).resources
        wanted = {r.address: r for r in desired}
        for change in planner.plan("staging", desired, list(live), 0).changes:
            if change.action is Action.noop or change.kind == "environment":
                continue
            answer = provider.apply_change(ApplyRequest(env="staging", change=change,
                                                        desired=wanted.get(change.address), operation_id="op1",
                                                        release=1, app="shop", source_root=str(folder)))
            assert answer.ok, answer.diagnostics
        deployment = k8s_cluster.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/web")
        assert deployment is not None and deployment["spec"]["template"]["spec"]["initContainers"]

        # One variable changes: the server's diff is that variable, nothing of the artifact.
        paths = _server_diff(provider, _desired(folder, home, namespace, kubeconfig, "2"))
        assert paths and all("containers[0].env" in p for p in paths), paths
        assert not [p for p in paths if any(a in p for a in ARTIFACT)], paths

        # New code: the bundle is not made yet (apply makes it), so its digest is all that changes of the artifact.
        (folder / "app.py").write_text("print('v2')\n")
        paths = _server_diff(provider, _desired(folder, home, namespace, kubeconfig, "1"))
        assert paths and all("initContainers[0].env" in p for p in paths), paths
    finally:
        provider.shutdown(ShutdownRequest())
        k8s_cluster.delete_namespace(namespace, wait=False)
