"""Waiting on the cluster: a release Job to complete, a Deployment to roll out, and why pods did not make it.

A rollout is done when the Deployment's controller saw the new generation (``observedGeneration``), every
replica runs the new template (``updatedReplicas``), is available (``availableReplicas``) and no old one is
left (``replicas``). It failed when ``Progressing`` turns False with ``ProgressDeadlineExceeded`` (the
Deployment's ``progressDeadlineSeconds``), or sooner when a pod of the new release crash-loops or its
container terminated with an error, as pod statuses show; the reasons come from those statuses and from the
namespace's Warning events about them (never from logs: reading them makes the API server dial the node).
Bounded loops with short sleeps. Called by :mod:`.provider`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from railguard.model.untrusted import one_line
from railguard.providers.kubernetes.cluster import Cluster
from railguard.providers.kubernetes.labels import RELEASE, selector

POLL_S = 0.1
PODS_EVERY = 4  # polls between two reads of the new release's pods (crash-loop detection)
BAD_WAITING = {"CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError",
               "InvalidImageName", "CreateContainerError", "RunContainerError"}


@dataclass
class Outcome:
    ok: bool
    reason: str = ""
    pods: list[str] = field(default_factory=list)  # one line per pod of the release: name and what it says


def pod_lines(cluster: Cluster, env: str, service: str, release: int | None) -> list[str]:
    """One line per pod of ``service`` (of ``release`` when given): phase, readiness, restarts, waiting reasons."""
    wanted = selector(env, service) | ({RELEASE: str(release)} if release is not None else {})
    pods = cluster.list("Pod", labels=wanted)
    warnings = _warnings(cluster, {p["metadata"]["name"] for p in pods})
    lines = []
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        name = pod["metadata"]["name"]
        lines.append(f"{name}: {describe_pod(pod)}" + (f"; events: {'; '.join(warnings[name][-2:])}"
                                                       if warnings.get(name) else ""))
    return lines


def describe_pod(pod: dict[str, Any]) -> str:
    """Phase, then each init container that has not completed and each container: state, last exit, message."""
    status = pod.get("status") or {}
    parts = [str(status.get("phase", "Pending"))]
    for c in status.get("initContainerStatuses") or []:
        if ((c.get("state") or {}).get("terminated") or {}).get("exitCode") == 0:
            continue  # done: its work is in the pod
        parts.append(f"init container {_container_line(c)}")
    for c in status.get("containerStatuses") or []:
        parts.append(_container_line(c))
    return "; ".join(parts)


def _container_line(c: dict[str, Any]) -> str:
    state = c.get("state") or {}
    last = (c.get("lastState") or {}).get("terminated") or {}
    now = state.get("waiting") or state.get("terminated") or {}
    text = f"{c.get('name')}: {'ready' if c.get('ready') else 'not ready'}"
    if now.get("reason"):
        text += f", {now['reason']}"
    if last:
        text += f", last exit {last.get('exitCode')} ({last.get('reason', 'terminated')})"
    message = (state.get("terminated") or {}).get("message") or last.get("message")
    if message:  # the container's termination message: what it said when it failed (e.g. the artifact's fetch)
        text += f": {one_line(message)}"  # the app's words: one line, so they cannot pass for Railguard's
    if c.get("restartCount"):
        text += f", {c['restartCount']} restarts"
    return text


def _warnings(cluster: Cluster, names: set[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    if not names:
        return found
    for event in cluster.list("Event", fields={"type": "Warning"}):
        about = (event.get("involvedObject") or {}).get("name")
        if about in names:
            # A probe's failure event quotes what the app answered: one line too.
            found.setdefault(about, []).append(f"{event.get('reason')}: {one_line(event.get('message', ''))}".strip())
    return found


def _bad_pod(pod: dict[str, Any]) -> str | None:
    status = pod.get("status") or {}
    for kind, containers in (("init container", status.get("initContainerStatuses") or []),
                             ("container", status.get("containerStatuses") or [])):
        for c in containers:
            state = c.get("state") or {}
            waiting = (state.get("waiting") or {}).get("reason")
            name = f"{kind} {c.get('name')}"
            if waiting in BAD_WAITING:
                return f"{name}: {waiting}"
            terminated = state.get("terminated") or {}
            if terminated and terminated.get("exitCode", 0) != 0:
                return f"{name} exited {terminated.get('exitCode')} ({terminated.get('reason', 'Error')})"
    return None


def wait_deployment(cluster: Cluster, name: str, env: str, release: int, timeout_s: float,
                    service: str | None = None) -> Outcome:
    """Wait until the Deployment ``name`` runs ``release`` everywhere, or say why it will not; its pods are those
    of ``service`` (default ``name``; a canary Deployment's pods belong to its service) at ``release``."""
    service = service or name
    deadline = time.monotonic() + timeout_s
    last = "not observed yet"
    polls = 0
    while time.monotonic() < deadline:
        polls += 1
        found = cluster.get("Deployment", name)
        if found is None:
            return Outcome(False, "the Deployment is gone")
        spec, status = found.get("spec", {}), found.get("status") or {}
        wanted = int(spec.get("replicas", 1))
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        progressing = conditions.get("Progressing", {})
        if progressing.get("status") == "False" and progressing.get("reason") == "ProgressDeadlineExceeded":
            return Outcome(False, f"progress deadline exceeded: {progressing.get('message', '')}",
                           pod_lines(cluster, env, service, release))
        failure = conditions.get("ReplicaFailure", {})
        if failure.get("status") == "True":  # e.g. a quota refused the pods: they will not appear by waiting
            return Outcome(False, f"{failure.get('reason', 'ReplicaFailure')}: {failure.get('message', '')}",
                           pod_lines(cluster, env, service, release))
        generation_seen = int(status.get("observedGeneration") or 0) >= int(found["metadata"].get("generation") or 0)
        updated = int(status.get("updatedReplicas") or 0)
        available = int(status.get("availableReplicas") or 0)
        total = int(status.get("replicas") or 0)
        last = f"{available}/{wanted} available, {updated} updated, {total} in all"
        if generation_seen and updated >= wanted and available >= wanted and total <= wanted:
            return Outcome(True, last)
        if wanted and polls % PODS_EVERY == 0:  # the Deployment is cheap to read; its pods every few polls
            pods = cluster.list("Pod", labels=selector(env, service) | {RELEASE: str(release)})
            bad = [(p["metadata"]["name"], why) for p in pods if (why := _bad_pod(p))]
            if bad:
                return Outcome(False, f"pod {bad[0][0]} of release {release}: {bad[0][1]}",
                               pod_lines(cluster, env, service, release))
        time.sleep(POLL_S)
    return Outcome(False, f"not available after {timeout_s:.0f}s ({last})", pod_lines(cluster, env, service, release))


def wait_job(cluster: Cluster, name: str, env: str, service: str, release: int, timeout_s: float) -> Outcome:
    """Wait until the release Job ``name`` completes (ok) or fails (its pods' reasons)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = cluster.get("Job", name)
        if found is None:
            return Outcome(False, "the Job is gone")
        status = found.get("status") or {}
        for condition in status.get("conditions") or []:
            if condition.get("status") != "True":
                continue
            if condition.get("type") == "Complete":
                return Outcome(True, "completed")
            if condition.get("type") == "Failed":
                return Outcome(False, f"{condition.get('reason', 'Failed')}: {condition.get('message', '')}",
                               _job_pods(cluster, name))
        if int(status.get("failed") or 0) > 0:
            return Outcome(False, "its pod failed", _job_pods(cluster, name))
        time.sleep(POLL_S)
    return Outcome(False, f"not complete after {timeout_s:.0f}s", _job_pods(cluster, name))


def _job_pods(cluster: Cluster, name: str) -> list[str]:
    pods = cluster.list("Pod", labels={"job-name": name})
    return [f"{p['metadata']['name']}: {describe_pod(p)}" for p in pods]
