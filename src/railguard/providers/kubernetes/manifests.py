"""Resources to manifests: what a service, the edge and the environment become in a namespace. Pure.

A service is a Deployment (health-gated rolling update: ``maxUnavailable: 0``; the health check as
readiness and liveness probes, ``start_period`` as a startup probe, ``stop_timeout`` plus the drain as the
grace period with a preStop sleep covering the drain), a Service when it listens (ports with
``protocol: TCP``: v1.20's server-side apply refuses a port without it), a Secret holding the values of
the secret versions the release pinned (referenced by name, never inline in the Deployment) and a Job for
the release command. The edge is a ConfigMap (its config, so an edge without routes is still observable)
and an Ingress (networking.k8s.io/v1) for the routes. The environment gets a ServiceAccount without a
token and a NetworkPolicy that admits traffic from its own namespace (and the Ingress controller's) only
and denies egress to link-local addresses (the cloud metadata service) and to the ranges the spec denies. Every
object carries the labels and annotations of :mod:`.labels`. Golden files under tests/golden/k8s pin the output.
Called by :mod:`.provider`.
"""

from __future__ import annotations

import base64
import ipaddress
import math
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from railguard.model.resources import Resource
from railguard.providers.kubernetes.labels import (
    CONTAINER_PORT,
    EDGE,
    ISOLATION_POLICY,
    RELEASE,
    SERVICE_PORT,
    WORKLOAD_ACCOUNT,
    Target,
    job_name,
    labels,
    notes_for,
    secret_name,
    selector,
)

Manifest = dict[str, Any]
# Always denied: the cloud metadata services (node credentials): link-local, and EC2's IPv6 endpoint.
LINK_LOCAL = ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128")
NODE_LOCAL_DNS = "169.254.20.10/32"  # NodeLocal DNSCache's usual address (link-local, so named on its own)
NAMESPACE_NAME = "kubernetes.io/metadata.name"  # set by the API server on every namespace (1.21+), immutable


@dataclass(frozen=True)
class ArtifactMount:
    """How a pod gets the release's artifact when the service names no image (see providers/kubernetes/artifacts):
    an init container that fetches it by digest, the volumes, the app container's mounts, variables, workdir."""

    init_containers: list[Manifest] = field(default_factory=list)
    volumes: list[Manifest] = field(default_factory=list)
    mounts: list[Manifest] = field(default_factory=list)
    env: list[dict[str, str]] = field(default_factory=list)
    workdir: str | None = None


@dataclass(frozen=True)
class ServiceManifests:
    """Everything one service is, in apply order: secret, job (the release command), deployment, service."""

    deployment: Manifest
    secret: Manifest | None = None
    job: Manifest | None = None
    service: Manifest | None = None

    def all(self) -> list[Manifest]:
        return [m for m in (self.secret, self.job, self.deployment, self.service) if m is not None]


def _seconds(ms: int | None, minimum: int = 1) -> int:
    return max(minimum, math.ceil((ms or 0) / 1000))


def _meta(name: str, namespace: str, found_labels: dict[str, str], notes: dict[str, str] | None = None) -> Manifest:
    meta: Manifest = {"name": name, "namespace": namespace, "labels": found_labels}
    if notes:
        meta["annotations"] = notes
    return meta


def environment_manifests(app: str, env: str, target: Target) -> list[Manifest]:
    """The environment's own objects: its pods' ServiceAccount (no token) and the namespace isolation policy."""
    common = labels(app, env)
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(WORKLOAD_ACCOUNT, target.namespace, common),
         "automountServiceAccountToken": False},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": _meta(ISOLATION_POLICY, target.namespace, common), "spec": isolation_spec(target)},
    ]


