"""A simulated node for the test control plane: what a kubelet reports, without running anything.

Why: these machines cannot run containers, yet the Kubernetes provider must see Deployments roll out, pods crash-loop
and Jobs complete, as the real controllers decide from pod statuses. This agent (threads in the test process, HTTPS
with a bearer token, started by :func:`tests.k8s.cluster.start_cluster`) registers the Ready node ``sim-node-1``
(InternalIP 127.0.0.1), renews its Lease and Ready heartbeat, and writes the status of every pod bound to it:

- ``ready`` (default): Running, every container ready and started, conditions PodScheduled, Initialized,
  ContainersReady and Ready all True; init containers terminated (Completed). Pods owned by a Job: Succeeded
  (container terminated, exit code 0), so the Job controller marks the Job Complete.
- ``crashloop``: Running, containers waiting with reason CrashLoopBackOff, ``lastState`` terminated with exit code 1,
  ``restartCount`` growing, not ready.
- ``never-ready``: Running, containers running and started but not ready (a readiness probe that never passes).
- ``fail``: for Job pods: Failed, terminated with exit code 1 (restartPolicy OnFailure: restarts like crashloop, so
  the Job controller's backoff limit counts them). Other pods: as crashloop.

Rules: ``agent.behave(namespace, {"label": "value"}, mode)`` — the last rule whose namespace and labels match a pod
wins; ``agent.clear()`` drops all rules. Pods being deleted (``deletionTimestamp``) are deleted at once with
``gracePeriodSeconds=0``. Pods never get a ``podIP`` (the v1.20 Endpoints validation rejects loopback IPs), and the
agent never dials a pod or node address nor calls logs/exec/proxy APIs.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

NODE = "sim-node-1"
MODES = ("ready", "crashloop", "never-ready", "fail")
RESYNC = 2.0  # seconds between full relists (a watch covers what happens in between)
RESTART_EVERY = 3.0  # seconds between restarts of a crash-looping container
LEASE_EVERY = 10.0
STATUS_EVERY = 30.0


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Rule:
    namespace: str
    labels: tuple[tuple[str, str], ...]
    mode: str

    def matches(self, pod: dict[str, Any]) -> bool:
        meta = pod.get("metadata", {})
        have = meta.get("labels") or {}
        return meta.get("namespace") == self.namespace and all(have.get(k) == v for k, v in self.labels)


class NodeAgent:
    """One simulated node. ``start()`` registers it Ready and begins; ``stop()`` ends its threads (joined)."""

    def __init__(self, server: str, ca_path: str, token: str, log_path: Path | None = None,
                 node: str = NODE) -> None:
        self.server, self.ca_path, self.token, self.node = server, ca_path, token, node
        self.log_path = log_path
        self.errors: list[str] = []  # the last problems met (bounded), for a failing test's message
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._kick = threading.Event()  # a rule changed: reconcile now, not at the next resync
        self._threads: list[threading.Thread] = []
        self._restarts: dict[str, tuple[int, float]] = {}  # pod uid -> (restart count, when it last grew)
        self._written: dict[str, str] = {}  # pod uid -> the status last written (skip identical patches)
        self._started_at: dict[str, str] = {}

    # ------------------------------------------------------------------------------------------ rules (tests)

    def behave(self, namespace: str, labels: dict[str, str], mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        with self._lock:
            self._rules.append(Rule(namespace, tuple(sorted(labels.items())), mode))
        self._kick.set()

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
        self._kick.set()

    def mode_of(self, pod: dict[str, Any]) -> str:
        with self._lock:
            for rule in reversed(self._rules):
                if rule.matches(pod):
                    return rule.mode
        return "ready"

    # ------------------------------------------------------------------------------------------- lifecycle

    def _client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.server, verify=ssl.create_default_context(cafile=self.ca_path),
                            timeout=timeout, headers={"Authorization": f"Bearer {self.token}"})

    def start(self) -> None:
        with self._client() as c:
            self._register(c)
        for target, name in ((self._heartbeat_loop, "heartbeat"), (self._pod_loop, "pods")):
            thread = threading.Thread(target=target, name=f"{self.node}-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        for thread in self._threads:
            thread.join(timeout=60)
        self._threads.clear()

    def _log(self, message: str) -> None:
        line = f"{_micro_now()} {message}"
        self.errors = (self.errors + [line])[-20:]
        if self.log_path is not None:
            with contextlib.suppress(OSError), self.log_path.open("a") as f:
                f.write(line + "\n")

    # ---------------------------------------------------------------------------------------- node, lease

    def _node_status(self) -> dict[str, Any]:
        now = _now()
        resources = {"cpu": "16", "memory": "64Gi", "pods": "1000", "ephemeral-storage": "100Gi"}

        def cond(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
            return {"type": kind, "status": status, "reason": reason, "message": message,
                    "lastHeartbeatTime": now, "lastTransitionTime": self._node_since}

        return {
            "capacity": resources, "allocatable": resources,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": self.node}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": "sim", "systemUUID": "sim", "bootID": "sim", "kernelVersion": "sim",
                         "osImage": "simulated node (railguard tests)", "containerRuntimeVersion": "sim://0",
                         "kubeletVersion": "v1.20.2", "kubeProxyVersion": "v1.20.2", "operatingSystem": "linux",
                         "architecture": "amd64"},
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "simulated"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "simulated"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "simulated"),
                cond("Ready", "True", "KubeletReady", "simulated node is posting ready status"),
            ],
        }

    def _register(self, c: httpx.Client) -> None:
        self._node_since = _now()
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.node, "labels": {"kubernetes.io/hostname": self.node,
                                                           "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                                                           "railguard.dev/simulated": "true"}},
                "spec": {}}
        r = c.post("/api/v1/nodes", json=body)
        if r.status_code not in (201, 409):
            raise RuntimeError(f"registering node {self.node} failed: {r.status_code} {r.text[:500]}")
        self._patch_node_status(c)
        node = c.get(f"/api/v1/nodes/{self.node}").raise_for_status().json()
        self._node_uid = node["metadata"]["uid"]
        self._renew_lease(c)

    def _patch_node_status(self, c: httpx.Client) -> None:
        r = c.patch(f"/api/v1/nodes/{self.node}/status", content=json.dumps({"status": self._node_status()}),
                    headers={"Content-Type": "application/merge-patch+json"})
        r.raise_for_status()

    def _renew_lease(self, c: httpx.Client) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node}"
        spec = {"holderIdentity": self.node, "leaseDurationSeconds": 40, "renewTime": _micro_now()}
        r = c.patch(path, content=json.dumps({"spec": spec}), headers={"Content-Type": "application/merge-patch+json"})
        if r.status_code == 404:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.node, "namespace": "kube-node-lease",
                                 "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.node,
                                                      "uid": self._node_uid}]},
                    "spec": spec}
            r = c.post("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", json=body)
        r.raise_for_status()

    def _heartbeat_loop(self) -> None:
        last_status = time.monotonic()
        with self._client(timeout=10) as c:
            while not self._stop.wait(LEASE_EVERY):
                try:
                    self._renew_lease(c)
                    if time.monotonic() - last_status >= STATUS_EVERY:
                        self._patch_node_status(c)
                        last_status = time.monotonic()
                except httpx.HTTPError as exc:
                    self._log(f"heartbeat: {exc!r}")

    # ----------------------------------------------------------------------------------------------- pods

    def _pod_loop(self) -> None:
        with self._client(timeout=30) as c:
            while not self._stop.is_set():
                try:
                    version = self._resync(c)
                    self._kick.clear()
                    self._watch(c, version)
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    self._log(f"pods: {exc!r}")
                    self._stop.wait(0.5)

    def _resync(self, c: httpx.Client) -> str:
        r = c.get("/api/v1/pods", params={"fieldSelector": f"spec.nodeName={self.node}"})
        r.raise_for_status()
        listed = r.json()
        seen = set()
        for pod in listed.get("items", []):
            seen.add(pod["metadata"]["uid"])
            self._reconcile(c, pod)
        for uid in list(self._written):  # pods gone: forget them
            if uid not in seen:
                self._written.pop(uid, None)
                self._restarts.pop(uid, None)
                self._started_at.pop(uid, None)
        return str(listed["metadata"]["resourceVersion"])

    def _watch(self, c: httpx.Client, version: str) -> None:
        """Events until the next resync is due (the server ends the watch after ``timeoutSeconds``)."""
        params = {"fieldSelector": f"spec.nodeName={self.node}", "watch": "1", "resourceVersion": version,
                  "timeoutSeconds": str(int(RESYNC)), "allowWatchBookmarks": "true"}
        with c.stream("GET", "/api/v1/pods", params=params) as r:
            if r.status_code != 200:
                r.read()
                return
            for line in r.iter_lines():
                if self._stop.is_set() or self._kick.is_set():
                    return
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") in ("ADDED", "MODIFIED") and event["object"].get("kind") == "Pod":
                    self._reconcile(c, event["object"])
                elif event.get("type") == "ERROR":  # e.g. 410 Gone: relist
                    return

    def _reconcile(self, c: httpx.Client, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod.get("spec", {})
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        if meta.get("deletionTimestamp"):
            r = c.request("DELETE", f"/api/v1/namespaces/{ns}/pods/{name}",
                          content=json.dumps({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                                              "preconditions": {"uid": uid}}),
                          headers={"Content-Type": "application/json"})
            if r.status_code not in (200, 202, 404, 409):
                self._log(f"deleting pod {ns}/{name}: {r.status_code} {r.text[:300]}")
            return
        phase = pod.get("status", {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            return
        status = self._status_for(pod, self.mode_of(pod), spec)
        digest = json.dumps(status, sort_keys=True)
        if self._written.get(uid) == digest:
            return
        r = c.patch(f"/api/v1/namespaces/{ns}/pods/{name}/status", content=json.dumps({"status": status}),
                    headers={"Content-Type": "application/merge-patch+json"})
        if r.status_code == 200:
            self._written[uid] = digest
        elif r.status_code not in (404, 409):
            self._log(f"patching pod {ns}/{name}: {r.status_code} {r.text[:300]}")

    def _status_for(self, pod: dict[str, Any], mode: str, spec: dict[str, Any]) -> dict[str, Any]:
        uid = pod["metadata"]["uid"]
        owners = pod["metadata"].get("ownerReferences") or []
        is_job = any(o.get("kind") == "Job" for o in owners)
        restart_policy = spec.get("restartPolicy", "Always")
        started = self._started_at.setdefault(uid, _now())
        if mode == "fail" and not (is_job and restart_policy == "Never"):
            mode = "crashloop"  # a container that exits 1 under a restarting policy crash-loops
        if is_job and mode == "ready":
            phase, ready = "Succeeded", False
        elif is_job and mode == "fail":
            phase, ready = "Failed", False
        else:
            phase, ready = "Running", mode == "ready"
        restarts = 0
        if mode == "crashloop":
            count, when = self._restarts.get(uid, (0, 0.0))
            if time.monotonic() - when >= RESTART_EVERY:
                count, when = count + 1, time.monotonic()
                self._restarts[uid] = (count, when)
            restarts = count

        def container(c: dict[str, Any]) -> dict[str, Any]:
            out: dict[str, Any] = {"name": c["name"], "image": c.get("image", ""),
                                   "imageID": f"sim://{c.get('image', '')}",
                                   "containerID": f"sim://{uid}/{c['name']}", "restartCount": restarts}
            if phase == "Succeeded":
                out.update(ready=False, started=False, state={"terminated": {
                    "exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": _now()}})
            elif phase == "Failed":
                out.update(ready=False, started=False, state={"terminated": {
                    "exitCode": 1, "reason": "Error", "startedAt": started, "finishedAt": _now()}})
            elif mode == "crashloop":
                out.update(ready=False, started=False,
                           state={"waiting": {"reason": "CrashLoopBackOff",
                                              "message": f"back-off 10s restarting failed container={c['name']} "
                                                         f"pod={pod['metadata']['name']}"}},
                           lastState={"terminated": {"exitCode": 1, "reason": "Error", "startedAt": started,
                                                     "finishedAt": started}})
            else:
                out.update(ready=ready, started=True, state={"running": {"startedAt": started}})
            return out

        def init(c: dict[str, Any]) -> dict[str, Any]:
            return {"name": c["name"], "image": c.get("image", ""), "imageID": f"sim://{c.get('image', '')}",
                    "containerID": f"sim://{uid}/{c['name']}", "restartCount": 0, "ready": True,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started,
                                             "finishedAt": started}}}

        def cond(kind: str, ok: bool, reason: str | None = None) -> dict[str, Any]:
            out: dict[str, Any] = {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None,
                                   "lastTransitionTime": started}
            if reason:
                out["reason"] = reason
            return out

        not_ready = "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"
        status: dict[str, Any] = {
            "phase": phase, "hostIP": "127.0.0.1", "startTime": started,
            "conditions": [cond("Initialized", True, "PodCompleted" if phase != "Running" else None),
                           cond("Ready", ready, None if ready else not_ready),
                           cond("ContainersReady", ready, None if ready else not_ready),
                           cond("PodScheduled", True)],
            "containerStatuses": [container(c) for c in spec.get("containers", [])],
        }
        if spec.get("initContainers"):
            status["initContainerStatuses"] = [init(c) for c in spec["initContainers"]]
        return status

    def pods(self, client: httpx.Client) -> Iterator[dict[str, Any]]:
        """The pods bound to this node now (for a test's diagnostics)."""
        r = client.get("/api/v1/pods", params={"fieldSelector": f"spec.nodeName={self.node}"})
        r.raise_for_status()
        yield from r.json().get("items", [])

