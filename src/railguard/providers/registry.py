"""The one place a concrete provider is chosen: the composition root of the runtimes.

The daemon and the doctor hold a :class:`railguard.providers.base.Provider` and never
import a runtime package; they ask this module for one (the doctor also for a
:class:`~railguard.providers.base.ScratchRuntime`). ``open_provider`` returns a
:class:`Router`: every request goes to the runtime of its environment's target — the
local runtime, exactly as before, unless the environment's resources say
``target = "kubernetes"`` (their config carries the ``kubernetes`` table), then the
Kubernetes provider. The router learns each environment's target from the resources of
the applies it routes (a plan's observation uses them for that request only, so a plan
never re-routes an environment; an apply the runtime answered ok binds it) and keeps what
it learnt in the state folder, so status, health and logs after a restart go to the same
place. Import-linter contracts in ``pyproject.toml`` keep every other route to a runtime
package closed.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from railguard.model.api import KeptRelease
from railguard.model.resources import Resource
from railguard.providers.base import (
    AdoptResponse,
    ApplyRequest,
    ApplyResponse,
    ClusterScratch,
    CommandProcess,
    CommandRequest,
    DescribeRequest,
    DescribeResponse,
    HealthRequest,
    HealthResponse,
    LogsRequest,
    LogsResponse,
    NamespaceFacts,
    ObserveRequest,
    ObserveResponse,
    Progress,
    Provider,
    ScratchRuntime,
    SecretSource,
    ShutdownRequest,
    SummaryResponse,
    TickRequest,
    TickResponse,
    TrafficRequest,
    TrafficResponse,
)
from railguard.providers.kubernetes.labels import Target
from railguard.providers.kubernetes.manifests import ArtifactMount
from railguard.providers.local.provider import LocalProvider
from railguard.providers.local.scratch import LocalScratch

if TYPE_CHECKING:
    from railguard.providers.kubernetes.provider import KubernetesProvider

TARGETS_FILE = "targets.json"
CLUSTER_PARALLEL_CHANGES = 8  # service changes applied at once on a cluster (like the plan's 8 dry-runs at once)


class TargetBook:
    """Which environments run on Kubernetes, and where: learnt from resources, kept in ``home/targets.json``."""

    def __init__(self, home: Path) -> None:
        self.path = home / TARGETS_FILE
        self._lock = threading.Lock()
        try:
            raw = json.loads(self.path.read_text())
            self._targets = {env: Target.of(t) for env, t in raw.items() if isinstance(t, dict)}
        except (OSError, ValueError, TypeError):
            self._targets = {}

    def get(self, env: str) -> Target | None:
        with self._lock:
            return self._targets.get(env)

    def environments(self) -> list[str]:
        with self._lock:
            return sorted(self._targets)

    def any(self) -> bool:
        with self._lock:
            return bool(self._targets)

    @staticmethod
    def named(resources: list[Resource]) -> tuple[bool, Target | None]:
        """(whether the resources say where they run, the target they name: None for local)."""
        found = next((r.config["kubernetes"] for r in resources if isinstance(r.config.get("kubernetes"), dict)),
                     None)
        if found is None and not any(r.kind == "edge" for r in resources):
            return False, None  # a lone database or environment change says nothing about the target
        return True, Target.of(found) if found is not None else None

    def learn(self, env: str, resources: list[Resource]) -> None:
        """Bind ``env`` to the target its resources name; resources with an edge and no target mean local."""
        says, target = self.named(resources)
        if not says:
            return
        with self._lock:
            if self._targets.get(env) == target:
                return
            if target is None:
                self._targets.pop(env, None)
            else:
                self._targets[env] = target
            text = json.dumps({e: t.as_config() for e, t in sorted(self._targets.items())}, indent=1)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_suffix(".tmp")
            partial.write_text(text)
            os.replace(partial, self.path)


class Router:
    """A provider that sends each request to the runtime of its environment (see the module docstring)."""

    kind = "router"

    def __init__(self, home: Path, local: Provider, secrets: SecretSource | None = None) -> None:
        self.home = home
        self.local = local
        self.secrets = secrets
        self.book = TargetBook(home)
        self._kubernetes: KubernetesProvider | None = None
        self._lock = threading.Lock()
        # The target a request in flight names, for that request only (its thread): a plan must not re-route an
        # environment; only an apply the provider answered ok binds it (``book.learn``).
        self._asked = threading.local()

    @property
    def kubernetes(self) -> KubernetesProvider:
        with self._lock:
            if self._kubernetes is None:
                from railguard.providers.kubernetes.provider import KubernetesProvider  # lightkube only when used

                self._kubernetes = KubernetesProvider(self.home, self.secrets, targets=self._target,
                                                      artifacts=_artifact_mount(self.home))
            return self._kubernetes

    def _target(self, env: str) -> Target | None:
        asked: dict[str, Target | None] = getattr(self._asked, "targets", {})
        return asked[env] if env in asked else self.book.get(env)

    def _for(self, env: str) -> Provider:
        return self.kubernetes if self._target(env) is not None else self.local

    @contextmanager
    def _asking(self, env: str, resources: list[Resource]) -> Iterator[None]:
        """Route this thread's requests for ``env`` to the target ``resources`` name, without keeping it."""
        says, target = TargetBook.named(resources)
        if not says:
            yield
            return
        before: dict[str, Target | None] = getattr(self._asked, "targets", {})
        self._asked.targets = {**before, env: target}
        try:
            yield
        finally:
            self._asked.targets = before

    def _clusters(self) -> list[Provider]:
        """The Kubernetes provider, when some environment is bound to it (provider-wide calls go there too)."""
        return [self.kubernetes] if self.book.any() or self._kubernetes is not None else []

    def parallel_changes(self, env: str, desired: list[Resource]) -> int:
        """How many independent service changes of ``env`` the engine may run at once (engine/execute.py): a
        cluster's controllers roll Deployments out side by side; this machine's runtime takes one at a time."""
        says, target = TargetBook.named(desired)
        on_cluster = target is not None if says else self._target(env) is not None
        return CLUSTER_PARALLEL_CHANGES if on_cluster else 1

    # -- routed by environment -----------------------------------------------------------------
    def observe(self, request: ObserveRequest) -> ObserveResponse:
        with self._asking(request.env, request.desired or []):
            return self._for(request.env).observe(request)

    def apply_change(self, request: ApplyRequest, progress: Progress | None = None) -> ApplyResponse:
        desired = [request.desired] if request.desired is not None else []
        with self._asking(request.env, desired):
            response = self._for(request.env).apply_change(request, progress)
        if response.ok and desired:
            self.book.learn(request.env, desired)  # bound only once the runtime carried the change out
        return response

    def health(self, request: HealthRequest) -> HealthResponse:
        return self._for(request.env).health(request)

    def describe(self, request: DescribeRequest) -> DescribeResponse:
        return self._for(request.env).describe(request)

    def logs(self, request: LogsRequest) -> LogsResponse:
        return self._for(request.env).logs(request)

    def start_command(self, request: CommandRequest, stdio: tuple[int, int, int] | None) -> CommandProcess:
        return self._for(request.env).start_command(request, stdio)

    def set_canary_weight(self, env: str, service: str, percent: int) -> None:
        self._for(env).set_canary_weight(env, service, percent)

    def abort_canary(self, env: str, service: str) -> None:
        self._for(env).abort_canary(env, service)

    # -- every runtime -------------------------------------------------------------------------
    def adopt(self) -> AdoptResponse:
        notes = list(self.local.adopt().notes)
        for other in self._clusters():
            notes += other.adopt().notes
        return AdoptResponse(notes=notes)

    def tick(self, request: TickRequest) -> TickResponse:
        events = list(self.local.tick(request).events)
        if self._kubernetes is not None:
            events += self._kubernetes.tick(request).events
        return TickResponse(events=events)

    def summary(self) -> SummaryResponse:
        local = self.local.summary()
        if self._kubernetes is None:  # not asked yet since a restart: its environments are still known (canaries)
            return local.model_copy(update={"clusters": self.book.environments()}) if self.book.any() else local
        return local.model_copy(update={"replicas": local.replicas + self._kubernetes.summary().replicas,
                                        "clusters": self.book.environments()})

    def traffic(self, request: TrafficRequest) -> TrafficResponse:
        return self.local.traffic(request)  # a cluster's Ingress traffic is not read in this version

    def shutdown(self, request: ShutdownRequest) -> None:
        self.local.shutdown(request)
        if self._kubernetes is not None:
            self._kubernetes.shutdown(request)

    def prune_artifacts(self, kept: list[KeptRelease], dry_run: bool = False) -> list[str]:
        # Bundles live in the state folder whether or not a cluster environment is configured now.
        bundles = (self.kubernetes.prune_artifacts(kept, dry_run)
                   if self.book.any() or self._kubernetes is not None or (self.home / "bundles" / "blobs").is_dir()
                   else [])
        return self.local.prune_artifacts(kept, dry_run) + bundles


