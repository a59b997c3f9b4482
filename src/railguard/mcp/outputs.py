"""The output schemas of the MCP tools: one envelope, and each tool's payload beside it.

Every result is ``{ok, summary, diagnostics, next_actions, ...payload}``. ``diagnostics`` are the
same objects (and codes) the CLI prints with ``--json``; ``next_actions`` are tool calls, with their
arguments, that make sense now. A tool's handler builds its :class:`Payload` model; :func:`result_model`
joins it with the :class:`Envelope`, and ``tools/list`` publishes that model's JSON Schema as the tool's
``outputSchema`` (the official client validates results against it), so a result and its schema cannot
drift apart. Payload fields are optional because an error result carries only the envelope.

The records inside a payload are the contract's models (:mod:`railguard.model.api`, plans'
:class:`Verdict` and :class:`FieldDiff`), never declared a second time here; what this module adds are
the bounded briefs a model reads (a service with counts instead of every replica, a release without its
frozen resources). Used by :mod:`railguard.mcp.catalog`, :mod:`railguard.mcp.results` and the tools.
"""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar

from pydantic import BaseModel, Field, create_model

from railguard.model.api import (
    Approval,
    CanaryMove,
    CanaryStatus,
    Drift,
    ExecRecord,
    Health,
    Incident,
    InFlight,
    LogFile,
    OperationBrief,
    PlanBrief,
    PlanRecord,
    Policies,
    ReleaseStatus,
    ReplicaSetStatus,
)
from railguard.model.diagnostics import Diagnostic
from railguard.model.plans import Action, FieldDiff, Risk, Verdict
from railguard.model.principals import Principal

# The operation shape is the contract's (model/api.py), not declared a second time here.
Operation = OperationBrief


class NextAction(BaseModel):
    tool: str = Field(description="Name of the tool to call.")
    # Another tool's arguments: their schema is that tool's inputSchema, so here they are any JSON object.
    arguments: dict[str, Any] = Field(description="Arguments to call it with.")
    why: str = Field(description="What it is for, in one sentence.")


class Page(BaseModel):
    offset: int
    limit: int
    total: int = Field(description="How many there are (at least this many when next_offset is set).")
    next_offset: int | None = Field(description="Pass as `offset` for the next page; null on the last one.")


class Envelope(BaseModel):
    ok: bool = Field(description="False when the call failed (the result isError); diagnostics say why.")
    summary: str = Field(description="One or two sentences for people and models.")
    diagnostics: list[Diagnostic] = Field(description="Problems found, with code, detail and remediation.")
    next_actions: list[NextAction] = Field(description="Tool calls that make sense now, most useful first.")


class Payload(BaseModel):
    """A tool's own fields. A result carries only the fields its handler set (``model_fields_set``)."""

    # Fields of nested records left out of the result (pydantic's ``exclude`` argument), for listings.
    exclude: ClassVar[dict[str, Any] | None] = None  # pydantic's exclude spec (field -> nested spec)

    def dump(self) -> dict[str, Any]:  # the JSON of the result's structuredContent
        return self.model_dump(mode="json", include=set(self.model_fields_set), exclude=self.exclude)


@cache
def result_model(payload: type[Payload]) -> type[BaseModel]:
    """The whole result of a tool: the envelope and its payload (what ``outputSchema`` describes)."""
    return create_model(payload.__name__ + "Result", __base__=(Envelope, payload))


# -- briefs: bounded views for a model to read ------------------------------------------------------------


class MinuteBrief(BaseModel):
    requests: int
    rate: float
    status_5xx: int
    error_ratio: float
    p99_ms: float | None = None


class ServiceBrief(BaseModel):
    name: str
    address: str
    status: Health = Field(description="healthy | progressing | missing | degraded | unknown")
    release: int | None = Field(description="The live release of the service.")
    replicas: int
    healthy: int
    restarts: int = Field(description="Restarts of the live release's replicas in the last 10 minutes (the count "
                                      "decays, so an old kill is not news forever).")
    restarts_total: int = Field(default=0, description="Restarts since the replicas started.")
    health: list[str] = Field(description="Each replica's health.")
    last_exit: list[str] = Field(default_factory=list, description="How replicas last ended on their own "
                                                                     "(exit status or signal).")
    requests: MinuteBrief | None = Field(default=None, description="The last minute the edge saw of the live "
                                                                   "release.")
    warm: list[int] = Field(description="Earlier releases still running unrouted: a rollback to them is instant.")
    canary: CanaryStatus | None = Field(default=None, description="A canary in progress beside the live release: "
                                        "its share of the requests, step, pause and the analysis of the step.")
    replica_sets: list[ReplicaSetStatus] = Field(default_factory=list, description="Kubernetes: the service's "
                                                 "ReplicaSets (release, pods asked for, ready), newest first.")


class ChangeBrief(BaseModel):
    address: str
    action: Action
    risk: Risk
    reason: str
    diff: list[FieldDiff] = Field(description="The first changed fields (long values cut).")
    diff_more: int | None = Field(default=None, exclude_if=lambda v: v is None,
                                  description="How many more changed fields there are (absent: none).")


