"""The output schemas of the MCP tools: one envelope, and each tool's payload beside it.

Every result is ``{ok, summary, diagnostics, next_actions, ...payload}``. ``diagnostics`` are the
same objects (and codes) the CLI prints with ``--json``; ``next_actions`` are tool calls, with their
arguments, that make sense now. Payload fields are optional because an error result carries only
the envelope. ``tools/list`` publishes these models' JSON Schema as each tool's ``outputSchema``,
and the official client validates results against it. Used by :mod:`railguard.mcp.catalog`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from railguard.model.api import Approval, OperationBrief, PlanBrief
from railguard.model.diagnostics import Diagnostic

# The operation, plan and approval shapes are the contract's (model/api.py), not declared a second time here.
Operation = OperationBrief


class NextAction(BaseModel):
    tool: str = Field(description="Name of the tool to call.")
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


class ServiceBrief(BaseModel):
    name: str
    address: str
    status: str = Field(description="healthy | degraded | progressing | running | missing")
    release: int | None = Field(description="The live release of the service.")
    replicas: int
    healthy: int
    restarts: int = Field(description="Restarts of the live release's replicas since they started.")
    health: list[str] = Field(description="Each replica's health.")
    warm: list[int] = Field(description="Earlier releases still running unrouted: a rollback to them is instant.")


class WhoamiOut(Envelope):
    principal: dict[str, Any] | None = None
    same_user_mode: bool | None = Field(default=None, description="No token: acting as the local OS user.")
    tools: list[str] | None = None
    environments: list[str] | None = None
    spec: str | None = None
    isolation: str | None = Field(default=None, description="'isolated': app code runs as per-environment OS "
                                                            "users; 'shared-user': as the daemon's user.")
    shared_user_allowed: bool | None = Field(default=None, description="Token-only without isolation, accepted "
                                                                       "with --allow-shared-user.")


class StatusOut(Envelope):
    env: str | None = None
    serial: int | None = None
    url: str | None = None
    edge_running: bool | None = None
    counts: dict[str, int] | None = Field(default=None, description="Services by status, over all pages.")
    services: list[ServiceBrief] | None = None
    page: Page | None = None
    operation: dict[str, Any] | None = Field(default=None, description="The operation in flight, if any.")
    drift: dict[str, Any] | None = None


class ReleasesOut(Envelope):
    releases: list[dict[str, Any]] | None = None
    page: Page | None = None


class LogsOut(Envelope):
    files: list[dict[str, Any]] | None = Field(default=None, description="[{name, lines}] per log file.")
    truncated: bool | None = None


class EventsOut(Envelope):
    events: list[dict[str, Any]] | None = None
    page: Page | None = None


class PoliciesOut(Envelope):
    policies: dict[str, Any] | None = None


class ValidateOut(Envelope):
    valid: bool | None = None
    file: str | None = None
    environments: list[str] | None = None
    services: list[str] | None = None


class SchemaOut(Envelope):
    json_schema: dict[str, Any] | None = Field(default=None, description="The JSON Schema of railguard.toml.")


class PlanOut(Envelope):
    plan: PlanBrief | None = None
    changes: list[dict[str, Any]] | None = Field(default=None, description="Changes other than no-ops, paged.")
    page: Page | None = None
    verdicts: list[dict[str, Any]] | None = None
    approval: Approval | None = None


class PlansOut(Envelope):
    plans: list[dict[str, Any]] | None = None


class OperationOut(Envelope):
    operation: Operation | None = None


class OperationsOut(Envelope):
    operations: list[dict[str, Any]] | None = None


class DiagnoseOut(Envelope):
    verdict: str | None = Field(default=None, description="healthy | progressing | failed | crashing | degraded "
                                                          "| missing")
    findings: list[str] | None = Field(default=None, description="What was found, most important first.")
    cause: Diagnostic | None = None
    service: ServiceBrief | None = None
    operation: Operation | None = None
    live_release: int | None = None
    last_good_release: int | None = None
    log_tail: list[dict[str, Any]] | None = None
    events: list[dict[str, Any]] | None = None


class ApprovalOut(Envelope):
    approval: Approval | None = None
    plan: PlanBrief | None = None