def _artifact_mount(home: Path) -> Callable[[ApplyRequest, Target], ArtifactMount | None]:
    """How a Kubernetes service without ``image`` gets its artifact: a bundle of the plan's source snapshot (with
    its wheels, from the package index local builds use) fetched by digest by an init container."""

    def mount(request: ApplyRequest, target: Target) -> ArtifactMount | None:
        from railguard.providers.kubernetes import artifacts
        from railguard.providers.local.pipconfig import uv_environment

        desired = request.desired
        if desired is None or desired.config.get("image"):
            return None
        store = artifacts.store_url_or_refuse(request.env, target.artifact_store, desired.name)
        bundle = artifacts.prepare(home, request.env, desired.name, str(desired.config.get("source")),
                                   target.base_image, desired.config.get("build"), index_env=uv_environment(),
                                   build_as=_kubernetes_build_as(home, request.app))
        return ArtifactMount(**artifacts.pod_parts(desired.name, bundle.digest, store, target.base_image))

    return mount


def _kubernetes_build_as(home: Path, app: str | None) -> Callable[[list[Path]], Any] | None:
    """A pod's dependency install runs uv on the app's requirements: as the app's build user (the local runtime's,
    with a fresh home and cache) when the daemon isolates, never as root; None: the daemon is not root."""
    from railguard.providers.local import buildas
    from railguard.providers.local.isolation import detect

    level = detect(home)
    # A pod's install needs no virtualenv of the daemon's Python (uv installs into a folder for the image's): only
    # that reason for not isolating is moot here.
    if not level.isolated and (os.geteuid() != 0 or "virtualenvs" not in level.reason):
        return None
    lock_dir = home / "artifacts"

    @contextmanager
    def build_as(trees: list[Path]) -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
        with buildas.session(lock_dir, buildas.build_user(app, home)) as builder:
            for tree in trees:
                buildas.hand_over(tree)
            yield buildas.popen_user(), (builder.env() if builder is not None else {})
            for tree in trees:
                buildas.reclaim(tree)

    return build_as


