"""The test control plane does what the Kubernetes provider's tests rely on, against the real API server (no mocks):
Deployments roll out to Available on the simulated node, a crash-looping rollout never progresses and shows why, Jobs
complete or fail, RBAC denies a limited user until a RoleBinding grants the verb, and the kubeconfig it writes works.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from . import cluster as cluster_module
from .cluster import Cluster, ClusterError, binaries, start_cluster, wait_until

pytestmark = pytest.mark.timeout(600)  # the first test pays the cluster's start (10-60 s on a loaded machine)


def deployment(ns: str, name: str, replicas: int = 3, progress_deadline: int = 600) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"replicas": replicas, "progressDeadlineSeconds": progress_deadline,
                 "selector": {"matchLabels": dict(labels)},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                 "template": {"metadata": {"labels": dict(labels)}, "spec": {
                     "automountServiceAccountToken": False,
                     "initContainers": [{"name": "fetch", "image": "python:3.11-slim", "command": ["true"]}],
                     "containers": [{"name": "web", "image": "python:3.11-slim", "command": ["python", "app.py"],
                                     "ports": [{"containerPort": 8000, "protocol": "TCP"}],
                                     "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8000}}}]}}}}


def job(ns: str, name: str, restart: str = "Never") -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": ns,
                                                                 "labels": {"job": name}},
            "spec": {"backoffLimit": 1, "template": {"metadata": {"labels": {"job": name}}, "spec": {
                "restartPolicy": restart, "automountServiceAccountToken": False,
                "containers": [{"name": "release", "image": "python:3.11-slim", "command": ["python", "m.py"]}]}}}}


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for cond in (obj or {}).get("status", {}).get("conditions") or []:
        if cond["type"] == kind:
            return cond  # type: ignore[no-any-return]
    return {}


def pods(cluster: Cluster, ns: str, selector: str) -> list[dict[str, Any]]:
    got = cluster.get(f"/api/v1/namespaces/{ns}/pods?labelSelector={selector}") or {}
    return list(got.get("items", []))


@pytest.fixture
def namespace(k8s_cluster: Cluster, request: pytest.FixtureRequest) -> Any:
    name = "t-" + request.node.name.removeprefix("test_").replace("_", "-")[:40].rstrip("-")
    k8s_cluster.create_namespace(name)
    yield name
    assert k8s_cluster.agent is not None
    k8s_cluster.agent.clear(name)
    k8s_cluster.delete_namespace(name, wait=False)


def test_a_deployment_becomes_available_on_the_simulated_node(k8s_cluster: Cluster, namespace: str) -> None:
    k8s_cluster.apply(deployment(namespace, "web"))
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/web"

    def available() -> dict[str, Any]:
        got = k8s_cluster.get(path) or {}
        if condition(got, "Available").get("status") == "True" and \
                got["status"].get("availableReplicas") == 3 and got["status"].get("updatedReplicas") == 3:
            return got
        return {}

    got = wait_until(available, 120, "deployment web to be Available with 3 replicas")
    assert got["status"]["observedGeneration"] == got["metadata"]["generation"]
    assert condition(got, "Progressing")["reason"] == "NewReplicaSetAvailable"
    running = pods(k8s_cluster, namespace, "app=web")
    assert len(running) == 3
    for pod in running:
        status = pod["status"]
        assert pod["spec"]["nodeName"] == "sim-node-1"  # placed by the real scheduler
        assert status["phase"] == "Running" and "podIP" not in status  # never an IP: nothing may dial a pod
        assert {c["type"]: c["status"] for c in status["conditions"]} == {
            "PodScheduled": "True", "Initialized": "True", "ContainersReady": "True", "Ready": "True"}
        assert status["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
        (web,) = status["containerStatuses"]
        assert web["ready"] and web["started"] and web["restartCount"] == 0
    node = k8s_cluster.get("/api/v1/nodes/sim-node-1")
    assert condition(node, "Ready")["status"] == "True"
    assert {"type": "InternalIP", "address": "127.0.0.1"} in node["status"]["addresses"]  # type: ignore[index]
    lease = k8s_cluster.get("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/sim-node-1")
    assert lease and lease["spec"]["holderIdentity"] == "sim-node-1"

    # Scaling down: the terminating pods are deleted by the node at once (graceful deletion finished).
    scaled = deployment(namespace, "web", replicas=1)
    k8s_cluster.apply(scaled)
    wait_until(lambda: len(pods(k8s_cluster, namespace, "app=web")) == 1, 120, "web to scale down to one pod")


def test_a_crashlooping_rollout_never_progresses_and_shows_why(k8s_cluster: Cluster, namespace: str) -> None:
    assert k8s_cluster.agent is not None
    k8s_cluster.apply(deployment(namespace, "api", replicas=2))
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/api"
    wait_until(lambda: (k8s_cluster.get(path) or {}).get("status", {}).get("availableReplicas") == 2, 120,
               "deployment api to be Available")
    # The next release crash-loops: its pods carry version=2, the old ones keep serving (maxUnavailable 0).
    k8s_cluster.agent.behave(namespace, {"app": "api", "version": "2"}, "crashloop")
    broken = deployment(namespace, "api", replicas=2, progress_deadline=10)
    broken["spec"]["template"]["metadata"]["labels"]["version"] = "2"
    k8s_cluster.apply(broken)

    def stuck() -> dict[str, Any]:
        got = k8s_cluster.get(path) or {}
        return got if condition(got, "Progressing").get("reason") == "ProgressDeadlineExceeded" else {}

    got = wait_until(stuck, 180, "the rollout of api to exceed its progress deadline")
    assert condition(got, "Progressing")["status"] == "False"
    assert got["status"]["availableReplicas"] == 2  # the previous release still serves
    assert got["status"].get("updatedReplicas", 0) >= 1

    def crashlooping() -> list[dict[str, Any]]:
        found = []
        for pod in pods(k8s_cluster, namespace, "app=api,version=2"):
            for c in pod["status"].get("containerStatuses") or []:
                if c["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff" and c["restartCount"] >= 2:
                    found.append(c)
        return found

    (web, *_) = wait_until(crashlooping, 60, "a new pod of api to show CrashLoopBackOff with restarts")
    assert not web["ready"] and web["lastState"]["terminated"]["exitCode"] == 1

    def backoff_events() -> list[dict[str, Any]]:
        listed = k8s_cluster.get(f"/api/v1/namespaces/{namespace}/events?fieldSelector=reason=BackOff") or {}
        return [e for e in listed.get("items", []) if e["type"] == "Warning" and e["count"] >= 2]

    (event, *_) = wait_until(backoff_events, 60, "a BackOff warning event counting the restarts")
    assert event["involvedObject"]["kind"] == "Pod" and event["source"]["component"] == "kubelet"


def test_a_never_ready_pod_keeps_a_deployment_unavailable(k8s_cluster: Cluster, namespace: str) -> None:
    assert k8s_cluster.agent is not None
    k8s_cluster.agent.behave(namespace, {"app": "slow"}, "never-ready")
    k8s_cluster.apply(deployment(namespace, "slow", replicas=1))

    def running_not_ready() -> list[dict[str, Any]]:
        return [p for p in pods(k8s_cluster, namespace, "app=slow")
                if p["status"].get("phase") == "Running" and condition(p, "Ready").get("status") == "False"]

    (pod,) = wait_until(running_not_ready, 120, "the pod of slow to run without becoming ready")
    (web,) = pod["status"]["containerStatuses"]
    assert web["started"] and not web["ready"] and "running" in web["state"]
    got = k8s_cluster.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/slow")
    assert condition(got, "Available")["status"] == "False"
    # Clearing the rule lets the same pod become ready: the agent follows rule changes on running pods.
    k8s_cluster.agent.clear()
    wait_until(lambda: (k8s_cluster.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/slow") or {})
               .get("status", {}).get("availableReplicas") == 1, 120, "slow to become Available")


def test_init_containers_follow_the_namespace_check_and_images_can_fail_to_pull(k8s_cluster: Cluster,
                                                                               namespace: str) -> None:
    assert k8s_cluster.agent is not None
    calls: list[tuple[str, str]] = []

    def check(pod: dict[str, Any], container: dict[str, Any]) -> str | None:
        calls.append((pod["metadata"]["uid"], container["name"]))
        digest = container["args"][0]
        return None if digest == "sha256:good" else f"artifact digest mismatch: wanted {digest}, got sha256:good"

    k8s_cluster.agent.on_init(namespace, check)
    k8s_cluster.agent.behave(namespace, {"app": "unpullable"}, "image-pull-backoff")
    for name, digest in (("fetched", "sha256:good"), ("corrupt", "sha256:bad"), ("unpullable", "sha256:good")):
        manifest = deployment(namespace, name, replicas=1)
        manifest["spec"]["template"]["spec"]["initContainers"][0]["args"] = [digest]
        k8s_cluster.apply(manifest)
    wait_until(lambda: (k8s_cluster.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/fetched") or {})
               .get("status", {}).get("availableReplicas") == 1, 120, "fetched to become Available")

    def init_crashing() -> list[dict[str, Any]]:
        return [p for p in pods(k8s_cluster, namespace, "app=corrupt")
                if (p["status"].get("initContainerStatuses") or [{}])[0].get("restartCount", 0) >= 2]

    (pod,) = wait_until(init_crashing, 120, "corrupt's init container to crash-loop")
    assert pod["status"]["phase"] == "Pending"
    (fetch,) = pod["status"]["initContainerStatuses"]
    assert fetch["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert "digest mismatch" in fetch["lastState"]["terminated"]["message"]
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    assert condition(pod, "Initialized") == {**condition(pod, "Initialized"), "status": "False",
                                             "reason": "ContainersNotInitialized"}
    assert len(calls) == len(set(calls))  # once per pod and init container, however often the pod is written

    def pull_backoff() -> list[dict[str, Any]]:
        return [p for p in pods(k8s_cluster, namespace, "app=unpullable")
                if p["status"].get("containerStatuses")
                and p["status"]["containerStatuses"][0]["state"].get("waiting", {}).get("reason") == "ImagePullBackOff"]

    (pod,) = wait_until(pull_backoff, 120, "unpullable's container to wait in ImagePullBackOff")
    assert pod["status"]["phase"] == "Pending"
    got = k8s_cluster.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/unpullable")
    assert condition(got, "Available")["status"] == "False"


def test_jobs_complete_or_fail_as_the_agent_is_told(k8s_cluster: Cluster, namespace: str) -> None:
    assert k8s_cluster.agent is not None
    k8s_cluster.agent.behave(namespace, {"job": "broken"}, "fail")
    k8s_cluster.agent.behave(namespace, {"job": "broken-onfailure"}, "fail")
    for name, restart in (("migrate", "Never"), ("broken", "Never"), ("broken-onfailure", "OnFailure")):
        k8s_cluster.apply(job(namespace, name, restart))

    def finished(name: str, kind: str) -> dict[str, Any]:
        got = k8s_cluster.get(f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}") or {}
        return got if condition(got, kind).get("status") == "True" else {}

    done = wait_until(lambda: finished("migrate", "Complete"), 120, "job migrate to complete")
    assert done["status"]["succeeded"] == 1
    failed = wait_until(lambda: finished("broken", "Failed"), 120, "job broken to fail")
    assert condition(failed, "Failed")["reason"] == "BackoffLimitExceeded"
    assert failed["status"]["failed"] == 2  # backoffLimit 1: the first pod and one retry
    for pod in pods(k8s_cluster, namespace, "job=broken"):
        assert pod["status"]["phase"] == "Failed"
        assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1
    # OnFailure restarts in place: the restarts count against the backoff limit.
    restarted = wait_until(lambda: finished("broken-onfailure", "Failed"), 120, "job broken-onfailure to fail")
    assert condition(restarted, "Failed")["reason"] == "BackoffLimitExceeded"


def test_a_limited_user_is_denied_until_a_role_binding_grants_the_verb(k8s_cluster: Cluster, namespace: str) -> None:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    with k8s_cluster.client("railguard-staging") as staging:
        denied = staging.get(path)
        assert denied.status_code == 403, denied.text
        assert denied.json()["reason"] == "Forbidden" and "railguard-staging" in denied.json()["message"]
        k8s_cluster.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                           "metadata": {"name": "read-deployments", "namespace": namespace},
                           "rules": [{"apiGroups": ["apps"], "resources": ["deployments"],
                                      "verbs": ["get", "list"]}]})
        k8s_cluster.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                           "metadata": {"name": "staging-reads", "namespace": namespace},
                           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                       "name": "read-deployments"},
                           "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                         "name": "railguard-staging"}]})
        # RBAC reads its informer cache: the grant takes effect within moments, not necessarily at once.
        wait_until(lambda: staging.get(path).status_code == 200, 30, "the RoleBinding to grant list")
        create = staging.post(path, json=deployment(namespace, "nope"))
        assert create.status_code == 403, create.text  # granted get/list only
    with k8s_cluster.client("railguard-prod") as prod:
        assert prod.get(path).status_code == 403  # another user of the same namespace: still nothing
    with k8s_cluster.client("nobody") as nobody:
        assert nobody.get("/api/v1/namespaces").status_code == 403
    with k8s_cluster.client() as admin:  # who the tokens are: the limited users are in no group of their own
        for user, groups in (("nobody", ["system:authenticated"]),
                             ("admin", ["system:masters", "system:authenticated"])):
            review = admin.post("/apis/authentication.k8s.io/v1/tokenreviews", json={
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": k8s_cluster.token(user)}}).json()["status"]
            assert review["authenticated"] and review["user"]["username"] == user
            assert review["user"]["groups"] == groups


def test_the_kubeconfig_it_writes_reaches_the_server_as_its_user(k8s_cluster: Cluster, tmp_path: Path) -> None:
    import base64
    import ssl

    path = k8s_cluster.write_kubeconfig(tmp_path / "kube" / "config", user="railguard-staging", context="staging")
    config = json.loads(path.read_text())  # JSON is YAML: any kubeconfig reader takes it
    assert config["current-context"] == "staging" and oct(path.stat().st_mode & 0o777) == "0o600"
    (cluster,) = config["clusters"]
    ca = base64.b64decode(cluster["cluster"]["certificate-authority-data"]).decode()
    assert ca == k8s_cluster.ca_pem
    (user,) = config["users"]
    context = ssl.create_default_context(cadata=ca)
    with httpx.Client(base_url=cluster["cluster"]["server"], verify=context,
                      headers={"Authorization": f"Bearer {user['user']['token']}"}) as c:
        review = c.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", json={
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"verb": "create", "resource": "deployments", "group": "apps",
                                            "namespace": "default"}}})
        assert review.status_code == 201, review.text
        assert review.json()["status"]["allowed"] is False
    with httpx.Client(base_url=k8s_cluster.server, verify=k8s_cluster.ssl_context()) as c:
        assert c.get("/api/v1/namespaces", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_a_resource_quota_stops_a_rollout_with_the_reason_on_the_deployment(k8s_cluster: Cluster,
                                                                            namespace: str) -> None:
    k8s_cluster.apply({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "two-pods",
                                                                                "namespace": namespace},
                       "spec": {"hard": {"pods": "2"}}})
    wait_until(lambda: (k8s_cluster.get(f"/api/v1/namespaces/{namespace}/resourcequotas/two-pods") or {})
               .get("status", {}).get("hard"), 60, "the quota to be counted")
    k8s_cluster.apply(deployment(namespace, "big", replicas=3))

    def refused() -> dict[str, Any]:
        got = k8s_cluster.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/big")
        return condition(got, "ReplicaFailure")

    failure = wait_until(refused, 120, "the Deployment to report the quota's refusal")
    assert failure["reason"] == "FailedCreate" and "exceeded quota" in failure["message"]
    assert len(pods(k8s_cluster, namespace, "app=big")) == 2


def test_server_side_dry_run_applies_defaults_without_persisting(k8s_cluster: Cluster, namespace: str) -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": namespace},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8000, "protocol": "TCP"}]}}
    path = f"/api/v1/namespaces/{namespace}/services/web"
    headers = {"Content-Type": "application/apply-patch+yaml"}
    with k8s_cluster.client() as c:
        r = c.patch(path, params={"dryRun": "All", "fieldManager": "railguard"}, content=json.dumps(service),
                    headers=headers)
        assert r.status_code in (200, 201), r.text
        assert r.json()["spec"]["type"] == "ClusterIP" and r.json()["spec"]["sessionAffinity"] == "None"
        assert c.get(path).status_code == 404  # nothing was stored
        # The v1.20 quirk the provider must respect (shared/k8s/README.md): ports without a protocol are refused.
        del service["spec"]["ports"][0]["protocol"]  # type: ignore[index]
        r = c.patch(path, params={"dryRun": "All", "fieldManager": "railguard"}, content=json.dumps(service),
                    headers=headers)
        assert r.status_code >= 400 and "protocol" in r.text


def test_without_the_binaries_the_error_says_where_to_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAILGUARD_K8S_BIN", str(tmp_path))
    with pytest.raises(ClusterError, match="RAILGUARD_K8S_BIN=.* has no SHA256SUMS"):
        binaries()
    # A checkout with no shared/k8s above it (a clone in /tmp) names the variable too.
    monkeypatch.delenv("RAILGUARD_K8S_BIN")
    monkeypatch.setattr(cluster_module, "REPO", tmp_path / "clone")
    with pytest.raises(ClusterError, match="Set RAILGUARD_K8S_BIN"):
        binaries()


def test_a_damaged_binary_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip
    import hashlib

    source = tmp_path / "k8s"
    source.mkdir()
    lines = []
    for name in cluster_module.COMPONENTS:
        raw = f"#!/bin/sh\necho {name}\n".encode()
        (source / f"{name}.gz").write_bytes(gzip.compress(raw))
        lines.append(f"{hashlib.sha256(raw).hexdigest()}  {name}")
        lines.append(f"{hashlib.sha256(gzip.compress(raw)).hexdigest()}  {name}.gz")
    (source / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("RAILGUARD_K8S_BIN", str(source))
    monkeypatch.setattr(cluster_module, "CACHE", tmp_path / "cache")
    folder = binaries()  # good files: decompressed, verified, executable
    assert all((folder / n).stat().st_mode & 0o111 for n in cluster_module.COMPONENTS)
    (folder / "kube-scheduler").write_text("#!/bin/sh\necho tampered\n")  # a changed cached copy is redone
    binaries()
    assert "tampered" not in (folder / "kube-scheduler").read_text()
    (source / "kube-apiserver.gz").write_bytes(gzip.compress(b"something else"))
    (folder / "kube-apiserver").unlink()
    with pytest.raises(ClusterError, match="kube-apiserver.gz does not match its checksum"):
        binaries()


def test_a_component_that_cannot_start_shows_the_end_of_its_log(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "etcd"
    fake.write_text("#!/bin/sh\necho 'etcdmain: cannot access data directory: permission denied' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("RAILGUARD_ETCD", str(fake))
    with pytest.raises(ClusterError, match=r"(?s)etcd exited with status 3.*cannot access data directory"), \
            start_cluster(tmp_path / "cluster"):
        pass


def test_the_node_keeps_renewing_its_lease_and_stays_ready(k8s_cluster: Cluster) -> None:
    path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/sim-node-1"
    first = (k8s_cluster.get(path) or {})["spec"]["renewTime"]
    renewed = wait_until(lambda: (k8s_cluster.get(path) or {})["spec"]["renewTime"] != first, 60,
                         "the simulated node to renew its Lease")
    assert renewed
    node = k8s_cluster.get("/api/v1/nodes/sim-node-1")
    assert condition(node, "Ready")["status"] == "True"
    assert not [t for t in (node or {})["spec"].get("taints") or [] if t["key"].startswith("node.kubernetes.io/")]
    # The server refused none of the agent's writes (a transport error under load would be retried, not listed).
    assert k8s_cluster.agent is not None
    assert [e for e in k8s_cluster.agent.errors if " pod " in e] == []


def test_a_namespace_recreated_while_its_namesake_terminates_is_usable(k8s_cluster: Cluster) -> None:
    k8s_cluster.create_namespace("t-recreated")
    k8s_cluster.apply(deployment("t-recreated", "web", replicas=1))
    k8s_cluster.delete_namespace("t-recreated", wait=False)
    k8s_cluster.create_namespace("t-recreated")  # waits out the deletion
    assert k8s_cluster.get("/apis/apps/v1/namespaces/t-recreated/deployments/web") is None
    k8s_cluster.apply(deployment("t-recreated", "web", replicas=1))
    wait_until(lambda: (k8s_cluster.get("/apis/apps/v1/namespaces/t-recreated/deployments/web") or {})
               .get("status", {}).get("availableReplicas") == 1, 120, "web in the new namespace to be Available")
    k8s_cluster.delete_namespace("t-recreated", wait=True)
    assert k8s_cluster.get("/api/v1/namespaces/t-recreated") is None
