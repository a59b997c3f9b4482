"""Rollback: run an earlier release again, exactly as it ran.

The target release's frozen desired resources (artifact digest, resolved config) are
planned against the live state like any spec, and the changes run through the same
journaled executor, so a rollback is an operation and a new release entry: history
stays linear. The local provider makes it instant when the target's replicas are
still warm; otherwise they are started from the release's artifact and health-gated.
Nothing is rebuilt from the working tree. Called by the daemon for ``railguard rollback``.
"""

from __future__ import annotations

from typing import Any

from railguard.engine import planner
from railguard.engine.apply import execute
from railguard.engine.execute import Context
from railguard.engine.observe import observe_into
from railguard.model.diagnostics import RailguardError, error
from railguard.model.resources import Resource
from railguard.providers.base import Provider
from railguard.state.store import Store


def pick_target(store: Store, env: str, to: int | None) -> dict[str, Any]:
    releases = store.releases(env, limit=1_000_000)
    if to is not None:
        found = next((r for r in releases if r["number"] == to), None)
        if found is None or found["status"] == "failed" or found["status"] == "pending":
            raise RailguardError(error(
                "rollback.no_target", f"Release {to} cannot be rolled back to",
                f"Environment '{env}' has " + (f"release {to} with status {found['status']}; only releases that "
                                               "ran healthy can be restored." if found else f"no release {to}."),
                f"List releases with `railguard releases --env {env}` and pick one marked live or superseded.",
                address=f"{env}/release.{to}"))
        return found
    live = next((r for r in releases if r["status"] == "live"), None)
    candidates = [r for r in releases if r["status"] == "superseded"
                  and (live is None or r["number"] < live["number"])
                  and (live is None or r["services"] != live["services"])]
    if not candidates:
        raise RailguardError(error(
            "rollback.no_target", "There is no earlier healthy release",
            f"Environment '{env}' has no superseded release that differs from the live one, so there is "
            "nothing to roll back to.",
            f"List releases with `railguard releases --env {env}`; deploy a fix with `railguard plan`.",
            address=env))
    return candidates[0]


def rollback(store: Store, env: str, provider: Provider, principal: str, ctx: Context, to: int | None = None,
             op_id: str | None = None) -> dict[str, Any]:
    with store.lock(operation=f"rollback {env}"):
        target = pick_target(store, env, to)
        desired = [Resource.model_validate(r) for r in target["desired"]]
        observe_into(store, provider, env)
        computed = planner.plan(env, desired, store.inventory(env), store.serial(env))
        return execute(store, env=env, kind="rollback", plan_id=None, changes=computed.changes, desired=desired,
                       provider=provider, principal=principal, ctx=ctx, source=target.get("source"),
                       rollback_of=target["number"], op_id=op_id)
