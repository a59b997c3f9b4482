"""Canary rollouts on Kubernetes: the new release as a second Deployment beside the live one, weighted by replicas.

Why: a service whose spec says ``strategy = "canary"`` must behave on a cluster as on the local runtime (the
daemon's controller, :mod:`railguard.daemon.canary`, drives the steps; ``promote-step``/``abort`` and their MCP
tools move them). No ingress controller is assumed, so the share of the requests is not routed: the canary is the
Deployment ``<service>-canary`` running the new release's pod template (labelled with its release and
``railguard.dev/track=canary``), and the service's Service — which selects the app/environment/service labels,
never the release — sends requests to the pods of both. A step's weight is a **replica ratio**: the live
Deployment keeps its replicas (its capacity is untouched, so an abort only deletes), and the canary gets the
number of pods ``c`` (1..:data:`MAX_FACTOR` times the live count) whose ``c / (c + live)`` is closest to the step.

Everything the later verbs need is on the canary Deployment itself, so a restarted daemon finds the canary from
the cluster (and its step from the store): the step's weight and the operation that started it (annotations),
the live Deployment's manifest it becomes on promotion (``railguard.dev/canary-promotes``, no secret value in it:
secrets are referenced by name) and what the live release was (``railguard.dev/canary-stable``, to put it back
should a promotion be cut off half-way). The canary Deployment carries none of the annotations observation reads,
so it is never a resource of a plan. Promotion rolls the live Deployment to the new template, health-gated, then
deletes the canary; an abort deletes the canary (and puts the live Deployment back if a promotion had begun).
Called by :class:`railguard.providers.kubernetes.provider.KubernetesProvider`.
"""

from __future__ import annotations

import copy
import json
import os
import signal
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from railguard.model.diagnostics import RailguardError, error
from railguard.model.resources import LiveStatus, ObservedResource, Resource
from railguard.providers.base import ApplyResponse, CanaryUnit, DescribeResponse, Progress
from railguard.providers.kubernetes import interrupted
from railguard.providers.kubernetes.cluster import Cluster
from railguard.providers.kubernetes.labels import (
    ADDRESS,
    CONFIG,
    DEPENDS_ON,
    ENVIRONMENT,
    FINGERPRINT,
    MANAGED_BY,
    RELEASE,
    SERVICE,
    job_name,
)
from railguard.providers.kubernetes.manifests import Manifest, ServiceManifests
from railguard.providers.kubernetes.rollout import wait_deployment

TRACK = "railguard.dev/track"
WEIGHT = "railguard.dev/canary-weight"
OPERATION = "railguard.dev/canary-operation"
PROMOTES = "railguard.dev/canary-promotes"
STABLE = "railguard.dev/canary-stable"
MAX_FACTOR = 3  # at most 3 canary pods per live one: a step's share tops out at 75 %
SLACK_S = 15.0
FAULT_ENV = "RAILGUARD_FAULT_STEP"  # as engine/execute.py's: the crash walks of tests/k8s/test_faults_cluster.py

# Puts the live Deployment back to the release ``before`` describes (the provider's restore); says what it did.
Restore = Callable[[Cluster, ObservedResource], str]


def name_of(service: str) -> str:
    return f"{service}-canary"


def replicas_for(percent: int, live: int) -> int:
    """Canary pods beside ``live`` ones whose share of all pods is closest to ``percent`` (fewest on a tie). Pure."""
    if not 1 <= percent <= 99:
        raise ValueError(f"a canary step's share is 1..99 percent, not {percent}")
    live = max(1, live)
    return min(range(1, MAX_FACTOR * live + 1),
               key=lambda c: (abs(Fraction(c, c + live) - Fraction(percent, 100)), c))


def share(canary: int, live: int) -> int:
    """The share of the pods (so of the requests the Service spreads evenly) the canary has, percent."""
    return round(100 * canary / max(1, canary + live))


