"""Spec tools: validate a spec (on disk or proposed text) and read the spec's JSON Schema.

These run in the server itself, without the daemon: validating is pure (parse + checks) and the
schema is a constant, so a model can iterate on a spec while the daemon is down. The parser is
imported on first use to keep the idle server small. Registered in :mod:`railguard.mcp.catalog`.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from railguard.mcp.catalog import tool
from railguard.mcp.inputs import NoArgs, ValidateArgs
from railguard.mcp.outputs import Schema, Validate
from railguard.mcp.results import Call, Outcome, act
from railguard.model.diagnostics import has_errors
from railguard.model.principals import Permission

if TYPE_CHECKING:
    from railguard.mcp.gateway import Gateway

MAX_SHOWN = 50


def spec_environments(gw: Gateway) -> list[str] | None:
    """The environment names of the spec on disk, unprotected first; None when it cannot be read."""
    found = gw.environments()
    return None if found is None else sorted(found, key=lambda name: (found[name], name))


@tool("validate_spec", title="Validate a spec", inputs=ValidateArgs, outputs=Validate,
      permission=Permission.read, read_only=True, idempotent=True, needs_daemon=False)
async def validate_spec(call: Call, args: ValidateArgs) -> Outcome:
    """Check a railguard.toml and report every problem at once, each with its line and remediation. Pass
    `spec_text` to check a proposed spec; omit it to check the spec file on disk. Does not need the daemon."""
    from railguard.model.specfile import parse_spec

    if args.spec_text is None:
        parsed, diagnostics = call.gw.ws.load()
        shown_file = str(call.gw.ws.spec_path)
    else:
        shown_file = f"{call.gw.ws.spec_path.name} (proposed)"
        parsed, diagnostics = parse_spec(args.spec_text, file=shown_file)
    valid = parsed is not None and not has_errors(diagnostics)
    errors = sum(1 for d in diagnostics if d.is_error)
    payload = Validate(valid=valid, file=shown_file, environments=sorted(parsed.environments) if parsed else [],
                       services=sorted(parsed.services) if parsed else [])
    if not valid:
        return Outcome(f"Invalid: {errors} error(s) in {shown_file}.", payload, diagnostics[:MAX_SHOWN], error=True)
    actions = []
    if args.spec_text is None and parsed is not None:
        first = sorted(parsed.environments, key=lambda n: (parsed.environments[n].protected, n))[0]
        actions.append(act("plan", "See what it would change.", env=first))
    hint = "" if args.spec_text is None else " Plan it with `plan` and the same `spec_text`."
    return Outcome(f"Valid: {len(parsed.services) if parsed else 0} service(s), "
                   f"{len(parsed.environments) if parsed else 0} environment(s).{hint}",
                   payload, diagnostics[:MAX_SHOWN], actions)


@functools.cache
def _spec_schema() -> dict[str, Any]:
    """Generated once per server: pydantic builds it anew on every call (~25 ms), and it never changes."""
    from railguard.model.spec import json_schema

    return json_schema()


@tool("get_spec_schema", title="Spec JSON Schema", inputs=NoArgs, outputs=Schema,
      permission=Permission.read, read_only=True, idempotent=True, needs_daemon=False)
async def get_spec_schema(call: Call, args: NoArgs) -> Outcome:
    """The JSON Schema of railguard.toml: every key, its type, default and meaning. Also the resource
    railguard://spec/schema."""
    return Outcome("The JSON Schema of railguard.toml.", Schema(json_schema=_spec_schema()),
                   next_actions=[act("validate_spec", "Check a spec against it, with line numbers.")])
