"""The doctor's scratch environment on a cluster, and the namespace facts its isolation check reads.

Why: on a Kubernetes environment the doctor's scratch runs cannot be local processes — the release runs as a Job
and the service as a Deployment on the cluster. :class:`KubernetesScratch` makes a temporary namespace
``<namespace>-doctor-<random>`` on the environment's cluster (labelled managed-by railguard and
``railguard.dev/doctor``), applies the environment's objects and the service's manifests there exactly as the
provider would (schema check, server-side dry-run, server-side apply), waits with the provider's own waits, and
deletes the namespace on :meth:`close`. A namespace left by a crashed run (its doctor process on this host is gone,
or it is older than :data:`STALE_S`) is deleted when the next one is made. :func:`namespace_facts` and
:func:`write_access` read an environment's namespace (its token-less ServiceAccount, its NetworkPolicy) and ask the
API server, with an environment's own credentials, whether it may write another namespace
(``SelfSubjectAccessReview``). Reached only through :mod:`railguard.providers.registry` (the doctor's seam).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import ipaddress
import os
import secrets
import socket
from typing import Any

from lightkube import ApiError
from lightkube.models.authorization_v1 import ResourceAttributes, SelfSubjectAccessReviewSpec
from lightkube.resources.authorization_v1 import SelfSubjectAccessReview
from lightkube.resources.core_v1 import Namespace
from lightkube.types import CascadeType

from railguard.model.canonical import digest
from railguard.model.diagnostics import RailguardError
from railguard.model.resources import Resource
from railguard.providers.base import ClusterOutcome, NamespaceFacts
from railguard.providers.kubernetes import checks
from railguard.providers.kubernetes.cluster import Cluster, ClusterError
from railguard.providers.kubernetes.labels import (
    ENVIRONMENT,
    ISOLATION_POLICY,
    MANAGED_BY,
    POD_SECURITY,
    RELEASE,
    WORKLOAD_ACCOUNT,
    Target,
    labels,
)
from railguard.providers.kubernetes.manifests import NAMESPACE_NAME, environment_manifests, service_manifests
from railguard.providers.kubernetes.rollout import wait_deployment, wait_job

DOCTOR = "railguard.dev/doctor"  # label: "true" on every scratch namespace
SOURCE = "railguard.dev/doctor-of"  # label: the environment's namespace the scratch one stands in for
OWNER = "railguard.dev/doctor-owner"  # annotation: host/pid of the doctor run that made it
STALE_S = 3600.0  # a scratch namespace older than this is a leftover whoever made it
SUFFIX = len("-doctor-") + 6
METADATA = "169.254.169.254"  # the cloud metadata service (EC2, GCE, Azure): the node's credentials
# What writing a namespace means for the isolation check: any one of these allowed is write access.
WRITE_VERBS = (("patch", "apps", "deployments"), ("create", "apps", "deployments"), ("create", "", "secrets"),
               ("patch", "", "secrets"), ("create", "batch", "jobs"), ("delete", "", "pods"))


def _owner() -> str:
    return f"{socket.gethostname()}/{os.getpid()}"


def _alive(owner: str) -> bool:
    host, _, pid = owner.rpartition("/")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another host's: judged by age alone
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _age_s(meta: dict[str, Any]) -> float:
    made = meta.get("creationTimestamp")
    if isinstance(made, datetime.datetime):
        stamp = made
    else:
        try:
            stamp = datetime.datetime.fromisoformat(str(made).replace("Z", "+00:00"))
        except ValueError:
            return 0.0
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    return (datetime.datetime.now(datetime.UTC) - stamp).total_seconds()


class KubernetesScratch:
    """A temporary namespace standing in for ``target``'s (see the module docstring)."""

    def __init__(self, target: Target, app: str, env: str) -> None:
        self.app, self.env, self.source = app, env, target.namespace
        name = f"{target.namespace[:63 - SUFFIX].rstrip('-')}-doctor-{secrets.token_hex(3)}"
        self.target = dataclasses.replace(target, namespace=name)
        self.namespace = name
        self.connection = Cluster(self.target)
        self.cluster = self.connection.name
        self._closed = False
        try:
            self.swept = self._sweep()
            made: Any = Namespace.from_dict({"apiVersion": "v1", "kind": "Namespace", "metadata": {
                "name": name, "labels": labels(app, env) | POD_SECURITY | {DOCTOR: "true", SOURCE: target.namespace},
                "annotations": {OWNER: _owner()}}})
            self.connection.client.create(made)
        except RailguardError:
            self.connection.close()
            raise
        except Exception as exc:  # an API refusal or no answer at all: a diagnostic naming cluster, namespace, verb
            self.connection.close()
            raise self.connection.failure(exc, "create", "Namespace", name) from exc
        try:
            for manifest in environment_manifests(app, env, self.target):
                self.connection.apply(manifest)
        except BaseException:  # a refusal, or Ctrl-C/SIGTERM before the doctor holds this scratch: it goes now
            self.close()
            raise

    def _sweep(self) -> list[str]:
        """Delete scratch namespaces of this environment that no live doctor run owns; their names."""
        gone: list[str] = []
        try:
            found: Any = self.connection.client.list(Namespace, labels={DOCTOR: "true", SOURCE: self.source})
            for ns in found:
                meta = ns.to_dict()["metadata"]
                if meta.get("deletionTimestamp"):
                    continue
                owner = (meta.get("annotations") or {}).get(OWNER, "")
                if _alive(owner) and _age_s(meta) < STALE_S:
                    continue  # another doctor run, still going
                self.connection.client.delete(Namespace, meta["name"], cascade=CascadeType.BACKGROUND)
                gone.append(meta["name"])
        except ApiError as exc:
            if exc.status.code != 403:  # without `list namespaces`, leftovers cannot be found: not fatal
                raise self.connection.failure(exc, "list", "Namespace") from exc
        except Exception as exc:
            raise self.connection.failure(exc, "list", "Namespace") from exc
        return gone

    def _here(self, resource: Resource) -> Resource:
        config = {**resource.config, "kubernetes": self.target.as_config()}
        return resource.model_copy(update={"config": config})

    def release_job(self, resource: Resource, attempt: int, secret_values: dict[str, str]) -> ClusterOutcome:
        made = service_manifests(self.app, self._here(resource), attempt, secret_values)
        if made.job is None:
            return ClusterOutcome(ok=True, reason="no release command")
        sent = [m for m in (made.secret, made.job) if m is not None]
        names = [f"{m['kind']}/{m['metadata']['name']}" for m in sent]
        try:
            checks.before_sending(self.connection, sent, resource.address)
            for manifest in sent:
                self.connection.apply(manifest)
            job = made.job["metadata"]["name"]
            outcome = wait_job(self.connection, job, self.env, resource.name, attempt,
                               float(made.job["spec"]["activeDeadlineSeconds"]) + 10)
        except RailguardError as exc:
            first = exc.diagnostics[0]
            return ClusterOutcome(ok=False, reason=f"{first.summary}: {first.detail}", objects=names)
        return ClusterOutcome(ok=outcome.ok, reason=outcome.reason, pods=outcome.pods, objects=names)

    def deploy(self, resource: Resource, secret_values: dict[str, str]) -> ClusterOutcome:
        made = service_manifests(self.app, self._here(resource), 1, secret_values)
        sent = [m for m in (made.secret, made.deployment, made.service) if m is not None]
        names = [f"{m['kind']}/{m['metadata']['name']}" for m in sent]
        try:
            checks.before_sending(self.connection, sent, resource.address)
            if made.secret is not None:
                self.connection.apply(made.secret)
            self.connection.apply(made.deployment)
            outcome = wait_deployment(self.connection, resource.name, self.env, 1,
                                      float(made.deployment["spec"]["progressDeadlineSeconds"]) + 15)
            if outcome.ok and made.service is not None:
                self.connection.apply(made.service)
        except RailguardError as exc:
            first = exc.diagnostics[0]
            return ClusterOutcome(ok=False, reason=f"{first.summary}: {first.detail}", objects=names)
        return ClusterOutcome(ok=outcome.ok, reason=outcome.reason, pods=outcome.pods, objects=names)

    def rollout(self, resource: Resource, release: int, secret_values: dict[str, str]) -> ClusterOutcome:
        """The provider's steps for one release of a service (its release Job, then the Deployment, waited for); the
        outcome names the live template (a digest without the release number) and its release label."""
        made = service_manifests(self.app, self._here(resource), release, secret_values)
        sent = [m for m in (made.secret, made.job, made.deployment, made.service) if m is not None]
        names = [f"{m['kind']}/{m['metadata']['name']}" for m in sent]
        try:
            checks.before_sending(self.connection, sent, resource.address)
            if made.secret is not None:
                self.connection.apply(made.secret)
            if made.job is not None:
                self.connection.apply(made.job)
                ran = wait_job(self.connection, made.job["metadata"]["name"], self.env, resource.name, release,
                               float(made.job["spec"]["activeDeadlineSeconds"]) + 10)
                if not ran.ok:
                    return ClusterOutcome(ok=False, reason=f"its release Job failed: {ran.reason}", pods=ran.pods,
                                          objects=names)
            self.connection.apply(made.deployment)
            outcome = wait_deployment(self.connection, resource.name, self.env, release,
                                      float(made.deployment["spec"]["progressDeadlineSeconds"]) + 15)
            if outcome.ok and made.service is not None:
                self.connection.apply(made.service)
            live = self.connection.get("Deployment", resource.name)
        except RailguardError as exc:
            first = exc.diagnostics[0]
            return ClusterOutcome(ok=False, reason=f"{first.summary}: {first.detail}", objects=names)
        template = (live or {}).get("spec", {}).get("template") or {}
        label = (template.get("metadata", {}).get("labels") or {}).get(RELEASE)
        return ClusterOutcome(ok=outcome.ok, reason=outcome.reason, pods=outcome.pods, objects=names,
                              template=template_digest(template),
                              release=int(str(label)) if str(label).isdigit() else None)

    def close(self) -> list[str]:
        if self._closed:
            return []
        self._closed = True
        try:
            self.connection.client.delete(Namespace, self.namespace, cascade=CascadeType.BACKGROUND)
            return [f"deleted scratch namespace {self.namespace} on cluster {self.cluster}"]
        except ApiError as exc:
            if exc.status.code == 404:
                return []
            return [f"could not delete scratch namespace {self.namespace}: {exc.status.message or exc}"]
        except Exception as exc:  # teardown reports, never raises: the rest of the scratch must still go
            return [f"could not delete scratch namespace {self.namespace}: {type(exc).__name__}: {exc}"]
        finally:
            with contextlib.suppress(Exception):
                self.connection.close()


