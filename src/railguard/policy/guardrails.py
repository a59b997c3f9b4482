"""Built-in guardrails and user rules: the verdicts a plan carries.

Pure functions of the plan and a few facts gathered by the engine (the environment's
protection as applied, the applying principal, the clock, whether an artifact soaked
in the source environment). Evaluated when the plan is made (stored in it, covered by
its hash, shown to reviewers) and again at apply with the applier and the current
time, so a freeze or a different principal is never missed. Each rule has a code,
documented in docs/guardrails.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from railguard.model.plans import Action, Change, Effect, Plan, Risk, Verdict
from railguard.model.principals import Principal, Role
from railguard.model.resources import Resource

APPROVERS = [Role.approver.value, Role.admin.value]
HEALTH_LOOSER = {"interval_ms": 1, "timeout_ms": 1, "start_period_ms": 1, "unhealthy_threshold": 1,
                 "healthy_threshold": -1}


@dataclass(frozen=True)
class Facts:
    principal: Principal
    now: datetime
    protected_in_state: bool
    # (service name, source digest) -> None when it soaked long enough in promote_from, else why not
    soaked: Callable[[str, str], str | None]


def _env_config(plan: Plan) -> dict[str, Any]:
    found = next((r for r in plan.desired if r.kind == "environment"), None)
    return found.config if found else {}


def evaluate(plan: Plan, facts: Facts) -> list[Verdict]:
    config = _env_config(plan)
    protected = bool(config.get("protected")) or facts.protected_in_state
    desired = {r.address: r for r in plan.desired}
    verdicts: list[Verdict] = []
    for rule in (_protected, _protection_in_state, _agent_in_protected, _weakening, _promotion, _database_kept):
        verdicts.extend(rule(plan, facts, config, protected, desired))
    verdicts.extend(_blast_radius(plan, config))
    verdicts.extend(_freeze(plan, facts, config, protected))
    verdicts.extend(_user_rules(plan, facts, config, protected))
    return verdicts


Rule = Callable[[Plan, Facts, dict[str, Any], bool, dict[str, Resource]], Iterator[Verdict]]


def _protected(plan: Plan, facts: Facts, config: dict[str, Any], protected: bool,
               desired: dict[str, Resource]) -> Iterator[Verdict]:
    if not protected:
        return
    for change in plan.actionable:
        if change.action in (Action.delete, Action.restore):
            verb = "deleted" if change.action is Action.delete else "overwritten from a snapshot"
            yield Verdict(rule="guard.protected_delete", effect=Effect.require_approval, address=change.address,
                          message=f"{change.address} is {verb} in protected '{plan.env}'",
                          approvers=APPROVERS, confirm=change.address,
                          remediation=f"An approver runs `railguard approve {plan.id} --confirm {change.address}`.")
        elif change.risk is not Risk.safe and change.kind != "environment":
            yield Verdict(rule="guard.protected_env", effect=Effect.require_approval, address=change.address,
                          message=f"{change.risk.value} change in protected '{plan.env}': {change.reason}",
                          approvers=APPROVERS, remediation=f"An approver runs `railguard approve {plan.id}`.")


def _protection_in_state(plan: Plan, facts: Facts, config: dict[str, Any], protected: bool,
                         desired: dict[str, Resource]) -> Iterator[Verdict]:
    if not facts.protected_in_state:
        return
    for change in plan.actionable:
        if change.kind == "environment":
            what = ("protection is switched off" if not config.get("protected")
                    else "protection settings or policies change")
            yield Verdict(rule="guard.protection_in_state", effect=Effect.require_approval, address=change.address,
                          message=f"'{plan.env}' is protected in state and {what}; the spec alone cannot lift it",
                          approvers=APPROVERS, remediation=f"An approver runs `railguard approve {plan.id}`.")


def _agent_in_protected(plan: Plan, facts: Facts, config: dict[str, Any], protected: bool,
                        desired: dict[str, Resource]) -> Iterator[Verdict]:
    if protected and facts.principal.role is Role.agent and plan.actionable:
        yield Verdict(rule="guard.agent_in_protected", effect=Effect.require_approval,
                      message=f"an agent ({facts.principal.id}) changes protected '{plan.env}'",
                      approvers=APPROVERS, remediation=f"A human approver runs `railguard approve {plan.id}`.")


def _weakening(plan: Plan, facts: Facts, config: dict[str, Any], protected: bool,
               desired: dict[str, Resource]) -> Iterator[Verdict]:
    if not protected:
        return
    factor = config.get("max_scale_factor") or DEFAULT_SCALE_FACTOR
    for change in plan.actionable:
        if change.kind == "service" and change.action in (Action.update, Action.replace):
            found = _weakened(change, factor)
        elif change.kind == "edge" and change.action in (Action.update, Action.replace):
            found = _edge_weakened(change)
        else:
            continue
        if found:
            yield Verdict(rule="guard.weakening", effect=Effect.require_approval, address=change.address,
                          message=f"safety is weakened in protected '{plan.env}': {', '.join(found)}",
                          approvers=APPROVERS, remediation=f"An approver runs `railguard approve {plan.id}`.")


DEFAULT_SCALE_FACTOR = 3  # replicas may grow at most this many times in one plan without approval


def _shorter(before: Any, after: Any) -> bool:
    return isinstance(before, int) and isinstance(after, int) and after < before


def _weakened(change: Change, factor: int = DEFAULT_SCALE_FACTOR) -> list[str]:
    found = []
    for d in change.diff:
        if d.path == "replicas" and d.after == 0:
            found.append("replicas drop to 0")
        elif d.path == "replicas" and isinstance(d.before, int) and isinstance(d.after, int) and d.before > 0 \
                and d.after > d.before * factor:
            found.append(f"replicas scale from {d.before} to {d.after}, more than x{factor} (replicas)")
        elif d.path == "drain_timeout_ms" and _shorter(d.before, d.after):
            found.append("drain is shortened")
        elif d.path == "stop_timeout_ms" and _shorter(d.before, d.after):
            found.append("stop is shortened (stop_timeout)")
        elif d.path.startswith("health"):
            key = d.path.split(".", 1)[-1]
            if d.after is None and d.before is not None and key in ("health", "mode"):
                found.append("the health check is removed")
            elif key in HEALTH_LOOSER and isinstance(d.before, int) and isinstance(d.after, int) \
                    and (d.after - d.before) * HEALTH_LOOSER[key] > 0:
                found.append(f"health {key} is loosened")
            elif key in ("mode", "http", "exec") and d.before is not None and d.after is not None:
                # Another path or kind of check may pass where the reviewed one would fail (e.g. '/').
                found.append(f"the health check's {'kind' if key == 'mode' else key} changes (health.{key})")
    return sorted(set(found))


_LOOPBACK = ("127.", "::1", "localhost")


def _edge_weakened(change: Change) -> list[str]:
    found = []
    for d in change.diff:
        if d.path == "bind" and isinstance(d.before, str) and isinstance(d.after, str) and _wider(d.before, d.after):
            found.append(f"the edge listens more widely: {d.before} -> {d.after} (edge_bind)")
        elif d.path == "routes":
            before = {r.get("host") for r in d.before or [] if isinstance(r, dict)}
            hosts = sorted({str(r.get("host") or "*") for r in d.after or [] if isinstance(r, dict)
                            and r.get("host") not in before})
            if hosts:
                found.append(f"routes are exposed on new hosts: {', '.join(hosts)} (routes.host)")
    return sorted(set(found))


def _wider(before: str, after: str) -> bool:
    if before.startswith(_LOOPBACK):
        return not after.startswith(_LOOPBACK)
    return after in ("0.0.0.0", "::") and before != after


def _promotion(plan: Plan, facts: Facts, config: dict[str, Any], protected: bool,
               desired: dict[str, Resource]) -> Iterator[Verdict]:
    source = config.get("promote_from")
    if not protected or not source:
        return
    for change in plan.actionable:
        resource = desired.get(change.address)
        if change.kind != "service" or resource is None or change.action not in (Action.create, Action.replace):
            continue
        digest = resource.config.get("source") or ""
        why = facts.soaked(resource.name, digest)
        if why is not None:
            yield Verdict(rule="guard.promotion", effect=Effect.deny, address=change.address,
                          message=f"this artifact of {resource.name} has not run healthy in '{source}': {why}",
                          remediation=f"Deploy it to {source} first and let it run healthy there for the soak "
                          f"time (`soak` in [environments.{plan.env}], default 10m), then run "
                          f"`railguard promote --from {source} --to {plan.env}`.")


def _database_kept(plan: Plan, facts: Facts, config: dict[str, Any], protected: bool,
                   desired: dict[str, Resource]) -> Iterator[Verdict]:
    """In a protected environment a database goes only when the spec says so (``delete = true``), never because
    its table vanished from the spec (an edit, a merge or a wrong file)."""
    if not protected:
        return
    for change in plan.actionable:
        name = change.address.split("/database.", 1)[-1]
        if change.kind == "database" and change.action is Action.delete \
                and name not in config.get("delete_databases", []):
            yield Verdict(rule="guard.database_kept", effect=Effect.deny, address=change.address,
                          message=f"{change.address} is no longer in the spec; in protected '{plan.env}' a database "
                          "is never deleted implicitly",
                          remediation=f"Put [databases.{name}] back in the spec, or delete it explicitly: keep the "
                          f"table with `delete = true`, plan again, and have an approver run `railguard approve "
                          f"PLAN --confirm {change.address}`.")


def _blast_radius(plan: Plan, config: dict[str, Any]) -> Iterator[Verdict]:
    limit = config.get("max_disruptive_changes", 5)
    risky = [c for c in plan.actionable if c.risk is not Risk.safe]
    if len(risky) > limit:
        yield Verdict(rule="guard.blast_radius", effect=Effect.require_approval,
                      message=f"{len(risky)} disruptive or destructive changes in one plan (limit {limit})",
                      approvers=APPROVERS,
                      remediation=f"Split the change into smaller plans, or have `railguard approve {plan.id}` run.")


def active_freeze(config: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    for freeze in config.get("freezes", []):
        if datetime.fromisoformat(freeze["start"]) <= now < datetime.fromisoformat(freeze["end"]):
            return dict(freeze)
    return None


def _freeze(plan: Plan, facts: Facts, config: dict[str, Any], protected: bool) -> Iterator[Verdict]:
    freeze = active_freeze(config, facts.now) if protected else None
    if freeze and plan.actionable:
        yield Verdict(rule="guard.freeze", effect=Effect.deny,
                      message=f"'{plan.env}' is frozen until {freeze['end']}: {freeze['reason']}",
                      remediation="Wait for the freeze to end, or remove it from the spec (itself a change "
                      "that needs approval in a protected environment).")


def _user_rules(plan: Plan, facts: Facts, config: dict[str, Any], protected: bool) -> Iterator[Verdict]:
    diffs = plan.diffs()  # a create's paths are its desired config's (implied from plan format 2)
    for rule in config.get("policies", []):
        for change in plan.actionable:
            activation: dict[str, dict[str, Any]] = {
                "change": {"address": change.address, "kind": change.kind, "name": change.address.split(".")[-1]
                           if change.kind == "service" else change.kind, "action": change.action.value,
                           "risk": change.risk.value, "reason": change.reason,
                           "paths": [d.path for d in diffs(change)]},
                "env": {"name": plan.env, "protected": protected},
                "principal": {"id": facts.principal.id, "role": facts.principal.role.value,
                              "kind": facts.principal.kind},
            }
            try:
                from railguard.model.celrules import matches  # loaded only when a spec has rules (~16 MB)

                hit = matches(rule["expression"], activation)
            except Exception as exc:  # a rule that breaks at run time must block, not crash
                yield Verdict(rule=f"policy:{rule['name']}", effect=Effect.deny, address=change.address,
                              message=f"the rule could not be evaluated: {exc}",
                              remediation="Fix the rule in the spec, then plan again.")
                continue
            if hit:
                yield Verdict(rule=f"policy:{rule['name']}", effect=Effect(rule["effect"]), address=change.address,
                              message=rule["message"],
                              approvers=APPROVERS if rule["effect"] == "require_approval" else [],
                              remediation=f"An approver runs `railguard approve {plan.id}`."
                              if rule["effect"] == "require_approval" else rule["message"])
