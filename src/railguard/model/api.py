"""The typed contract: every value that crosses a process or layer boundary, in one place.

The store returns these models; the daemon answers with their JSON (``model_dump(mode="json")``),
so the field names and shapes below ARE the wire format of the daemon API and of ``--json``:
rename nothing without a note in docs. The client and MCP parse into them; MCP's output schemas
are generated from them (:mod:`railguard.mcp.outputs`). Plans live in :mod:`railguard.model.plans`
and diagnostics in :mod:`railguard.model.diagnostics`; they are part of the same contract.

Statuses are closed enums (``StrEnum``: they compare equal to, and serialize as, the strings the
wire always carried). Health is ONE ordered vocabulary, :class:`Health`, modelled on
gitops-engine's ``pkg/health``: ``healthy < progressing < missing < degraded < unknown``, where
:meth:`Health.worse_than` says which of two is worse (a service is as healthy as its worst
replica). The older per-layer vocabularies map into it: :class:`ReplicaHealth` (what a health
check of one replica says) and :class:`railguard.model.resources.LiveStatus` (what a provider
reports) each have a ``.health``.

Response models ignore unknown fields (a newer daemon may add some); request models
(``*Request``) forbid them, so a typo in a request is a diagnostic, not a silent default.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from railguard.model.data import ReleaseData
from railguard.model.diagnostics import Diagnostic
from railguard.model.plans import PLAN_FORMAT, Change, Plan, PlanSource, Verdict
from railguard.model.principals import Principal
from railguard.model.resources import Resource
from railguard.model.spec import PolicyRule, Retention

# -- enums --------------------------------------------------------------------------------------


class Health(StrEnum):
    """How something is doing, best first; the order is the one gitops-engine uses (without suspended).

    ``missing`` (nothing runs) is better than ``degraded`` (something runs and fails) because a
    missing resource is an expected step of a rollout, and ``unknown`` is worst: nothing can be
    promised about it.
    """

    healthy = "healthy"
    progressing = "progressing"
    missing = "missing"
    degraded = "degraded"
    unknown = "unknown"

    @property
    def rank(self) -> int:
        return _HEALTH_ORDER.index(self)

    def worse_than(self, other: Health) -> bool:
        return self.rank > other.rank

    @classmethod
    def worst(cls, healths: list[Health], default: Health | None = None) -> Health:
        """The worst of ``healths`` (``default``, else healthy, when there are none)."""
        return max(healths, key=lambda h: h.rank, default=default or cls.healthy)


_HEALTH_ORDER = list(Health)


class ReplicaHealth(StrEnum):
    """What the health checks of one replica say (the ``health`` of a replica in ``status``)."""

    healthy = "healthy"
    unknown = "unknown"  # alive, not checked yet since it started
    failing = "failing"  # recent checks fail, fewer than unhealthy_threshold in a row
    unhealthy = "unhealthy"  # unhealthy_threshold checks in a row failed
    down = "down"  # the process is gone

    @property
    def health(self) -> Health:
        return _REPLICA_HEALTH[self]

    @property
    def bad(self) -> bool:
        """A problem worth a diagnosis (``unknown`` is only "not checked yet")."""
        return self in (ReplicaHealth.failing, ReplicaHealth.unhealthy, ReplicaHealth.down)


_REPLICA_HEALTH = {ReplicaHealth.healthy: Health.healthy, ReplicaHealth.unknown: Health.progressing,
                   ReplicaHealth.failing: Health.progressing, ReplicaHealth.unhealthy: Health.degraded,
                   ReplicaHealth.down: Health.degraded}


class OperationStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"

    @property
    def in_flight(self) -> bool:
        return self in (OperationStatus.queued, OperationStatus.running)


IN_FLIGHT = (OperationStatus.queued, OperationStatus.running)


class OperationKind(StrEnum):
    apply = "apply"
    rollback = "rollback"


class PlanStatus(StrEnum):
    saved = "saved"
    applying = "applying"
    applied = "applied"
    failed = "failed"
    rejected = "rejected"


class ReleaseStatus(StrEnum):
    pending = "pending"
    live = "live"
    superseded = "superseded"
    failed = "failed"
    aborted = "aborted"  # a canary of it was aborted: the release before it serves again

    @property
    def ran_healthy(self) -> bool:
        """It was live at some point: a target for rollback, a proof for promotion."""
        return self in (ReleaseStatus.live, ReleaseStatus.superseded)


class Decision(StrEnum):
    """A recorded approval decision."""

    approved = "approved"
    rejected = "rejected"


class ApprovalState(StrEnum):
    """Where a plan stands on approval (computed from the plan, its status and the decisions)."""

    not_required = "not_required"
    needed = "needed"
    requested = "requested"
    approved = "approved"
    expired = "expired"
    rejected = "rejected"
    denied = "denied"  # a deny verdict: no approval can lift it
    closed = "closed"  # the plan was used


# -- bases -----------------------------------------------------------------------------------------


class Record(BaseModel):
    """A value the store or the daemon answers with. Unknown fields are ignored (newer daemons)."""

    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)


class Request(BaseModel):
    """A request body sent to the daemon: unknown fields and wrong types are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, defer_build=True)


