"""The provider interface: everything the engine, the daemon and the doctor ask of a runtime.

Each verb takes and returns typed messages, so a runtime is replaceable behind it:

- ``observe`` (what is live) and ``apply_change`` (carry out one planned change): the
  engine gathers facts before planning and applies changes one at a time, in plan
  order; a provider never plans.
- ``health`` (how one service is doing, in the closed :class:`Health` set).
- ``adopt`` (take over what a previous daemon left running, then supervise it),
  ``tick`` (one background pass: health checks, expired rollback windows, crash
  restarts, returned as events for the timeline), ``shutdown``.
- ``describe`` (the live units of one environment: replica sets, replicas, edge
  routes), ``logs`` (what a service wrote) and ``summary`` (a one-line overview for
  the daemon's health answer), so status and logs need no runtime internals.
- ``traffic`` (what the edge saw of each request since the last call, per service and
  release), read by the daemon's observation loop for request metrics and verification.

The embedded local runtime (``providers/local``) and the in-memory fake used by
unit tests (``providers/fake.py``) both implement :class:`Provider`, and both pass
``tests/providers/test_contract.py``; a Kubernetes provider will too. Only
``railguard.providers.registry`` names a concrete provider.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from railguard.model.api import Health as Health  # the one ordered health vocabulary, re-exported
from railguard.model.api import KeptRelease
from railguard.model.api import ReplicaHealth as ReplicaHealth  # what one replica's checks say
from railguard.model.diagnostics import Diagnostic
from railguard.model.plans import Change
from railguard.model.resources import ObservedResource, Resource
from railguard.model.spec import NAME_PATTERN


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True)


class ObserveRequest(_Message):
    env: str
    desired: list[Resource] = Field(default_factory=list, description="What the spec asks for in env, when the "
                                    "caller knows (a plan, an apply): names the environment's target (the router "
                                    "sends the request to its runtime).")
    fresh: bool = Field(default=False, description="Read from the runtime what the provider may otherwise answer "
                        "from memory (a status read may be a few seconds old; the drift watcher, whose job is to "
                        "see changes made behind Railguard's back, asks for the runtime's own word).")


class ObserveResponse(_Message):
    resources: list[ObservedResource]
    diagnostics: list[Diagnostic] = Field(default_factory=list)


class ApplyRequest(_Message):
    env: str
    change: Change
    desired: Resource | None = Field(description="The desired resource; None for a delete.")
    operation_id: str
    release: int | None = Field(default=None, description="Release number new processes belong to.")
    source_root: str | None = Field(default=None, description="App source folder, for building artifacts.")
    data_dir: str | None = Field(default=None, description="Absolute data folder of the environment.")
    allow_data_loss: list[str] = Field(default_factory=list, description="Tables whose loss the plan acknowledged "
                                                                         "(a rehearsal finding it does not stop).")
    backups_keep: int = Field(default=10, ge=1, description="Snapshots of the environment's data kept.")
    app: str | None = Field(default=None, description="The app's name (names the environment's OS user).")
    user: str | None = Field(default=None, description="The OS user the spec names for the environment's "
                                                       "processes; None: the runtime's default.")
    canary_percent: int | None = Field(default=None, ge=1, le=100, description="Start a new release of a live "
                                       "service as a canary with this share of the requests, beside the live one.")


class ApplyResponse(_Message):
    ok: bool
    observed: ObservedResource | None = Field(description="Live state after the change; None when deleted.")
    diagnostics: list[Diagnostic] = Field(default_factory=list)


class HealthRequest(_Message):
    env: str
    address: str
    fresh: bool = Field(default=False, description="Check every replica now instead of reporting what the "
                                                   "background checks saw; the message says what each check saw.")


class HealthResponse(_Message):
    address: str
    health: Health
    message: str = ""


# Called by a provider around each sub-step of a change: (step, phase, detail), phase "begin"/"end".
# The engine journals it, so a crash mid-change shows exactly where it stopped.
Progress = Callable[[str, str, dict[str, Any]], None]


# Secret values a provider injects when it (re)starts a process: (env, names) -> {name: value}. Given by the
# daemon at construction; a provider never writes the values anywhere.
# The versions are the ones the release pinned (a service config's ``secret_versions``): a rotated secret reaches a
# process only through a plan that moves the version. Version 0: the secret was not set when planned (nothing
# injected); LATEST: a record from before versions were pinned.
SecretSource = Callable[[str, dict[str, int]], dict[str, str]]
LATEST = -1


class AdoptResponse(_Message):
    notes: list[str] = Field(default_factory=list, description="What was adopted, restarted or stopped.")


class TickRequest(_Message):
    now: float | None = Field(default=None, description="Wall-clock time of the pass; a time past every "
                                                          "rollback window retires every warm replica set.")
    stop_timeout: float | None = Field(default=None, description="Longest graceful wait for a process stopped "
                                                                   "in this pass; None: the service's own.")


class ProviderEvent(_Message):
    """Something the runtime did on its own, for the timeline (the daemon stores it as an event)."""

    kind: str = Field(description="Event kind, e.g. release.warm_stopped or replica.restarted.")
    env: str | None
    message: str
    data: dict[str, str | int] = Field(default_factory=dict, description="Facts the kernel gave (a holder's uid, a "
                                       "port), for the daemon's records of security events (security.port_held).")


class TickResponse(_Message):
    events: list[ProviderEvent] = Field(default_factory=list)


class DescribeRequest(_Message):
    env: str




class ReplicaUnit(_Message):
    name: str
    pid: int | None = Field(description="None while the replica is not running.")
    port: int | None
    health: ReplicaHealth
    restarts: int
    uptime_s: float
    recent_restarts: int = Field(default=0, description="Restarts within the last 10 minutes (decays).")
    last_exit: str | None = Field(default=None, description="How it last ended on its own, e.g. 'killed by "
                                                            "SIGKILL (not by Railguard)'.")


class WarmUnit(_Message):
    """A replica set kept running after a switch, for an instant rollback."""

    release: int
    replicas: int
    until_s: float = Field(description="Seconds left in the rollback window.")


class CanaryUnit(_Message):
    """A new release routed beside the live one for a share of the requests (a canary rollout's current step)."""

    release: int
    weight: int = Field(description="Its share of the requests, percent.")
    replicas: list[ReplicaUnit] = Field(default_factory=list)
    operation: str | None = Field(default=None, description="The operation that started it.")


class ReplicaSetUnit(_Message):
    """One ReplicaSet of a Kubernetes service: the release its pods run and how many of them are ready."""

    name: str
    release: int | None = Field(description="The release its pod template belongs to (its railguard.dev/release).")
    replicas: int = Field(description="Pods it is asked for (0: an older release scaled down).")
    ready: int = Field(description="Of those, pods that are ready.")


class ServiceUnit(_Message):
    name: str
    address: str
    release: int | None = Field(description="The live release; None when no replica set is live.")
    replicas: list[ReplicaUnit] = Field(default_factory=list, description="Replicas of the live release.")
    warm: list[WarmUnit] = Field(default_factory=list)
    canary: CanaryUnit | None = Field(default=None, description="The canary in progress beside the live release.")
    replica_sets: list[ReplicaSetUnit] = Field(default_factory=list, description="Kubernetes: the Deployment's "
                                               "ReplicaSets, newest release first (empty on the local runtime).")
    health: Health | None = Field(default=None, description="What ``health`` answers for the service, when the "
                                  "runtime has it at hand (spares a status one call per service); None: ask it.")


class RouteUnit(_Message):
    host: str | None = Field(description="None: any host.")
    path: str
    upstreams: list[str]


class EdgeUnit(_Message):
    port: int | None
    url: str | None
    running: bool
    routes: list[RouteUnit] = Field(default_factory=list)
    https_port: int | None = Field(default=None, description="Set when routes with a host are served over HTTPS.")
    ca_root: str | None = Field(
        default=None, description="The edge's internal CA root certificate (PEM) clients must trust, once issued.")


class DescribeResponse(_Message):
    env: str
    services: list[ServiceUnit] = Field(default_factory=list)
    edge: EdgeUnit
    live_sets: int = Field(description="How many replica sets take traffic (one per service normally).")
    isolation: str = Field(default="shared-user", description="'isolated' (the environment's processes run as "
                                                              "their own OS user) or 'shared-user'.")
    user: str | None = Field(default=None, description="The OS user its processes run as, when isolated.")


class LogsRequest(_Message):
    # Names only: never a path that could walk out of the service's own logs.
    env: str = Field(pattern=NAME_PATTERN)
    service: str = Field(pattern=NAME_PATTERN)
    release: int | None = None
    lines: int = Field(default=100, ge=0)
    offsets: dict[str, int] | None = Field(default=None, description="Follow mode: read each file from the "
                                                                         "offset a previous answer returned.")


class LogFile(_Message):
    name: str
    lines: list[str]


class LogsResponse(_Message):
    files: list[LogFile] = Field(default_factory=list)
    offsets: dict[str, int] = Field(default_factory=dict, description="Where to continue reading each file.")


class EdgeSummary(_Message):
    running: bool
    pid: int | None


class SummaryResponse(_Message):
    edges: dict[str, EdgeSummary] = Field(default_factory=dict, description="Edges known to this run, by env.")
    clusters: list[str] = Field(default_factory=list, description="Environments bound to a Kubernetes namespace "
                                "(no local edge): the daemon's canary controller looks at them too.")
    replicas: int = Field(description="Replicas under supervision.")
    isolation: str = Field(default="shared-user", description="'isolated' or 'shared-user' (see DescribeResponse).")
    isolation_reason: str = Field(default="", description="Why this runtime isolates workloads or does not.")


class TrafficRequest(_Message):
    """Ask for the requests the edge handled since the last ask (every environment)."""


class TrafficBatch(_Message):
    """Requests one release of one service answered (``service`` None: no replica answered), as columns."""

    env: str
    service: str | None
    release: int | None
    at: list[float] = Field(default_factory=list, description="Wall-clock time of each request.")
    status: list[int] = Field(default_factory=list, description="HTTP status the client got.")
    duration_ms: list[float] = Field(default_factory=list, description="Time the edge spent on it.")


class TrafficResponse(_Message):
    batches: list[TrafficBatch] = Field(default_factory=list)


class ShutdownRequest(_Message):
    everything: bool = Field(default=False, description="Also stop every app process and edge; otherwise they "
                                                        "keep running for the next daemon to adopt.")
    stop_timeout: float | None = Field(default=None, description="Longest graceful wait per process; None: the "
                                                                   "service's own stop_timeout.")


class CommandRequest(_Message):
    """A one-off command (``railguard exec``) in the context of one release of one service."""

    env: str
    service: str
    release: int
    argv: list[str]
    desired: Resource | None = Field(default=None, description="The release's frozen service resource: finds its "
                                     "artifact and config when no replica set of that release runs.")
    data_dir: str | None = Field(default=None, description="Absolute data folder of the environment.")
    app: str | None = Field(default=None, description="The app's name (names the environment's OS user when no "
                                                      "replica runs to take it from).")
    user: str | None = Field(default=None, description="The OS user the spec names for the environment.")


class CommandProcess(Protocol):
    """A running one-off command: wait for it, signal it, read what it printed (captured runs)."""

    @property
    def pid(self) -> int: ...

    def wait(self, timeout: float | None) -> int | None:
        """The exit status (negative: killed by that signal), or None when ``timeout`` passed first."""
        ...

    def signal(self, signum: int) -> None: ...

    def output(self) -> str:
        """What a captured run printed (stdout and stderr, the last ~1 MB); '' for an attached run."""
        ...


@runtime_checkable
class Provider(Protocol):
    """A runtime Railguard can deploy to."""

    kind: str

    def observe(self, request: ObserveRequest) -> ObserveResponse: ...

    def apply_change(self, request: ApplyRequest, progress: Progress | None = None) -> ApplyResponse: ...

    def health(self, request: HealthRequest) -> HealthResponse: ...

    def adopt(self) -> AdoptResponse:
        """Take over what a previous run left (verify, restart or stop it), then start supervising."""
        ...

    def tick(self, request: TickRequest) -> TickResponse:
        """One background pass; never raises for a problem of one unit (that is an event)."""
        ...

    def describe(self, request: DescribeRequest) -> DescribeResponse: ...

    def logs(self, request: LogsRequest) -> LogsResponse: ...

    def summary(self) -> SummaryResponse: ...

    def traffic(self, request: TrafficRequest) -> TrafficResponse:
        """The requests the edge handled since the last call, attributed to service and release."""
        ...

    def set_canary_weight(self, env: str, service: str, percent: int) -> None:
        """Send ``percent`` of the service's requests to its canary; 100 promotes it to the live release."""
        ...

    def abort_canary(self, env: str, service: str) -> None:
        """Every request back on the stable release, then the canary drained and stopped."""
        ...

    def shutdown(self, request: ShutdownRequest) -> None: ...

    def prune_artifacts(self, kept: list[KeptRelease], dry_run: bool = False) -> list[str]:
        """Delete built artifacts that no kept release and nothing running uses; return their ids."""
        ...

    def start_command(self, request: CommandRequest, stdio: tuple[int, int, int] | None) -> CommandProcess:
        """Start a one-off command with exactly what the release's replicas see (variables, secrets, data folder,
        artifact). ``stdio``: the caller's stdin/stdout/stderr descriptors (attached), or None to capture."""
        ...


# -- the scratch runtime: what the doctor runs one service with, outside any environment -------------------


@dataclass(frozen=True)
class CheckResult:
    """One health check of one process: passed or not, and what was seen ("HTTP 500: ...")."""

    ok: bool
    detail: str
    status: int | None = None  # the HTTP status of an HTTP check that got an answer (the gate's fail-fast reads it)
    refused: bool = False  # nothing listens on the port yet: the readiness gate polls a starting app closely
    # Another process or user holds the replica's port (providers/local/ownership.py): waiting cannot fix that,
    # so the readiness gate fails at once.
    conclusive: bool = False
    holder: int | None = None  # then: the uid that holds the port (the kernel's word), to name its environment


@dataclass(frozen=True)
class GateResult:
    """The readiness gate: ``healthy_threshold`` passing checks in a row before a deadline, or why not."""

    passed: bool
    checks: int
    last: CheckResult | None
    reason: str


class BuildFailed(Exception):
    """An artifact could not be made; ``log_tail`` holds the build's last output lines."""

    def __init__(self, message: str, log_tail: list[str] | None = None, missing: bool = False) -> None:
        super().__init__(message)
        self.log_tail = log_tail or []
        self.missing = missing


class StartFailed(Exception):
    """A process could not be started; the message says why in user terms."""


class BuiltArtifact(Protocol):
    """A built, content-addressed copy of the app: ``src`` is where its processes run."""

    @property
    def path(self) -> Path: ...

    @property
    def digest(self) -> str: ...

    @property
    def src(self) -> Path: ...


class ScratchProcess(Protocol):
    """One process of a service started in scratch, with the same environment a replica gets."""

    @property
    def pid(self) -> int: ...

    @property
    def port(self) -> int | None: ...

    @property
    def argv(self) -> list[str]: ...

    def alive(self) -> bool: ...

    def check(self) -> CheckResult:
        """One health check, as the runtime checks its replicas (the service's health config)."""
        ...

    def log(self, lines: int = 10) -> list[str]: ...

    def stop(self, timeout: float) -> str:
        """Stop it (SIGTERM, then SIGKILL after ``timeout``); say how it ended."""
        ...


@runtime_checkable
class ScratchRuntime(Protocol):
    """How the doctor builds and runs a service the way a runtime would, in a throwaway folder.

    Everything stays under the folders the doctor passes in; a real state folder is only read
    (``find_artifact``). Whole scratch deployments use a :class:`Provider` on a scratch state folder.
    """

    def instance(self, home: Path) -> str:
        """The mark (``RAILGUARD_INSTANCE``) of every process started for the state folder ``home``."""
        ...

    def free_port(self) -> int: ...

    def port_in_use(self, port: int) -> bool: ...

    def artifact_key(self, digest: str, build: list[str] | None) -> str: ...

    def find_artifact(self, folder: Path, digest: str, build: list[str] | None) -> BuiltArtifact | None:
        """The artifact built before under ``folder`` (an ``artifacts`` folder), or None."""
        ...

    def artifact_at(self, path: Path, digest: str) -> BuiltArtifact:
        """An artifact copied to ``path``."""
        ...

    def build_artifact(self, folder: Path, source_root: Path, digest: str, build: list[str] | None,
                       env: dict[str, str]) -> BuiltArtifact:
        """Build (or find) the artifact under ``folder``; raises :class:`BuildFailed`."""
        ...

    def environ(self, config: dict[str, Any], *, env: str, service: str, port: int | None, data_dir: Path,
                artifact: BuiltArtifact, home: Path) -> dict[str, str]:
        """Exactly what a replica (without a port: the release command) of ``service`` sees."""
        ...

    def start(self, name: str, config: dict[str, Any], *, environ: dict[str, str], artifact: BuiltArtifact,
              port: int | None, log_path: Path, stop_timeout: float) -> ScratchProcess:
        """Start one process of the service in its own session; raises :class:`StartFailed`."""
        ...

    def wait_ready(self, process: ScratchProcess, *, interval: float, healthy_threshold: int,
                   deadline: float) -> GateResult:
        """Hold the readiness gate on ``process``, as a rollout does."""
        ...

    def tail(self, path: Path, lines: int) -> list[str]:
        """The last lines of a log file the runtime wrote."""
        ...

    def isolate(self, app: str, root: Path) -> str | None:
        """Run what is the app's code in the scratch ``root`` (build, release command, replicas) as an unprivileged
        scratch user of its own, when the runtime can (as root); its name, or None (runs as the doctor's user)."""
        ...

    def hand_over(self, path: Path) -> None:
        """Make a scratch data folder the scratch user's alone (nothing when not isolated)."""
        ...

    def popen_user(self) -> dict[str, Any]:
        """``subprocess`` arguments that start a process as the scratch user (empty when not isolated)."""
        ...


# -- the doctor on a cluster -------------------------------------------------------------------------


class ClusterOutcome(_Message):
    """What one scratch step on a cluster came to: a Job completed, a Deployment became Available, or why not."""

    ok: bool
    reason: str = ""
    pods: list[str] = Field(default_factory=list)  # one line per pod involved: its phase and reasons
    objects: list[str] = Field(default_factory=list)  # what was created, ``Kind/name``, for the evidence
    template: str = ""  # a rollout's: digest of the live pod template without its release number (same code+config)
    release: int | None = None  # a rollout's: the release the live Deployment's pod template is labelled with


class NamespaceFacts(_Message):
    """An environment's namespace as the doctor's isolation check reads it (with that environment's credentials)."""

    namespace: str
    cluster: str = ""
    readable: bool = True  # False: the credentials could not read it at all (``problem`` says why)
    environment: str | None = None  # the railguard.dev/environment label of the namespace, when readable
    account: bool = False  # the pods' ServiceAccount exists
    automount: bool | None = None  # its automountServiceAccountToken (None: not set, i.e. Kubernetes' default true)
    policy: bool = False  # the isolation NetworkPolicy exists
    # it selects every pod and admits only same-namespace pods (and the Ingress controller's namespace, when named)
    policy_denies_other_namespaces: bool = False
    egress_limited: bool = False  # it limits egress and denies the cloud metadata service (169.254.169.254)
    egress_denied: list[str] = []  # the ranges its open egress rule leaves out (link-local, egress_deny)
    problem: str = ""


@runtime_checkable
class ClusterScratch(Protocol):
    """The doctor's scratch environment on a cluster: a temporary namespace, deleted by :meth:`close`.

    Made by ``registry.cluster_scratch``; every object goes through the provider's checks (schema, dry-run) and
    server-side apply, as a real apply would."""

    namespace: str
    cluster: str
    swept: list[str]  # leftover scratch namespaces of crashed runs, deleted when this one was made

    def release_job(self, resource: Resource, attempt: int, secret_values: dict[str, str]) -> ClusterOutcome:
        """Run the service's release command as a Job (``attempt`` numbers it) and wait for it."""
        ...

    def deploy(self, resource: Resource, secret_values: dict[str, str]) -> ClusterOutcome:
        """Apply the service's Deployment and wait until it is Available (its readiness probe is the health check)."""
        ...

    def rollout(self, resource: Resource, release: int, secret_values: dict[str, str]) -> ClusterOutcome:
        """Roll the service to ``resource`` as release ``release`` as the provider does (its release Job, then the
        Deployment until Available); the outcome says which template the live Deployment ended on."""
        ...

    def close(self) -> list[str]:
        """Delete the namespace (everything in it goes with it); notes on what was done."""
        ...
