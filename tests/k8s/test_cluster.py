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

from .cluster import Cluster, wait_until

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
    got = cluster.get(f"/api/v1/namespaces/{ns}/pods?labelSelector={selector}")
    return (got or {}).get("items", [])


@pytest.fixture
def namespace(k8s_cluster: Cluster, request: pytest.FixtureRequest) -> Any:
    name = "t-" + request.node.name.removeprefix("test_").replace("_", "-")[:40].rstrip("-")
    k8s_cluster.create_namespace(name)
    yield name
    assert k8s_cluster.agent is not None
    k8s_cluster.agent.clear()
    k8s_cluster.delete_namespace(name, wait=False)


def test_a_deployment_becomes_available_on_the_simulated_node(k8s_cluster: Cluster, namespace: str) -> None:
    k8s_cluster.apply(deployment(namespace, "web"))
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/web"

    def available() -> dict[str, Any] | None:
        got = k8s_cluster.get(path)
        if got and condition(got, "Available").get("status") == "True" and \
                got["status"].get("availableReplicas") == 3 and got["status"].get("updatedReplicas") == 3:
            return got
        return None

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

    def stuck() -> dict[str, Any] | None:
        got = k8s_cluster.get(path)
        return got if condition(got, "Progressing").get("reason") == "ProgressDeadlineExceeded" else None

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


def test_jobs_complete_or_fail_as_the_agent_is_told(k8s_cluster: Cluster, namespace: str) -> None:
    assert k8s_cluster.agent is not None
    k8s_cluster.agent.behave(namespace, {"job": "broken"}, "fail")
    k8s_cluster.agent.behave(namespace, {"job": "broken-onfailure"}, "fail")
    for name, restart in (("migrate", "Never"), ("broken", "Never"), ("broken-onfailure", "OnFailure")):
        k8s_cluster.apply(job(namespace, name, restart))

    def finished(name: str, kind: str) -> dict[str, Any] | None:
        got = k8s_cluster.get(f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")
        return got if condition(got, kind).get("status") == "True" else None

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