# -- operations -------------------------------------------------------------------------------------


class OperationStep(Record):
    """One journal entry: a step began, ended or failed, or a line of its output (a build's, as it comes)."""

    step: str
    phase: Literal["begin", "end", "fail", "output"]
    # Free-form context a provider reports with a step (pids, ports, diagnostics); shaped by the provider.
    detail: dict[str, Any] = Field(default_factory=dict)
    at: str


class OperationError(Record):
    diagnostics: list[Diagnostic] = Field(default_factory=list)


class OperationSummary(Record):
    """An operation without its journal (lists, the operation in flight)."""

    id: str
    env: str
    kind: OperationKind
    plan_id: str | None = None
    status: OperationStatus
    principal: str
    created_at: str
    updated_at: str
    error: OperationError | None = None


class Operation(OperationSummary):
    """An operation and its whole journal (``GET /v1/operations/<id>``)."""

    journal: list[OperationStep] = Field(default_factory=list)
    # Set when the journal was asked for in short (``?steps=N``: its newest N steps and its first failure, build
    # output left out): how many steps the whole journal has. None: ``journal`` is the whole journal.
    journal_total: int | None = None


class StepBrief(Record):
    step: str
    phase: Literal["begin", "end", "fail", "output"]
    at: str | None = None


class OperationBrief(Record):
    """An operation bounded for a model to read (MCP results): the newest steps, where it failed."""

    id: str
    env: str
    kind: OperationKind = Field(description="apply | rollback")
    status: OperationStatus = Field(description="queued | running | succeeded | failed")
    plan_id: str | None = None
    principal: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    failed_step: str | None = None
    steps: list[StepBrief] = Field(default_factory=list, description="The journal's newest entries.")
    steps_total: int = 0


class InFlight(Record):
    """The operation running in an environment, as ``status`` shows it (no journal)."""

    id: str
    kind: OperationKind
    status: OperationStatus
    created_at: str


# -- plans --------------------------------------------------------------------------------------------


class PlanRecord(Record):
    """A saved plan as listed (``GET /v1/plans``): its identity and status, not its body."""

    id: str
    env: str
    created_at: str
    hash: str
    base_serial: int
    status: PlanStatus


class PlanBrief(Record):
    """A plan's decision-relevant summary (MCP results)."""

    id: str
    env: str
    status: PlanStatus | None = Field(default=None, description="saved | applying | applied | failed | rejected")
    hash: str
    short_hash: str
    base_serial: int
    errored: bool
    applyable: bool
    max_risk: str
    decision: str = Field(description="allow | warn | require_approval | deny: the strictest verdict.")
    counts: dict[str, int]
    requested_by: str
    proposed: bool = Field(default=False, description="Made from proposed spec text, not the file on disk.")
    source: PlanSource | None = Field(default=None, description="The stored source snapshot the plan deploys "
                                                                "(digest, file count, size).")


class PlanSummary(Record):
    """The flags and counts shown at the top of every plan rendering (:meth:`Plan.summary`)."""

    id: str
    env: str
    hash: str
    base_serial: int
    errored: bool
    applyable: bool
    max_risk: str
    counts: dict[str, int]
    decision: str
    requested_by: str


class DeployAnswer(Record):
    """What ``POST /v1/deploys`` answers: the environment, its saved plan, and the operation applying it (none
    when the plan is not applyable or ``apply`` was false)."""

    env: str
    plan: PlanAnswer
    operation: Operation | None = None
    edge_port: int | None = Field(default=None, description="The environment's edge port (local environments).")


