"""`railguard daemon stop --everything` on a Kubernetes environment removes this state's app and environments only.

It used to delete every object labelled ``managed-by=railguard`` in each namespace the daemon was connected to:
another app's Railguard objects sharing the namespace (two apps may both name their environment ``staging``)
went too. Here the provider applies its service into a namespace that also holds another app's Railguard-labelled
Deployment and Service (applied by the admin, as that app's own Railguard would), then stops everything: its own
objects and pods are gone, the other app's stay, and what it removed is listed (and written to daemon.log).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from railguard.engine import planner
from railguard.model.plans import Action
from railguard.model.resources import desired_resources
from railguard.model.specfile import parse_spec
from railguard.providers.base import ApplyRequest, ObserveRequest, ShutdownRequest
from railguard.providers.kubernetes.provider import KubernetesProvider
from railguard.providers.registry import open_provider

from .cluster import Cluster

pytestmark = pytest.mark.timeout(600)
IMAGE = "registry.example/shop@sha256:" + "0123456789abcdef" * 4
SPEC = """
[app]
name = "shop"

[environments.staging]
target = "kubernetes"
[environments.staging.kubernetes]
namespace = "{namespace}"
kubeconfig = "{kubeconfig}"

[services.web]
run = ["python", "app.py"]
image = "{image}"
start_timeout = "20s"
stop_timeout = "1s"
drain_timeout = "0s"
"""
BLOG = {"app.kubernetes.io/managed-by": "railguard", "app.kubernetes.io/name": "blog",
        "railguard.dev/environment": "staging", "railguard.dev/service": "feed"}


def test_stop_everything_removes_only_this_apps_environment(k8s_cluster: Cluster, tmp_path: Path) -> None:
    namespace = k8s_cluster.create_namespace("stop-everything")
    kubeconfig = k8s_cluster.write_kubeconfig(tmp_path / "kubeconfig")
    # Another app's objects, labelled as its own Railguard labels them.
    k8s_cluster.apply({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "feed", "namespace": namespace, "labels": BLOG},
                       "spec": {"replicas": 1, "selector": {"matchLabels": BLOG},
                                "template": {"metadata": {"labels": BLOG}, "spec": {"containers": [
                                    {"name": "feed", "image": IMAGE}]}}}})
    k8s_cluster.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "feed", "namespace": namespace,
                                                                          "labels": BLOG},
                       "spec": {"selector": BLOG, "ports": [{"port": 80, "protocol": "TCP"}]}})
    spec, diagnostics = parse_spec(SPEC.format(namespace=namespace, kubeconfig=kubeconfig, image=IMAGE))
    assert spec is not None, diagnostics
    desired = desired_resources(spec, "staging", "sha256:" + "ab" * 32)
    provider = open_provider(tmp_path / ".railguard", secrets=lambda env, versions: {})
    try:
        live = provider.observe(ObserveRequest(env="staging", desired=desired)).resources
        wanted = {r.address: r for r in desired}
        for change in planner.plan("staging", desired, list(live), 0).changes:
            if change.action is Action.noop or change.kind == "environment":
                continue
            answer = provider.apply_change(ApplyRequest(env="staging", change=change,
                                                        desired=wanted.get(change.address), operation_id="op1",
                                                        release=1, app="shop"))
            assert answer.ok, answer.diagnostics
        assert k8s_cluster.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/web") is not None
    finally:
        provider.shutdown(ShutdownRequest(everything=True))
    try:
        assert k8s_cluster.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/web") is None
        assert k8s_cluster.get(f"/api/v1/namespaces/{namespace}/services/web") is None
        assert k8s_cluster.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/feed") is not None
        assert k8s_cluster.get(f"/api/v1/namespaces/{namespace}/services/feed") is not None
        pods = k8s_cluster.get(f"/api/v1/namespaces/{namespace}/pods?labelSelector=app.kubernetes.io/name%3Dshop")
        assert pods is not None and not pods["items"]
        kubernetes = provider.kubernetes  # type: ignore[attr-defined]
        assert isinstance(kubernetes, KubernetesProvider)
        removed = "\n".join(kubernetes.removed)
        assert "Deployment web (app shop, environment staging" in removed and "Service web" in removed, removed
        assert "feed" not in removed
    finally:
        k8s_cluster.delete_namespace(namespace, wait=False)
