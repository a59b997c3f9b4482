"""One cluster connection (kubeconfig + context) and every API failure as a diagnostic naming cluster, namespace, verb.

Built on lightkube (typed, httpx-based; no kubectl): the kubeconfig is read with lightkube's loader, requests
go through its :class:`lightkube.Client` with Railguard's field manager, and only the OpenAPI document is read
with the same authenticated HTTP client directly (lightkube has no call for it). Manifests travel as plain
dicts (what :mod:`.manifests` makes and golden files pin); answers come back as dicts too. Nothing here
calls an API that makes the server dial a node or a pod (logs, exec, attach, port-forward, proxy).
Used by :mod:`.provider`, :mod:`.observe` and :mod:`.rollout`.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import httpx2
from lightkube import ApiError, Client, ConfigError, KubeConfig
from lightkube.config.client_adapter import Client as HttpClient
from lightkube.config.client_adapter import ConnectionParams
from lightkube.resources.apps_v1 import Deployment, ReplicaSet
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import (
    ConfigMap,
    Event,
    Namespace,
    PersistentVolumeClaim,
    Pod,
    Secret,
    Service,
    ServiceAccount,
)
from lightkube.resources.networking_v1 import Ingress, NetworkPolicy
from lightkube.types import CascadeType, PatchType

from railguard.model.diagnostics import Diagnostic, RailguardError, error
from railguard.providers.kubernetes import kubeconfig
from railguard.providers.kubernetes.labels import FIELD_MANAGER, POD_SECURITY, Target
from railguard.providers.kubernetes.openapi import Schema

KINDS: dict[str, Any] = {  # lightkube's resource classes (typed per kind; used here by name)
    "Deployment": Deployment, "ReplicaSet": ReplicaSet, "Job": Job, "ConfigMap": ConfigMap, "Event": Event,
    "Namespace": Namespace, "PersistentVolumeClaim": PersistentVolumeClaim, "Pod": Pod, "Secret": Secret,
    "Service": Service, "ServiceAccount": ServiceAccount, "Ingress": Ingress, "NetworkPolicy": NetworkPolicy,
}
# The API's plural resource names, as RBAC and its messages spell them.
PLURAL = {"Deployment": "deployments", "ReplicaSet": "replicasets", "Job": "jobs", "ConfigMap": "configmaps",
          "Event": "events", "Namespace": "namespaces", "PersistentVolumeClaim": "persistentvolumeclaims",
          "Pod": "pods", "Secret": "secrets", "Service": "services", "ServiceAccount": "serviceaccounts",
          "Ingress": "ingresses", "NetworkPolicy": "networkpolicies"}
TIMEOUT_S = 10.0


class ClusterError(RailguardError):
    """A failed call to a cluster, carrying its diagnostic; ``status`` is the HTTP status (None: no answer)."""

    def __init__(self, diagnostic: Diagnostic, status: int | None = None) -> None:
        super().__init__(diagnostic)
        self.status = status


def kubeconfig_path(target: Target) -> Path:
    if target.kubeconfig:
        return Path(target.kubeconfig).expanduser()
    env = os.environ.get("KUBECONFIG", "")
    first = next((p for p in env.split(os.pathsep) if p), None)
    return Path(first).expanduser() if first else Path("~/.kube/config").expanduser()


class Cluster:
    """A connection to the cluster of one target (kubeconfig + context); namespaced calls go to its namespace."""

    def __init__(self, target: Target, home: Path | None = None) -> None:
        """``home``: the daemon's state folder; given, a kubeconfig the spec names must be inert or trusted there
        (:mod:`.kubeconfig`). Without it (the doctor, in the caller's own process) the caller's authority is used."""
        self.target = target
        self.namespace = target.namespace
        path = kubeconfig_path(target)
        where = f"kubeconfig {path}" + (f", context '{target.context}'" if target.context else "")
        try:
            if home is not None and target.kubeconfig:
                loaded = kubeconfig.checked(path, target.context, home)
            else:
                loaded = kubeconfig.read(path, target.context)
        except RailguardError as exc:
            raise ClusterError(exc.diagnostics[0]) from None
        try:
            # Relative file names resolve beside the real file (the trusted one), not beside a link to it.
            config = KubeConfig.from_dict(loaded.document, fname=path.resolve()).get(context_name=target.context)
            if config is None:
                raise ConfigError("it names no current-context")
        except (ConfigError, OSError, KeyError, ValueError, TypeError, AttributeError) as exc:
            raise ClusterError(error(
                "cluster.config", f"Cannot use {where}",
                f"Reading {where} for namespace '{self.namespace}' failed: {exc}.",
                "Check `kubeconfig` and `context` in [environments.<name>.kubernetes] (or $KUBECONFIG), e.g. "
                "with `kubectl config get-contexts`, then plan again.",
                extra={"kubeconfig": str(path), "context": target.context})) from exc
        self.name = config.cluster.server or "(no server)"
        self.context = config.context_name
        timeout = httpx2.Timeout(TIMEOUT_S)
        try:
            self.client = Client(config, namespace=self.namespace, field_manager=FIELD_MANAGER, timeout=timeout,
                                 trust_env=False)
            self.http = HttpClient(config, ConnectionParams(timeout=timeout, trust_env=False))
        except (ConfigError, OSError, ValueError, AssertionError) as exc:
            raise ClusterError(error(
                "cluster.config", f"Cannot use {where}",
                f"The credentials or certificates of {where} cannot be loaded: {exc}.",
                "Fix the kubeconfig's user and cluster entries, then plan again.")) from exc
        self._schema: Schema | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        self.client.close()
        self.http.close()

    # -- errors ---------------------------------------------------------------------------------
    def failure(self, exc: Exception, verb: str, kind: str, name: str | None = None) -> ClusterError:
        """``exc`` from ``verb`` on ``kind`` as a diagnostic naming cluster, namespace and verb."""
        resource = PLURAL.get(kind, kind.lower())
        what = f"{verb} {resource}" + (f" '{name}'" if name else "")
        where = f"cluster {self.name} (context {self.context}), namespace '{self.namespace}'"
        facts: dict[str, Any] = {"cluster": self.name, "context": self.context, "namespace": self.namespace,
                                 "verb": verb, "resource": resource, "name": name}
        if isinstance(exc, ApiError):
            status = exc.status.code or (exc.response.status_code if exc.response is not None else 0)
            message = exc.status.message or str(exc)
            reason = exc.status.reason or ""
            facts |= {"status": status, "reason": reason}
            if status == 401:
                diag = error("cluster.unauthorized", f"The cluster refused Railguard's credentials ({what})",
                             f"{where} answered 401 Unauthorized to {what}: the token or certificate in the "
                             "kubeconfig expired or is not known to this cluster.",
                             "Renew the credentials of the kubeconfig's user (or point `context` at a valid one), "
                             "then plan again.", extra=facts)
            elif status == 403 and "exceeded quota" in message:
                diag = error("cluster.quota", f"A quota of namespace '{self.namespace}' refused {what}",
                             f"{where}: {message}.",
                             "Raise the namespace's ResourceQuota or lower the service's replicas or `resources`, "
                             "then plan again.", extra=facts)
            elif status == 403:
                diag = error("cluster.forbidden", f"RBAC denies Railguard '{verb}' on {resource}",
                             f"{where} refused {what}: {message}. Nothing further was changed.",
                             f"Grant the kubeconfig's user '{verb}' on {resource} in namespace '{self.namespace}' "
                             "(`railguard k8s rbac` prints the Role Railguard needs), or use the context meant for "
                             "this environment.", extra=facts)
            elif status == 409 and reason == "Conflict" and "conflict" in message.lower():
                diag = error("cluster.conflict", f"Another field manager owns fields of {resource} '{name}'",
                             f"{where}: {message}.",
                             "Plan again: the plan shows the drift; applying it takes the fields back.", extra=facts)
            elif status == 422 or reason == "Invalid":
                diag = error("cluster.invalid_manifest", f"The cluster refused {what} as invalid",
                             f"{where}: {message}.",
                             "Fix the service's settings the message names, then plan again.", extra=facts)
            else:
                diag = error("cluster.api_error", f"The cluster failed {what} ({status} {reason})",
                             f"{where}: {message}.", "Check the cluster's health, then plan again.", extra=facts)
            return ClusterError(diag, status)
        if isinstance(exc, httpx2.TransportError | OSError):
            return ClusterError(error(
                "cluster.unreachable", f"Cluster {self.name} cannot be reached",
                f"{what} in {where} failed before an answer: {type(exc).__name__}: {exc}.",
                "Check that the API server runs and that the kubeconfig's server address and certificate are "
                "right (`kubectl --context CONTEXT get --raw /readyz`), then plan again.", extra=facts))
        if isinstance(exc, ConfigError):
            return ClusterError(error(
                "cluster.config", f"The kubeconfig of cluster {self.name} cannot be used for {what}",
                f"{where}: {exc}.", "Fix the kubeconfig, then plan again.", extra=facts))
        raise exc

    # -- calls ----------------------------------------------------------------------------------
    def apply(self, manifest: dict[str, Any], *, dry_run: bool = False, force: bool = True) -> dict[str, Any]:
        """Server-side apply ``manifest`` with field manager ``railguard``; the object as the server has it."""
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        namespace = None if kind == "Namespace" else self.namespace
        try:
            found: Any = self.client.patch(KINDS[kind], name, manifest, namespace=namespace,
                                      patch_type=PatchType.APPLY, field_manager=FIELD_MANAGER, force=force,
                                      dry_run=dry_run)
        except (ApiError, httpx2.TransportError, OSError, ConfigError) as exc:
            raise self.failure(exc, "patch", kind, name) from exc
        return dict(found.to_dict())

    def create_namespace(self, labels: dict[str, str]) -> None:
        """Create this connection's namespace (``create namespaces``, the verb the optional ClusterRole grants),
        enforcing the "restricted" Pod Security profile; one that appeared meanwhile is fine (and keeps its labels)."""
        try:
            made: Any = Namespace.from_dict({"apiVersion": "v1", "kind": "Namespace",
                                             "metadata": {"name": self.namespace, "labels": labels | POD_SECURITY}})
            self.client.create(made)
        except ApiError as exc:
            if exc.status.code == 409:
                return
            raise self.failure(exc, "create", "Namespace", self.namespace) from exc
        except (httpx2.TransportError, OSError, ConfigError) as exc:
            raise self.failure(exc, "create", "Namespace", self.namespace) from exc

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        namespace = None if kind == "Namespace" else self.namespace
        try:
            found: Any = self.client.get(KINDS[kind], name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise self.failure(exc, "get", kind, name) from exc
        except (httpx2.TransportError, OSError, ConfigError) as exc:
            raise self.failure(exc, "get", kind, name) from exc
        return dict(found.to_dict())

    def list(self, kind: str, labels: dict[str, str] | None = None,
             fields: dict[str, str] | None = None) -> list[dict[str, Any]]:
        try:
            items: Any = self.client.list(KINDS[kind], namespace=self.namespace, labels=dict(labels or {}) or None,
                                          fields=dict(fields or {}) or None)
            return [dict(item.to_dict()) for item in items]
        except (ApiError, httpx2.TransportError, OSError, ConfigError) as exc:
            raise self.failure(exc, "list", kind) from exc

    def delete(self, kind: str, name: str) -> None:
        try:
            # Background: the object goes at once, the garbage collector removes its ReplicaSets and pods after.
            self.client.delete(KINDS[kind], name, namespace=self.namespace, cascade=CascadeType.BACKGROUND)
        except ApiError as exc:
            if exc.status.code == 404:
                return
            raise self.failure(exc, "delete", kind, name) from exc
        except (httpx2.TransportError, OSError, ConfigError) as exc:
            raise self.failure(exc, "delete", kind, name) from exc

    def schema(self) -> Schema:
        """The server's OpenAPI v2 document (fetched once per connection: several MB)."""
        with self._lock:
            if self._schema is None:
                try:
                    answer = self.http.get("/openapi/v2", headers={"Accept": "application/json"})
                    answer.raise_for_status()
                    self._schema = Schema(answer.json())
                except httpx2.HTTPStatusError as exc:
                    status = exc.response.status_code
                    code = {401: "cluster.unauthorized", 403: "cluster.forbidden"}.get(status, "cluster.api_error")
                    raise ClusterError(error(
                        code, f"Cluster {self.name} refused its OpenAPI schema ({status})",
                        f"GET /openapi/v2 on cluster {self.name} answered {status}; manifests are checked against "
                        "it for fields the server would silently drop, so nothing is applied without it.",
                        "Check the kubeconfig's credentials and that its user may read /openapi/v2 "
                        "(the `system:discovery` role), then plan again.",
                        extra={"cluster": self.name, "namespace": self.namespace, "verb": "get",
                               "resource": "/openapi/v2"}), status) from exc
                except (httpx2.TransportError, OSError) as exc:
                    raise self.failure(exc, "get", "/openapi/v2") from exc
            return self._schema
