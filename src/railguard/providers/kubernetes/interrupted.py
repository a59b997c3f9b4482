"""What a daemon killed in the middle of a Kubernetes apply leaves behind, and putting it back.

Why: a service's apply is several writes (Secret, release Job, Deployment, Service) and a wait for the rollout,
and the cluster's controllers carry on without the daemon. Killed after the Deployment was written, the next daemon
would observe the new release's annotations and call the change done although its rollout may never finish and
its Service may not exist; killed before, the new release's Secret and Job would be left with nothing using them.

So while an operation changes a Deployment, the Deployment carries :data:`PENDING` (the operation's id) and
:data:`PREVIOUS` (the Deployment as it was, as JSON; empty for a new service); both go once the release serves
(:func:`mark`, :func:`unmarked`). :func:`settle`, run by the provider once per environment per daemon process
before that process reads or changes the environment, puts every still-marked Deployment back as it was (or
deletes it when it was new: the previous release keeps serving, nothing of the new one is half there) and then
deletes the Jobs, Secrets and Services of a service that neither its live Deployment nor its canary uses (the
orphans of a release that never reached its Deployment). A canary Deployment is marked the same way while it
rolls out (:func:`railguard.providers.kubernetes.canary.start`): a canary cut off half-way is deleted (or the
canary it was replacing put back), so no canary runs for a release whose deploy the record calls failed. The
operation record then says truthfully that the change did not happen (engine/recovery.py), and the next plan
shows it again. Called by
:class:`railguard.providers.kubernetes.provider.KubernetesProvider`.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from railguard.providers.kubernetes.cluster import Cluster
from railguard.providers.kubernetes.labels import (
    ADDRESS,
    CONFIG,
    DEPENDS_ON,
    ENVIRONMENT,
    FINGERPRINT,
    MANAGED_BY,
    PENDING,
    PREVIOUS,
    RELEASE,
    SERVICE,
    job_name,
)

_KEPT_NOTES = (ADDRESS, CONFIG, DEPENDS_ON, FINGERPRINT)
_OURS = "railguard.dev/"  # a canary Deployment's own notes (its weight, what it promotes to) are kept as well


def previous_manifest(live: dict[str, Any] | None) -> str:
    """The live Deployment as a manifest Railguard can apply again (JSON), or "" when there is none."""
    if live is None:
        return ""
    meta = live.get("metadata") or {}
    notes = {k: v for k, v in (meta.get("annotations") or {}).items()
             if k in _KEPT_NOTES or (k.startswith(_OURS) and k not in (PENDING, PREVIOUS))}
    return json.dumps({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": meta["name"], "namespace": meta.get("namespace"),
                                    "labels": dict(meta.get("labels") or {}), "annotations": notes},
                       "spec": live.get("spec") or {}}, sort_keys=True)


def mark(deployment: dict[str, Any], operation_id: str, previous: dict[str, Any] | None) -> dict[str, Any]:
    """``deployment`` carrying the marks of an operation in progress (a copy)."""
    marked = copy.deepcopy(deployment)
    notes = marked["metadata"].setdefault("annotations", {})
    notes[PENDING] = operation_id or "unknown"
    notes[PREVIOUS] = previous_manifest(previous)
    return marked


def unmarked(deployment: dict[str, Any]) -> dict[str, Any]:
    """``deployment`` without the marks: applied once the release serves (server-side apply drops them)."""
    clean = copy.deepcopy(deployment)
    notes = clean["metadata"].get("annotations") or {}
    for key in (PENDING, PREVIOUS):
        notes.pop(key, None)
    return clean


def _secrets_used(deployment: dict[str, Any]) -> set[str]:
    pod = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    found = set()
    for container in (pod.get("containers") or []) + (pod.get("initContainers") or []):
        for variable in container.get("env") or []:
            ref = ((variable.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name")
            if ref:
                found.add(ref)
    return found


def settle(cluster: Cluster, env: str) -> list[str]:
    """Put back what a killed daemon left half done in ``env``'s namespace; one line per thing done."""
    ours = {MANAGED_BY: "railguard", ENVIRONMENT: env}
    done: list[str] = []
    live: dict[str, list[dict[str, Any]]] = {}  # service -> its Deployments (the live one, and a canary's)
    for deployment in cluster.list("Deployment", labels=ours):
        meta = deployment["metadata"]
        notes = meta.get("annotations") or {}
        name = meta["name"]
        service = (meta.get("labels") or {}).get(SERVICE, name)
        if PENDING not in notes:
            live.setdefault(service, []).append(deployment)
            continue
        previous = notes.get(PREVIOUS) or ""
        if previous:
            restored = cluster.apply(json.loads(previous))
            live.setdefault(service, []).append(restored)
            release = (restored["metadata"].get("labels") or {}).get(RELEASE)
            done.append(f"Deployment {name}: operation {notes[PENDING]} was interrupted while changing it; "
                        f"release {release} was put back")
        else:
            cluster.delete("Deployment", name)
            done.append(f"Deployment {name}: operation {notes[PENDING]} was interrupted while creating it; it "
                        "was deleted again")
    for kind in ("Job", "Secret", "Service"):
        for obj in cluster.list(kind, labels=ours):
            meta = obj["metadata"]
            service = (meta.get("labels") or {}).get(SERVICE)
            if service is None:
                continue  # the environment's own objects (the artifact token's Secret)
            using = live.get(service)
            if not using:
                orphan = True
            elif kind == "Job":
                releases = {(d["metadata"].get("labels") or {}).get(RELEASE, "") for d in using}
                orphan = meta["name"] not in {job_name(service, int(r)) for r in releases if r.isdigit()}
            elif kind == "Secret":
                orphan = not any(meta["name"] in _secrets_used(d) for d in using)
            else:
                orphan = False
            if orphan:
                cluster.delete(kind, meta["name"])
                done.append(f"{kind} {meta['name']}: left by an interrupted operation, unused; deleted")
    return done
