"""The input schemas of the MCP tools: strict, bounded, and the single source of their JSON Schema.

Every tool's arguments are validated against one of these models before anything reaches the
daemon: unknown keys are refused, names and ids match the shapes Railguard creates, numbers are
bounded, and a proposed spec text has a size limit. ``tools/list`` publishes their JSON Schema.
Used by :mod:`railguard.mcp.catalog` and the tool modules.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

MAX_SPEC_TEXT = 256_000  # characters; a spec is a few KB, 200 services fit in ~60 KB

Env = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                           description="Environment name from the spec, e.g. 'staging'.")]
Service = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                               description="Service name from the spec, e.g. 'web'.")]
PlanId = Annotated[str, Field(min_length=6, max_length=64, pattern=r"^plan-[A-Za-z0-9]+$",
                              description="A saved plan's id, e.g. 'plan-3f2a9c0d1e4b'.")]
OperationId = Annotated[str, Field(min_length=4, max_length=64, pattern=r"^op-[A-Za-z0-9]+$",
                                   description="An operation's id, e.g. 'op-8d1c2b3a4f5e'.")]
SpecText = Annotated[str, Field(max_length=MAX_SPEC_TEXT, description=(
    "A complete proposed railguard.toml. It is read as if it were the spec file on disk (same folder, "
    "same app source); nothing is written."))]


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoArgs(Args):
    pass


class EnvArgs(Args):
    env: Env


class StatusArgs(Args):
    env: Env
    offset: int = Field(default=0, ge=0, le=100_000, description="First service of the page.")
    limit: int = Field(default=50, ge=1, le=200, description="Services per page (problems first).")


class ReleasesArgs(Args):
    env: Env
    offset: int = Field(default=0, ge=0, le=900)
    limit: int = Field(default=10, ge=1, le=100)


class LogsArgs(Args):
    env: Env
    service: Service
    lines: int = Field(default=50, ge=1, le=500, description="Last lines per log file.")
    release: int | None = Field(default=None, ge=1, description="Only this release's replicas.")


class EventsArgs(Args):
    env: Env | None = None
    offset: int = Field(default=0, ge=0, le=900, description="Skip this many of the newest events.")
    limit: int = Field(default=20, ge=1, le=100)


class ValidateArgs(Args):
    spec_text: SpecText | None = Field(default=None, description=(
        "A proposed railguard.toml to check; omit to check the spec file on disk."))


class PlanArgs(Args):
    env: Env
    spec_text: SpecText | None = Field(default=None, description=(
        "A proposed railguard.toml to plan instead of the file on disk. The plan is saved for review; it can "
        "be applied once the spec file on disk asks for the same thing."))
    allow_data_loss: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list, max_length=50, description=(
        "Tables (or table.column) whose loss a release command's rehearsal found and you acknowledge; the plan "
        "becomes destructive (docs/data.md). Leave empty unless an apply stopped with data.loss_detected."))


class PromoteArgs(Args):
    from_env: Env = Field(description="Environment whose live artifact is promoted, e.g. 'staging'.")
    to_env: Env = Field(description="Environment to plan, e.g. 'production'.")


class ShowPlanArgs(Args):
    plan_id: PlanId
    offset: int = Field(default=0, ge=0, le=100_000, description="First change of the page.")
    limit: int = Field(default=25, ge=1, le=100)


class PlansArgs(Args):
    env: Env | None = None
    limit: int = Field(default=10, ge=1, le=100)


class ApplyArgs(Args):
    plan_id: PlanId
    env: Env = Field(description="The environment you mean to change; a plan of another one is refused.")


class OperationArgs(Args):
    operation_id: OperationId
    wait_s: float = Field(default=20.0, ge=0, le=60, description=(
        "Wait up to this long for the operation to end (0: answer at once)."))


class OperationsArgs(Args):
    env: Env | None = None
    limit: int = Field(default=10, ge=1, le=100)


class RollbackArgs(Args):
    env: Env
    to: int | None = Field(default=None, ge=1, description="Release number (default: the previous one).")


class DiagnoseArgs(Args):
    env: Env
    service: Service | None = Field(default=None, description="Focus on one service.")
    operation_id: OperationId | None = Field(default=None, description="Explain this operation.")


class RequestApprovalArgs(Args):
    plan_id: PlanId
    env: Env = Field(description="The environment the plan is for; a plan of another one is refused.")
    reason: str = Field(default="", max_length=500, description="Why the change is needed, for the approver.")


class PlanIdArgs(Args):
    plan_id: PlanId


class RunCommandArgs(Args):
    env: Env
    service: Service = Field(description="The service whose release runs the command, e.g. 'web'.")
    command: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        min_length=1, max_length=64, description="argv, no shell: e.g. ['python', 'manage.py', 'migrate'].")
    release: int | None = Field(default=None, ge=1, description="Release number (default: the live one).")
    timeout_s: float = Field(default=60.0, gt=0, le=90, description="Kill the command after this long.")