def manifest(main: Manifest, percent: int, live: int, operation: str | None, stable: dict[str, Any] | None) -> Manifest:
    """The canary Deployment for the live Deployment manifest ``main`` of the new release (pure)."""
    made = copy.deepcopy(main)
    meta = made["metadata"]
    service = meta["labels"][SERVICE]
    meta["name"] = name_of(service)
    meta["labels"] = {**meta["labels"], TRACK: "canary"}
    notes = {k: v for k, v in (meta.get("annotations") or {}).items()
             if k not in (ADDRESS, CONFIG, FINGERPRINT, DEPENDS_ON)}  # never observed as a resource
    notes[WEIGHT] = str(percent)
    notes[PROMOTES] = json.dumps(main, sort_keys=True)
    if operation:
        notes[OPERATION] = operation
    if stable is not None:
        notes[STABLE] = json.dumps(stable, sort_keys=True)
    meta["annotations"] = notes
    spec = made["spec"]
    spec["replicas"] = replicas_for(percent, live)
    spec["selector"] = {"matchLabels": {**spec["selector"]["matchLabels"], TRACK: "canary"}}
    template = spec["template"]["metadata"]
    template["labels"] = {**template["labels"], TRACK: "canary"}
    return made


def _stable_record(before: ObservedResource) -> dict[str, Any]:
    return {"address": before.address, "fingerprint": before.fingerprint, "depends_on": before.depends_on,
            "release": before.release,
            "config": {k: v for k, v in before.config.items() if k not in ("drift", "template_drift")}}


def checkpoint(name: str) -> None:
    """Die here (SIGKILL) when a crash walk asks for ``name``. The verbs that move a canary run outside any
    operation's journal (the daemon's controller records a step once it moved), so they have points of their own:
    ``canary-weight`` (the canary's new size sent), ``canary-promote`` (the live Deployment sent the new template),
    ``canary-promoted`` (it serves; the canary not deleted yet), ``canary-abort`` (the canary about to be deleted;
    inside a rollback's journaled ``abort-canary``); and ``canary-start``, inside the journaled step ``canary`` (the
    canary sent, its rollout not waited for)."""
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _none(env: str, service: str) -> RailguardError:
    return RailguardError(error(
        "canary.none", f"'{service}' in '{env}' has no canary in progress",
        f"No Deployment {name_of(service)} is in the environment's namespace: only a release started by a canary "
        "rollout (strategy = \"canary\") has a share of the pods to move.",
        f"See `railguard status --env {env}`; a canary starts with `railguard apply` of a service whose strategy is "
        "\"canary\"."))


def _live_replicas(cluster: Cluster, service: str) -> int:
    main = cluster.get("Deployment", service)
    return int(((main or {}).get("spec") or {}).get("replicas") or 1)


# -- the verbs ----------------------------------------------------------------------------------------------------
def start(cluster: Cluster, env: str, made: ServiceManifests, desired: Resource, release: int,
          before: ObservedResource, percent: int, operation: str, step: Progress) -> ApplyResponse:
    """Run ``release`` as the canary with ``percent`` of the pods beside the live release (which keeps serving)."""
    service = desired.name
    live = _live_replicas(cluster, service)
    canary = manifest(made.deployment, percent, live, operation, _stable_record(before))
    step("canary", "begin", {"release": release, "weight": percent, "replicas": canary["spec"]["replicas"],
                             "live_replicas": live})
    # A newer canary replaces an unfinished one (same object, new template). Marked while it rolls out: a daemon
    # killed meanwhile leaves no canary of a release its record calls failed (interrupted.settle undoes it).
    cluster.apply(interrupted.mark(canary, operation, cluster.get("Deployment", name_of(service))))
    checkpoint("canary-start")
    deadline = float(canary["spec"]["progressDeadlineSeconds"]) + SLACK_S
    outcome = wait_deployment(cluster, name_of(service), env, release, deadline, service)
    if outcome.ok:
        cluster.apply(interrupted.unmarked(canary))  # it runs beside the live release: a later daemon keeps it
    step("canary", "end", {"ok": outcome.ok, "detail": outcome.reason})
    if not outcome.ok:
        cluster.delete("Deployment", name_of(service))
        tidy(cluster, env, service)
        return ApplyResponse(ok=False, observed=before, diagnostics=[error(
            "cluster.rollout_failed", f"The canary of release {release} of '{service}' did not become available",
            f"Deployment {name_of(service)} in namespace '{cluster.namespace}' of cluster {cluster.name}: "
            f"{outcome.reason}. It was deleted: release {before.release} keeps serving every request.",
            "Read the pods' reasons (`railguard status`), fix the service, then plan and apply again.",
            address=desired.address, extra={"pods": outcome.pods})])
    if made.service is not None:
        step("service", "begin", {})
        cluster.apply(made.service)  # selects app/environment/service: the canary's pods join it
        step("service", "end", {})
    return ApplyResponse(ok=True, observed=ObservedResource(
        address=desired.address, kind="service", fingerprint=desired.fingerprint, config=desired.config,
        depends_on=desired.depends_on, status=LiveStatus.running, release=release,
        message=f"canary: {canary['spec']['replicas']} pods beside {live} of release {before.release} "
        f"({share(canary['spec']['replicas'], live)}% of the pods for a {percent}% step)"))