def isolation_spec(target: Target) -> Manifest:
    """The NetworkPolicy of every pod of the namespace (the app is hostile: it must not reach the node's cloud
    credentials, nor what ``egress_deny`` names).

    Ingress: from the namespace's own pods, and from the Ingress controller's namespace when one is named (selected
    by ``kubernetes.io/metadata.name``, which the API server sets from 1.21 on and nobody can change). Egress: the
    namespace's own pods; DNS (UDP/TCP 53) to the cluster's DNS only (pods of ``kube-system``, and NodeLocal
    DNSCache's 169.254.20.10): port 53 to any address would be a tunnel past ``egress_deny``; the artifact store's
    address (the init container fetches the release from it); and every other
    address except link-local (169.254.0.0/16: the metadata service of EC2/GCE/Azure, fe80::/10, EC2's
    fd00:ec2::254) and the ranges of
    ``egress_deny``. An ``egress_deny`` of a whole family (``0.0.0.0/0``) leaves that family out.
    """
    admitted: list[Manifest] = [{"podSelector": {}}]
    if target.ingress_namespace:
        admitted.append({"namespaceSelector": {"matchLabels": {NAMESPACE_NAME: target.ingress_namespace}}})
    egress: list[Manifest] = [
        {"to": [{"podSelector": {}}]},
        {"to": [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME: "kube-system"}}},
                {"ipBlock": {"cidr": NODE_LOCAL_DNS}}],
         "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
    ]
    store = _store_rule(target.artifact_store)
    if store is not None:
        egress.append(store)
    denied = {ipaddress.ip_network(c) for c in (*LINK_LOCAL, *target.egress_deny)}
    open_to: list[Manifest] = []
    for everything in (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")):
        family = sorted((n for n in denied if n.version == everything.version), key=lambda n: (n.network_address,
                                                                                             n.prefixlen))
        if everything in family:
            continue
        open_to.append({"ipBlock": {"cidr": str(everything), "except": [str(n) for n in family]}})
    if open_to:
        egress.append({"to": open_to})
    return {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [{"from": admitted}],
            "egress": egress}


def _store_rule(store: str | None) -> Manifest | None:
    """An egress rule to the artifact store, which stays reachable whatever ``egress_deny`` says: its IP address and
    port when the URL names an address, its namespace when it names a Service (``<name>.<namespace>.svc``; the
    Service's port is not the pod's, so any port). A store named by another DNS name is covered by the open range
    only (the policy cannot name a host)."""
    if not store:
        return None
    parsed = urlsplit(store)
    host = parsed.hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        service = re.fullmatch(r"[a-z0-9-]+\.([a-z0-9-]+)\.svc(\.[a-z0-9.-]*)?\.?", host)
        if service is None:
            return None
        return {"to": [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME: service.group(1)}}}]}
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError:
        return None
    return {"to": [{"ipBlock": {"cidr": f"{address}/{address.max_prefixlen}"}}],
            "ports": [{"protocol": "TCP", "port": port}]}


def _probe(health: dict[str, Any]) -> Manifest:
    if health["mode"] == "http":
        return {"httpGet": {"path": health["http"], "port": "http", "scheme": "HTTP"}}
    if health["mode"] == "tcp":
        return {"tcpSocket": {"port": "http"}}
    return {"exec": {"command": list(health["exec"])}}


def _probes(config: dict[str, Any]) -> Manifest:
    health = config.get("health")
    if not health:
        return {}
    handler = _probe(health)
    period = _seconds(health["interval_ms"])
    timeout = _seconds(health["timeout_ms"])
    common = {**handler, "periodSeconds": period, "timeoutSeconds": timeout}
    # The startup probe holds the other two off for start_period (then liveness may restart a stuck replica).
    startup_failures = max(1, math.ceil(health["start_period_ms"] / (period * 1000))) + 1
    return {
        "readinessProbe": {**common, "successThreshold": health["healthy_threshold"],
                           "failureThreshold": health["unhealthy_threshold"]},
        "livenessProbe": {**common, "successThreshold": 1, "failureThreshold": health["unhealthy_threshold"]},
        "startupProbe": {**common, "successThreshold": 1, "failureThreshold": startup_failures},
    }


def _argv(argv: list[str], port_env: str) -> list[str]:
    # Kubernetes expands $(VAR) in a container's command from its own variables; '$PORT' is the spec's spelling.
    return [a.replace("${" + port_env + "}", f"$({port_env})").replace("$" + port_env, f"$({port_env})")
            for a in argv]


