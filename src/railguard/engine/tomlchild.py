"""Parse a large spec's TOML in a short-lived child process with a native parser, exactly as ``tomllib`` would.

Why it exists: ``tomllib`` is pure Python, ~0.65–0.9 s of CPU for a 10,000-service spec (2.3 MB): the largest
part of the daemon's plan of it (docs/benchmarks.md, "Large plans"). ``toml_rs`` (the Rust ``toml`` crate) held
to TOML 1.0 parses the same text ~4x faster and answered like ``tomllib`` on the whole toml-test suite except a
leading byte-order mark. It was used in the daemon's own process once and removed: it segfaulted there (on a
request thread's stack) and it overflows the native stack on a deeply nested text; either ends the control
plane. Here it never runs in the caller's process: a fresh interpreter (main thread, normal stack) parses the
text and writes the result as JSON, which the caller loads. The daemon never imports ``toml_rs``.

Whatever goes wrong falls back to ``tomllib`` in process, so the answer is always ``tomllib``'s value or
``tomllib``'s exception (the same diagnostics, message and line, for a bad text):

- texts under :data:`MIN_BYTES` (starting an interpreter costs more than ``tomllib`` on them), with a leading
  byte-order mark (``toml_rs`` accepts it, ``tomllib`` does not), or not provably shallow (:func:`shallow`:
  deep nesting would overflow the child's stack, a crash the fallback would pay for after waiting);
- any refusal by the child's parser (``tomllib`` then raises its own error, or parses if it accepts the text);
- a value JSON cannot carry as ``tomllib`` returns it (dates and times), a ``null`` anywhere in the output
  (TOML has none), output that is not one UTF-8 JSON object;
- a crash, a signal, a non-zero exit, a timeout (:data:`TIMEOUT_S`), ``toml_rs`` not installed;
- as root, no ``setpriv`` to drop root's authority for the child (:func:`child_argv`: it runs as ``nobody``).

Loading the child's JSON is safe even if the child were subverted by a hostile text: JSON gives only dicts,
lists, strings, numbers and booleans (``null`` is refused), the kinds of value a TOML text holds (at most an
integer beyond 64 bits, which TOML cannot write), and the spec models validate it next as they validate
``tomllib``'s. A truncated answer (the child killed while writing) does not load and falls back. Called by
:func:`railguard.engine.specmemo.parse` (every spec the workspace loads: the daemon's plans, the CLI's checks).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from typing import Any

from railguard.model import counters
from railguard.sources import asuser

# Characters (~2,300 services of bench/plan_scale.py): below, the child's start (interpreter + toml_rs, ~40 ms of
# CPU) leaves too little of a gain (bench/toml_child.py: at 1,000 services ~60 ms either way, at 3,000 ~130 vs ~210).
MIN_BYTES = 512 * 1024
TIMEOUT_S = 30.0  # a 10k-service spec takes ~0.2 s; past this the child is killed and tomllib parses
# How deep one line may nest (brackets, braces, dots of dotted keys) for the native parser: real specs use 2–3.
MAX_PER_LINE = 32
# What TOML reads as a string or a comment on one line, leftmost first, as its lexer does: a basic string
# (with escapes), a literal string (none), a comment. Multi-line strings are not here: a text with one is
# left to tomllib (shallow() says no), so every line of a text that gets here starts outside any string.
# (The basic string unrolled, as [^"\\\n]* runs between escapes: the same matches, ~40% less time on a 10k spec.)
_NOT_CODE = re.compile(r'"[^"\\\n]*(?:\\.[^"\\\n]*)*"|\'[^\'\n]*\'|#[^\n]*')
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')  # one JSON string, escapes included
_UNCOUNTED = bytes(range(256)).translate(None, b"[]{}.\n")  # every byte but these

# The child: read the text, parse it as TOML 1.0, write JSON. Exit 3: the parser refused the text; 4: a value
# JSON cannot carry (a date or time). Only the standard library and toml_rs are imported (-I -S: no site, no
# environment, no current folder on the path; the one folder holding toml_rs is added).
CHILD = """\
import sys
sys.path.insert(0, sys.argv[1])
import json, toml_rs
try:
    value = toml_rs.loads(sys.stdin.buffer.read().decode("utf-8"), toml_version="1.0.0")
except Exception:
    sys.exit(3)
try:
    out = json.dumps(value, ensure_ascii=False, check_circular=False, separators=(",", ":"))
except TypeError:
    sys.exit(4)