class PlanAnswer(Record):
    """A plan as the daemon answers it (``plan``, ``promote``, ``GET /v1/plans/<id>``): the :class:`Plan`'s
    fields, its summary and the short hash people type back. Not a subclass: ``Plan.summary`` is a method."""

    format: int = PLAN_FORMAT
    id: str
    created_at: str
    env: str
    base_serial: int
    desired_digest: str
    changes: list[Change]
    desired: list[Resource]
    diagnostics: list[Diagnostic] = Field(default_factory=list)
    requested_by: str = ""
    verdicts: list[Verdict] = Field(default_factory=list)
    source: PlanSource | None = None
    allow_data_loss: list[str] = Field(default_factory=list)
    hash: str
    summary: PlanSummary
    short_hash: str

    def as_plan(self) -> Plan:
        # Its fields are validated already (the same types as Plan's): no dump and re-validation of a large plan.
        return Plan.model_construct(**{name: getattr(self, name) for name in Plan.model_fields})

    @classmethod
    def of(cls, plan: Plan, short_hash: str) -> PlanAnswer:
        # No re-validation: the plan is valid already, and a 200-service plan is large.
        return cls.model_construct(**dict(plan), summary=PlanSummary.model_validate(plan.summary()),
                                   short_hash=short_hash)


class PlanOverview(Record):
    """A plan as a person first reads it (``POST /v1/plans`` with ``view = "overview"``): its summary, diagnostics
    and verdicts, and only the first ``per_action`` changes of each action; the whole body is
    ``GET /v1/plans/<id>/body``. A 10,000-service plan is 45 MB of JSON; its overview is a few kilobytes."""

    id: str
    env: str
    created_at: str
    hash: str
    short_hash: str
    base_serial: int
    summary: PlanSummary
    diagnostics: list[Diagnostic] = Field(default_factory=list)
    verdicts: list[Verdict] = Field(default_factory=list)
    changes: list[Change] = Field(description="The first per_action changes of each action, in plan order.")
    per_action: int
    source: PlanSource | None = None

    @classmethod
    def of(cls, plan: Plan, short_hash: str, per_action: int) -> PlanOverview:
        seen: dict[str, int] = {}
        shown = []
        for change in plan.changes:
            seen[change.action] = seen.get(change.action, 0) + 1
            if seen[change.action] <= per_action:
                shown.append(change)
        return cls.model_construct(id=plan.id, env=plan.env, created_at=plan.created_at, hash=plan.hash,
                                   short_hash=short_hash, base_serial=plan.base_serial,
                                   summary=PlanSummary.model_validate(plan.summary()),
                                   diagnostics=plan.diagnostics, verdicts=plan.verdicts, changes=shown,
                                   per_action=per_action, source=plan.source)


class PlanDetail(Record):
    """``GET /v1/plans/<id>``: a saved plan, where it stands, and the approval decisions on it."""

    plan: PlanAnswer
    status: PlanStatus
    approvals: list[ApprovalRecord]
    approval: Approval


class SourceFile(Record):
    """One file of a plan's source snapshot."""

    path: str
    bytes: int
    sha256: str
    executable: bool


class PlanFiles(Record):
    """``GET /v1/plans/<id>/files``: what the plan's source snapshot holds (``railguard show PLAN --files``).

    ``stored`` is false for a plan saved before plans carried their source, or whose snapshot retention freed.
    """

    plan_id: str
    digest: str | None
    stored: bool
    count: int
    bytes: int
    files: list[SourceFile]


# -- releases -----------------------------------------------------------------------------------------


class ReleaseService(Record):
    fingerprint: str
    source: str | None = None


class Release(Record):
    """A release: what one operation made live (or tried to), with its frozen desired resources."""

    number: int
    created_at: str
    plan_id: str | None = None
    operation_id: str | None = None
    status: ReleaseStatus
    live_at: str | None = None
    ended_at: str | None = None
    services: dict[str, ReleaseService] = Field(default_factory=dict)
    desired: list[Resource] = Field(default_factory=list)
    # The source snapshot's facts as recorded ({digest, git_commit, git_dirty, files}); {} for a rollback.
    source: dict[str, Any] = Field(default_factory=dict)
    rollback_of: int | None = None
    data: ReleaseData | None = Field(default=None, description="The snapshot taken before its release command, "
                                                               "the rehearsal, and the schemas after it.")


