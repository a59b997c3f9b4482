"""Gathering facts: what a provider reports as live, plus what the engine itself keeps.

Providers report services and edges. The environment resource (protection, freezes,
policies) has no runtime: it is live once applied, so the engine keeps it in the
store's inventory across observations. Every plan, apply, rollback, status and
recovery observes through :func:`observe_into`.
"""

from __future__ import annotations

from railguard.model.diagnostics import Diagnostic
from railguard.model.resources import ObservedResource, Resource, environment_address
from railguard.providers.base import ObserveRequest, Provider
from railguard.state.store import Store

ENGINE_KINDS = {"environment"}


def observe_into(store: Store, provider: Provider, env: str, desired: list[Resource] | None = None,
                 problems: list[Diagnostic] | None = None) -> list[ObservedResource]:
    """Observe ``env`` and record it (the serial moves when anything changed); return what is live.

    ``desired``: the resources a plan is about, so the provider knows the environment's target and may check
    them against the live state (a cluster's server-side dry-run); what it finds is added to ``problems``."""
    live = observed(store, provider, env, desired, problems)
    store.record_observed(env, live)
    return live


def observe_for_plan(store: Store, provider: Provider | None, env: str, desired: list[Resource] | None = None,
                     problems: list[Diagnostic] | None = None) -> tuple[list[ObservedResource], int]:
    """What a plan is made against: ``env``'s inventory as the store holds it (observed and recorded first
    when a ``provider`` is given) and the serial of that inventory, which the plan binds to.

    The inventory is the provider's own objects when each is exactly what the store reads back (a
    10,000-service inventory is not parsed again: ~0.1 s, and a second copy of it in memory), else the store's
    rows. The serial is never newer than the inventory: anything recorded after it makes the plan stale."""
    if provider is not None:
        live = observed(store, provider, env, desired, problems)
        recorded = store.record_live(env, live, {r.address: r for r in desired or []})
        if recorded.as_read:
            return live, recorded.serial
        del live
    serial = store.serial(env)  # read first: a move between the two reads leaves the plan stale, not wrong
    return store.inventory(env), serial


def observed(store: Store, provider: Provider, env: str, desired: list[Resource] | None = None,
             problems: list[Diagnostic] | None = None, fresh: bool = False) -> list[ObservedResource]:
    """What is live in ``env``, without recording it: for reads (status), which must not write the store.
    ``fresh``: nothing answered from the provider's memory (:class:`~railguard.providers.base.ObserveRequest`)."""
    answer = provider.observe(ObserveRequest(env=env, desired=desired or [], fresh=fresh))
    if problems is not None:
        problems.extend(answer.diagnostics)
    reported = [r for r in answer.resources if r.kind not in ENGINE_KINDS]
    # The environment resource is the only engine kind, at one address: read that row, not the whole inventory.
    kept = [r for r in [store.inventory_at(env, environment_address(env))] if r is not None and r.kind in ENGINE_KINDS]
    return sorted(reported + kept, key=lambda r: r.address)


def state_protected(store: Store, env: str) -> bool:
    """Whether the environment is protected in state (what was applied), whatever the spec says now."""
    found = store.inventory_at(env, environment_address(env))  # one row, not every service of the inventory
    return bool(found and found.config.get("protected"))
