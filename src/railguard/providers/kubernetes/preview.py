"""What the server would do with a plan's changes: a server-side dry-run of every changed object, at plan time.

For each desired service or edge whose fingerprint differs from what is live, the manifests are checked for
fields the server's schema does not know and sent with ``dryRun=All`` (field manager ``railguard``): the
server's defaulting, validation, admission (quotas) and RBAC all run, nothing is stored. Refusals become the
plan's error diagnostics (so a plan that could not be applied says so before review); the fields the server
would change on each live object become an info diagnostic (``cluster.server_diff``) beside the planner's own
diff. Secret values are never read here (a Secret is dry-run with empty values and never diffed). Requests run
in parallel, bounded. Called by :meth:`railguard.providers.kubernetes.provider.KubernetesProvider.observe`.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from railguard.model.diagnostics import Diagnostic, RailguardError, Severity, error
from railguard.model.resources import ObservedResource, Resource
from railguard.providers.kubernetes.cluster import Cluster, ClusterError
from railguard.providers.kubernetes.labels import ADDRESS, CONFIG, DEPENDS_ON, FINGERPRINT, PENDING, PREVIOUS
from railguard.providers.kubernetes.manifests import ArtifactMount, Manifest, edge_manifests, service_manifests

PARALLEL = 8
MAX_PATHS = 20
_NOISE = {"managedFields", "resourceVersion", "generation", "uid", "creationTimestamp", "selfLink"}
_OURS = {ADDRESS, CONFIG, DEPENDS_ON, FINGERPRINT, PENDING, PREVIOUS}


def changed_paths(before: Any, after: Any, prefix: str = "") -> list[str]:
    """Dotted paths where ``after`` differs from ``before`` (metadata bookkeeping and Railguard's notes aside)."""
    if isinstance(before, dict) and isinstance(after, dict):
        found: list[str] = []
        for key in sorted(set(before) | set(after)):
            if key in _NOISE or key in _OURS or (not prefix and key == "status"):
                continue
            found += changed_paths(before.get(key), after.get(key), f"{prefix}.{key}" if prefix else str(key))
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [p for i, (b, a) in enumerate(zip(before, after, strict=True))
                for p in changed_paths(b, a, f"{prefix}[{i}]")]
    return [] if before == after else [prefix or "(whole object)"]


# What a service's pods get for its artifact at plan time (the provider's, see KubernetesProvider._plan_mount):
# without it the dry-run would drop the live init container, volume and mounts, a server_diff the apply never makes.
PlanMount = Callable[[Resource], ArtifactMount | None]


def manifests_for(app: str, resource: Resource, live: ObservedResource | None,
                  artifact: ArtifactMount | None = None) -> list[Manifest]:
    if resource.kind == "edge":
        return edge_manifests(app, resource)
    # Labels only (the apply decides the number): the live one, so the diff shows what else changes. The release
    # Job of a live service is left out: it would carry the live release's name, and a Job's template is immutable.
    release = (live.release or 1) if live is not None else 1
    made = service_manifests(app, resource, release, {}, artifact)
    return [m for m in made.all() if live is None or m is not made.job]


def _one(cluster: Cluster, manifest: Manifest, address: str) -> list[Diagnostic]:
    kind, name = manifest["kind"], manifest["metadata"]["name"]
    unknown = cluster.schema().unknown_fields(manifest)
    if unknown:
        return [error("cluster.invalid_manifest", f"{kind} '{name}' has fields cluster {cluster.name} does not know",
                      f"{', '.join(unknown)}: the server's OpenAPI schema defines no such field, and this server "
                      "would drop it without a word.",
                      "Use a Railguard release made for this Kubernetes version, or remove the setting.",
                      address=address, extra={"fields": unknown, "cluster": cluster.name,
                                               "namespace": cluster.namespace})]
    try:
        after = cluster.apply(manifest, dry_run=True)
    except ClusterError as exc:
        if exc.status == 404 and "namespaces" in exc.diagnostics[0].detail:
            return []  # the namespace does not exist yet: the apply creates it first
        return [d.model_copy(update={"address": address}) for d in exc.diagnostics]
    if kind == "Secret":
        return []  # dry-run with empty values: its data is never compared (nor shown)
    before = cluster.get(kind, name)
    if before is None:
        return []
    paths = changed_paths(before, after)
    if not paths:
        return []
    shown = paths[:MAX_PATHS] + ([f"... {len(paths) - MAX_PATHS} more"] if len(paths) > MAX_PATHS else [])
    return [Diagnostic(code="cluster.server_diff", severity=Severity.info,
                       summary=f"{kind} '{name}': the server would change {len(paths)} field(s)",
                       detail=f"A server-side dry-run of {kind} '{name}' in namespace '{cluster.namespace}' of "
                       f"cluster {cluster.name} (the server's defaults included) differs from the live object at: "
                       f"{', '.join(shown)}.", remediation="Review it with the plan; apply makes exactly this change.",
                       address=address, extra={"kind": kind, "name": name, "paths": shown})]


def preview(cluster: Cluster, app: str, desired: list[Resource],
            live: dict[str, ObservedResource], mount: PlanMount | None = None) -> list[Diagnostic]:
    """Dry-run every object of the changed resources in ``desired``; their refusals and server-side diffs."""
    jobs: list[tuple[Manifest, str]] = []
    for resource in desired:
        if resource.kind not in ("service", "edge") or "kubernetes" not in resource.config:
            continue
        current = live.get(resource.address)
        if current is not None and current.fingerprint == resource.fingerprint:
            continue
        artifact = mount(resource) if mount is not None and resource.kind == "service" else None
        jobs += [(m, resource.address) for m in manifests_for(app, resource, current, artifact)]
    if not jobs:
        return []
    try:
        cluster.schema()  # once, before the workers share it
    except RailguardError as exc:
        return list(exc.diagnostics)
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        answers = list(pool.map(lambda job: _one(cluster, *job), jobs))
    return [d for found in answers for d in found]
