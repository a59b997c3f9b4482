"""Rendering for people (rich) and for agents (``--json``).

Every command produces one result: a payload plus diagnostics. With ``--json`` the
result is printed as one JSON document on stdout (``ok``, ``diagnostics`` and the
payload); otherwise diagnostics go to stderr in the Terraform style (severity and
summary, then location, detail, the last lines of a failure's log, and what to do) and the payload is rendered by the
command. :func:`guarded` turns any :class:`RailguardError` into that output and an
exit code, so no traceback reaches a user for a user mistake; :func:`usage_error` does the
same for a command line that does not parse (exit 64, ``cli.usage``).
"""

from __future__ import annotations

import functools
import os
import re
import traceback
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar, cast

import typer
from typer._click.exceptions import UsageError  # typer vendors click; its public API exports no UsageError

from railguard.cli.fastpath import emit_json as emit_json  # the commands' import of it (defined without typer)
from railguard.model.diagnostics import Diagnostic, RailguardError, Severity, error

if TYPE_CHECKING:
    from railguard.cli.terminal import SafeConsole


_BREAKS = re.compile(r"\r\n|[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` (an agent's or app's) as one line of a screen: each line break shown as a visible ``⏎``, so it
    cannot print what looks like another line of a plan (the rest is cleaned when rendered: cli/terminal.py)."""
    return _BREAKS.sub("⏎", text)


def escape(text: str) -> str:
    """Rich's markup escape, Rich imported on first use (see :class:`_OnFirstUse`)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


class _OnFirstUse:
    """A :class:`SafeConsole` made when it is first used: a command answering ``--json`` never imports Rich, a
    good part of its start-up time (bench/deploy_timing.py)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: SafeConsole | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from railguard.cli.terminal import SafeConsole

            self._console = SafeConsole(**self._options)
        return getattr(self._console, name)


# Both strip control characters from what they render: much of it is text an agent or an app chose. No emoji
# codes: "settings.py:100: ..." printed a 💯 in place of the line number (and an app's ":fire:" is its text).
out = cast("SafeConsole", _OnFirstUse(highlight=False, soft_wrap=True, emoji=False))
err = cast("SafeConsole", _OnFirstUse(stderr=True, highlight=False, soft_wrap=True, emoji=False))

_COLOURS = {Severity.error: "red", Severity.warning: "yellow", Severity.info: "cyan"}

# Exit codes (README, "Exit codes"): 0 ok, 1 failed, 2 changes (plan --detailed-exitcode) or a failed
# doctor check, 64 the command line does not parse (EX_USAGE), 70 a bug in Railguard, 130 interrupted.
EXIT_USAGE = 64
LOG_TAIL_LINES = 20  # of a failure's log tail, shown under its diagnostic

P = ParamSpec("P")
R = TypeVar("R")


def diagnostics_json(diagnostics: Iterable[Diagnostic]) -> list[dict[str, Any]]:
    return [d.model_dump(mode="json") for d in diagnostics]


def print_diagnostics(diagnostics: Iterable[Diagnostic]) -> None:
    for d in diagnostics:
        colour = _COLOURS[d.severity]
        label = d.severity.value.capitalize()
        # A summary is one line by contract; parts of some are the app's words (file names, exit messages).
        err.print(f"[bold {colour}]{label}:[/] [bold]{escape(one_line(d.summary))}[/]  [dim]({d.code})[/]")
        where = []
        if d.file:
            where.append(f"{d.file}:{d.line}" if d.line else d.file)
        if d.address:
            where.append(d.address)
        if where:
            err.print(f"  [dim]on[/] {escape(' — '.join(where))}")
        # Every line of the detail indented under its diagnostic: a line break in the app's words (a failing
        # check's response) cannot start a line that reads as Railguard's own.
        for line in _BREAKS.split(d.detail):
            err.print(f"  {escape(line)}")
        _print_log_tail(d)
        err.print(f"  [bold]→[/] {escape(d.remediation)}")
        err.print()


def _print_log_tail(d: Diagnostic) -> None:
    """The cause is usually in the output: a build's resolver error, a crash's traceback (redacted by the daemon)."""
    lines = d.extra.get("log_tail")
    if not isinstance(lines, list) or not lines:
        return
    shown = [str(line) for line in lines[-LOG_TAIL_LINES:]]
    err.print(f"  [dim]last {len(shown)} log line{'s' if len(shown) != 1 else ''}:[/]")
    for line in shown:
        err.print(f"  [dim]│[/] {escape(line)}")


def finish(as_json: bool, diagnostics: list[Diagnostic], payload: dict[str, Any] | None = None,
           code: int | None = None) -> None:
    """Print the result and exit: 1 when any diagnostic is an error, else ``code`` or 0."""
    failed = any(d.is_error for d in diagnostics)
    if as_json:
        emit_json({"ok": not failed, "diagnostics": diagnostics_json(diagnostics), **(payload or {})})
    else:
        print_diagnostics(diagnostics)
    raise typer.Exit(1 if failed else (code or 0))


def guarded(as_json_param: str = "as_json") -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: RailguardError → diagnostics + exit 1; a bug → ``internal.error`` + exit 70."""

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def inner(*args: P.args, **kwargs: P.kwargs) -> R:
            as_json = bool(kwargs.get(as_json_param, False))
            try:
                return fn(*args, **kwargs)
            except (typer.Exit, typer.Abort, KeyboardInterrupt):
                raise
            except Exception as exc:
                failed(exc, as_json)

        return inner

    return wrap


def failed(exc: Exception, as_json: bool) -> NoReturn:
    """Print a command's failure and exit (raises ``typer.Exit``): a :class:`RailguardError`'s diagnostics and 1,
    anything else ``internal.error`` and 70 (the last line of defence: never a raw traceback). Used by
    :func:`guarded` and :mod:`railguard.cli.fastpath`."""
    if isinstance(exc, RailguardError):
        finish(as_json, list(exc.diagnostics))
    if os.environ.get("RAILGUARD_DEBUG"):
        traceback.print_exception(exc)
    finish(as_json, [error(
        "internal.error", "Railguard hit an internal error",
        f"{type(exc).__name__}: {exc}. This is a bug in Railguard, not in your input.",
        "Re-run with RAILGUARD_DEBUG=1 to see the traceback and report it.",
    )], code=70)
    raise AssertionError("unreachable")


def usage_error(exc: UsageError, as_json: bool) -> NoReturn:
    """A command line that does not parse: exit 64, as one JSON diagnostic with ``--json``.

    Click's own exit code (2) would read as "changes" to CI running ``plan --detailed-exitcode``.
    """
    where = exc.ctx.command_path if exc.ctx is not None else "railguard"
    if as_json:
        emit_json({"ok": False, "diagnostics": diagnostics_json([error(
            "cli.usage", "The command line does not parse", exc.format_message(),
            f"Run `{where} --help` for the options and arguments it takes.", extra={"command": where})])})
    else:
        from typer import rich_utils

        rich_utils.rich_format_error(exc)
    raise SystemExit(EXIT_USAGE)
