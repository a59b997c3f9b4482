"""The provider interface: how the engine talks to a runtime.

Three verbs, each with one request and one response type: ``observe`` (what is
live), ``apply_change`` (carry out one planned change) and ``health`` (how one
resource is doing). The engine gathers facts with ``observe`` before planning and
calls ``apply_change`` once per change, in plan order; a provider never plans. The
embedded local runtime and the in-memory fake used by unit tests both implement
:class:`Provider`; Kubernetes will too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from railguard.model.api import Health as Health  # the one ordered health vocabulary, re-exported
from railguard.model.diagnostics import Diagnostic
from railguard.model.plans import Change
from railguard.model.resources import ObservedResource, Resource


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True)


class ObserveRequest(_Message):
    env: str


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


class ApplyResponse(_Message):
    ok: bool
    observed: ObservedResource | None = Field(description="Live state after the change; None when deleted.")
    diagnostics: list[Diagnostic] = Field(default_factory=list)


class HealthRequest(_Message):
    env: str
    address: str


class HealthResponse(_Message):
    address: str
    health: Health
    message: str = ""


# Called by a provider around each sub-step of a change: (step, phase, detail), phase "begin"/"end".
# The engine journals it, so a crash mid-change shows exactly where it stopped.
Progress = Callable[[str, str, dict[str, Any]], None]


@runtime_checkable
class Provider(Protocol):
    """A runtime Railguard can deploy to."""

    kind: str

    def observe(self, request: ObserveRequest) -> ObserveResponse: ...

    def apply_change(self, request: ApplyRequest, progress: Progress | None = None) -> ApplyResponse: ...

    def health(self, request: HealthRequest) -> HealthResponse: ...
