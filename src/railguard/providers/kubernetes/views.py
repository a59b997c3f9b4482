"""What the status views of a Kubernetes environment read: pods, Deployments, the edge's Ingress, events.

``describe`` (services with their pods as replicas, the edge's routes), ``event_log`` (what ``railguard logs``
shows: the Kubernetes events of the service's objects — pod logs are not read in this version, because reading
them makes the API server dial the node) and ``restarts`` (the background pass's ``replica.restarted`` events).
Read-only; called by :class:`railguard.providers.kubernetes.provider.KubernetesProvider`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from railguard.model.diagnostics import RailguardError
from railguard.model.resources import service_address
from railguard.model.untrusted import one_line
from railguard.providers.base import (
    DescribeResponse,
    EdgeUnit,
    LogFile,
    LogsRequest,
    LogsResponse,
    ProviderEvent,
    ReplicaHealth,
    ReplicaSetUnit,
    ReplicaUnit,
    RouteUnit,
    ServiceUnit,
)
from railguard.providers.kubernetes import observe as live
from railguard.providers.kubernetes.cluster import Cluster
from railguard.providers.kubernetes.labels import EDGE, ENVIRONMENT, MANAGED_BY, RELEASE, SERVICE
from railguard.providers.kubernetes.rollout import describe_pod

LOGS_NOTE = ("(pod logs are not read in this version: reading them makes the API server dial the node; these are "
             "the Kubernetes events of the service's objects)")


def _ours(env: str) -> dict[str, str]:
    return {MANAGED_BY: "railguard", ENVIRONMENT: env}


def describe(cluster: Cluster, env: str) -> DescribeResponse:
    pods = cluster.list("Pod", labels=_ours(env))
    sets = cluster.list("ReplicaSet", labels=_ours(env))
    services = []
    now = datetime.now(UTC)
    for deployment in sorted(cluster.list("Deployment", labels=_ours(env)), key=lambda d: d["metadata"]["name"]):
        resource = live.observed(deployment, "service")
        if resource is None:
            continue
        name = deployment["metadata"]["name"]
        replicas = [_replica(p, now) for p in pods
                    if (p["metadata"].get("labels") or {}).get(SERVICE) == name
                    and not p["metadata"].get("deletionTimestamp")]
        services.append(ServiceUnit(name=name, address=service_address(env, name), release=resource.release,
                                    replicas=sorted(replicas, key=lambda r: r.name),
                                    replica_sets=_replica_sets(sets, name)))
    edge = cluster.get("ConfigMap", EDGE)
    ingress = cluster.get("Ingress", EDGE) if edge is not None else None
    routes = []
    for rule in (ingress or {}).get("spec", {}).get("rules") or []:
        for path in (rule.get("http") or {}).get("paths") or []:
            backend = ((path.get("backend") or {}).get("service") or {}).get("name")
            routes.append(RouteUnit(host=rule.get("host"), path=path.get("path", "/"),
                                    upstreams=[f"service/{backend}"] if backend else []))
    return DescribeResponse(env=env, services=services, live_sets=len(services), isolation="isolated",
                            edge=EdgeUnit(port=None, url=None, running=edge is not None, routes=routes))


def event_log(cluster: Cluster, request: LogsRequest) -> LogsResponse:
    """The events of the service's Deployment, ReplicaSets, pods and Jobs, oldest first, after a note saying so."""
    if cluster.get("Deployment", request.service) is None:
        return LogsResponse()
    lines = [LOGS_NOTE]
    service = request.service

    def about(event: dict[str, Any]) -> bool:
        name = str((event.get("involvedObject") or {}).get("name", ""))
        return name == service or name.startswith(f"{service}-")

    events = [e for e in cluster.list("Event") if about(e)]
    for event in sorted(events, key=lambda e: (str(e.get("lastTimestamp") or e.get("eventTime") or ""),
                                               str(e.get("metadata", {}).get("name", "")))):
        what = event.get("involvedObject") or {}
        lines.append(f"{event.get('lastTimestamp') or ''} {what.get('kind')}/{what.get('name')} "
                     f"{event.get('type')} {event.get('reason')}: {one_line(event.get('message', ''))}".strip())
    name = f"{request.env}.{service}.events"
    offset = (request.offsets or {}).get(name) if request.offsets is not None else None
    shown = lines[offset:] if offset is not None else (lines[-request.lines:] if request.lines else [])
    return LogsResponse(files=[LogFile(name=name, lines=shown)], offsets={name: len(lines)})


def restarts(cluster: Cluster, seen: dict[str, int]) -> list[ProviderEvent]:
    """Pods of ours that restarted since ``seen`` (namespace/pod -> restarts, updated); nothing on a failed read."""
    try:
        pods = cluster.list("Pod", labels={MANAGED_BY: "railguard"})
    except RailguardError:  # an unreachable cluster is the status's and the next plan's to say
        return []
    events = []
    for pod in pods:
        meta = pod["metadata"]
        count = sum(int(c.get("restartCount") or 0) for c in (pod.get("status") or {}).get("containerStatuses") or [])
        key = f"{cluster.namespace}/{meta['name']}"
        before = seen.get(key)
        seen[key] = count
        if before is not None and count > before:
            found = meta.get("labels") or {}
            events.append(ProviderEvent(
                kind="replica.restarted", env=found.get(ENVIRONMENT),
                message=f"{found.get(ENVIRONMENT)}.{found.get(SERVICE)} pod {meta['name']} "
                f"(namespace {cluster.namespace}): {describe_pod(pod)} (restart #{count})"))
    return events


def _replica(pod: dict[str, Any], now: datetime) -> ReplicaUnit:
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    ready = bool(containers) and all(c.get("ready") for c in containers)
    waiting = any((c.get("state") or {}).get("waiting") for c in containers)
    started = status.get("startTime")
    uptime = 0.0
    if started:
        uptime = max(0.0, (now - datetime.fromisoformat(str(started).replace("Z", "+00:00"))).total_seconds())
    health = ReplicaHealth.healthy if ready else (ReplicaHealth.down if waiting else ReplicaHealth.unknown)
    return ReplicaUnit(name=pod["metadata"]["name"], pid=None, port=None, health=health,
                       restarts=sum(int(c.get("restartCount") or 0) for c in containers), uptime_s=round(uptime, 1),
                       last_exit=None if ready else describe_pod(pod))


def _replica_sets(sets: list[dict[str, Any]], service: str) -> list[ReplicaSetUnit]:
    """The service's ReplicaSets (the Deployment keeps a few for history), newest release first: which release each
    runs (its pod template's release label) and how many of its pods are ready."""
    found = []
    for rs in sets:
        meta = rs["metadata"]
        if (meta.get("labels") or {}).get(SERVICE) != service or meta.get("deletionTimestamp"):
            continue
        release = (meta.get("labels") or {}).get(RELEASE)
        found.append(ReplicaSetUnit(name=meta["name"], release=int(str(release)) if str(release).isdigit() else None,
                                    replicas=int((rs.get("spec") or {}).get("replicas") or 0),
                                    ready=int((rs.get("status") or {}).get("readyReplicas") or 0)))
    return sorted(found, key=lambda r: (-(r.release or 0), r.name))