class KeptRelease(Record):
    """A release whose artifacts retention keeps: the live and pending ones and the newest N per environment."""

    env: str
    number: int
    desired: list[Resource] = Field(default_factory=list)


# -- events, approvals, tokens, secrets, audit ---------------------------------------------------------------


class Event(Record):
    id: int
    env: str | None = None
    at: str
    kind: str
    address: str | None = None
    message: str
    # Structured context of the event; its keys depend on the kind (operation, plan, release, ...).
    data: dict[str, Any] = Field(default_factory=dict)


class ApprovalRecord(Record):
    """One recorded decision on a plan, bound to its hash, with an expiry."""

    id: str
    plan_id: str
    plan_hash: str
    decision: Decision
    principal: str
    reason: str = ""
    confirmed: list[str] = Field(default_factory=list)
    created_at: str
    expires_at: str
    expired: bool


class ApprovalRequest(Record):
    """Someone waits for an approval (an event, never a decision)."""

    at: str
    by: str | None = None
    reason: str = ""
    message: str


class ApprovalDecision(Record):
    principal: str
    decision: Decision
    reason: str = ""
    created_at: str
    expires_at: str
    expired: bool


class Approval(Record):
    """Where a plan stands on approval: what it needs, who asked, who decided."""

    plan_id: str
    state: ApprovalState = Field(description="not_required | needed | requested | approved | expired | rejected "
                                             "| denied | closed")
    required: bool
    rules: list[str]
    approvers: list[str] = Field(description="Roles that may approve.")
    confirm: list[str] = Field(description="Addresses the approver must type back (deletes).")
    command: str = Field(description="What a person runs on a terminal to approve.")
    requests: list[ApprovalRequest]
    decisions: list[ApprovalDecision]


class TokenInfo(Record):
    """An API token as listed: never its secret."""

    id: str
    name: str
    role: str
    envs: list[str] | None = None
    created_at: str
    created_by: str
    expires_at: str | None = None
    revoked_at: str | None = None
    last_used_at: str | None = None


class CreatedToken(TokenInfo):
    """A token just created: the only answer that carries its secret."""

    token: str


class WhoAmI(Record):
    """``railguard whoami``: who the daemon takes the caller for, and whether it asks everyone for a token."""

    principal: Principal
    require_token: bool
    isolation: str = Field(default="shared-user", description="'isolated': app code runs as per-environment OS "
                                                              "users; 'shared-user': as the daemon's user.")
    shared_user_allowed: bool = Field(default=False, description="The daemon was started with "
                                                                 "--allow-shared-user: tokens are no boundary "
                                                                 "against app code (docs/guardrails.md).")


class SecretInfo(Record):
    """A secret's latest version, never its value."""

    env: str
    name: str
    version: int
    set_at: str
    set_by: str


class SecretSet(Record):
    """A secret just set: which version it became (never its value)."""

    env: str
    name: str
    version: int


class AuditEntry(Record):
    id: int
    at: str
    principal: str
    action: str
    env: str | None = None
    plan_id: str | None = None
    plan_hash: str | None = None
    outcome: str
    # The identifying fields of the request (AUDITED_FIELDS in the daemon), never secret values.
    detail: dict[str, Any] = Field(default_factory=dict)
    prev_hash: str
    hash: str


class AuditVerification(Record):
    ok: bool
    entries: int
    problems: list[str]


# -- policies -------------------------------------------------------------------------------------------------


class BuiltInRule(Record):
    rule: str
    effect: str
    applies_to: str


class FreezeWindow(Record):
    start: str = Field(description="ISO 8601, as written in the spec.")
    end: str
    reason: str


class Policies(Record):
    """``railguard policies``: the guardrails that apply to one environment."""

    env: str
    protected: bool
    promote_from: str | None = None
    soak_ms: int
    max_disruptive_changes: int
    freezes: list[FreezeWindow] = Field(default_factory=list)
    built_in: list[BuiltInRule] = Field(default_factory=list)
    rules: list[PolicyRule] = Field(default_factory=list)


# -- daemon, logs, garbage collection --------------------------------------------------------------------------


class DaemonEdge(Record):
    running: bool
    pid: int | None = None


