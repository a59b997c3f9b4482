"""The MCP server: builds the SDK's low-level ``Server`` and dispatches every tool call safely.

Dispatch never trusts the client: it looks the tool up, bounds and validates the arguments against
the tool's input schema, asks the daemon who the server acts as, refuses a tool the role does not
include (even one the client was not shown), runs the handler, and turns any
:class:`~railguard.model.diagnostics.RailguardError` (or a bug) into an ``isError`` result carrying
diagnostics and next actions. Nothing a call does can stop the server, so the next call is
answered. There is no approval tool, no elicitation and no sampling: nothing the client says can
approve a change. Run over stdio by :func:`serve_stdio` (and over HTTP by :mod:`railguard.mcp.http`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from pydantic import ValidationError

from railguard import __version__
from railguard.engine import gcpause
from railguard.engine.guard import require
from railguard.engine.workspace import Workspace
from railguard.mcp import (
    catalog,
    diagnose,
    resources,
    suggest,
    tools_canary,
    tools_doctor,
    tools_exec,
    tools_incidents,
    tools_plans,
    tools_read,
    tools_run,
    tools_spec,
)
from railguard.mcp.gateway import Gateway
from railguard.mcp.inputs import Args
from railguard.mcp.results import Call, Outcome, render
from railguard.model.diagnostics import Diagnostic, RailguardError, error

log = logging.getLogger("railguard.mcp")
# Importing them registers the tools.
TOOL_MODULES = (tools_read, tools_spec, tools_plans, tools_run, tools_exec, diagnose, tools_incidents, tools_doctor,
                tools_canary)
MAX_ARGUMENTS = 300_000  # bytes of JSON; the largest legitimate argument is a spec text (256 KB)

INSTRUCTIONS = """Railguard deploys this app: one typed spec (railguard.toml), saved plans you can review,
guarded applies, live status, diagnosis and rollback. Start with `whoami`. Every result has `diagnostics`
(stable codes with a remediation) and `next_actions` (tool calls with arguments that make sense now).
Changes go plan -> apply_plan -> get_operation. You cannot approve plans: for a plan that needs approval,
call request_approval and let a person run `railguard approve` on a terminal."""


def _invalid(tool: str, exc: ValidationError) -> Diagnostic:
    problems = [{"loc": ".".join(str(p) for p in e["loc"]) or "(arguments)", "msg": e["msg"], "type": e["type"]}
                for e in exc.errors()[:20]]  # never the input values: a model may have pasted a secret
    if any(p["type"] == "string_too_long" for p in problems):
        return error("mcp.input_too_large", f"An argument to {tool} is too large",
                     "; ".join(f"{p['loc']}: {p['msg']}" for p in problems if p["type"] == "string_too_long") + ".",
                     "Send less: a spec text is at most 256,000 characters.", address=tool, extra={"errors": problems})
    return error("mcp.invalid_arguments", f"Bad arguments to {tool}",
                 "; ".join(f"{p['loc']}: {p['msg']}" for p in problems) + ".",
                 f"Call {tool} with arguments that match its inputSchema (see tools/list).", address=tool,
                 extra={"errors": problems})


def _parse(spec: catalog.ToolSpec, arguments: dict[str, Any]) -> Args:  # the client's raw JSON-RPC arguments
    size = len(json.dumps(arguments, default=str))
    if size > MAX_ARGUMENTS:
        raise RailguardError(error("mcp.input_too_large", f"The arguments to {spec.name} are too large",
                                   f"They take {size} bytes as JSON; the limit is {MAX_ARGUMENTS}.",
                                   "Send less: a spec text is at most 256,000 characters.", address=spec.name))
    try:
        return spec.inputs.model_validate(arguments)
    except ValidationError as exc:
        raise RailguardError(_invalid(spec.name, exc)) from exc


async def dispatch(gw: Gateway, name: str, arguments: dict[str, Any] | None,
                   progress: Callable[[float, float | None, str | None], Awaitable[None]] | None = None,
                   ) -> types.CallToolResult:
    started = time.perf_counter()
    spec = catalog.TOOLS.get(name)
    allowed = frozenset(t.name for t in catalog.visible(None))
    checked: dict[str, Any] = {}  # any tool's validated arguments as JSON (for suggest.after_error)
    try:
        if spec is None:
            raise RailguardError(error("mcp.unknown_tool", f"No tool named {name[:80]!r}",
                                       f"This server has: {', '.join(sorted(catalog.TOOLS))}.",
                                       "Call one of the tools that tools/list shows.", address=name[:80]))
        parsed = _parse(spec, arguments or {})
        checked = parsed.model_dump()
        if isinstance(checked.get("env"), str) and checked.get("spec_text") is None:
            gw.require_env(checked["env"])  # a proposed spec may define new environments: the daemon checks
        principal = await gw.principal() if spec.needs_daemon else await gw.principal_or_none()
        allowed = frozenset(t.name for t in catalog.visible(principal))
        if principal is not None:
            require(principal, spec.permission, None)  # a hidden tool called anyway is refused here
        outcome = await spec.handler(Call(gw, principal, allowed, progress), parsed)
    except RailguardError as exc:
        first = exc.diagnostics[0] if exc.diagnostics else None
        outcome = Outcome(f"{first.summary}." if first else "Refused.", diagnostics=list(exc.diagnostics),
                          next_actions=suggest.after_error(name, checked, exc.diagnostics), error=True)
    except Exception as exc:  # a bug in one call must never take the server down
        log.exception("tool %s failed", name)
        outcome = Outcome("Railguard hit an internal error.", error=True, diagnostics=[error(
            "internal.error", "The MCP server hit an internal error", f"{type(exc).__name__} in {name}.",
            "Retry; if it persists, report it with the traceback the server printed on its stderr.")])
    log.debug("tool %s: %s in %.1f ms", name, "error" if outcome.error else "ok", (time.perf_counter() - started) * 1e3)
    return render(outcome, allowed)


def build(gw: Gateway) -> Server[Any]:
    """The SDK server with Railguard's handlers (tools filtered by the principal's role)."""

    async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        principal = await gw.principal_or_none(fresh=True)  # a listing shows what the role allows now
        return types.ListToolsResult(tools=[t.definition() for t in catalog.visible(principal)])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        return await dispatch(gw, params.name, params.arguments, progress=ctx.session.report_progress)

    async def list_resources(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
        found = resources.listing(gw)
        return types.ListResourcesResult(resources=[*found.resources, tools_incidents.RESOURCE])

    async def read_resource(ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        if str(params.uri) == tools_incidents.RESOURCE_URI:  # read through the daemon, as the token
            return await tools_incidents.read_resource(gw)
        return resources.read(gw, str(params.uri))

    async def list_prompts(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        return resources.prompts()

    async def get_prompt(ctx: Any, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        return resources.prompt(params.name, params.arguments)

    return Server("railguard", version=__version__, title="Railguard", instructions=INSTRUCTIONS,
                  on_list_tools=list_tools, on_call_tool=call_tool, on_list_resources=list_resources,
                  on_read_resource=read_resource, on_list_prompts=list_prompts, on_get_prompt=get_prompt)


def serve_stdio(ws: Workspace) -> None:
    """Serve one client on stdin/stdout until it closes stdin."""
    gw = Gateway(ws)
    server = build(gw)

    async def main() -> None:
        async with stdio_server() as (read_stream, write_stream):
            gcpause.settle(freeze=False)  # a tool call's temporaries die young
            await server.run(read_stream, write_stream, server.create_initialization_options())

    try:
        anyio.run(main)
    finally:
        gw.close()