def open_provider(home: Path, secrets: SecretSource | None = None,
                  store_secret: Callable[[str, str, str], None] | None = None) -> Provider:
    """The provider of the state folder ``home``; ``secrets`` gives it secret values when it starts processes,
    ``store_secret`` (env, name, value) keeps the passwords it generates for managed databases."""
    return Router(home, LocalProvider(home, secrets, store_secret=store_secret), secrets)


def isolation_level(home: Path) -> tuple[str, str]:
    """Whether the runtime of ``home`` isolates workloads ('isolated' / 'shared-user') and why."""
    from railguard.providers.local.isolation import detect

    found = detect(home)
    return found.level, found.reason


def scratch_runtime() -> ScratchRuntime:
    """What the doctor runs one service with, outside any environment, the way the runtime would."""
    return LocalScratch()


def watch_process_users(callback: Callable[[int, str | None], None]) -> Callable[[], None]:
    """Call ``callback(uid, env)`` before any local process starts as an OS user other than the daemon's (an
    environment's replica or command): the daemon's kernel audit covers that uid from the process's first syscall.
    Returns the function that stops watching."""
    from railguard.providers.local import isolation

    return isolation.on_start(lambda run_as, env: callback(run_as.uid, env))


# -- the doctor on a cluster (its scratch is a temporary namespace, see providers/kubernetes/scratch.py) -------------
def cluster_scratch(target: dict[str, Any], app: str, env: str) -> ClusterScratch:
    """A temporary namespace on the cluster of ``target`` (an environment's ``kubernetes`` table) for the doctor;
    leftovers of crashed doctor runs of the same environment are deleted first. Raises ``RailguardError``."""
    from railguard.providers.kubernetes.scratch import KubernetesScratch

    return KubernetesScratch(Target.of(target), app, env)


def namespace_facts(target: dict[str, Any], env: str) -> NamespaceFacts:
    """An environment's namespace as its own credentials read it (the doctor's isolation check)."""
    from railguard.providers.kubernetes.scratch import namespace_facts as read

    return read(Target.of(target), env)


def write_access(credentials: dict[str, Any], namespace: str) -> tuple[list[str], str]:
    """The writes the user of ``credentials`` (an environment's ``kubernetes`` table) may do in ``namespace``, by
    the API server's SelfSubjectAccessReview; and what went wrong asking, if anything."""
    from railguard.providers.kubernetes.scratch import write_access as ask

    return ask(Target.of(credentials), namespace)


# -- kubeconfigs a person trusted (providers/kubernetes/kubeconfig.py): the daemon's trust route --------------------
def trust_kubeconfig(home: Path, path: Path, by: str) -> dict[str, Any]:
    """Trust ``path``'s current bytes (what its contexts run and read is in the record). Raises ``RailguardError``."""
    from railguard.providers.kubernetes import kubeconfig

    return kubeconfig.trust(home, path, by)


def forget_kubeconfig(home: Path, path: Path) -> bool:
    from railguard.providers.kubernetes import kubeconfig

    return kubeconfig.forget(home, path)


def trusted_kubeconfigs(home: Path) -> list[dict[str, Any]]:
    from railguard.providers.kubernetes import kubeconfig

    return kubeconfig.trusted(home)