def set_weight(cluster: Cluster, env: str, service: str, percent: int, restore: Restore) -> None:
    """Move the canary to ``percent`` of the pods; 100 promotes it (the live Deployment rolls to its template)."""
    if not 1 <= percent <= 100:
        raise ValueError(f"a canary's share is 1..100 percent, not {percent}")
    found = cluster.get("Deployment", name_of(service))
    if found is None:
        raise _none(env, service)
    notes = found["metadata"].get("annotations") or {}
    main = json.loads(notes[PROMOTES])
    release = int(found["metadata"]["labels"][RELEASE])
    if percent == 100:
        promote(cluster, env, service, main, release, found, restore)
        return
    stable = json.loads(notes[STABLE]) if STABLE in notes else None
    moved = manifest(main, percent, _live_replicas(cluster, service), notes.get(OPERATION), stable)
    cluster.apply(moved)
    checkpoint("canary-weight")
    outcome = wait_deployment(cluster, name_of(service), env, release,
                              float(moved["spec"]["progressDeadlineSeconds"]) + SLACK_S, service)
    if not outcome.ok:
        raise RailguardError(error(
            "canary.step_failed", f"The canary of '{service}' did not reach {percent}%",
            f"Deployment {name_of(service)} in namespace '{cluster.namespace}' of cluster {cluster.name} was asked "
            f"for {moved['spec']['replicas']} pods: {outcome.reason}. The live release keeps serving beside it.",
            f"Read the pods' reasons (`railguard status --env {env}`); abort with `railguard abort {service} "
            f"--env {env}` or try the step again.", extra={"pods": outcome.pods}))


def promote(cluster: Cluster, env: str, service: str, main: Manifest, release: int, canary: Manifest,
            restore: Restore) -> None:
    """Roll the live Deployment to the canary's template (health-gated), then delete the canary."""
    cluster.apply(main)
    checkpoint("canary-promote")
    outcome = wait_deployment(cluster, service, env, release, float(main["spec"]["progressDeadlineSeconds"]) + SLACK_S)
    if not outcome.ok:
        # Back to the stable release, canary gone: what an abort leaves (never a live Deployment half-way).
        notes = canary["metadata"].get("annotations") or {}
        said = restore(cluster, _observed_stable(json.loads(notes[STABLE]))) if STABLE in notes else ""
        cluster.delete("Deployment", name_of(service))
        tidy(cluster, env, service)
        raise RailguardError(error(
            "canary.promote_failed", f"Release {release} of '{service}' did not become the live release",
            f"Deployment {service} in namespace '{cluster.namespace}' of cluster {cluster.name}: {outcome.reason}. "
            + said + f" The canary Deployment {name_of(service)} was deleted.",
            f"Read the pods' reasons (`railguard status --env {env}`), fix the service, then plan and apply again.",
            extra={"pods": outcome.pods}))
    checkpoint("canary-promoted")
    cluster.delete("Deployment", name_of(service))
    tidy(cluster, env, service)