class DaemonHealth(Record):
    """``GET /v1/health``: the daemon is alive, and what it supervises."""

    pid: int
    home: str
    started_at: float
    edges: dict[str, DaemonEdge] = Field(default_factory=dict)
    replicas: int
    isolation: str = "shared-user"
    isolation_reason: str = ""
    require_token: bool = False
    shared_user_allowed: bool = False
    kernel_audit: str = ""  # whether kernel-refused attempts of environments' users are recorded, and why not


class LogFile(Record):
    name: str
    lines: list[str]


class Logs(Record):
    """``railguard logs``: recent lines per file, and where to continue reading each (follow mode)."""

    files: list[LogFile] = Field(default_factory=list)
    offsets: dict[str, int] = Field(default_factory=dict)


class GcResult(Record):
    """One retention pass: what went (or would go, with ``dry_run``) under which policy."""

    dry_run: bool
    removed: dict[str, int]
    artifacts: list[str]
    policy: Retention


# -- status ---------------------------------------------------------------------------------------------


class ReplicaStatus(Record):
    """One replica of a live release."""

    name: str
    pid: int | None = None
    port: int | None = None
    health: ReplicaHealth
    restarts: int = 0
    uptime_s: float = 0
    recent_restarts: int = Field(default=0, description="Restarts within the last 10 minutes (the count decays).")
    last_exit: str | None = Field(default=None, description="How it last ended on its own (exit status or signal).")


class ReplicaSetStatus(Record):
    """A Kubernetes service's ReplicaSet: which release it runs and how many of its pods are ready."""

    name: str
    release: int | None = None
    replicas: int = Field(description="Pods it is asked for (0: an older release scaled down).")
    ready: int = 0


class WarmRelease(Record):
    release: int
    replicas: int
    until_s: float


class CanaryStatus(Record):
    """A canary rollout in progress: the new release's share of the requests and the analysis of its step."""

    release: int
    weight: int = Field(description="The canary's share of the requests, percent (the current step).")
    stable: int | None = Field(default=None, description="The release serving the rest (the live one).")
    steps: list[int] = Field(default_factory=list)
    pause: str = Field(default="", description="How long each step is analysed, or 'manual'.")
    step_s: float = Field(default=0.0, description="Seconds since the current step began.")
    requests: int = Field(default=0, description="Requests the canary answered in this step.")
    status_5xx: int = 0
    analysis: str = Field(default="", description="The analysis so far (the last verdict of a step).")


class CanaryMove(Record):
    """What `promote-step` or `abort` did to a canary."""

    env: str
    service: str
    action: Literal["advanced", "promoted", "aborted"]
    weight: int = Field(description="The canary's share of the requests now, percent (0 once aborted).")


class ServiceStatus(Record):
    name: str
    address: str
    release: int | None = None
    status: Health = Field(description="healthy | progressing | missing | degraded | unknown")
    replicas: list[ReplicaStatus] = Field(default_factory=list)
    warm: list[WarmRelease] = Field(default_factory=list)
    requests: list[RequestWindow] = Field(default_factory=list, description="What the edge saw of the live "
                                          "release: 1m, 5m and since-switch windows (docs/observe.md).")
    verifying_s: float | None = Field(default=None, description="Seconds left in the live release's "
                                      "verification window; None when it is not being verified.")
    canary: CanaryStatus | None = Field(default=None, description="The canary in progress beside the live "
                                        "release (docs/observe.md, Canaries); None when there is none.")
    replica_sets: list[ReplicaSetStatus] = Field(default_factory=list, description="Kubernetes environments: the "
                                                 "service's ReplicaSets, newest release first (docs/kubernetes.md).")


class Route(Record):
    host: str | None = Field(default=None, description="None: any host.")
    path: str
    upstreams: list[str]


class EdgeStatus(Record):
    port: int | None = None
    url: str | None = None
    running: bool
    routes: list[Route] = Field(default_factory=list)
    https_port: int | None = None  # routes with a host are served over HTTPS there
    ca_root: str | None = None  # the internal CA's root certificate to trust (`railguard edge-ca`)


class Drift(Record):
    live_differs: bool
    details: list[str]
    spec_changed_since_apply: bool | None = None


class DatabaseStatus(Record):
    """One managed database of an environment as the provider sees it now."""

    name: str
    address: str
    engine: str
    status: Health
    message: str = Field(default="", description="Where it listens, or the server's last log line when it is down.")


