"""Planning helpers: the desired resources of an environment, and the secrets a plan would miss.

The plan itself is made by :func:`railguard.engine.usecases.plan` (gather facts once, observe,
plan as a pure function of spec and store, save). What is here is shared with ``status``, which
compares the spec on disk with what was applied.
"""

from __future__ import annotations

from railguard.engine.facts import Facts
from railguard.engine.workspace import Workspace
from railguard.model.diagnostics import Diagnostic, error
from railguard.model.resources import Resource
from railguard.model.spec import Spec


def desired_for(ws: Workspace, spec: Spec, env: str, secret_versions: dict[str, int] | None = None,
                source_overrides: dict[str, str] | None = None) -> list[Resource]:
    """The desired resources of ``env``, including the digest of the app source as it is now."""
    return Facts(ws, spec).desired(env, secret_versions, source_overrides)


def missing_secrets(spec: Spec, env: str, versions: dict[str, int]) -> list[Diagnostic]:
    found = []
    for name in sorted(spec.services):
        for secret in spec.resolved_service(env, name).secrets:
            if secret not in versions:
                found.append(error(
                    "secret.missing", f"Secret {secret} has no value in '{env}'",
                    f"Service '{name}' declares the secret {secret}, but none was set for '{env}', so its "
                    "replicas could not start with it.",
                    f"Run `railguard secret set {secret} --env {env}` (the value is read from stdin or a prompt).",
                    address=f"{env}/service.{name}"))
    return found
