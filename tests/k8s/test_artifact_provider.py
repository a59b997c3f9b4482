"""A service without an image, end to end: spec → the Kubernetes provider (with the artifact hook) → a Deployment on
the real API server → its init container's program, run here against the daemon's real artifact listener with the
URL, digest and token read back from the live Deployment and the token Secret the provider applied → the app's
files, as the plan stored them (not as the working tree has them since).

Nothing runs in pods on the test cluster, so the init container's program runs as a local process; everything it is
given comes from the cluster.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
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
from .nodeagent import InitCheck

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
start_timeout = "{start}"
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
    text = SPEC.format(namespace=namespace, kubeconfig=kubeconfig, store=store, start="60s",
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



def _run_init(cluster: Cluster, namespace: str, root: Path) -> InitCheck:
    """What a kubelet would do with the init container: run its command with its variables (the Secret's value
    resolved), here as a local process extracting into a folder per pod; its stderr is the failure message."""

    def check(pod: dict[str, Any], init: dict[str, Any]) -> str | None:
        env = {"PATH": os.environ["PATH"], "RAILGUARD_ARTIFACT_TRIES": "1"}
        for item in init.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                secret = cluster.get(f"/api/v1/namespaces/{namespace}/secrets/{ref['name']}") or {"data": {}}
                env[item["name"]] = base64.b64decode(secret["data"].get(ref["key"], "")).decode()
        dest = root / pod["metadata"]["name"]
        dest.mkdir(parents=True, exist_ok=True)
        env["RAILGUARD_ARTIFACT_DEST"] = str(dest)
        done = subprocess.run([sys.executable, *init["command"][1:]], env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        return None if done.returncode == 0 else done.stderr.strip()[-400:] or f"exit {done.returncode}"

    return check


@pytest.fixture
def pods_rig(k8s_cluster: Cluster, tmp_path: Path, listener: tuple[Path, str]) -> Iterator[Any]:
    """A namespace whose pods' init containers really run (see :func:`_run_init`), the provider, and ``apply``."""
    home, store = listener
    folder = home.parent
    (folder / "app.py").write_text("print('release one')\n")
    namespace = k8s_cluster.create_namespace("artifact-pods")
    pods = Path(tempfile.mkdtemp(prefix="pods-"))
    assert k8s_cluster.agent is not None
    k8s_cluster.agent.on_init(namespace, _run_init(k8s_cluster, namespace, pods))
    kubeconfig = k8s_cluster.write_kubeconfig(tmp_path / "kubeconfig")
    snap, _ = capture(SnapshotStore.of(home), folder)
    provider = open_provider(home, secrets=lambda env, versions: {})

    def apply(store_url: str, release: int) -> list[Any]:
        text = SPEC.format(namespace=namespace, kubeconfig=kubeconfig, store=store_url, start="15s",
                           base_image=f"python:{sys.version_info.major}.{sys.version_info.minor}-slim")
        spec, diagnostics = parse_spec(text)
        assert spec is not None, diagnostics
        desired = desired_resources(spec, "staging", snap.digest)
        live = provider.observe(ObserveRequest(env="staging", desired=desired)).resources
        wanted = {r.address: r for r in desired}
        answers = []
        for change in [c for c in planner.plan("staging", desired, list(live), 0).changes
                       if c.action is not Action.noop and c.kind == "service"]:
            answers.append(provider.apply_change(ApplyRequest(
                env="staging", change=change, desired=wanted[change.address], operation_id=f"op{release}",
                release=release, app="shop", source_root=str(folder))))
        return answers

    try:
        yield type("PodsRig", (), {"apply": staticmethod(apply), "store": store, "pods": pods,
                                   "namespace": namespace})
    finally:
        k8s_cluster.agent.clear(namespace)
        provider.shutdown(ShutdownRequest())
        k8s_cluster.delete_namespace(namespace, wait=False)


def test_pods_run_the_init_program_and_get_the_planned_code(pods_rig: Any) -> None:
    assert all(a.ok for a in pods_rig.apply(pods_rig.store, 1))
    fetched = sorted(p.name for p in pods_rig.pods.iterdir() if (p / "src" / "app.py").is_file())
    assert fetched, "no pod ran its init container"
    assert all((pods_rig.pods / name / "src" / "app.py").read_text() == "print('release one')\n" for name in fetched)


def test_an_unreachable_store_fails_the_rollout_and_the_previous_release_keeps_its_artifact(
        pods_rig: Any, k8s_cluster: Cluster) -> None:
    assert all(a.ok for a in pods_rig.apply(pods_rig.store, 1))
    # Release 2 points its pods at a store nobody serves: their init containers fail, and the rollout with them.
    [failed] = pods_rig.apply(f"http://127.0.0.1:{free_port()}", 2)
    assert not failed.ok and failed.diagnostics[0].code == "cluster.rollout_failed", failed.diagnostics
    assert "railguard-artifact" in json.dumps(failed.diagnostics[0].model_dump(mode="json"))
    deployment = k8s_cluster.get(f"/apis/apps/v1/namespaces/{pods_rig.namespace}/deployments/web")
    assert deployment is not None
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"]["railguard.dev/release"] == "1"
    # Release 1's pods need their artifact as much as before: the restored template still fetches it.
    [init] = template["spec"]["initContainers"]
    assert {e["name"]: e.get("value") for e in init["env"]}["RAILGUARD_ARTIFACT_URL"].startswith(pods_rig.store)
