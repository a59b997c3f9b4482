"""Turn the text of ``railguard.toml`` into a :class:`Spec` and diagnostics.

All structural problems are reported at once (pydantic collects them), each with
the key path, file and line, and, for unknown keys, a "did you mean" suggestion.
When the structure is sound, the cross-field checks of
:mod:`railguard.model.checks` run too. Called by the engine's workspace loader
(:mod:`railguard.engine.workspace`: ``railguard validate``, every command that reads the spec, and the
daemon when it plans a proposed spec text sent by an agent) and by the MCP server's spec tools, which
validate a proposed text in-process. Pure: no I/O.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import types
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from railguard.model import checks, counters
from railguard.model.diagnostics import Diagnostic, error
from railguard.model.spec import DURATION_ERROR, Spec
from railguard.model.speclimit import MAX_SPEC_BYTES as MAX_SPEC_BYTES  # its tests' import of it
from railguard.model.tomllines import LineIndex

_DOCS = "See `railguard schema` for every field, or docs/spec.md."


def dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _unwrap(annotation: Any) -> Any:
    """Strip Optional/Annotated wrappers to reach the model, dict or list underneath."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0] if len(args) == 1 else annotation
            if len(args) != 1:
                return annotation
        else:
            return annotation


def _fields_at(path: tuple[str | int, ...]) -> list[str]:
    """Field names the schema allows at ``path`` (for "did you mean")."""
    current: Any = Spec
    parts = list(path)
    while parts:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(parts.pop(0)))
            if field is None:
                return []
            current = field.annotation
        elif typing.get_origin(current) is dict:
            parts.pop(0)
            current = typing.get_args(current)[1]
        elif typing.get_origin(current) is list:
            parts.pop(0)
            current = typing.get_args(current)[0]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _from_validation_error(exc: ValidationError, lines: LineIndex, file: str | None) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for err in exc.errors(include_url=False):
        loc: tuple[str | int, ...] = tuple(err["loc"])
        kind = err["type"]
        # pydantic marks a bad dict key with a trailing "[key]"; a user's own key spelled "[key]"
        # arrives as an unknown key instead, so only a key-validation error counts as the marker.
        is_key = len(loc) >= 2 and loc[-1] == "[key]" and kind != "extra_forbidden"
        path = loc[:-1] if is_key else loc
        # pydantic reports model-level validators at the model's own path; keep them there.
        where = dotted(path) or "(top level)"
        line = lines.line_of(path)
        message = str(err["msg"]).removeprefix("Value error, ")
        common: dict[str, Any] = {"address": where, "file": file, "line": line}
        if kind == "extra_forbidden":
            key = str(path[-1])
            allowed = _fields_at(path[:-1])
            guess = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f"Did you mean '{guess[0]}'? " if guess else ""
            allowed_text = ", ".join(allowed) if allowed else "none"
            found.append(error(
                "spec.unknown_key", f"Unknown key '{key}'",
                f"The key '{where}' is not part of the spec schema. Allowed keys here: {allowed_text}.",
                f"{hint}Rename or remove the key, then run `railguard validate`. {_DOCS}",
                extra={"suggestion": guess[0] if guess else None}, **common,
            ))
        elif kind == "missing":
            found.append(error(
                "spec.missing_key", f"Missing required key '{path[-1]}'",
                f"The key '{where}' is required and was not given.",
                f"Add '{path[-1]}' there, then run `railguard validate`. {_DOCS}", **common,
            ))
        elif is_key or (kind == "string_pattern_mismatch" and _is_name(path)):
            found.append(error(
                "spec.invalid_name", f"'{path[-1]}' is not a safe name",
                f"Names of apps, environments and services must start with a lowercase letter and contain "
                f"only lowercase letters, digits and '-', at most 40 characters; '{path[-1]}' does not. "
                "Such names end up in file paths, process titles and addresses, so anything else is refused.",
                "Rename it, for example to "
                f"'{_suggest_name(str(path[-1]))}', then run `railguard validate`.", **common,
            ))
        elif kind == DURATION_ERROR:
            found.append(error(
                "spec.invalid_duration", f"Bad duration at '{where}'",
                f"{message[0].upper()}{message[1:]}.",
                "Use a number followed by ms, s, m or h (e.g. '30s'), then run `railguard validate`.", **common,
            ))
        else:
            found.append(error(
                "spec.invalid_value", f"Invalid value at '{where}'",
                f"{message[0].upper()}{message[1:]} (got {_short(err.get('input'))}).",
                f"Fix the value, then run `railguard validate`. {_DOCS}", **common,
            ))
    return found


def _is_name(path: tuple[str | int, ...]) -> bool:
    return path[-1:] in (("name",),) or (len(path) >= 2 and path[-2] == "depends_on")


def _suggest_name(bad: str) -> str:
    cleaned = "".join(c if c.isalnum() else "-" for c in bad.lower()).strip("-")
    cleaned = cleaned.lstrip("0123456789-") or "svc"
    return cleaned[:40]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_spec(text: str, file: str | None = None,
               loads: Callable[[str], dict[str, Any]] = tomllib.loads) -> tuple[Spec | None, list[Diagnostic]]:
    """Parse and validate a spec text. Returns the spec (None on errors) and all diagnostics.

    ``loads``: ``tomllib.loads`` or a function that returns its value or raises its exception for every text
    (the engine's :func:`railguard.engine.tomlchild.loads`, which parses large texts in a child process)."""
    counters.bump("spec-parse")
    if len(text.encode("utf-8", errors="replace")) > MAX_SPEC_BYTES:
        return None, [too_large(file)]
    try:
        raw = loads(text)
    except RecursionError:  # tomllib recurses per nesting level: a hostile spec nests 60,000 arrays
        return None, [_too_deep(file)]
    except tomllib.TOMLDecodeError as exc:
        # Python 3.11's TOMLDecodeError has no lineno attribute; the message ends "(at line N, column M)".
        found_line = re.search(r"at line (\d+)", str(exc))
        line = int(found_line.group(1)) if found_line else None
        return None, [error(
            "spec.toml_syntax", "The spec is not valid TOML",
            f"The TOML parser stopped: {exc}.",
            "Fix the syntax at the given line (https://toml.io), then run `railguard validate`.",
            file=file, line=line,
        )]
    lines = LineIndex(text)
    try:
        spec = Spec.model_validate(raw)
    except ValidationError as exc:
        return None, _from_validation_error(exc, lines, file)
    except RecursionError:
        return None, [_too_deep(file)]
    found = [d.model_copy(update={"file": file, "line": d.line or _line_for(d, lines)})
             for d in checks.check(spec)]
    return (spec, found)


def too_large(file: str | None) -> Diagnostic:
    """A spec text (or file) over :data:`MAX_SPEC_BYTES`."""
    return error("spec.too_large", "Spec is too large",
                 f"The spec is larger than {MAX_SPEC_BYTES} bytes, which no real app needs.",
                 "Check that the right file is given.", file=file)


def _too_deep(file: str | None) -> Diagnostic:
    return error("spec.toml_syntax", "The spec is nested too deeply",
                 "Its arrays or tables nest deeper than the parser follows; no real spec needs that.",
                 "Flatten the nesting (or check that the right file is given), then run `railguard validate`.",
                 file=file)


def _line_for(diag: Diagnostic, lines: LineIndex) -> int | None:
    if not diag.address:
        return None
    path = tuple(int(p) if p.isdigit() else p for p in diag.address.replace("[", ".").replace("]", "").split("."))
    return lines.line_of(path)