def abort(cluster: Cluster, env: str, service: str, restore: Restore) -> None:
    """Delete the canary: the live release serves every request (put back first if a promotion had begun)."""
    found = cluster.get("Deployment", name_of(service))
    if found is None:
        raise _none(env, service)
    notes = found["metadata"].get("annotations") or {}
    main = cluster.get("Deployment", service)
    release = found["metadata"]["labels"].get(RELEASE)
    if main is not None and (main["metadata"].get("labels") or {}).get(RELEASE) == release and STABLE in notes:
        # A promotion was cut off (a daemon restart) after the live Deployment took the new template: put the
        # stable release back before the canary goes, so the abort means what it says.
        restore(cluster, _observed_stable(json.loads(notes[STABLE])))
    checkpoint("canary-abort")
    cluster.delete("Deployment", name_of(service))
    tidy(cluster, env, service)


def _observed_stable(record: dict[str, Any]) -> ObservedResource:
    return ObservedResource(address=record["address"], kind="service", fingerprint=record["fingerprint"],
                            config=record["config"], depends_on=record.get("depends_on") or [],
                            status=LiveStatus.running, release=record.get("release"))


def tidy(cluster: Cluster, env: str, service: str) -> None:
    """Remove the service's Secrets no Deployment left references and the Jobs of releases no longer running (a
    rollback re-creates what it needs from the secret store, so old values do not linger in the cluster). A running
    canary's are kept (it is one of the Deployments)."""
    mine = {MANAGED_BY: "railguard", ENVIRONMENT: env, SERVICE: service}
    deployments = cluster.list("Deployment", labels=mine)
    used: set[str] = set()
    releases: set[str] = set()
    for deployment in deployments:
        if deployment["metadata"].get("deletionTimestamp"):
            continue
        releases.add(str((deployment["metadata"].get("labels") or {}).get(RELEASE)))
        pod = deployment["spec"]["template"]["spec"]
        for container in [*pod.get("containers", []), *(pod.get("initContainers") or [])]:
            for variable in container.get("env") or []:
                ref = ((variable.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name")
                if ref:
                    used.add(ref)
        for volume in pod.get("volumes") or []:
            if (volume.get("secret") or {}).get("secretName"):
                used.add(volume["secret"]["secretName"])
    for secret in cluster.list("Secret", labels=mine):
        if secret["metadata"]["name"] not in used:
            cluster.delete("Secret", secret["metadata"]["name"])
    keep = {job_name(service, int(r)) for r in releases if r.isdigit()}
    for job in cluster.list("Job", labels=mine):
        if job["metadata"]["name"] not in keep:
            cluster.delete("Job", job["metadata"]["name"])


def discard(cluster: Cluster, service: str) -> bool:
    """Delete an unfinished canary a full release replaced (a rollback, a deploy without a canary step)."""
    if cluster.get("Deployment", name_of(service)) is None:
        return False
    cluster.delete("Deployment", name_of(service))
    return True


# -- status --------------------------------------------------------------------------------------------------------
def attach(cluster: Cluster, env: str, described: DescribeResponse) -> DescribeResponse:
    """``described`` with each service's canary (its release, step weight and pods) apart from the live replicas."""
    canaries = {d["metadata"]["labels"].get(SERVICE): d for d in cluster.list(
        "Deployment", labels={MANAGED_BY: "railguard", ENVIRONMENT: env, TRACK: "canary"})
        if not d["metadata"].get("deletionTimestamp")}
    if not canaries:
        return described
    services = []
    for unit in described.services:
        found = canaries.get(unit.name)
        if found is None:
            services.append(unit)
            continue
        prefix = f"{name_of(unit.name)}-"
        notes = found["metadata"].get("annotations") or {}
        weight = notes.get(WEIGHT, "0")
        release = found["metadata"]["labels"].get(RELEASE, "0")
        services.append(unit.model_copy(update={
            "replicas": [r for r in unit.replicas if not r.name.startswith(prefix)],
            "canary": CanaryUnit(release=int(release) if release.isdigit() else 0,
                                 weight=int(weight) if weight.isdigit() else 0,
                                 replicas=[r for r in unit.replicas if r.name.startswith(prefix)],
                                 operation=notes.get(OPERATION))}))
    return described.model_copy(update={"services": services})
