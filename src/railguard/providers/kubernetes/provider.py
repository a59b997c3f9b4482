"""The Kubernetes provider: the provider protocol over one namespace per environment.

``apply_change`` checks a change before it touches anything — every manifest against the server's OpenAPI
(unknown fields) and a server-side dry-run of each (validation, defaulting, RBAC, quotas) — so a refused
change leaves the namespace as it was; then it applies with server-side apply (field manager
``railguard``), journaling each step through ``progress``: environment objects, the Secret of the pinned
secret versions, the release Job (which must complete before the Deployment changes), the Deployment,
the wait for its rollout, the Service. A failed rollout re-applies the previous release's manifests (from
the config it recorded, with its own secret versions) — not ``rollout undo`` — and reports the pods'
reasons. ``observe`` reads the labelled objects back (:mod:`.observe`); status views read Deployments,
pods and events. Pod logs are not read in this version: that API makes the API server dial the node.
Constructed by :mod:`railguard.providers.registry`, which routes each environment to its target.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from railguard.model.api import KeptRelease
from railguard.model.canonical import digest
from railguard.model.diagnostics import RailguardError, error, warning
from railguard.model.plans import Action, Change, Risk
from railguard.model.resources import LiveStatus, ObservedResource, Resource
from railguard.providers.base import (
    AdoptResponse,
    ApplyRequest,
    ApplyResponse,
    CommandProcess,
    CommandRequest,
    DescribeRequest,
    DescribeResponse,
    EdgeUnit,
    Health,
    HealthRequest,
    HealthResponse,
    LogsRequest,
    LogsResponse,
    ObserveRequest,
    ObserveResponse,
    Progress,
    ProviderEvent,
    SecretSource,
    ShutdownRequest,
    SummaryResponse,
    TickRequest,
    TickResponse,
    TrafficRequest,
    TrafficResponse,
)
from railguard.providers.kubernetes import canary, checks, commands, interrupted, views
from railguard.providers.kubernetes import observe as live
from railguard.providers.kubernetes.cluster import Cluster
from railguard.providers.kubernetes.labels import (
    APP,
    CONFIG,
    DEFAULT_APP,
    EDGE,
    ENVIRONMENT,
    MANAGED_BY,
    SERVICE,
    Target,
    labels,
    secret_name,
)
from railguard.providers.kubernetes.manifests import (
    ArtifactMount,
    ServiceManifests,
    edge_manifests,
    environment_manifests,
    service_manifests,
)
from railguard.providers.kubernetes.preview import preview
from railguard.providers.kubernetes.rollout import wait_deployment, wait_job

ISOLATION_REASON = ("each environment is a namespace: pods run with a token-less ServiceAccount, the runtime's default "
                    "seccomp profile, and a NetworkPolicy that admits no traffic from other namespaces (but the "
                    "Ingress controller's, when named) and denies egress to link-local addresses (the cloud "
                    "metadata service) and the ranges of egress_deny; DNS, the artifact store and the rest of the "
                    "network stay reachable, and only a network plugin that enforces NetworkPolicy makes it hold; "
                    "Railguard's state is not in the cluster")
# What a service's objects are, for deletes and shutdown; apply order reversed.
SERVICE_KINDS = ("Service", "Deployment", "Job", "Secret")
TICK_EVERY_S = 5.0
log = logging.getLogger(__name__)
SERVED_FILE = "kubernetes-served.json"  # in the state folder: the (environment, app, target) this state applied
GONE_SLACK_S = 15.0  # beyond the grace period: the garbage collector removes ReplicaSets, then their pods


def _ours(env: str) -> dict[str, str]:
    return {MANAGED_BY: "railguard", ENVIRONMENT: env}


class KubernetesProvider:
    kind = "kubernetes"

    def __init__(self, home: Path, secrets: SecretSource | None = None,
                 targets: Callable[[str], Target | None] | None = None,
                 artifacts: Callable[[ApplyRequest, Target], ArtifactMount | None] | None = None) -> None:
        self.home = home
        self.secrets = secrets
        self.targets = targets or (lambda env: None)
        self.artifacts = artifacts
        self._clusters: dict[tuple[str | None, str | None, str], Cluster] = {}
        self._lock = threading.Lock()
        self._next_tick = 0.0
        self._restarts: dict[str, int] = {}  # namespace/pod -> restarts seen by the last tick
        # (namespace, env) -> the operation that checked the namespace / (operation, digest) that applied its objects
        self._claimed: dict[tuple[str, str], str] = {}
        self._settled: dict[tuple[str, str], tuple[str, str]] = {}
        # (namespace, env) whose leftovers of a killed daemon this process has settled (interrupted.settle)
        self._recovered: set[tuple[str, str]] = set()
        self._recover_lock = threading.Lock()
        self._notes: list[ProviderEvent] = []  # what settling did, for the timeline (the next tick)
        self.removed: list[str] = []  # what the last `shutdown(everything)` deleted, one line per object

    # -- plumbing ------------------------------------------------------------------------------
    def target(self, env: str, desired: Resource | None = None) -> Target:
        if desired is not None and "kubernetes" in desired.config:
            return Target.of(desired.config["kubernetes"])
        found = self.targets(env)
        if found is None:
            raise RailguardError(error(
                "cluster.config", f"'{env}' is not bound to a Kubernetes namespace",
                f"Nothing names the cluster and namespace of '{env}' yet: it is learnt when a plan of the spec is "
                "applied.",
                f"Plan and apply (`railguard plan --env {env}`, then `railguard apply`) a spec whose "
                f"[environments.{env}] has target = \"kubernetes\"."))
        return found

    def cluster(self, target: Target) -> Cluster:
        key = (target.kubeconfig, target.context, target.namespace)
        with self._lock:
            found = self._clusters.get(key)
            if found is None:
                found = self._clusters[key] = Cluster(target, self.home)
            return found

    def _values(self, env: str, config: dict[str, Any]) -> dict[str, str]:
        versions = {k: v for k, v in config.get("secret_versions", {}).items() if v}
        if not versions or self.secrets is None:
            return {}
        return self.secrets(env, versions)

    # -- facts ---------------------------------------------------------------------------------
    def observe(self, request: ObserveRequest) -> ObserveResponse:
        target = self.targets(request.env)
        if target is None:
            return ObserveResponse(resources=[])
        cluster = self.cluster(target)  # a namespace that does not exist lists nothing (no namespace read needed)
        self._recover(cluster, request.env)
        found: dict[str, ObservedResource] = {}
        app = DEFAULT_APP
        for deployment in cluster.list("Deployment", labels=_ours(request.env)):
            resource = live.observed(deployment, "service")
            app = (deployment["metadata"].get("labels") or {}).get(APP, app)
            if resource is not None:
                found[resource.address] = resource
        edge = cluster.get("ConfigMap", EDGE)
        if edge is not None and (edge["metadata"].get("labels") or {}).get(ENVIRONMENT) == request.env:
            resource = live.observed(edge, "edge")
            ingress = cluster.get("Ingress", EDGE)
            if resource is not None and ingress is not None and (changed := live.drift(ingress)):
                config = {**resource.config, "drift": {**resource.config.get("drift", {}), **changed}}
                resource = resource.model_copy(update={"config": config, "fingerprint": digest(config)})
            if resource is not None:
                found[resource.address] = resource
        checked = preview(cluster, app, request.desired, found, self._plan_mount()) if request.desired else []
        checked += [warning(
            "cluster.annotation_unreadable", f"{r.address}: its Railguard annotation is not readable",
            f"The object's `{CONFIG}` annotation in namespace '{target.namespace}' is not the JSON Railguard wrote "
            "(someone with access to the cluster edited it); it is reported as drift.",
            f"Apply environment '{request.env}' so the object and its annotation are put back, and check who may "
            "edit objects in that namespace.", address=r.address) for r in found.values() if live.unreadable(r)]
        return ObserveResponse(resources=sorted(found.values(), key=lambda r: r.address), diagnostics=checked)

    def _plan_mount(self) -> Callable[[Resource], ArtifactMount | None]:
        """What a service without ``image`` gets for its artifact, as the plan's dry-run shows it: the init container
        of the bundle already made of its source (none made yet: a placeholder digest, the one field apply will
        fill), so the server's diff is the apply's. Builds nothing."""
        from railguard.providers.kubernetes import artifacts

        index: dict[tuple[str, str | None], str] | None = None

        def mount(resource: Resource) -> ArtifactMount | None:
            nonlocal index
            target = Target.of(resource.config["kubernetes"])
            if self.artifacts is None or resource.config.get("image") or not target.artifact_store:
                return None
            if index is None:
                index = artifacts.bundle_index(self.home)
            digest = artifacts.planned_digest(index, str(resource.config.get("source")), target.base_image)
            return ArtifactMount(**artifacts.pod_parts(resource.name, digest, target.artifact_store,
                                                       target.base_image))

        return mount

    def health(self, request: HealthRequest) -> HealthResponse:
        target = self.targets(request.env)
        name = request.address.rsplit(".", 1)[-1]
        if target is None or not request.address.startswith(f"{request.env}/service."):
            return HealthResponse(address=request.address, health=Health.missing)
        deployment = self.cluster(target).get("Deployment", name)
        if deployment is None:
            return HealthResponse(address=request.address, health=Health.missing)
        resource = live.observed(deployment, "service")
        status = resource.status if resource else LiveStatus.missing
        return HealthResponse(address=request.address, health=status.health,
                              message=resource.message if resource else "")

    # -- changes -------------------------------------------------------------------------------
    def apply_change(self, request: ApplyRequest, progress: Progress | None = None) -> ApplyResponse:
        step = progress or (lambda name, phase, detail: None)
        change = request.change
        try:
            target = self.target(request.env, request.desired)
            cluster = self.cluster(target)
            self._recover(cluster, request.env)
            app = request.app or DEFAULT_APP
            self._serve(target, request.env, app)
            if change.action is Action.command:  # an approved `railguard exec` plan
                return self._approved_command(request, cluster, app, step)
            if change.kind == "service":
                return self._apply_service(request, cluster, target, app, step)
            if change.kind == "edge":
                return self._apply_edge(request, cluster, target, app, step)
            return ApplyResponse(ok=False, observed=None, diagnostics=[error(
                "cluster.invalid_manifest", f"{change.address}: a {change.kind} cannot run on Kubernetes yet",
                f"The Kubernetes provider runs services and the edge; a {change.kind} resource has no manifests in "
                "this version.", f"Remove it from the environment '{request.env}' or run it on a local environment.",
                address=change.address)])
        except RailguardError as exc:
            return ApplyResponse(ok=False, observed=self._current(request), diagnostics=list(exc.diagnostics))

    def _serve(self, target: Target, env: str, app: str) -> None:
        """Remember (in the state folder) that this state applied ``app``'s environment ``env`` at ``target``: what
        ``stop --everything`` removes, and nothing else (another app's Railguard objects may share a namespace)."""
        entry = {"env": env, "app": app, "target": target.as_config()}
        with self._lock:
            served = self._served_list()
            if entry in served:
                return
            path = self.home / SERVED_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps([*served, entry], indent=1, sort_keys=True))
            os.replace(tmp, path)

    def _served_list(self) -> list[dict[str, Any]]:
        try:
            found = json.loads((self.home / SERVED_FILE).read_text())
        except (OSError, ValueError):
            return []
        return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []

    def _recover(self, cluster: Cluster, env: str) -> None:
        """Once per environment in this process, before it reads or changes it: undo what a killed daemon left half
        done (:mod:`.interrupted`). No operation of this process has touched the environment yet, so every mark
        found is a dead daemon's."""
        key = (cluster.namespace, env)
        if key in self._recovered:
            return
        with self._recover_lock:
            if key in self._recovered:
                return
            done = interrupted.settle(cluster, env)
            self._recovered.add(key)
        with self._lock:
            self._notes += [ProviderEvent(kind="cluster.interrupted_settled", env=env, message=line) for line in done]

    def _current(self, request: ApplyRequest) -> ObservedResource | None:
        try:
            return next((r for r in self.observe(ObserveRequest(env=request.env)).resources
                         if r.address == request.change.address), None)
        except RailguardError:
            return None

    def _apply_service(self, request: ApplyRequest, cluster: Cluster, target: Target, app: str,
                       step: Progress) -> ApplyResponse:
        change, env = request.change, request.env
        name = change.address.rsplit(".", 1)[-1]
        if change.action is Action.delete:
            step("delete", "begin", {"service": name})
            for kind in SERVICE_KINDS:
                for obj in cluster.list(kind, labels=_ours(env) | {SERVICE: name}):
                    cluster.delete(kind, obj["metadata"]["name"])
            grace = int((request.desired.config if request.desired else {}).get("stop_timeout_ms") or 30_000)
            left = _wait_gone(cluster, _ours(env) | {SERVICE: name}, grace / 1000 + GONE_SLACK_S)
            step("delete", "end", {"pods_left": left})
            return ApplyResponse(ok=True, observed=None)
        desired = request.desired
        assert desired is not None
        key = (target.namespace, env)
        if self._claimed.get(key) != request.operation_id:  # once per operation (a plan of 100 services: once)
            checks.claim(cluster, target, env, app)  # first: whose namespace it is decides whether to go on
            self._claimed[key] = request.operation_id
        previous = cluster.get("Deployment", name)
        before = live.observed(previous, "service") if previous is not None else None
        release = request.release or 1
        if change.action is Action.update and before is not None and before.release is not None:
            release = before.release  # in place: the pod template (and its release label) stays
        artifact = self.artifacts(request, target) if self.artifacts and "image" not in desired.config else None
        made = service_manifests(app, desired, release, self._values(env, desired.config), artifact)
        own = environment_manifests(app, env, target)
        if artifact is not None:  # the init container reads the environment's artifact token from this Secret
            from railguard.providers.kubernetes import artifacts

            own.append(artifacts.token_secret(target.namespace, artifacts.environment_token(self.home, env),
                                              labels(app, env)))
        runs_job = made.job is not None and change.action in (Action.create, Action.replace)
        # The environment's objects are the same for every service of an operation: sent with its first one.
        settled = (request.operation_id, digest(own))
        own_sent = [] if self._settled.get(key) == settled else own
        sent = own_sent + [m for m in made.all() if m is not made.job or runs_job]  # a Job's template is immutable
        step("check", "begin", {"objects": len(sent)})
        checks.before_sending(cluster, sent, change.address)
        step("check", "end", {})
        step("environment", "begin", {"namespace": target.namespace, "objects": len(own_sent)})
        for manifest in own_sent:
            cluster.apply(manifest)
        self._settled[key] = settled
        step("environment", "end", {})
        if made.secret is not None:
            step("secret", "begin", {"name": made.secret["metadata"]["name"]})
            cluster.apply(made.secret)
            step("secret", "end", {})
        if made.job is not None and runs_job:
            job = made.job["metadata"]["name"]
            step("job", "begin", {"job": job})
            cluster.apply(made.job)
            outcome = wait_job(cluster, job, env, name, release,
                               float(made.job["spec"]["activeDeadlineSeconds"]) + 10)
            if not outcome.ok:
                step("job", "end", {"ok": False})
                if made.secret is not None and (before is None or secret_name(name, {
                        k: v for k, v in sorted(before.config.get("secret_versions", {}).items()) if v}) !=
                        made.secret["metadata"]["name"]):
                    cluster.delete("Secret", made.secret["metadata"]["name"])  # the previous release keeps its own
                return ApplyResponse(ok=False, observed=before, diagnostics=[error(
                    "cluster.release_failed", f"The release command of '{name}' failed (release {release})",
                    f"Job {job} in namespace '{target.namespace}' of cluster {cluster.name}: {outcome.reason}. "
                    "The Deployment was not changed: the previous release keeps serving.",
                    "Fix the release command, then plan and apply again.", address=change.address,
                    extra={"pods": outcome.pods, "job": job})])
            step("job", "end", {"ok": True})
        first = request.canary_percent or (desired.config.get("canary") or {"steps": [100]})["steps"][0]
        if first < 100 and before is not None and before.release not in (None, release):  # beside the live one
            return canary.start(cluster, env, made, desired, release, before, first, request.operation_id, step)
        step("deployment", "begin", {"release": release})
        cluster.apply(interrupted.mark(made.deployment, request.operation_id, previous))
        step("deployment", "end", {})
        step("rollout", "begin", {"replicas": desired.config.get("replicas", 1)})
        deadline = float(made.deployment["spec"]["progressDeadlineSeconds"]) + 15
        outcome = wait_deployment(cluster, name, env, release, deadline)
        step("rollout", "end", {"ok": outcome.ok, "detail": outcome.reason})
        if not outcome.ok:
            restored = self._restore(cluster, app, before, request, target, step)
            quota = "exceeded quota" in outcome.reason
            return ApplyResponse(ok=False, observed=before, diagnostics=[error(
                "cluster.quota" if quota else "cluster.rollout_failed",
                f"Release {release} of '{name}' did not become available"
                + (f": a quota of namespace '{target.namespace}' refused its pods" if quota else ""),
                f"Deployment {name} in namespace '{target.namespace}' of cluster {cluster.name}: {outcome.reason}. "
                + restored, "Read the pods' reasons (`railguard status`), fix the service, then plan and apply "
                "again.", address=change.address, extra={"pods": outcome.pods})])
        if made.service is not None:
            step("service", "begin", {})
            cluster.apply(made.service)
            step("service", "end", {})
        else:
            cluster.delete("Service", name)
        canary.discard(cluster, name)  # a full release replaces an unfinished canary (a rollback does)
        self._retire(cluster, env, name, made)
        cluster.apply(interrupted.unmarked(made.deployment))  # it serves: a later daemon leaves it as it is
        # A Deployment's generation moves with its annotations too: wait until the controller saw this one (no new
        # pods: the template is the same), so what is observed next is 'running', not 'progressing'.
        outcome = wait_deployment(cluster, name, env, release, deadline)
        # What observe will report (its status message included), so the next observation moves no serial.
        now = cluster.get("Deployment", name)
        found = live.observed(now, "service") if now is not None else None
        return ApplyResponse(ok=True, observed=found if found is not None else ObservedResource(
            address=desired.address, kind="service", fingerprint=desired.fingerprint, config=desired.config,
            depends_on=desired.depends_on, status=LiveStatus.running, release=release, message=outcome.reason))

    def _retire(self, cluster: Cluster, env: str, name: str, made: ServiceManifests) -> None:
        """Once a release serves: the Secrets of other secret versions and the Jobs of older releases go (a
        rollback re-creates what it needs from the secret store, so old values do not linger in the cluster)."""
        keep = {m["metadata"]["name"] for m in (made.secret, made.job) if m is not None}
        for kind in ("Secret", "Job"):
            for obj in cluster.list(kind, labels=_ours(env) | {SERVICE: name}):
                if obj["metadata"]["name"] not in keep:
                    cluster.delete(kind, obj["metadata"]["name"])

    def _restore(self, cluster: Cluster, app: str, before: ObservedResource | None, request: ApplyRequest,
                 target: Target, step: Progress) -> str:
        """Put the previous release's Deployment back (its recorded config, its secret versions, its artifact) and
        remove what the failed release added; say what was done."""
        env, name = request.env, request.change.address.rsplit(".", 1)[-1]
        step("restore", "begin", {"release": before.release if before else None})
        try:
            if before is None or before.release is None:
                for kind in ("Deployment", "Job", "Secret"):
                    for obj in cluster.list(kind, labels=_ours(env) | {SERVICE: name}):
                        cluster.delete(kind, obj["metadata"]["name"])
                return "It was new, so its objects were deleted again: nothing of it is left."
            config = {k: v for k, v in before.config.items() if k not in ("drift", "template_drift")}
            previous = Resource(address=before.address, env=env, kind="service", name=name, config=config,
                                depends_on=before.depends_on, fingerprint=before.fingerprint)
            was = Target.of(config["kubernetes"]) if isinstance(config.get("kubernetes"), dict) else target
            artifact = (self.artifacts(request.model_copy(update={"desired": previous}), was)  # its own store too
                        if self.artifacts and "image" not in config else None)
            made = service_manifests(app, previous, before.release, self._values(env, config), artifact)
            if made.secret is not None:
                cluster.apply(made.secret)
            cluster.apply(made.deployment)
            back = wait_deployment(cluster, name, env, before.release,
                                   float(made.deployment["spec"]["progressDeadlineSeconds"]) + 15)
            if back.ok:
                self._retire(cluster, env, name, made)
            return (f"The Deployment was re-applied with release {before.release}'s template, which "
                    + ("serves again." if back.ok else f"is not available either: {back.reason}."))
        except RailguardError as exc:
            return f"Re-applying the previous release failed too: {exc.diagnostics[0].summary}."
        finally:
            step("restore", "end", {})

    def _apply_edge(self, request: ApplyRequest, cluster: Cluster, target: Target, app: str,
                    step: Progress) -> ApplyResponse:
        if request.change.action is Action.delete:
            step("edge", "begin", {})
            cluster.delete("Ingress", EDGE)
            cluster.delete("ConfigMap", EDGE)
            step("edge", "end", {})
            return ApplyResponse(ok=True, observed=None)
        desired = request.desired
        assert desired is not None
        made = edge_manifests(app, desired)
        step("check", "begin", {"objects": len(made)})
        checks.claim(cluster, target, request.env, app)
        checks.before_sending(cluster, made, request.change.address)
        step("check", "end", {})
        step("ingress", "begin", {"routes": len(desired.config.get("routes", []))})
        for manifest in made:
            cluster.apply(manifest)
        if not any(m["kind"] == "Ingress" for m in made):
            cluster.delete("Ingress", EDGE)
        step("ingress", "end", {})
        return ApplyResponse(ok=True, observed=ObservedResource(
            address=desired.address, kind="edge", fingerprint=desired.fingerprint, config=desired.config,
            depends_on=desired.depends_on, status=LiveStatus.running))

    # -- lifecycle -----------------------------------------------------------------------------
    def adopt(self) -> AdoptResponse:
        return AdoptResponse(notes=[])  # the cluster's controllers supervise; nothing to take over

    def tick(self, request: TickRequest) -> TickResponse:
        """Restarts of our pods since the last pass, as the local runtime reports its replicas' (throttled: the
        daemon ticks twice a second, a cluster is asked every few seconds). No warm replica sets to retire: a
        rollback re-applies the previous release."""
        now = time.monotonic()
        if now < self._next_tick:
            return TickResponse(events=[])
        self._next_tick = now + TICK_EVERY_S
        with self._lock:
            clusters = list(self._clusters.values())
            events: list[ProviderEvent] = self._notes
            self._notes = []
        for cluster in clusters:
            events += views.restarts(cluster, self._restarts)
        return TickResponse(events=events)

    def shutdown(self, request: ShutdownRequest) -> None:
        with self._lock:
            clusters = list(self._clusters.values())
        if request.everything:
            self.removed = []
            with self._lock:
                served = self._served_list()
            # Only what this state applied: its app's objects of its environments (another app's Railguard objects
            # in the same namespace, or anything unlabelled, are not ours to stop).
            for entry in served:
                env, app = str(entry["env"]), str(entry["app"])
                try:
                    cluster = self.cluster(Target.of(entry["target"]))
                    mine = _ours(env) | {APP: app}
                    for kind in (*SERVICE_KINDS, "Ingress", "ConfigMap"):
                        for obj in cluster.list(kind, labels=mine):
                            line = (f"{kind} {obj['metadata']['name']} (app {app}, environment {env}, namespace "
                                    f"{cluster.namespace} of cluster {cluster.name})")
                            log.warning("stop --everything: deleting %s", line)
                            cluster.delete(kind, obj["metadata"]["name"])
                            self.removed.append(line)
                    _wait_gone(cluster, mine, (request.stop_timeout or 30.0) + GONE_SLACK_S)
                except RailguardError as exc:  # one unreachable cluster must not keep the others running
                    log.warning("stop --everything: environment %s not stopped: %s", env, exc.diagnostics[0].summary)
            with self._lock:
                clusters = list(self._clusters.values())
        for cluster in clusters:
            cluster.close()
        with self._lock:
            self._clusters.clear()

    def prune_artifacts(self, kept: list[KeptRelease], dry_run: bool = False) -> list[str]:
        """Remove the bundles (and every environment's leave to fetch them) whose source no kept release names and
        whose source snapshot is no longer stored (snapshots are kept for plans and kept releases: a bundle goes on
        the pass after its snapshot), then the dependency folders (``bundles/deps/``) no remaining bundle was made
        with."""
        from railguard.providers.kubernetes import artifacts
        from railguard.sources.store import SnapshotStore

        sources = {str(r.config["source"]) for release in kept for r in release.desired if r.config.get("source")}
        sources |= set(SnapshotStore.of(self.home).digests())
        bundles = artifacts.bundle_store(self.home)
        gone = bundles.prune(sources, dry_run)
        return gone + bundles.prune_deps(dry_run, going=gone)  # then the packages only those were made with

    def start_command(self, request: CommandRequest, stdio: tuple[int, int, int] | None) -> CommandProcess:
        """The command as a Job from the release's pod template (:mod:`.commands`)."""
        address = f"{request.env}/service.{request.service}"
        if request.desired is None:
            raise RailguardError(error(
                "exec.no_release", f"Release {request.release} of '{request.service}' is not recorded",
                "A one-off command on Kubernetes runs in the pod of the release's recorded service.",
                f"Pick a release listed by `railguard releases --env {request.env}`.", address=address))
        target = self.target(request.env, request.desired)
        cluster = self.cluster(target)
        made = self._command_manifests(request.env, request.desired, request.release, request.app or DEFAULT_APP,
                                       target)
        return commands.start(cluster, made, request.argv, address, stdio, checks.before_sending)

    def _command_manifests(self, env: str, desired: Resource, release: int, app: str,
                           target: Target) -> ServiceManifests:
        ask = ApplyRequest(env=env, desired=desired, operation_id="exec", app=app, change=Change(
            address=desired.address, kind="service", action=Action.command, risk=Risk.disruptive,
            reason="one-off command"))
        artifact = self.artifacts(ask, target) if self.artifacts and "image" not in desired.config else None
        return service_manifests(app, desired, release, self._values(env, desired.config), artifact)

    def _approved_command(self, request: ApplyRequest, cluster: Cluster, app: str, step: Progress) -> ApplyResponse:
        """Run an approved ``command`` change in the live release's pod, its redacted output in the journal."""
        from railguard.secrets.redaction import Redactor

        argv, release = commands.command_of(request.change)
        name = request.change.address.rsplit(".", 1)[-1]
        found = cluster.get("Deployment", name)
        before = live.observed(found, "service") if found is not None else None
        if before is None or before.release != release:
            return ApplyResponse(ok=False, observed=before, diagnostics=[error(
                "exec.no_release", f"Release {release} of '{name}' is not the one running",
                f"Deployment {name} in namespace '{cluster.namespace}' runs release "
                f"{before.release if before else 'none'}; an approved command runs in the live release's pod.",
                f"Plan the command again: `railguard exec {name} --env {request.env} -- ...`.",
                address=request.change.address)])
        config = {k: v for k, v in before.config.items() if k not in ("drift", "template_drift")}
        desired = Resource(address=before.address, env=request.env, kind="service", name=name, config=config,
                           depends_on=before.depends_on, fingerprint=before.fingerprint)
        target = Target.of(config["kubernetes"]) if isinstance(config.get("kubernetes"), dict) else \
            self.target(request.env)
        redact = Redactor()
        redact.update(self._values(request.env, config).items())
        step("command", "begin", {"argv": argv, "release": release})
        try:
            process = commands.start(cluster, self._command_manifests(request.env, desired, release, app, target),
                                     argv, request.change.address, None, checks.before_sending)
        except RailguardError as exc:
            step("command", "fail", {"error": exc.diagnostics[0].summary})
            return ApplyResponse(ok=False, observed=before, diagnostics=list(exc.diagnostics))
        code = process.wait(commands.APPROVED_TIMEOUT_S)
        if code is None:
            process.signal(9)
            code = process.wait(10.0)
        lines = redact(process.output()).splitlines()[-commands.OUTPUT_LINES:]
        step("command", "end" if code == 0 else "fail", {"exit_code": code, "output": lines})
        if code != 0:
            return ApplyResponse(ok=False, observed=before, diagnostics=[error(
                "exec.failed", f"The command exited with {code}",
                f"{' '.join(argv)} in release {release} (a Job in namespace '{cluster.namespace}' of cluster "
                f"{cluster.name}) exited with status {code}.",
                "Read its output (log_tail), fix the cause, then plan the command again.",
                address=request.change.address, extra={"exit_code": code, "log_tail": lines[-20:]})])
        return ApplyResponse(ok=True, observed=before)

    # -- views ---------------------------------------------------------------------------------
    def describe(self, request: DescribeRequest) -> DescribeResponse:
        target = self.targets(request.env)
        if target is None:
            return DescribeResponse(env=request.env, edge=EdgeUnit(port=None, url=None, running=False), live_sets=0,
                                    isolation="isolated")
        cluster = self.cluster(target)
        return canary.attach(cluster, request.env, views.describe(cluster, request.env))

    def logs(self, request: LogsRequest) -> LogsResponse:
        target = self.targets(request.env)
        return LogsResponse() if target is None else views.event_log(self.cluster(target), request)

    def summary(self) -> SummaryResponse:
        with self._lock:
            clusters = list(self._clusters.values())
        ready = 0
        for cluster in clusters:
            try:
                ready += sum(1 for p in cluster.list("Pod", labels={MANAGED_BY: "railguard"})
                             if not p["metadata"].get("deletionTimestamp"))
            except RailguardError:
                continue
        return SummaryResponse(replicas=ready, isolation="isolated", isolation_reason=ISOLATION_REASON)

    def traffic(self, request: TrafficRequest) -> TrafficResponse:
        return TrafficResponse()  # the Ingress controller's traffic is not read in this version

    def set_canary_weight(self, env: str, service: str, percent: int) -> None:
        canary.set_weight(self.cluster(self.target(env)), env, service, percent, self._put_back(env))

    def abort_canary(self, env: str, service: str) -> None:
        canary.abort(self.cluster(self.target(env)), env, service, self._put_back(env))

    def _put_back(self, env: str) -> canary.Restore:
        """The live Deployment back to a release (``_restore``), for a canary whose promotion did not finish."""
        def restore(cluster: Cluster, before: ObservedResource) -> str:
            main = cluster.get("Deployment", before.address.rsplit(".", 1)[-1]) or {}
            app = (main.get("metadata", {}).get("labels") or {}).get(APP, DEFAULT_APP)
            request = ApplyRequest(env=env, desired=None, operation_id="canary", app=app, change=Change(
                address=before.address, kind="service", action=Action.replace, risk=Risk.disruptive,
                reason="the live release put back after a canary"))
            return self._restore(cluster, app, before, request, self.target(env), lambda *_: None)
        return restore


def _wait_gone(cluster: Cluster, selected: dict[str, str], timeout_s: float) -> int:
    """Wait (bounded) until no pod matching ``selected`` is left; the number still there when time ran out."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = len(cluster.list("Pod", labels=selected))
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)