class ReleaseBrief(BaseModel):
    number: int
    status: ReleaseStatus
    created_at: str | None = None
    live_at: str | None = None
    ended_at: str | None = None
    plan_id: str | None = None
    operation_id: str | None = None
    rollback_of: int | None = None
    git_commit: str | None = None
    services: dict[str, str] = Field(description="Service name → the start of its source digest.")


class EventBrief(BaseModel):
    id: int
    at: str
    env: str | None = None
    kind: str
    address: str | None = None
    message: str = Field(description="The event's message (cut to 500 characters; 300 in diagnose).")


# -- payloads, one per tool (or per family of tools) --------------------------------------------------------


class Whoami(Payload):
    principal: Principal | None = None
    same_user_mode: bool | None = Field(default=None, description="No token: acting as the local OS user.")
    tools: list[str] | None = None
    environments: list[str] | None = None
    spec: str | None = None
    isolation: str | None = Field(default=None, description="'isolated': app code runs as per-environment OS "
                                                            "users; 'shared-user': as the daemon's user.")
    shared_user_allowed: bool | None = Field(default=None, description="Token-only without isolation, accepted "
                                                                       "with --allow-shared-user.")


class Status(Payload):
    env: str | None = None
    serial: int | None = None
    url: str | None = None
    edge_running: bool | None = None
    counts: dict[str, int] | None = Field(default=None, description="Services by status, over all pages.")
    services: list[ServiceBrief] | None = None
    page: Page | None = None
    operation: InFlight | None = Field(default=None, description="The operation in flight, if any.")
    drift: Drift | None = None


class Releases(Payload):
    releases: list[ReleaseBrief] | None = None
    page: Page | None = None


class LogsPayload(Payload):
    files: list[LogFile] | None = Field(default=None, description="[{name, lines}] per log file.")
    truncated: bool | None = None


class Events(Payload):
    events: list[EventBrief] | None = None
    page: Page | None = None


class PoliciesPayload(Payload):
    policies: Policies | None = None


class Validate(Payload):
    valid: bool | None = None
    file: str | None = None
    environments: list[str] | None = None
    services: list[str] | None = None


class Schema(Payload):
    # A JSON Schema document (railguard.toml's): JSON Schema is its own language, not a record of ours.
    json_schema: dict[str, Any] | None = Field(default=None, description="The JSON Schema of railguard.toml.")


class PlanPayload(Payload):
    plan: PlanBrief | None = None
    changes: list[ChangeBrief] | None = Field(default=None, description="Changes other than no-ops, paged.")
    page: Page | None = None
    verdicts: list[Verdict] | None = None
    approval: Approval | None = None


class Plans(Payload):
    plans: list[PlanRecord] | None = None


class OperationPayload(Payload):
    operation: Operation | None = None


class Operations(Payload):
    operations: list[Operation] | None = Field(default=None, description="Without their steps: get_operation "
                                                                         "shows them.")
    exclude: ClassVar[dict[str, Any] | None] = {"operations": {"__all__": {"steps"}}}  # pydantic's exclude spec


class Diagnosis(Payload):
    verdict: str | None = Field(default=None, description="healthy | progressing | failed | crashing | degraded "
                                                          "| missing")
    findings: list[str] | None = Field(default=None, description="What was found, most important first.")
    cause: Diagnostic | None = None
    service: ServiceBrief | None = None
    operation: Operation | None = None
    live_release: int | None = None
    last_good_release: int | None = None
    log_tail: list[LogFile] | None = None
    events: list[EventBrief] | None = None


class ApprovalPayload(Payload):
    approval: Approval | None = None
    plan: PlanBrief | None = None


class RunCommandOut(Payload):
    exec: ExecRecord | None = Field(default=None, description=(
        "The command's run: release, exit_code, timed_out and its output's last lines (secret values redacted)."))
    plan: PlanBrief | None = Field(default=None, description=(
        "In a protected environment: the plan the command became (it runs once approved and applied)."))


class IncidentBrief(BaseModel):
    id: str
    env: str
    kind: str
    state: str
    service: str | None = None
    release: int | None = None
    summary: str
    opened_at: str
    operation: str | None = None


class Incidents(Payload):
    incidents: list[IncidentBrief] | None = None


class IncidentPayload(Payload):
    incident: Incident | None = None


class DoctorPayload(Payload):
    # The doctor's report as railguard doctor --json prints it (its own model lives in railguard.doctor, a
    # layer below; here it is that JSON), plus the counts per status and the exit code the CLI would give.
    doctor: dict[str, Any] | None = None


class CanaryPayload(Payload):
    canary: CanaryMove | None = Field(default=None, description="What the move did: advanced, promoted or aborted, "
                                      "and the canary's share of the requests now.")
    plan: PlanBrief | None = Field(default=None, description=(
        "In a protected environment: the plan the step became (it moves once approved and promoted with plan_id)."))