class EnvironmentStatus(Record):
    """``railguard status``: what runs in one environment, and whether it drifted."""

    env: str
    serial: int
    services: list[ServiceStatus]
    edge: EdgeStatus
    operation: InFlight | None = None
    drift: Drift
    live_sets: int = 0
    isolation: str = Field(default="shared-user", description="'isolated' (its processes run as their own OS "
                                                              "user) or 'shared-user' (as the daemon's).")
    user: str | None = Field(default=None, description="The OS user its processes run as, when isolated.")
    databases: list[DatabaseStatus] = Field(default_factory=list)
    security_refused: int = Field(default=0, description="Refused attempts against the control plane recorded "
                                  "for this environment (security.refused events on its kept timeline).")
    security_last: str | None = Field(default=None, description="The newest such attempt, as recorded.")


# -- incidents (placeholder for continuous observation) ----------------------------------------------------


class IncidentState(StrEnum):
    open = "open"  # something is wrong and nothing has mitigated it yet
    mitigated = "mitigated"  # traffic is safe again (rolled back, restarted) but the cause is still there
    resolved = "resolved"  # nothing left to do (fixed, acknowledged, or the release is gone)


class IncidentKind(StrEnum):
    rollout_failed = "rollout_failed"
    crash_loop = "crash_loop"
    verification_failed = "verification_failed"
    health_regression = "health_regression"
    replica_killed = "replica_killed"
    drift = "drift"
    audit_tamper = "audit_tamper"
    security_refused = "security_refused"  # an environment's code tried the control plane (docs/guardrails.md)


class IncidentEntry(Record):
    """One line of an incident's timeline."""

    at: str
    kind: str = Field(description="opened, evidence, mitigated, resolved, rollback, alert, reopened, note")
    message: str


class RequestWindowRef(Record):
    """A request window of one release, as evidence (the numbers at the time of the decision)."""

    release: int | None
    window: str
    requests: int
    status_5xx: int
    error_ratio: float
    p99_ms: float | None = None


class Evidence(Record):
    """What was seen: request metrics, log lines, exit statuses, health answers, the release."""

    kind: str = Field(description="metrics | log | exit | health | release | drift | audit")
    summary: str
    lines: list[str] = Field(default_factory=list)
    metrics: list[RequestWindowRef] = Field(default_factory=list)


class IncidentAction(Record):
    """A next step: the MCP tool and the CLI command that carry it out."""

    tool: str
    command: str
    why: str
    args: dict[str, str | int] = Field(default_factory=dict)


class AlertDelivery(Record):
    """One delivery of one incident transition to one channel of ``[alerts]``."""

    at: str
    channel: str = Field(description="webhook | command")
    transition: str
    ok: bool
    attempts: int
    error: str | None = None


class Incident(Record):
    """Something wrong with what runs, with its evidence, timeline and next steps (``railguard incident``)."""

    id: str
    env: str
    kind: IncidentKind
    state: IncidentState = IncidentState.open
    summary: str = ""
    service: str | None = None
    release: int | None = None
    opened_at: str
    updated_at: str = ""
    resolved_at: str | None = None
    operation: str | None = Field(default=None, description="The rollback (or other operation) it caused.")
    evidence: list[Evidence] = Field(default_factory=list)
    timeline: list[IncidentEntry] = Field(default_factory=list)
    next_actions: list[IncidentAction] = Field(default_factory=list)
    deliveries: list[AlertDelivery] = Field(default_factory=list)


# -- requests to the daemon -----------------------------------------------------------------------------------


class PlanRequest(Request):
    spec: str = Field(min_length=1)
    env: str = Field(min_length=1)
    text: str | None = Field(default=None, description="A proposed spec, read as if it were the file.")
    view: Literal["plan", "overview"] = Field(default="plan", description="overview: answer a PlanOverview of "
                                                                          "per_action changes per action")
    per_action: int = Field(default=20, ge=0, le=100_000)
    allow_data_loss: list[str] = Field(default_factory=list, description="Tables whose loss a rehearsal may find "
                                                                         "(acknowledged; the plan is destructive).")


class DeployRequest(Request):
    """``POST /v1/deploys``: plan an unprotected environment and, with ``apply``, submit that plan at once (what
    ``railguard deploy --yes`` did in two requests: the plan is saved, hashed and checked as any other)."""

    spec: str = Field(min_length=1)
    env: str | None = Field(default=None, min_length=1, description="Default: the spec's only environment.")
    allow_data_loss: list[str] = Field(default_factory=list, description="Tables whose loss a rehearsal may find "
                                                                         "(acknowledged; the plan is destructive).")
    apply: bool = Field(default=True, description="false: plan only (a person confirms before it is applied).")


