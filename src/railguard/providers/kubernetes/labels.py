"""Names, labels and annotations of every object Railguard creates in a namespace.

Observation finds Railguard's objects by :data:`MANAGED` alone and reads back what it applied from the
annotations (address, fingerprint, config), so the planner compares the same normalized config it
produced. The label keys are the contract between :mod:`.manifests` (which writes them) and
:mod:`.observe` (which reads them); nothing else spells them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

FIELD_MANAGER = "railguard"
MANAGED_BY = "app.kubernetes.io/managed-by"
APP = "app.kubernetes.io/name"
ENVIRONMENT = "railguard.dev/environment"
SERVICE = "railguard.dev/service"
RELEASE = "railguard.dev/release"
MANAGED = f"{MANAGED_BY}=railguard"

ADDRESS = "railguard.dev/address"
FINGERPRINT = "railguard.dev/fingerprint"
CONFIG = "railguard.dev/config"
DEPENDS_ON = "railguard.dev/depends-on"
# Set on a Deployment while an operation changes it (its id), with the Deployment as it was before (JSON, empty for
# a new one); removed once the release serves. A daemon that finds them left by a killed one puts the previous
# Deployment back (see provider.KubernetesProvider._settle).
PENDING = "railguard.dev/pending"
PREVIOUS = "railguard.dev/previous"

EDGE = "railguard-edge"  # the edge's ConfigMap (always) and Ingress (when it has routes)
WORKLOAD_ACCOUNT = "railguard-workload"  # the environment's pods' ServiceAccount, without a token
ISOLATION_POLICY = "railguard-isolation"  # the NetworkPolicy: no ingress from other namespaces, egress limited
# On every namespace Railguard creates: Pod Security Admission (1.23+) refuses a pod below the "restricted" profile
# there, so whatever else writes to the namespace gets no privileged pod either. Railguard's own pods pass it
# (tests/k8s/test_manifests.py checks them against the profile's rules).
POD_SECURITY = {"pod-security.kubernetes.io/enforce": "restricted"}
CONTAINER_PORT = 8080
SERVICE_PORT = 80
DEFAULT_APP = "railguard"


@dataclass(frozen=True)
class Target:
    """A Kubernetes environment's place: the ``kubernetes`` table of the spec, as resources carry it."""

    namespace: str
    context: str | None = None
    kubeconfig: str | None = None
    base_image: str = "python:3.12-slim"
    artifact_store: str | None = None
    egress_deny: tuple[str, ...] = ()  # CIDRs the pods may not reach (beyond link-local, always denied)
    ingress_namespace: str | None = None  # the Ingress controller's namespace, admitted to the pods

    @classmethod
    def of(cls, config: dict[str, Any]) -> Target:
        found = {k: v for k, v in config.items() if k in cls.__dataclass_fields__}
        found["egress_deny"] = tuple(found.get("egress_deny") or ())
        return cls(**found)

    def as_config(self) -> dict[str, Any]:
        found: dict[str, Any] = {"namespace": self.namespace, "context": self.context, "kubeconfig": self.kubeconfig,
                                 "base_image": self.base_image, "artifact_store": self.artifact_store}
        # Only when set, as the spec's KubernetesTarget.as_config: resources without them keep their fingerprints.
        if self.egress_deny:
            found["egress_deny"] = list(self.egress_deny)
        if self.ingress_namespace is not None:
            found["ingress_namespace"] = self.ingress_namespace
        return found


def labels(app: str, env: str, service: str | None = None, release: int | None = None) -> dict[str, str]:
    found = {MANAGED_BY: "railguard", APP: app, ENVIRONMENT: env}
    if service is not None:
        found[SERVICE] = service
    if release is not None:
        found[RELEASE] = str(release)
    return found


def selector(env: str, service: str) -> dict[str, str]:
    """What a service's Deployment and Service select: stable across releases (a selector is immutable)."""
    return {MANAGED_BY: "railguard", ENVIRONMENT: env, SERVICE: service}


def notes_for(address: str, fingerprint: str, config: dict[str, Any], depends_on: list[str]) -> dict[str, str]:
    return {ADDRESS: address, FINGERPRINT: fingerprint, CONFIG: json.dumps(config, sort_keys=True),
            DEPENDS_ON: ",".join(depends_on)}


def secret_name(service: str, versions: dict[str, int]) -> str:
    """One Secret per set of secret versions: a rollback to older versions names (and re-creates) the old one."""
    import hashlib

    key = hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()[:10]
    return f"{service}-secrets-{key}"


def job_name(service: str, release: int) -> str:
    return f"{service}-release-r{release}"