sys.stdout.buffer.write(out.encode("utf-8"))
"""


def loads(text: str) -> dict[str, Any]:
    """``tomllib.loads(text)``: the same value, or the same exception; parsed in a child when that is worth it."""
    if len(text) >= MIN_BYTES:
        early = _early_answer(text)
        found = early[0] if early is not None else child_loads(text)
        # Counted (model/counters.py): a fallback costs the child's time and tomllib's, and says nothing otherwise.
        counters.bump("toml-child" if found is not None else "toml-child-fallback")
        if early is not None:
            counters.bump("toml-child-early")
        if found is not None:
            return found
    return tomllib.loads(text)


class _Early:
    """A child's parse started before its caller asks (:func:`start_early`), waited for by a thread of its own."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.found: dict[str, Any] | None = None
        self.thread = threading.Thread(target=self._run, name="railguard-toml-early", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.found = child_loads(self.text)


_early: list[_Early] = []
_early_lock = threading.Lock()


def start_early(text: str) -> None:
    """Start the child's parse of ``text`` now; :func:`loads` of the same text later takes its answer.

    Why: ``railguard validate`` of a large spec imports the spec models (~0.1 s) before it parses; the child,
    on the other core, can parse meanwhile. Only an equal text gets this answer, and it is checked as any child's
    answer is, so a file changed in between, or a text the child refuses, changes nothing but the time.
    Called by :mod:`railguard.cli.launch` before the command's imports; one parse ahead at most."""
    if len(text) < MIN_BYTES:
        return
    with _early_lock:
        if not _early:
            _early.append(_Early(text))


def _early_answer(text: str) -> tuple[dict[str, Any] | None] | None:
    """The early parse's answer (wrapped: ``(None,)`` when the child gave none) if it was of ``text``, else None.
    An early parse of another text is waited for all the same (its child is reaped, not left behind)."""
    with _early_lock:
        if not _early:
            return None
        early = _early.pop()
    early.thread.join()
    return (early.found,) if early.text == text else None


def child_loads(text: str) -> dict[str, Any] | None:
    """The child's parse of ``text``, or ``None`` for anything but a clean answer (see the module docstring).

    The nesting pre-check runs while the child's interpreter starts (~40 ms each, on a 2-core machine side by
    side); a text it refuses is never sent, and the child is killed unfed."""
    return _answer(text, precheck=True)


def run_child(text: str) -> dict[str, Any] | None:
    """The child's answer for ``text`` without the nesting pre-check (tests give it a text that crashes the child)."""
    return _answer(text, precheck=False)


def _answer(text: str, precheck: bool) -> dict[str, Any] | None:
    where = _toml_rs_folder()
    if where is None or (precheck and not _sendable(text)):
        return None
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: not a text any TOML parser is given
        return None
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LD_LIBRARY_PATH", "SYSTEMROOT")}
    try:
        child = subprocess.Popen(child_argv(where), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, env=env, cwd="/")
    except OSError:
        return None
    assert child.stdin is not None and child.stdout is not None
    # Past the timeout the child is killed: the write or the read below then ends, and the answer is None.
    watchdog = threading.Timer(TIMEOUT_S, _kill, (child,))
    try:
        if precheck and not shallow(text):
            return None
        watchdog.start()
        # The whole text in one blocking write, then the whole answer (the child reads all of its input before it
        # writes a byte). Not communicate(): its poll loop takes the GIL again for every 4 KiB it writes, and with
        # another thread busy (the CLI importing while an early parse runs) each take can wait a switch interval.
        try:
            child.stdin.write(data)
            child.stdin.close()
            out = child.stdout.read()
        except OSError:
            return None  # the pipe broke: the child died early, or the watchdog killed it
        child.wait()
    finally:
        watchdog.cancel()
        if child.returncode is None:  # not reaped: refused by the pre-check, a broken pipe
            _kill(child)
        child.wait()
        for pipe in (child.stdin, child.stdout):
            try:
                pipe.close()
            except OSError:
                pass  # a write the kill cut short leaves unflushed bytes that closing cannot send
    if child.returncode != 0 or not out.startswith(b"{"):
        return None
    if b"null" in out and b"null" in _JSON_STRING.sub(b"", out):  # a string may say null ("/dev/null"); JSON may not
        return None
    try:
        value = json.loads(out.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _kill(child: subprocess.Popen[bytes]) -> None:
    try:
        child.kill()
    except OSError:
        pass  # already gone


def child_argv(where: str) -> list[str]:
    """The child's command line. As root, the child parses a text an agent wrote with no authority of its own:
    util-linux ``setpriv`` runs it as ``nobody`` with no groups and no new privileges (:mod:`railguard.sources.asuser`;
    a setuid program it could exec gives it none). Without ``setpriv`` a root caller does not start the child at
    all (tomllib parses in process, as for a text the pre-check refuses); an interpreter ``nobody`` cannot run (a
    virtualenv in a private folder) fails to start, and tomllib parses too."""
    return asuser.argv_as(asuser.nobody(), [sys.executable, "-I", "-S", "-c", CHILD, where])


def _sendable(text: str) -> bool:
    """The cheap part of :func:`shallow`, checked before a child is started."""
    return not ('"""' in text or "'''" in text or text.startswith("\ufeff"))


def shallow(text: str) -> bool:
    """True when no line of ``text`` nests deeper than :data:`MAX_PER_LINE` and every line closes what it opens.

    Sound for the parser's recursion depth: outside multi-line strings (refused here), TOML strings and comments
    end on their line, so stripping them as TOML's lexer reads them leaves the code of each line. A line whose
    brackets do not balance either errs (the parser stops) or opens a multi-line array (refused here); so every
    line starts at depth 0, and within a line the parser nests at most once per opening bracket and per dot of
    a dotted key (table header and key together: at most 3 x MAX_PER_LINE levels). A leading byte-order mark
    is refused too (``toml_rs`` accepts it, ``tomllib`` does not).
    """
    if not _sendable(text):
        return False
    # Only what counts is kept (a few bytes a line; UTF-8 never hides these bytes inside another character).
    kept = _NOT_CODE.sub("", text).encode("utf-8", errors="replace").translate(None, _UNCOUNTED)
    for line in set(kept.split(b"\n")):  # each distinct line once: a large spec repeats a few shapes
        if line:
            opened = line.count(b"[") + line.count(b"{")
            if opened > MAX_PER_LINE or line.count(b".") > MAX_PER_LINE:
                return False
            if opened != line.count(b"]") + line.count(b"}"):
                return False
    return True


_folder: list[str | None] = []


def _toml_rs_folder() -> str | None:
    """The folder ``toml_rs`` is installed in, found without importing it here (it is imported only in the child)."""
    if not _folder:
        try:
            found = importlib.util.find_spec("toml_rs")
        except (ImportError, ValueError):
            found = None
        origin = found.origin if found is not None else None
        _folder.append(str(Path(origin).parent.parent) if origin else None)
    return _folder[0]
