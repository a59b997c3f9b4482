"""The tool registry: each tool's name, schemas, honest annotations and the permission it needs.

Tool modules register their handlers with :func:`tool`. ``tools/list`` shows only the tools the
principal's role includes (:func:`visible`), and the server refuses a hidden tool if it is called
anyway. Annotations say what a tool really does: read tools are read-only and idempotent; ``plan``
writes a saved plan and an audit entry but changes nothing that runs; ``apply_plan`` and
``rollback`` change what runs (destructive: they may replace processes, and a plan may delete).
No tool approves, deletes or weakens anything by itself. Used by :mod:`railguard.mcp.server`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import mcp_types as types
from pydantic import BaseModel

from railguard.mcp.inputs import Args
from railguard.mcp.outputs import Payload, result_model
from railguard.mcp.results import Call, Outcome
from railguard.model.principals import Permission, Principal

Handler = Callable[[Call, Any], Awaitable[Outcome]]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    title: str
    description: str
    inputs: type[Args]
    outputs: type[Payload]  # the result's schema is the envelope and this (outputs.result_model)
    permission: Permission
    read_only: bool
    destructive: bool
    idempotent: bool
    needs_daemon: bool
    handler: Handler

    def definition(self) -> types.Tool:
        return _definition(self.name)


TOOLS: dict[str, ToolSpec] = {}
# The order tools/list shows them in: orientation, then reading, then the change loop.
ORDER = ["whoami", "get_status", "diagnose", "list_releases", "read_logs", "list_events", "list_operations",
         "get_operation", "list_policies", "get_spec_schema", "validate_spec", "plan", "promote", "show_plan",
         "list_plans", "request_approval", "approval_status", "apply_plan", "rollback", "run_command",
         "list_incidents", "get_incident", "doctor", "canary_promote", "canary_abort", "incident_ack"]


def tool(name: str, *, title: str, inputs: type[Args], outputs: type[Payload], permission: Permission,
         read_only: bool = False, destructive: bool = False, idempotent: bool = False,
         needs_daemon: bool = True) -> Callable[[Handler], Handler]:
    """Register a handler as a tool; its docstring is the description models read."""

    def register(handler: Handler) -> Handler:
        TOOLS[name] = ToolSpec(name=name, title=title, description=" ".join((handler.__doc__ or "").split()),
                               inputs=inputs, outputs=outputs, permission=permission, read_only=read_only,
                               destructive=destructive, idempotent=idempotent, needs_daemon=needs_daemon,
                               handler=handler)
        return handler

    return register


def read_tool(name: str, *, title: str, inputs: type[Args], outputs: type[Payload],
              needs_daemon: bool = True) -> Callable[[Handler], Handler]:
    """Register a read tool: the ``read`` permission every role has; read-only and idempotent."""
    return tool(name, title=title, inputs=inputs, outputs=outputs, permission=Permission.read, read_only=True,
                idempotent=True, needs_daemon=needs_daemon)


def _schema(model: type[BaseModel]) -> dict[str, Any]:  # a JSON Schema document, as the SDK takes it
    schema = model.model_json_schema(mode="serialization")
    schema.pop("title", None)
    return schema


@cache
def _definition(name: str) -> types.Tool:
    spec = TOOLS[name]
    return types.Tool(
        name=spec.name, title=spec.title, description=spec.description,
        input_schema=_schema(spec.inputs), output_schema=_schema(result_model(spec.outputs)),
        annotations=types.ToolAnnotations(title=spec.title, read_only_hint=spec.read_only,
                                          destructive_hint=spec.destructive, idempotent_hint=spec.idempotent,
                                          open_world_hint=False))


def visible(principal: Principal | None) -> list[ToolSpec]:
    """The tools ``principal`` may call; with no known principal (daemon down), the read tools only."""
    ranked = sorted(TOOLS.values(), key=lambda t: ORDER.index(t.name) if t.name in ORDER else len(ORDER))
    if principal is None:
        return [t for t in ranked if t.permission is Permission.read]
    return [t for t in ranked if principal.allows(t.permission)]
