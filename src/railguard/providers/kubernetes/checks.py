"""Before anything is sent to a namespace: whose namespace it is, and whether the server would take each object.

``claim`` makes sure the environment's namespace exists (creating it with ``create namespaces`` when missing)
and is this environment's: not another environment's, not being deleted, not running Deployments Railguard
did not create. ``before_sending`` checks every manifest against the server's OpenAPI for fields it would drop
silently, then dry-runs them all (bounded parallel): a refusal (RBAC, quota, validation) stops the change
before it touched anything. Called by :mod:`.provider` at the start of each change.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from railguard.model.diagnostics import RailguardError, error
from railguard.providers.kubernetes.cluster import Cluster, ClusterError
from railguard.providers.kubernetes.labels import ENVIRONMENT, MANAGED_BY, Target, labels
from railguard.providers.kubernetes.manifests import Manifest

CHECK_PARALLEL = 4  # dry-runs of one change's objects in flight at once


def claim(cluster: Cluster, target: Target, env: str, app: str) -> None:
    """Make sure the namespace exists and is this environment's; refuse one another environment or app uses."""
    try:
        found = cluster.get("Namespace", target.namespace)
    except ClusterError as exc:
        if exc.status != 403:
            raise
        # A Role bound in the namespace alone may not read the namespace object: judge by what runs in it.
        found = {"metadata": {"name": target.namespace}}
    if found is None:
        cluster.create_namespace(labels(app, env))
        return
    meta = found["metadata"]
    owner = meta.get("labels") or {}
    if meta.get("deletionTimestamp"):
        raise taken(cluster, env, "is being deleted")
    if owner.get(MANAGED_BY) == "railguard" and owner.get(ENVIRONMENT) not in (None, env):
        raise taken(cluster, env, f"belongs to environment '{owner.get(ENVIRONMENT)}'")
    mine = {MANAGED_BY: "railguard", ENVIRONMENT: env}
    others = sorted(d["metadata"]["name"] for d in cluster.list("Deployment")
                    if {k: (d["metadata"].get("labels") or {}).get(k) for k in mine} != mine)
    if others:
        raise taken(cluster, env, f"runs Deployments of something else ({', '.join(others[:3])})")


def before_sending(cluster: Cluster, manifests: list[Manifest], address: str) -> None:
    """Unknown fields (the server would drop them), then a server-side dry-run of each manifest."""
    schema = cluster.schema()
    for manifest in manifests:
        unknown = schema.unknown_fields(manifest)
        if unknown:
            raise RailguardError(error(
                "cluster.invalid_manifest",
                f"{manifest['kind']} '{manifest['metadata']['name']}' has fields cluster {cluster.name} does "
                "not know", f"{', '.join(unknown)}: the server's OpenAPI schema defines no such field, and this "
                "server would drop it without a word.",
                "Use a Railguard release made for this Kubernetes version, or remove the setting.",
                address=address, extra={"fields": unknown, "cluster": cluster.name,
                                         "namespace": cluster.namespace}))
    # In parallel (bounded); the first refusal in manifest order is the one reported.
    with ThreadPoolExecutor(max_workers=CHECK_PARALLEL) as pool:
        answers = list(pool.map(lambda m: _attempt(lambda: cluster.apply(m, dry_run=True)), manifests))
    refused = next((a for a in answers if a is not None), None)
    if refused is not None:
        raise refused


def taken(cluster: Cluster, env: str, why: str) -> RailguardError:
    return RailguardError(error(
        "cluster.namespace_taken", f"Namespace '{cluster.namespace}' {why}",
        f"Environment '{env}' owns namespace '{cluster.namespace}' of cluster {cluster.name}, but it {why}; "
        "Railguard lists and deletes the objects it labels there, so it does not share a namespace.",
        f"Give environments.{env}.kubernetes.namespace a namespace of its own, then plan again.",
        extra={"cluster": cluster.name, "namespace": cluster.namespace, "verb": "get", "resource": "namespaces"}))


def _attempt(call: Callable[[], object]) -> RailguardError | None:
    try:
        call()
    except RailguardError as exc:
        return exc
    return None
