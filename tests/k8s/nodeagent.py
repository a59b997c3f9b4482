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
- ``image-pull-backoff``: Pending, containers waiting with reason ImagePullBackOff (an image that cannot be pulled).
- ``exit:N`` (N an exit code, for Job pods under restartPolicy Never, e.g. ``railguard exec``'s): ``exit:0`` is
  ``ready`` (Succeeded), any other N is ``fail`` with exit code N in the container's terminated state. A Job pod under
  ``never-ready`` keeps running (a command that does not end).

Init containers complete (terminated, Completed) unless the test registered a check for the namespace:
``agent.on_init(namespace, check)`` calls ``check(pod, init_container)`` once per pod and init container (in the
agent's thread; it may fetch an artifact from a loopback store to verify it, as the real init container would);
None means it completed, a string is its failure message: the pod stays Pending with the init container in
CrashLoopBackOff (``lastState.terminated.message`` is the string), or Failed under restartPolicy Never.

Rules: ``agent.behave(namespace, {"label": "value"}, mode)`` — the last rule whose namespace and labels match a pod
wins, and pods already running follow a new rule within seconds; ``agent.clear()`` drops all rules,
``agent.clear(namespace)`` those of one namespace. A namespace ending in ``*`` is a prefix (``"shop-doctor-*"``: the
doctor's randomly named scratch namespaces). A crash-looping pod gets a Warning event ``BackOff`` (its count
growing with the restarts), a never-ready one ``Unhealthy``, as a kubelet reports them; ``agent.errors`` holds the
agent's last problems (also in ``logs/nodeagent.log``) and ``agent.pods(client)`` lists the pods bound to the node.
Pods being deleted (``deletionTimestamp``) are deleted at once with
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

NODE = "sim-node-1"
MODES = ("ready", "crashloop", "never-ready", "fail", "image-pull-backoff")
# Decides whether an init container of a pod succeeds: None, or the message it fails with (exit code 1).
InitCheck = Callable[[dict[str, Any], dict[str, Any]], "str | None"]
RESYNC = 2.0  # seconds between full relists (a watch covers what happens in between)
RESTART_EVERY = 3.0  # seconds between restarts of a crash-looping container
LEASE_EVERY = 10.0
STATUS_EVERY = 30.0


# What a kubelet reports as a Warning event for a pod that misbehaves: (reason, message).
EVENTS = {"crashloop": ("BackOff", "Back-off restarting failed container"),
          "image-pull-backoff": ("Failed", "Error: ImagePullBackOff"),
          "never-ready": ("Unhealthy", "Readiness probe failed: simulated node: the container never becomes ready")}


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
        namespace = str(meta.get("namespace"))
        # "prefix-*" matches every namespace starting with "prefix-" (the doctor's randomly named scratch ones)
        named = namespace.startswith(self.namespace[:-1]) if self.namespace.endswith("*") else \
            namespace == self.namespace
        return named and all(have.get(k) == v for k, v in self.labels)


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
        self._events: dict[tuple[str, str], int] = {}  # (pod uid, reason) -> count
        self._transitions: dict[str, dict[str, tuple[str, str]]] = {}  # pod uid -> condition -> (status, since)
        self._init_checks: dict[str, InitCheck] = {}  # namespace -> check of its pods' init containers
        self._init_results: dict[tuple[str, str], str | None] = {}  # (pod uid, init container) -> failure or None

    # ------------------------------------------------------------------------------------------ rules (tests)

    def behave(self, namespace: str, labels: dict[str, str], mode: str) -> None:
        if mode not in MODES and not (mode.startswith("exit:") and mode[5:].isdigit()):
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        with self._lock:
            self._rules.append(Rule(namespace, tuple(sorted(labels.items())), mode))
        self._kick.set()

    def on_init(self, namespace: str, check: InitCheck) -> None:
        """Run ``check(pod, init_container)`` (in the agent's thread, once per pod and init container) for pods of
        ``namespace``: None means the init container completed, a string is its failure message (exit code 1; the
        pod stays Pending with the init container in CrashLoopBackOff, or Failed under restartPolicy Never)."""
        with self._lock:
            self._init_checks[namespace] = check
        self._kick.set()

    def clear(self, namespace: str | None = None) -> None:
        """Drop every rule and init check, or only those of ``namespace``; pods follow at the next reconcile."""
        with self._lock:
            self._rules[:] = [r for r in self._rules if namespace is not None and r.namespace != namespace]
            if namespace is None:
                self._init_checks.clear()
            else:
                self._init_checks.pop(namespace, None)
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
                except Exception as exc:  # the heartbeat must outlive any one bad answer
                    self._log(f"heartbeat: {exc!r}")

    # ----------------------------------------------------------------------------------------------- pods

    def _pod_loop(self) -> None:
        with self._client(timeout=30) as c:
            while not self._stop.is_set():
                try:
                    version = self._resync(c)
                    self._kick.clear()
                    self._watch(c, version)
                except Exception as exc:  # the node must outlive any one bad answer
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
                self._transitions.pop(uid, None)
        for key in [k for k in self._init_results if k[0] not in seen]:
            del self._init_results[key]
        for key in [k for k in self._events if k[0] not in seen]:
            del self._events[key]
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
        mode = self.mode_of(pod)
        status = self._status_for(pod, mode, spec)
        digest = json.dumps(status, sort_keys=True)
        if self._written.get(uid) == digest:
            return
        waiting = {st["state"].get("waiting", {}).get("reason") for st in
                   status["containerStatuses"] + status.get("initContainerStatuses", [])}
        if "CrashLoopBackOff" in waiting:
            self._event(c, pod, *EVENTS["crashloop"])
        elif "ImagePullBackOff" in waiting:
            self._event(c, pod, *EVENTS["image-pull-backoff"])
        elif mode == "never-ready":
            self._event(c, pod, *EVENTS["never-ready"])
        r = c.patch(f"/api/v1/namespaces/{ns}/pods/{name}/status", content=json.dumps({"status": status}),
                    headers={"Content-Type": "application/merge-patch+json"})
        if r.status_code == 200:
            self._written[uid] = digest
        elif r.status_code not in (404, 409):
            self._log(f"patching pod {ns}/{name}: {r.status_code} {r.text[:300]}")

    def _event(self, c: httpx.Client, pod: dict[str, Any], reason: str, message: str) -> None:
        """One Warning event per pod and reason, its count kept current (as a kubelet's event aggregation does)."""
        meta = pod["metadata"]
        key = (meta["uid"], reason)
        count = self._events.get(key, 0) + 1
        self._events[key] = count
        name = f"{meta['name']}.sim-{reason.lower()}"
        path = f"/api/v1/namespaces/{meta['namespace']}/events"
        now = _now()
        if count > 1:
            r = c.patch(f"{path}/{name}", content=json.dumps({"count": count, "lastTimestamp": now}),
                        headers={"Content-Type": "application/merge-patch+json"})
            if r.status_code != 404:
                return
        containers = pod.get("spec", {}).get("containers") or [{"name": ""}]
        r = c.post(path, json={
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "namespace": meta["namespace"],
                               "uid": meta["uid"], "fieldPath": f"spec.containers{{{containers[0]['name']}}}"},
            "reason": reason, "message": message, "type": "Warning", "count": count,
            "source": {"component": "kubelet", "host": self.node}, "firstTimestamp": now, "lastTimestamp": now,
            "reportingComponent": "kubelet", "reportingInstance": self.node})
        if r.status_code not in (201, 409, 403, 404):
            self._log(f"event for pod {meta['namespace']}/{meta['name']}: {r.status_code} {r.text[:300]}")

    def _init_failure(self, pod: dict[str, Any], spec: dict[str, Any]) -> tuple[int, str] | None:
        """The first init container that fails (its index and message), from the namespace's ``on_init`` check."""
        meta = pod["metadata"]
        with self._lock:
            check = self._init_checks.get(meta["namespace"])
        if check is None:
            return None
        for index, container in enumerate(spec.get("initContainers") or []):
            key = (meta["uid"], container["name"])
            if key not in self._init_results:  # the check runs once per pod and container, as the container would
                try:
                    self._init_results[key] = check(pod, container)
                except Exception as exc:  # a broken check is a failed container, not a dead agent
                    self._init_results[key] = f"init check raised {exc!r}"
            if self._init_results[key] is not None:
                return index, str(self._init_results[key])
        return None

    def _status_for(self, pod: dict[str, Any], mode: str, spec: dict[str, Any]) -> dict[str, Any]:
        uid = pod["metadata"]["uid"]
        owners = pod["metadata"].get("ownerReferences") or []
        is_job = any(o.get("kind") == "Job" for o in owners)
        restart_policy = spec.get("restartPolicy", "Always")
        started = self._started_at.setdefault(uid, _now())
        init_failure = self._init_failure(pod, spec) if spec.get("initContainers") else None
        exit_code = 1
        if mode.startswith("exit:"):  # a Job pod told how its command ends
            exit_code = int(mode[5:])
            mode = "ready" if exit_code == 0 else "fail"
        if mode == "fail" and not (is_job and restart_policy == "Never"):
            mode = "crashloop"  # a container that exits 1 under a restarting policy crash-loops
        if init_failure is not None:
            phase, ready = ("Failed" if restart_policy == "Never" else "Pending"), False
        elif mode == "image-pull-backoff":
            phase, ready = "Pending", False
        elif is_job and mode == "ready":
            phase, ready = "Succeeded", False
        elif is_job and mode == "fail":
            phase, ready = "Failed", False
        else:
            phase, ready = "Running", mode == "ready"
        crashing = mode == "crashloop" or (init_failure is not None and restart_policy != "Never")
        count, when = self._restarts.get(uid, (0, 0.0))
        if crashing and time.monotonic() - when >= RESTART_EVERY:
            count, when = count + 1, time.monotonic()
            self._restarts[uid] = (count, when)
        restarts = count  # a container that recovers keeps its restart count, as on a kubelet

        def base(c: dict[str, Any], restart_count: int) -> dict[str, Any]:
            return {"name": c["name"], "image": c.get("image", ""), "imageID": f"sim://{c.get('image', '')}",
                    "containerID": f"sim://{uid}/{c['name']}", "restartCount": restart_count}

        def backoff(c: dict[str, Any], message: str = "") -> dict[str, Any]:
            last: dict[str, Any] = {"exitCode": 1, "reason": "Error", "startedAt": started, "finishedAt": started}
            if message:
                last["message"] = message
            return {"state": {"waiting": {"reason": "CrashLoopBackOff",
                                          "message": f"back-off 10s restarting failed container={c['name']} "
                                                     f"pod={pod['metadata']['name']}"}},
                    "lastState": {"terminated": last}}

        def container(c: dict[str, Any]) -> dict[str, Any]:
            out = base(c, 0 if init_failure is not None else restarts)
            if init_failure is not None or phase == "Pending" and mode != "image-pull-backoff":
                out.update(ready=False, started=False, state={"waiting": {"reason": "PodInitializing"}})
            elif mode == "image-pull-backoff":
                out.update(ready=False, started=False, state={"waiting": {
                    "reason": "ImagePullBackOff", "message": f'Back-off pulling image "{c.get("image", "")}"'}})
            elif phase == "Succeeded":
                out.update(ready=False, started=False, state={"terminated": {
                    "exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": _now()}})
            elif phase == "Failed":
                out.update(ready=False, started=False, state={"terminated": {
                    "exitCode": exit_code, "reason": "Error", "startedAt": started, "finishedAt": _now()}})
            elif mode == "crashloop":
                out.update(ready=False, started=False, **backoff(c))
            else:
                out.update(ready=ready, started=True, state={"running": {"startedAt": started}})
            return out

        def init(index: int, c: dict[str, Any]) -> dict[str, Any]:
            if init_failure is None or index < init_failure[0]:
                return {**base(c, 0), "ready": True, "state": {"terminated": {
                    "exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": started}}}
            if index > init_failure[0]:
                return {**base(c, 0), "ready": False, "state": {"waiting": {"reason": "PodInitializing"}}}
            if restart_policy == "Never":
                return {**base(c, 0), "ready": False, "state": {"terminated": {
                    "exitCode": 1, "reason": "Error", "message": init_failure[1], "startedAt": started,
                    "finishedAt": started}}}
            return {**base(c, restarts), "ready": False, **backoff(c, init_failure[1])}

        transitions = self._transitions.setdefault(uid, {})

        def cond(kind: str, ok: bool, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
            value = "True" if ok else "False"
            if transitions.get(kind, ("", ""))[0] != value:  # the time a condition last changed, as a kubelet keeps
                transitions[kind] = (value, started if kind not in transitions else _now())
            out: dict[str, Any] = {"type": kind, "status": value, "lastProbeTime": None,
                                   "lastTransitionTime": transitions[kind][1]}
            if reason:
                out["reason"] = reason
            if message:
                out["message"] = message
            return out

        names = [c["name"] for c in spec.get("containers", [])]
        if phase in ("Succeeded", "Failed") and init_failure is None:
            initialized = cond("Initialized", True, "PodCompleted")
            not_ready = "PodCompleted"
        elif init_failure is not None:
            failing = spec["initContainers"][init_failure[0]]["name"]
            initialized = cond("Initialized", False, "ContainersNotInitialized",
                               f"containers with incomplete status: [{failing}]")
            not_ready = "ContainersNotReady"
        else:
            initialized = cond("Initialized", True)
            not_ready = "ContainersNotReady"
        unready = None if ready else f"containers with unready status: [{' '.join(names)}]"
        status: dict[str, Any] = {
            "phase": phase, "hostIP": "127.0.0.1", "startTime": started,
            "conditions": [initialized,
                           cond("Ready", ready, None if ready else not_ready, unready),
                           cond("ContainersReady", ready, None if ready else not_ready, unready),
                           cond("PodScheduled", True)],
            "containerStatuses": [container(c) for c in spec.get("containers", [])],
        }
        if spec.get("initContainers"):
            status["initContainerStatuses"] = [init(i, c) for i, c in enumerate(spec["initContainers"])]
        return status

    def pods(self, client: httpx.Client) -> list[dict[str, Any]]:
        """The pods bound to this node now (for a test's diagnostics)."""
        r = client.get("/api/v1/pods", params={"fieldSelector": f"spec.nodeName={self.node}"})
        r.raise_for_status()
        return list(r.json().get("items", []))

