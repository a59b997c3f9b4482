"""Tool results as models read them: one envelope, a short text, bounded size.

A tool handler returns an :class:`Outcome` (a summary, its payload model, diagnostics, next actions);
:func:`render` turns it into the MCP ``CallToolResult``: ``structuredContent`` with the envelope and
the payload, a text block with the summary, each diagnostic's headline and remediation and the next
calls (for clients that only show text), and ``isError`` when the call failed. Next actions name
only tools the principal may call. Every string and list is clipped, so no answer grows without
bound; tools page their main lists themselves. Used by :mod:`railguard.mcp.server` and the tools.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import mcp_types as types

from railguard.mcp.outputs import NextAction, Page, Payload
from railguard.model.diagnostics import Diagnostic
from railguard.model.untrusted import one_line, printable

if TYPE_CHECKING:
    from railguard.mcp.gateway import Gateway
    from railguard.model.principals import Principal

MAX_STRING = 4000
MAX_LIST = 500
MAX_DIAGNOSTICS = 50
MAX_ACTIONS = 5
MAX_TEXT_LINES = 60


@dataclass(frozen=True)
class Call:
    """What a tool handler may use: the gateway to the daemon, and who is asking."""

    gw: Gateway
    principal: Principal | None
    allowed: frozenset[str]  # tool names the principal may call
    # MCP progress notifications for long calls (doctor): (progress, total, message); a no-op without a token.
    progress: Callable[[float, float | None, str | None], Awaitable[None]] | None = None


@dataclass
class Outcome:
    summary: str
    payload: Payload | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    next_actions: list[NextAction] = field(default_factory=list)
    error: bool = False
    details: list[str] = field(default_factory=list)  # extra lines for clients that only show text


def act(tool: str, why: str, **arguments: Any) -> NextAction:
    """A next action: call ``tool`` with ``arguments`` (None values left out), for ``why``."""
    return NextAction(tool=tool, arguments={k: v for k, v in arguments.items() if v is not None}, why=why)


def page(offset: int, limit: int, total: int) -> Page:
    following = offset + limit
    return Page(offset=offset, limit=limit, total=total, next_offset=following if following < total else None)


def clip(value: Any) -> Any:
    """The value with long strings shortened and long lists cut (a safety net under explicit paging)."""
    if isinstance(value, str):
        return value if len(value) <= MAX_STRING else value[:MAX_STRING] + f"… ({len(value) - MAX_STRING} more)"
    if isinstance(value, dict):
        return {k: clip(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clip(v) for v in value[:MAX_LIST]]
    return value


def _unique(actions: list[NextAction], allowed: frozenset[str]) -> list[NextAction]:
    seen: set[str] = set()
    out = []
    for action in actions:
        key = json.dumps([action.tool, action.arguments], sort_keys=True)
        if action.tool in allowed and key not in seen:
            seen.add(key)
            out.append(action)
    return out[:MAX_ACTIONS]


def render(outcome: Outcome, allowed: frozenset[str]) -> types.CallToolResult:
    actions = _unique(outcome.next_actions, allowed)
    diagnostics = [d.model_dump(mode="json") for d in outcome.diagnostics[:MAX_DIAGNOSTICS]]
    payload = outcome.payload.dump() if outcome.payload is not None else {}
    structured = {"ok": not outcome.error, "summary": clip(outcome.summary), "diagnostics": clip(diagnostics),
                  "next_actions": [a.model_dump(mode="json") for a in actions], **clip(payload)}
    # The text an agent reads: each entry one line, without control characters (log lines, a health check's
    # response and exit messages are the app's words: a line break in them printed a fake "Next: apply_plan").
    lines = [printable(line) for line in [outcome.summary, *outcome.details[:MAX_TEXT_LINES]]]
    for d in outcome.diagnostics[:10]:
        lines.append(f"{d.severity.value} {d.code}: {one_line(d.summary)}"
                     + (f". {one_line(d.detail[:300])} → {printable(d.remediation)}" if d.is_error else ""))
    for a in actions:
        lines.append(f"Next: {a.tool} {json.dumps(a.arguments, sort_keys=True)} — {a.why}")
    return types.CallToolResult(content=[types.TextContent(text=clip("\n".join(lines)))],
                                structured_content=structured, is_error=outcome.error)
