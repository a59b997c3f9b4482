"""Text the app wrote, made safe to show inside Railguard's own lines: one line, no control characters, bounded.

Why: a deployed app is hostile, and some of what it writes reaches Railguard's diagnostics, events, status and
incidents verbatim — a container's termination message, a probe's output quoted by the kubelet, the last lines of a
log. With its line breaks kept, an app could print lines that look like Railguard's own ("operation succeeded",
"approved by ...") under Railguard's name. :func:`one_line` shows each line break as a visible ``⏎`` (as
``railguard.cli.output.one_line`` does for the screen), replaces every other control or bidirectional-format
character by ``�`` and keeps the last ``limit`` characters (the end of a log says why it stopped). In ``model`` so
that providers, which may not import the CLI, use the same rule. Called by the Kubernetes provider's pod and event
readers (providers/kubernetes/rollout.py, views.py), the local provider's health checks (what a failing check's
response or output said) and the MCP server's text lines (mcp/results.py).
"""

from __future__ import annotations

import re

LIMIT = 300
_BREAKS = re.compile(r"\r\n|[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
# C0 and C1 controls (escape sequences included), and the format characters that reorder or hide text.
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")


def printable(text: object) -> str:
    """``text`` as one visible line, whatever its length: line breaks as ``⏎``, other controls as ``�``."""
    return _CONTROLS.sub("�", _BREAKS.sub("⏎", str(text))).replace("\t", " ")


def one_line(text: object, limit: int = LIMIT) -> str:
    """``text`` as one visible line of at most ``limit`` characters (its end, after a leading ``…`` when cut)."""
    found = printable(str(text).strip())
    if len(found) > limit:
        return "…" + found[-(limit - 1):]
    return found
