"""Cross-field rules of the verification settings (``verify``, ``on_regression``, ``thresholds``).

A verification window longer than the environment's rollback window cannot work: the previous
release would be stopped before the verdict, so "roll back while warm" would have nothing warm to
go back to. Only a window someone wrote down is an error: the default (60 s) is capped at the
rollback window instead (:func:`effective_verify_ms`), so ``rollback_window = "0s"`` alone stays valid.
Called by :func:`railguard.model.checks.check` for every service in every environment.
"""

from __future__ import annotations

from collections.abc import Iterator

from railguard.model.diagnostics import Diagnostic, error
from railguard.model.durations import parse_ms
from railguard.model.spec import Spec


def explicit_verify(spec: Spec, env: str, name: str) -> bool:
    override = spec.environments[env].services.get(name)
    return "verify" in spec.services[name].model_fields_set or (
        override is not None and getattr(override, "verify", None) is not None)


def effective_verify_ms(spec: Spec, env: str, name: str) -> int:
    """The verification window of ``name`` in ``env``: as written, or the default capped at the rollback window."""
    verify_ms = parse_ms(spec.resolved_service(env, name).verify)
    if explicit_verify(spec, env, name):
        return verify_ms
    return min(verify_ms, parse_ms(spec.environments[env].rollback_window))


def verification(spec: Spec) -> Iterator[Diagnostic]:
    for env_name, env in spec.environments.items():
        window_ms = parse_ms(env.rollback_window)
        for name in spec.services:
            service = spec.resolved_service(env_name, name)
            verify_ms = parse_ms(service.verify)
            # The window first: it rules out nearly every service of a large spec before the override lookup.
            if (verify_ms > window_ms and verify_ms > 0 and service.on_regression == "rollback"
                    and explicit_verify(spec, env_name, name)):
                yield error(
                    "spec.verify_window", f"'{name}' in '{env_name}' is verified longer than it can be rolled back",
                    f"services.{name}.verify is {service.verify} but environments.{env_name}.rollback_window is "
                    f"{env.rollback_window}: the previous release stops before the verdict, so an automatic "
                    "rollback would have nothing warm to go back to.",
                    f"Shorten verify, lengthen environments.{env_name}.rollback_window, or set "
                    "on_regression = \"alert\"; then run `railguard validate`.",
                    address=f"services.{name}.verify")
