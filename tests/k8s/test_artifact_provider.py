"""A service without an image, end to end: spec → the Kubernetes provider (with the artifact hook) → a Deployment on
the real API server → its init container's program, run here against the daemon's real artifact listener with the
URL, digest and token read back from the live Deployment and the token Secret the provider applied → the app's
files, as the plan stored them (not as the working tree has them since).

Nothing runs in pods on the test cluster, so the init container's program runs as a local process; everything it is
given comes from the cluster.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from railguard.daemon.artifact_server import ArtifactServer
from railguard.engine import planner
from railguard.model.plans import Action
from railguard.model.resources import desired_resources
from railguard.model.specfile import parse_spec
from railguard.providers.base import ApplyRequest, ObserveRequest, ShutdownRequest
from railguard.providers.registry import open_provider
from railguard.sources.artifact_bundles import BundleStore
from railguard.sources.store import SnapshotStore, capture

from .cluster import Cluster, free_port

pytestmark = pytest.mark.timeout(600)

SPEC = """
[app]
name = "shop"

[environments.staging]
target = "kubernetes"
[environments.staging.kubernetes]
namespace = "{namespace}"
kubeconfig = "{kubeconfig}"
context = "test"
base_image = "{base_image}"
artifact_store = "{store}"

[services.web]
run = ["python", "app.py"]
replicas = 1
start_timeout = "60s"
[services.web.health]
http = "/healthz"
interval = "1s"
"""


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """The daemon's artifact listener on a free loopback port, serving the state folder ``home``."""
    home = tmp_path / "app" / ".railguard"
    home.mkdir(parents=True)
    server = ArtifactServer(("127.0.0.1", free_port()), home)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield home, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_a_service_without_image_gets_its_artifact_through_the_init_container(
        k8s_cluster: Cluster, tmp_path: Path, listener: tuple[Path, str]) -> None:
    home, store = listener
    folder = home.parent
    (folder / "app.py").write_text("print('the planned code')\n")
    namespace = k8s_cluster.create_namespace("artifact-provider")
    kubeconfig = k8s_cluster.write_kubeconfig(tmp_path / "kubeconfig")
    text = SPEC.format(namespace=namespace, kubeconfig=kubeconfig, store=store,
                       base_image=f"python:{sys.version_info.major}.{sys.version_info.minor}-slim")
    spec, diagnostics = parse_spec(text)
    assert spec is not None, diagnostics
    snap, _ = capture(SnapshotStore.of(home), folder)  # what `railguard plan` stores
    (folder / "app.py").write_text("print('edited after the plan')\n")  # the working tree moves on
    desired = desired_resources(spec, "staging", snap.digest)
    provider = open_provider(home, secrets=lambda env, versions: {})  # the registry composes the artifact path
    try:
        live = provider.observe(ObserveRequest(env="staging", desired=desired)).resources
        changes = [c for c in planner.plan("staging", desired, list(live), 0).changes
                   if c.action is not Action.noop and c.kind != "environment"]
        wanted = {r.address: r for r in desired}
        for change in changes:
            answer = provider.apply_change(ApplyRequest(env="staging", change=change,
                                                        desired=wanted.get(change.address), operation_id="op1",
                                                        release=1, app="shop", source_root=str(folder)))
            assert answer.ok, answer.diagnostics

        deployment = k8s_cluster.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/web")
        assert deployment is not None and deployment["status"].get("availableReplicas") == 1
        pod = deployment["spec"]["template"]["spec"]
        [init] = pod["initContainers"]
        env: dict[str, Any] = {e["name"]: e for e in init["env"]}
        [app] = pod["containers"]
        assert app["workingDir"] == "/app/src"
        assert {"name": "railguard-artifact", "mountPath": "/app", "readOnly": True} in app["volumeMounts"]
        ref = env["RAILGUARD_ARTIFACT_TOKEN"]["valueFrom"]["secretKeyRef"]
        secret = k8s_cluster.get(f"/api/v1/namespaces/{namespace}/secrets/{ref['name']}")
        assert secret is not None
        token = base64.b64decode(secret["data"][ref["key"]]).decode()
        digest = env["RAILGUARD_ARTIFACT_DIGEST"]["value"]
        assert BundleStore.of(home).allowed("staging", digest)

        dest = tmp_path / "pod-app"
        dest.mkdir()
        ran = subprocess.run([sys.executable, *init["command"][1:]], capture_output=True, text=True, timeout=60,
                             check=False, env={"PATH": os.environ["PATH"], "RAILGUARD_ARTIFACT_TOKEN": token,
                                               "RAILGUARD_ARTIFACT_DEST": str(dest),
                                               **{k: v["value"] for k, v in env.items() if "value" in v
                                                  and k != "RAILGUARD_ARTIFACT_DEST"}})
        assert ran.returncode == 0, ran.stderr
        assert (dest / "src" / "app.py").read_text() == "print('the planned code')\n"  # the plan's, not the tree's
    finally:
        provider.shutdown(ShutdownRequest())
        k8s_cluster.delete_namespace(namespace, wait=False)

