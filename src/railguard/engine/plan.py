"""Making a plan: load the spec, observe the live state, run the planner, save.

The two phases of pyinfra: gather facts (the provider's ``observe``, recorded in the
store, which bumps the environment's serial when the live state moved), then compute
the plan as a pure function of spec and store. Nothing is written when the spec has
errors. Called by the daemon (:meth:`railguard.daemon.service.Daemon.plan`), which serves
``railguard plan``, ``deploy`` and ``promote`` and the MCP server's plan tools;
:func:`desired_for` also by the daemon before it queues an apply.
"""

from __future__ import annotations

from railguard.engine import planner
from railguard.engine.guard import with_verdicts
from railguard.engine.observe import observe_into
from railguard.engine.workspace import Workspace, require_env
from railguard.model.diagnostics import Diagnostic, RailguardError, error
from railguard.model.plans import Plan
from railguard.model.principals import Principal
from railguard.model.resources import Resource, desired_resources
from railguard.model.spec import Spec
from railguard.providers.base import Provider
from railguard.sources.snapshot import snapshot
from railguard.state import secretstore
from railguard.state.store import Store, new_id


def desired_for(ws: Workspace, spec: Spec, env: str, secret_versions: dict[str, int] | None = None,
                source_overrides: dict[str, str] | None = None) -> list[Resource]:
    """The desired resources of ``env``, including the digest of the app source as it is now."""
    source_root = (ws.root / spec.app.source).resolve()
    if not source_root.is_dir():
        raise RailguardError(error(
            "spec.invalid_value", "The app source folder does not exist",
            f"[app].source points at {source_root}, which is not a folder.",
            "Fix app.source in the spec (it is relative to the spec file), then run `railguard validate`.",
            address="app.source",
        ))
    try:
        digest = snapshot(source_root).digest
    except (OSError, ValueError) as exc:
        raise RailguardError(error(
            "spec.invalid_value", "The app source could not be read",
            f"Snapshotting {source_root} failed: {exc}.",
            "Check file permissions, or exclude the files in .railguardignore.", address="app.source",
        )) from exc
    return desired_resources(spec, env, digest, secret_versions, source_overrides)


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


def make_plan(ws: Workspace, env: str) -> Plan:
    """Plan without a daemon: the store's inventory stands for the live state (tests, offline review)."""
    store = ws.open_store()
    try:
        return make_plan_with(ws, env, store, None)
    finally:
        store.close()


def make_plan_with(ws: Workspace, env: str, store: Store, provider: Provider | None,
                   principal: Principal | None = None, source_overrides: dict[str, str] | None = None) -> Plan:
    """Observe through ``provider`` (when given) into ``store``, plan, evaluate policy, and save the plan."""
    spec, warnings = ws.load_valid()
    require_env(spec, env)
    versions = secretstore.versions(store, env)
    desired = desired_for(ws, spec, env, versions, source_overrides)
    if provider is not None:
        observe_into(store, provider, env)
    computed = planner.plan(env, desired, store.inventory(env), store.serial(env))
    problems = [*warnings, *missing_secrets(spec, env, versions), *computed.diagnostics]
    computed = computed.model_copy(update={"diagnostics": problems, "id": new_id("plan")})
    if principal is not None:
        computed = with_verdicts(store, computed, principal)
    return store.save_plan(computed)