def template_digest(template: dict[str, Any]) -> str:
    """A pod template's digest without what names its release (labels, annotation, RAILGUARD_RELEASE): two releases
    of the same code and config have the same one."""
    found = copy.deepcopy(template)
    meta = found.get("metadata") or {}
    (meta.get("labels") or {}).pop(RELEASE, None)
    (meta.get("annotations") or {}).pop(RELEASE, None)
    pod = found.get("spec") or {}
    for container in [*(pod.get("containers") or []), *(pod.get("initContainers") or [])]:
        container["env"] = [e for e in container.get("env") or [] if e.get("name") != "RAILGUARD_RELEASE"]
    return digest(found)


def namespace_facts(target: Target, env: str) -> NamespaceFacts:
    """``target``'s namespace as its own credentials read it: whose it is, its pods' account, its policy (what it
    admits, and whether its pods can reach the cloud metadata service)."""
    try:
        connection = Cluster(target)
    except ClusterError as exc:
        first = exc.diagnostics[0]
        return NamespaceFacts(namespace=target.namespace, readable=False, problem=f"{first.summary}: {first.detail}")
    try:
        environment: str | None = None
        with contextlib.suppress(ClusterError):  # a Role alone may not read the namespace object
            found = connection.get("Namespace", target.namespace)
            if found is not None:
                environment = (found["metadata"].get("labels") or {}).get(ENVIRONMENT)
        account = connection.get("ServiceAccount", WORKLOAD_ACCOUNT)
        policy = connection.get("NetworkPolicy", ISOLATION_POLICY)
        denies, limited, denied = False, False, []
        if policy is not None:
            spec = policy.get("spec") or {}
            denies = ingress_denied(spec, target.ingress_namespace)
            limited = not egress_reaches(spec, METADATA, 80)
            denied = sorted({str(c) for rule in spec.get("egress") or [] for peer in rule.get("to") or []
                             for c in (peer.get("ipBlock") or {}).get("except") or []})
        return NamespaceFacts(
            namespace=target.namespace, cluster=connection.name, environment=environment,
            account=account is not None and (account["metadata"].get("labels") or {}).get(MANAGED_BY) == "railguard",
            automount=account.get("automountServiceAccountToken") if account is not None else None,
            policy=policy is not None, policy_denies_other_namespaces=denies, egress_limited=limited,
            egress_denied=denied)
    except ClusterError as exc:
        first = exc.diagnostics[0]
        return NamespaceFacts(namespace=target.namespace, cluster=connection.name, readable=False,
                              problem=f"{first.summary}: {first.detail}")
    finally:
        connection.close()


