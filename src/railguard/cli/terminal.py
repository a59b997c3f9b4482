"""What reaches a person's terminal: text from agents and apps, without its control characters.

A plan's reason, an approval request, a token name, a log line: text an agent or the app chose. Raw escape
sequences in it could retitle the window, clear the screen or rewrite what an approver reads (a short hash
that is not the plan's). The CLI's consoles strip C0/C1 control characters (newline and tab stay), bidi
overrides and invisible (zero-width) characters from every piece of text they render; Rich's own styling is
added after, so colours still work. Text that is one value on one line of a screen (a change's reason, an
approval request's reason, a policy message) goes through :func:`railguard.cli.output.one_line` too: a newline
in it would start what looks like another line of the plan. Used by :mod:`railguard.cli.output`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rich.console import Console
from rich.segment import Segment

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")


def clean(text: str) -> str:
    """``text`` without control characters, bidi overrides and invisible characters; newline and tab are kept."""
    return _CONTROL.sub("", text)


class SafeConsole(Console):
    """A Rich console that strips control characters from the text it renders (not from its own styles)."""

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return super()._render_buffer(
            seg if seg.control else Segment(clean(seg.text), seg.style, seg.control) for seg in buffer)