class PromoteRequest(Request):
    spec: str = Field(min_length=1)
    from_: str = Field(alias="from", min_length=1)
    to: str = Field(min_length=1)


class OperationRequest(Request):
    kind: OperationKind
    spec: str = Field(min_length=1)
    plan_id: str | None = None
    env: str | None = None
    to: int | None = None
    confirm: list[str] = Field(default_factory=list, description="Addresses typed back (restores).")


class RestoreRequest(Request):
    spec: str = Field(min_length=1)
    env: str = Field(min_length=1)
    release: int | None = None
    backup: str | None = None
    databases: list[str] = Field(default_factory=list, description="Only these databases (default: all).")


class ApprovalRequestBody(Request):
    reason: str | None = Field(default=None, max_length=2000)


class DecisionRequest(Request):
    confirm: list[str] = Field(default_factory=list)
    typed: str | None = None
    reason: str | None = None
    channel: Literal["cli", "console", "mcp"] | None = Field(default=None, description="Where it was decided.")


class RefusalReport(Request):
    """The console reports a change it refused before it reached the daemon (no CSRF token, ended session)."""

    action: str = Field(min_length=1, max_length=80)
    code: str = Field(min_length=1, max_length=80, pattern=r"^[a-z_.]+$")
    channel: Literal["console"] = "console"
    plan_id: str | None = Field(default=None, max_length=80)
    env: str | None = Field(default=None, max_length=80)


class TokenCreateRequest(Request):
    name: str = Field(min_length=1)
    role: str = Field(min_length=1)
    envs: list[str] | None = None
    expires_in_s: float | None = Field(default=None, description="Seconds; none or 0: never expires.")
    typed: str | None = None


class SecretSetRequest(Request):
    env: str = Field(min_length=1)
    name: str = Field(min_length=1)
    value: str


class ShutdownRequest(Request):
    everything: bool = False


# -- one-off commands (railguard exec) ------------------------------------------------------------------------


class ExecRequest(Request):
    """Run a one-off command in an environment's context: its variables, secrets, data folder and artifact."""

    spec: str = Field(min_length=1)
    env: str = Field(min_length=1)
    service: str = Field(min_length=1)
    argv: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(min_length=1, max_length=256)
    release: int | None = Field(default=None, description="The release whose artifact runs it; None: the live one.")
    attach: bool = Field(default=False, description="The caller passes its terminal (stdin/stdout/stderr) over a "
                         "one-shot socket; otherwise the daemon captures the output, redacted.")
    timeout_s: float | None = Field(default=None, gt=0, le=86_400, description="Captured runs only (default 600).")
    risk: Literal["disruptive", "destructive"] = Field(
        default="disruptive", description="In a protected environment: the risk of the plan the command becomes.")


class ExecRecord(Record):
    """A one-off command: where it ran, and (once it ended) how. ``output`` is captured runs only, redacted."""

    id: str
    env: str
    service: str
    release: int
    argv: list[str]
    principal: str
    socket: str | None = Field(default=None, description="Attached runs: where the caller passes its terminal.")
    exit_code: int | None = None
    timed_out: bool = False
    output: list[str] = Field(default_factory=list)


# -- request metrics (what the edge saw, per release) ---------------------------------------------------------


class RequestWindow(Record):
    """Requests one release answered over one window, as the edge saw them."""

    window: str = Field(description="'1m', '5m' or 'since_switch' (everything this release answered).")
    seconds: float = Field(description="Length of the window actually covered.")
    requests: int
    rate: float = Field(description="Requests per second over the window.")
    status_2xx: int = 0
    status_3xx: int = 0
    status_4xx: int = 0
    status_5xx: int = 0
    error_ratio: float = Field(default=0.0, description="5xx / requests (0 when there were none).")
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None


class ReleaseTraffic(Record):
    env: str
    service: str | None = Field(description="None: requests no replica answered (no route, no replicas).")
    release: int | None
    first_at: float | None = None
    last_at: float | None = None
    windows: list[RequestWindow] = Field(default_factory=list)


class TrafficAnswer(Record):
    """``GET /v1/metrics``: request metrics per service and release of one environment."""

    env: str
    releases: list[ReleaseTraffic] = Field(default_factory=list)