def _selects_everything(spec: dict[str, Any]) -> bool:
    selector = spec.get("podSelector") or {}
    return not selector.get("matchLabels") and not selector.get("matchExpressions")


def ingress_denied(spec: dict[str, Any], ingress_namespace: str | None) -> bool:
    """Whether a NetworkPolicy ``spec`` admits, to every pod, only the namespace's own pods (and the pods of
    ``ingress_namespace``, selected by its immutable name label, when the environment names one)."""
    if not _selects_everything(spec) or "Ingress" not in (spec.get("policyTypes") or ["Ingress"]):
        return False
    controller = {"matchLabels": {NAMESPACE_NAME: ingress_namespace}} if ingress_namespace else None
    for rule in spec.get("ingress") or []:
        for peer in rule.get("from") or [{"namespaceSelector": {}}]:  # no `from`: everyone
            if "ipBlock" in peer:
                return False
            if "namespaceSelector" in peer and (controller is None or peer["namespaceSelector"] != controller):
                return False
    return True


def egress_reaches(spec: dict[str, Any], address: str, port: int) -> bool:
    """Whether a NetworkPolicy ``spec`` lets every pod open TCP ``port`` on ``address``, an address outside the
    cluster's pods (only ipBlock peers, or a rule without peers, can match it)."""
    if not _selects_everything(spec):
        return True
    if "Egress" not in (spec.get("policyTypes") or []):
        return True  # the policy says nothing of egress: everything is allowed
    ip = ipaddress.ip_address(address)
    for rule in spec.get("egress") or []:
        ports = rule.get("ports") or []
        if ports and not any((p.get("protocol") or "TCP") == "TCP"
                             and (p.get("port") is None or isinstance(p.get("port"), str) or
                                  int(p["port"]) <= port <= int(p.get("endPort") or p["port"])) for p in ports):
            continue
        peers = rule.get("to")
        if not peers:
            return True
        for peer in peers:
            block = peer.get("ipBlock")
            if block is None:
                continue
            network = ipaddress.ip_network(block["cidr"], strict=False)
            if ip.version == network.version and ip in network and not any(
                    ip in ipaddress.ip_network(c, strict=False) for c in block.get("except") or []
                    if ipaddress.ip_network(c, strict=False).version == ip.version):
                return True
    return False


def write_access(credentials: Target, namespace: str) -> tuple[list[str], str]:
    """Which writes ``credentials``' user may do in ``namespace`` (``verb resource``), by the API server's own
    ``SelfSubjectAccessReview``; and a problem when it could not be asked."""
    try:
        connection = Cluster(credentials)
    except ClusterError as exc:
        return [], exc.diagnostics[0].summary
    allowed: list[str] = []
    try:
        for verb, group, resource in WRITE_VERBS:
            review = SelfSubjectAccessReview(spec=SelfSubjectAccessReviewSpec(resourceAttributes=ResourceAttributes(
                namespace=namespace, verb=verb, group=group, resource=resource)))
            answer: Any = connection.client.create(review)
            if answer.status is not None and answer.status.allowed:
                allowed.append(f"{verb} {resource}")
    except ApiError as exc:
        return allowed, connection.failure(exc, "create", "SelfSubjectAccessReview").diagnostics[0].summary
    except Exception as exc:  # unreachable cluster and the like: reported, the check goes on
        return allowed, f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()
    return allowed, ""