def _env(env: str, name: str, release: int, config: dict[str, Any], secret: str | None,
         artifact: ArtifactMount) -> list[Manifest]:
    found: list[Manifest] = [{"name": "RAILGUARD_ENV", "value": env}, {"name": "RAILGUARD_SERVICE", "value": name},
                             {"name": "RAILGUARD_RELEASE", "value": str(release)}]
    if config.get("listen", True):
        found.append({"name": config.get("port_env", "PORT"), "value": str(CONTAINER_PORT)})
    found += [{"name": k, "value": v} for k, v in sorted(config.get("env", {}).items())]
    found += artifact.env
    for key in config.get("secrets", []):
        if secret is not None and config.get("secret_versions", {}).get(key, 0):
            found.append({"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    return found


def _container(env: str, name: str, release: int, config: dict[str, Any], target: Target, secret: str | None,
               artifact: ArtifactMount, argv: list[str]) -> Manifest:
    container: Manifest = {
        "name": name,
        "image": config.get("image") or target.base_image,
        "imagePullPolicy": "IfNotPresent",
        "command": _argv(argv, config.get("port_env", "PORT")),
        "env": _env(env, name, release, config, secret, artifact),
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if artifact.workdir:
        container["workingDir"] = artifact.workdir
    if artifact.mounts:
        container["volumeMounts"] = list(artifact.mounts)
    wanted = config.get("resources") or {}
    if wanted:
        container["resources"] = {"requests": dict(wanted)}
        if "memory" in wanted:  # memory is not compressible: a replica over its request is killed, not slowed
            container["resources"]["limits"] = {"memory": wanted["memory"]}
    return container


def _pod_spec(env: str, name: str, release: int, config: dict[str, Any], target: Target, secret: str | None,
              artifact: ArtifactMount, argv: list[str]) -> Manifest:
    spec: Manifest = {
        "serviceAccountName": WORKLOAD_ACCOUNT,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,  # other services' addresses are not the app's business
        # The runtime's default seccomp filter (the pod's, so every container, the init container too): the app
        # gets no syscall a container rarely needs (keyctl, bpf, unshare...). Pod Security "restricted" asks for it.
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [_container(env, name, release, config, target, secret, artifact, argv)],
    }
    if artifact.init_containers:
        spec["initContainers"] = list(artifact.init_containers)
    if artifact.volumes:
        spec["volumes"] = list(artifact.volumes)
    return spec


def service_manifests(app: str, resource: Resource, release: int, secret_values: dict[str, str] | None = None,
                      artifact: ArtifactMount | None = None) -> ServiceManifests:
    """The objects of one service at ``release``; ``secret_values``: the pinned versions' values (never logged)."""
    config = resource.config
    env, name = resource.env, resource.name
    target = Target.of(config["kubernetes"])
    artifact = artifact or ArtifactMount()
    ns = target.namespace
    versions = {k: v for k, v in sorted(config.get("secret_versions", {}).items()) if v}
    secret = secret_name(name, versions) if versions else None
    notes = notes_for(resource.address, resource.fingerprint, config, resource.depends_on)
    owned = labels(app, env, name, release)
    made_secret = None
    if secret is not None:
        values = secret_values or {}
        made_secret = {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(secret, ns, owned), "type": "Opaque",
                       "data": {k: base64.b64encode(values.get(k, "").encode()).decode() for k in versions}}
    job = None
    if config.get("release"):
        pod = _pod_spec(env, name, release, {**config, "health": None}, target, secret, artifact, config["release"])
        pod["restartPolicy"] = "Never"
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": _meta(job_name(name, release), ns, owned),
               "spec": {"backoffLimit": 0, "activeDeadlineSeconds": _seconds(config.get("start_timeout_ms"), 30),
                        "template": {"metadata": {"labels": owned}, "spec": pod}}}
    pod = _pod_spec(env, name, release, config, target, secret, artifact, config["run"])
    pod["terminationGracePeriodSeconds"] = _seconds(config.get("stop_timeout_ms")) + _seconds(
        config.get("drain_timeout_ms"), 0)
    container = pod["containers"][0]
    container.update(_probes(config))
    drain = _seconds(config.get("drain_timeout_ms"), 0)
    if config.get("listen", True):
        container["ports"] = [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}]
        if drain:  # the endpoints controller removes the pod while it sleeps: in-flight requests finish first
            container["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", str(drain)]}}}
    replicas = int(config.get("replicas", 1))
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta(name, ns, labels(app, env, name, release), notes),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector(env, name)},
            "revisionHistoryLimit": 3,
            "progressDeadlineSeconds": _seconds(config.get("start_timeout_ms"), 10),
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": owned, "annotations": {RELEASE: str(release)}}, "spec": pod},
        },
    }
    service = None
    if config.get("listen", True):
        service = {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, ns, labels(app, env, name), notes),
                   "spec": {"type": "ClusterIP", "selector": selector(env, name),
                            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http",
                                       "protocol": "TCP"}]}}
    return ServiceManifests(deployment=deployment, secret=made_secret, job=job, service=service)


def edge_manifests(app: str, resource: Resource) -> list[Manifest]:
    """The edge: a ConfigMap recording it, and an Ingress for its routes (none when there are no routes)."""
    config = resource.config
    target = Target.of(config["kubernetes"])
    notes = notes_for(resource.address, resource.fingerprint, config, resource.depends_on)
    owned = labels(app, resource.env)
    found: list[Manifest] = [{"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": _meta(EDGE, target.namespace, owned, notes),
                              "data": {"routes": str(len(config.get("routes", [])))}}]
    by_host: dict[str | None, list[Manifest]] = {}
    for route in config.get("routes", []):
        by_host.setdefault(route.get("host"), []).append({
            "path": route.get("path", "/"), "pathType": "Prefix",
            "backend": {"service": {"name": route["service"], "port": {"number": SERVICE_PORT}}}})
    if by_host:
        rules = []
        for host in sorted(by_host, key=lambda h: h or ""):
            rule: Manifest = {"http": {"paths": by_host[host]}}
            if host:
                rule = {"host": host, **rule}
            rules.append(rule)
        found.append({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                      "metadata": _meta(EDGE, target.namespace, owned, notes), "spec": {"rules": rules}})
    return found
