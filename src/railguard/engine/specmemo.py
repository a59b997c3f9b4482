"""One parse of a spec text per process, shared by every caller that asks for the same text at once or again.

Why it exists: in the daemon a plan request parses the spec it was sent, and the observation thread parses the
served spec (the same file) as soon as the request has pinned it, so a 10,000-service spec was parsed twice at
the same time: twice the CPU (~0.8 s each with ``tomllib``), the two threads taking turns on the GIL, and two
spec trees alive at once (bench/plan_scale.py, docs/benchmarks.md). Here the second caller of the same text
waits for the first one's parse and gets the same result, and a later caller of the same text (the next plan,
status, the retention pass) gets it without parsing again.

What is kept: the last text parsed and its result (one entry, so at most one spec tree more than the callers
hold; the observer keeps the served spec anyway). A :class:`~railguard.model.spec.Spec` is frozen, and each
caller gets its own list of diagnostics. The key is the text, the file name the diagnostics carry, and the
one fact about this machine the checks read (the lowest port this user may bind); a parse that raised is not
kept. A large text's TOML is parsed in a child process (:mod:`railguard.engine.tomlchild`). Called by
:meth:`railguard.engine.workspace.Workspace.load`.
"""

from __future__ import annotations

import threading

from railguard.engine import tomlchild
from railguard.model import checks
from railguard.model.diagnostics import Diagnostic
from railguard.model.spec import Spec
from railguard.model.specfile import parse_spec

Key = tuple[str, str | None, int]
Result = tuple[Spec | None, list[Diagnostic]]


class _Parse:
    """One parse, finished or under way in the thread that made it."""

    def __init__(self, key: Key) -> None:
        self.key = key
        self.done = threading.Event()
        self.result: Result | None = None  # None once done: the parse raised, each caller parses itself


_lock = threading.Lock()
_last: _Parse | None = None


def parse(text: str, file: str | None) -> Result:
    """:func:`~railguard.model.specfile.parse_spec` of ``text``, parsed once while the text stays the last one."""
    global _last
    key: Key = (text, file, checks.lowest_unprivileged_port())
    with _lock:
        found = _last
        mine = found is None or found.key != key
        if mine:
            found = _last = _Parse(key)
    assert found is not None
    if not mine:
        found.done.wait()
        if found.result is None:
            return parse_spec(text, file, tomlchild.loads)
        return found.result[0], list(found.result[1])
    try:
        found.result = parse_spec(text, file, tomlchild.loads)
    finally:
        if found.result is None:
            with _lock:
                if _last is found:
                    _last = None
        found.done.set()
    return found.result[0], list(found.result[1])


def forget() -> None:
    """Drop the kept parse (a bench that parsed the spec to build its fixture measures a cold parse after)."""
    global _last
    with _lock:
        _last = None
