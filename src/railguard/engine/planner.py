"""The planner: a pure function from (desired resources, observed resources) to a plan.

No I/O and no provider calls: observation happened before, into the store. Each
resource gets exactly one change with an action, a reason, a risk class and a
redacted diff (a create's is implied by its desired config: plan format 2); the
order respects ``depends_on`` (creates and updates after what they need, deletes
before what they needed). Golden files under tests/golden/plans
pin the behaviour. Called by :mod:`railguard.engine.plan`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from railguard.model.diagnostics import Diagnostic, error
from railguard.model.graph import find_cycle, ordered, topological_order
from railguard.model.plans import Action, Change, FieldDiff, Plan, Risk, diff_configs, flatten
from railguard.model.resources import LiveStatus, ObservedResource, Resource, desired_digest

__all__ = ["REPLACE_KEYS", "diff_configs", "flatten", "plan"]  # flatten and diff_configs live with the plan model

# Service keys whose change needs new processes (a new release); the rest apply in place.
REPLACE_KEYS = {"build", "run", "release", "env", "secrets", "secret_versions", "listen", "port_env", "source",
                "data_dir", "databases", "user",
                "image", "resources", "kubernetes",  # a Kubernetes service's pod template: a new ReplicaSet
                "template_drift"}  # someone else changed that template: putting it back starts new pods


def _top_keys(diff: Iterable[FieldDiff]) -> set[str]:
    return {d.path.split(".", 1)[0] for d in diff}


def _service_change(want: Resource, have: ObservedResource, diff: list[FieldDiff]) -> tuple[Action, str, Risk]:
    keys = _top_keys(diff)
    listed = ", ".join(sorted(keys))
    before_replicas, after_replicas = have.config.get("replicas", 0), want.config.get("replicas", 0)
    if keys & REPLACE_KEYS:
        replaced = ", ".join(sorted(keys & REPLACE_KEYS))
        if after_replicas == 0 and before_replicas > 0:  # a replace must not hide that serving stops
            return (Action.replace, f"{replaced} changed and replicas drop to 0: the service stops serving",
                    Risk.destructive)
        return (Action.replace, f"{replaced} changed; new replicas are started beside the old ones and "
                "traffic switches once they are healthy", Risk.disruptive)
    if after_replicas == 0 and before_replicas > 0:
        return Action.update, "replicas drop to 0: the service stops serving", Risk.destructive
    if after_replicas < before_replicas:
        return Action.update, f"replicas shrink from {before_replicas} to {after_replicas}", Risk.disruptive
    if "health" in keys and not want.config.get("health"):
        return Action.update, "the health check is removed: failures will no longer be detected", Risk.disruptive
    if "routes" in keys and _removed(have.config.get("routes"), want.config.get("routes")):
        return Action.update, "routes are removed: their traffic will no longer reach the service", Risk.disruptive
    return Action.update, f"{listed} changed; applied in place without restarting replicas", Risk.safe


def _removed(before: Any, after: Any) -> bool:
    return any(item not in (after or []) for item in (before or []))


def _edge_change(want: Resource, have: ObservedResource, diff: list[FieldDiff]) -> tuple[Action, str, Risk]:
    if have.config.get("port") != want.config.get("port"):
        return (Action.replace, f"edge port changes from {have.config.get('port')} to {want.config.get('port')}: "
                "clients of the old port lose access", Risk.disruptive)
    if _removed(have.config.get("routes"), want.config.get("routes")):
        return Action.update, "routes are removed from the edge", Risk.disruptive
    return Action.update, "routes are added to the edge", Risk.safe


def _environment_change(want: Resource, have: ObservedResource,
                        diff: list[FieldDiff]) -> tuple[Action, str, Risk]:
    if have.config.get("protected") and not want.config.get("protected"):
        return (Action.update, "protection is removed: later changes will no longer need approval",
                Risk.disruptive)
    keys = ", ".join(sorted(_top_keys(diff)))
    return Action.update, f"environment settings changed ({keys})", Risk.safe


def _database_change(want: Resource, have: ObservedResource, diff: list[FieldDiff]) -> tuple[Action, str, Risk]:
    return (Action.replace, f"engine changes from {have.config.get('engine')} to {want.config.get('engine')}: a new, "
            "empty database replaces the old one and every row in it is deleted", Risk.destructive)


def _change_for(want: Resource | None, have: ObservedResource | None) -> Change:
    if want is None:
        assert have is not None
        return _change(address=have.address, kind=have.kind, action=Action.delete,
                      reason="no longer in the spec; its server is stopped and every row in it is deleted"
                      if have.kind == "database" else
                      "no longer in the spec; its processes are stopped and its routes removed",
                      risk=Risk.destructive, diff=diff_configs(have.config, None),
                      before_fingerprint=have.fingerprint)
    if have is None or have.status is LiveStatus.missing:
        reason = ("recorded as applied but nothing runs (drift); it is started again" if have
                  else "not live yet")
        # No diff: a create's fields are its desired config, which the plan carries (format 2, Plan.diffs).
        return _change(address=want.address, kind=want.kind, action=Action.create, reason=reason, risk=Risk.safe,
                      after_fingerprint=want.fingerprint,
                      before_fingerprint=have.fingerprint if have else None)
    if have.fingerprint == want.fingerprint:
        return _change(address=want.address, kind=want.kind, action=Action.noop,
                      reason=f"live config matches the spec (fingerprint {want.fingerprint[7:19]}, "
                      f"status {have.status.value})", risk=Risk.safe,
                      before_fingerprint=have.fingerprint, after_fingerprint=want.fingerprint)
    classify = {"edge": _edge_change, "environment": _environment_change,
                "database": _database_change}.get(want.kind, _service_change)
    diff = diff_configs(have.config, want.config)  # once: the classification reads it, the change carries it
    action, reason, risk = classify(want, have, diff)
    return _change(address=want.address, kind=want.kind, action=action, reason=reason, risk=risk, diff=diff,
                  before_fingerprint=have.fingerprint, after_fingerprint=want.fingerprint)


def _change(**fields: Any) -> Change:
    # The planner builds changes from already-validated resources; skipping re-validation keeps
    # a 10,000-service plan well under a second (see bench/plan_scale.py).
    fields.setdefault("diff", [])
    fields.setdefault("before_fingerprint", None)
    fields.setdefault("after_fingerprint", None)
    return Change.model_construct(**fields)


def _graph_problems(desired: list[Resource], placed: bool) -> list[Diagnostic]:
    """Unknown dependencies and cycles; ``placed``: the topological order placed every resource."""
    known = {r.address for r in desired}
    found = []
    for resource in desired:
        for dep in resource.depends_on:
            if dep not in known:
                found.append(error(
                    "spec.unknown_service", f"{resource.address} depends on {dep}, which does not exist",
                    f"The resource {resource.address} needs {dep}, but nothing in the plan provides it.",
                    "Fix depends_on in the spec, then run `railguard plan` again.", address=resource.address))
    # The order places every resource exactly when no cycle runs through two or more of them, so the (costlier)
    # search runs only when it did not, or when a resource names itself.
    looped = not placed or any(r.address in r.depends_on for r in desired)
    cycle = find_cycle({r.address: r.depends_on for r in desired}) if looped else None
    if cycle:
        found.append(error(
            "spec.dependency_cycle", "Resources depend on each other in a cycle",
            f"The chain {' -> '.join([*cycle, cycle[0]])} loops, so nothing in it can go first.",
            "Break the cycle in depends_on, then run `railguard plan` again.", address=cycle[0],
            extra={"cycle": cycle}))
    return found


def plan(env: str, desired: list[Resource], observed: list[ObservedResource], base_serial: int) -> Plan:
    """Compute the (unsealed) plan that takes ``observed`` to ``desired`` in ``env``."""
    wanted = {r.address: r for r in desired}
    live = {o.address: o for o in observed}
    forward, placed = ordered({r.address: r.depends_on for r in desired})
    diagnostics = _graph_problems(desired, placed)
    backward = list(reversed(topological_order({o.address: o.depends_on for o in observed if o.address not in wanted})))
    changes = [_change_for(wanted[a], live.get(a)) for a in forward]
    changes += [_change_for(None, live[a]) for a in backward]
    return Plan(env=env, base_serial=base_serial, desired_digest=desired_digest(desired),
                changes=changes, desired=desired, diagnostics=diagnostics)
