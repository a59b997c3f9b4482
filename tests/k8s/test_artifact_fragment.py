"""The artifact's init container, volumes, mounts and token Secret are what the real API server accepts and keeps.

v1.20 drops unknown fields silently, so the test sends a Deployment carrying the fragment (server-side apply, as
the provider does) and checks every field came back as sent; then it rolls out on the simulated node.
"""

from __future__ import annotations

from typing import Any

import pytest

from railguard.providers.kubernetes import artifacts

from .cluster import Cluster, wait_until

pytestmark = pytest.mark.timeout(600)
DIGEST = "sha256:" + "cd" * 32


def _kept(sent: Any, got: Any, where: str = "") -> None:
    """Every field of ``sent`` is in ``got`` with the same value (the server may add defaults, never drop)."""
    if isinstance(sent, dict):
        assert isinstance(got, dict), where
        for key, value in sent.items():
            assert key in got, f"{where}.{key} was dropped by the API server"
            _kept(value, got[key], f"{where}.{key}")
    elif isinstance(sent, list):
        assert isinstance(got, list) and len(got) == len(sent), where
        for i, (a, b) in enumerate(zip(sent, got, strict=True)):
            _kept(a, b, f"{where}[{i}]")
    else:
        assert sent == got, f"{where}: sent {sent!r}, got {got!r}"


def test_the_api_server_keeps_every_field_of_the_fragment(k8s_cluster: Cluster) -> None:
    ns = k8s_cluster.create_namespace("artifact-fragment")
    try:
        labels = {"app.kubernetes.io/managed-by": "railguard", "railguard.dev/service": "web"}
        secret = artifacts.token_secret(ns, "rgart_test", labels)
        _kept(secret["data"], k8s_cluster.apply(secret)["data"], "secret.data")
        init, volumes, mounts = artifacts.init_container("web", DIGEST, "http://10.0.0.5:8791", "python:3.12-slim")
        pod: dict[str, Any] = {
            "automountServiceAccountToken": False, "initContainers": [init], "volumes": volumes,
            "containers": [{"name": "web", "image": "python:3.12-slim", "command": ["python", "app.py"],
                            "workingDir": artifacts.WORKDIR, "env": artifacts.app_env(), "volumeMounts": mounts}]}
        deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                      "metadata": {"name": "web", "namespace": ns, "labels": labels},
                      "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                               "template": {"metadata": {"labels": labels}, "spec": pod}}}
        got = k8s_cluster.apply(deployment)
        _kept(pod, got["spec"]["template"]["spec"], "pod")

        def available() -> bool:
            live = k8s_cluster.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web") or {}
            return int(live.get("status", {}).get("availableReplicas") or 0) == 1

        wait_until(available, 120, "the Deployment with the artifact's init container to be Available")
    finally:
        k8s_cluster.delete_namespace(ns, wait=False)
