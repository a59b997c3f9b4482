"""MCP resources (the spec's JSON Schema, the current spec) and the ``safe_first_deploy`` prompt.

Resources are read in the server: the schema is a constant and the spec is the file the server was
started for (it holds no secret values: those live encrypted in the daemon's store and are declared
in the spec by name only). The prompt walks a model through validate → plan → review → apply →
follow → check, and says plainly that approving is a person's job. Used by :mod:`railguard.mcp.server`.
"""

from __future__ import annotations

import json

import mcp_types as types
from mcp.shared.exceptions import MCPError

from railguard.mcp.gateway import Gateway
from railguard.model.diagnostics import RailguardError

SCHEMA_URI = "railguard://spec/schema"
SPEC_URI = "railguard://spec/current"
MAX_SPEC_BYTES = 1_000_000
PROMPT = "safe_first_deploy"


def listing(gw: Gateway) -> types.ListResourcesResult:
    return types.ListResourcesResult(resources=[
        types.Resource(uri=SCHEMA_URI, name="spec-schema", title="JSON Schema of railguard.toml",
                       description="Every key of the spec: type, default, meaning.", mime_type="application/json"),
        types.Resource(uri=SPEC_URI, name="spec", title=f"The current spec ({gw.ws.spec_path.name})",
                       description=f"The spec file this server works with: {gw.ws.spec_path}.",
                       mime_type="application/toml"),
    ])


def read(gw: Gateway, uri: str) -> types.ReadResourceResult:
    if uri == SCHEMA_URI:
        from railguard.model.spec import json_schema

        text = json.dumps(json_schema(), indent=2)
        return types.ReadResourceResult(contents=[types.TextResourceContents(uri=uri, mime_type="application/json",
                                                                             text=text)])
    if uri == SPEC_URI:
        try:
            text = gw.ws.read_spec_text()
        except RailguardError as exc:
            d = exc.diagnostics[0]
            raise MCPError(types.INVALID_PARAMS, f"{d.code}: {d.summary}. {d.remediation}") from exc
        if len(text.encode()) > MAX_SPEC_BYTES:
            text = text[:MAX_SPEC_BYTES] + "\n# … cut: the spec is larger than 1 MB\n"
        return types.ReadResourceResult(contents=[types.TextResourceContents(uri=uri, mime_type="application/toml",
                                                                             text=text)])
    raise MCPError(types.INVALID_PARAMS, f"Unknown resource {uri!r}; this server has {SCHEMA_URI} and {SPEC_URI}.")


def prompts() -> types.ListPromptsResult:
    return types.ListPromptsResult(prompts=[types.Prompt(
        name=PROMPT, title="A safe first deploy",
        description="Walks through validate, plan, review, apply, follow and check, for one environment.",
        arguments=[types.PromptArgument(name="env", description="Environment to deploy (default: staging).",
                                        required=False)])])


def prompt(name: str, arguments: dict[str, str] | None) -> types.GetPromptResult:
    if name != PROMPT:
        raise MCPError(types.INVALID_PARAMS, f"Unknown prompt {name!r}; this server has {PROMPT!r}.")
    env = (arguments or {}).get("env") or "staging"
    text = f"""Deploy this app to the '{env}' environment with Railguard, safely. Use the railguard tools; follow
their `next_actions` and read every diagnostic's remediation.

1. `whoami`: see your role and the environments. Read the resource {SPEC_URI} (the spec) and, if you edit it,
   {SCHEMA_URI} (its schema).
2. `validate_spec`: fix every error it reports before going on (pass `spec_text` to check a proposal).
3. `plan` with env "{env}": read each change's action, reason and risk, and the policy verdicts. A
   `replace` restarts processes (blue-green: the old release keeps serving until the new one is healthy);
   a `delete` removes a service and its traffic. If the plan is not what you intended, change the spec and
   plan again. Do not apply a plan you have not read.
4. If the decision is `require_approval`, call `request_approval` and stop: a person approves with
   `railguard approve` on a terminal. You cannot approve, and you must not ask the user to paste anything
   that would approve on their behalf. Check `approval_status` later.
5. `apply_plan` with the plan id and env "{env}": it returns an operation id at once.
6. `get_operation` with a wait until it ends. If it failed, call `diagnose` with the operation id and do what
   its next actions say: usually read the logs and fix the cause (traffic did not move), or roll back.
7. `get_status`: every service should be healthy. Report the URL and the release number to the user.

Never try to get around a refusal (`auth.forbidden`, `policy.denied`, `policy.approval_required`): report it
to the user with its remediation."""
    return types.GetPromptResult(description=f"A safe first deploy to {env}", messages=[
        types.PromptMessage(role="user", content=types.TextContent(text=text))])
