"""``railguard exec``'s use case: which release a one-off command runs in, and whether it may run now.

A one-off command (a migration, ``createsuperuser``, a data fix) runs with the exact context of one release
of one service: the live release, or ``--release N`` while its artifact is kept. It reads and writes the
environment's data with its secrets, so it is a change: in a protected environment it needs the approval
any change needs: :func:`command_plan` saves it as a plan with one ``command`` change (risk disruptive
unless said otherwise), which policy gates like any other (approval in a protected environment), and
``railguard apply`` runs it through the provider with its output kept, redacted, in the operation's journal.
Elsewhere the principal needs the ``apply`` permission and the daemon runs it at once. Called by the
daemon's exec sessions.
"""

from __future__ import annotations

import shlex

from railguard.engine import guard
from railguard.engine.facts import Facts
from railguard.engine.guard import require
from railguard.engine.observe import observe_into
from railguard.engine.workspace import Workspace
from railguard.model.api import ExecRequest, ReleaseStatus
from railguard.model.diagnostics import RailguardError, error
from railguard.model.plans import Action, Change, FieldDiff, Plan, Risk
from railguard.model.principals import Permission, Principal
from railguard.model.resources import desired_digest, service_address
from railguard.providers.base import CommandRequest, Provider
from railguard.state.store import Store, new_id


def command_target(ws: Workspace, request: ExecRequest, store: Store, who: Principal,
                   protected_ok: bool = False) -> CommandRequest:
    """The command as the provider runs it, after every check; raises a diagnostic otherwise.

    ``protected_ok``: the caller makes a plan of it (which policy gates) instead of running it now.
    """
    if not protected_ok:
        require(who, Permission.apply, request.env)
    spec, _ = ws.load_valid()
    env = spec.environments.get(request.env)
    if env is None:
        raise RailguardError(error(
            "spec.unknown_environment", f"No environment '{request.env}'",
            f"The spec defines {', '.join(sorted(spec.environments)) or 'no environment'}.",
            "Pass one of them with --env.", address=f"environments.{request.env}"))
    release = store.release(request.env, request.release) if request.release is not None \
        else store.live_release(request.env)
    address = service_address(request.env, request.service)
    if env.protected and not protected_ok:
        raise _needs_approval(request, address)
    # A failed release named explicitly may run one: a first deploy whose health check needs a database that only
    # a one-off command creates (Flask's tutorial: `flask --app flaskr init-db`) has no other way to get there.
    named_failed = release is not None and request.release is not None and release.status is ReleaseStatus.failed
    if release is None or not (release.status.ran_healthy or named_failed):
        which = f"release {request.release}" if request.release is not None else "live release"
        failed = next((r for r in store.releases(request.env, 5, desired=False) if r.status is ReleaseStatus.failed),
                      None) \
            if request.release is None else None
        raise RailguardError(error(
            "exec.no_release", f"'{request.env}' has no {which} to run the command in",
            f"The {which} of '{request.env}' "
            + ("is not recorded." if release is None else f"is {release.status.value}: it never ran healthy.")
            + (f" Release {failed.number} failed; its artifact may still run a command." if failed else ""),
            (f"If its deploy failed for want of something a one-off command makes (a database schema), run it in "
             f"that release: `railguard exec {request.service} --env {request.env} --release {failed.number} -- "
             "...`, then deploy again." if failed else
             f"Deploy first (`railguard deploy --env {request.env}`), or pick a release listed by "
             f"`railguard releases --env {request.env}`."), address=address))
    desired = next((r for r in release.desired if r.address == address), None)
    if desired is None:
        raise RailguardError(error(
            "exec.no_release", f"Release {release.number} has no service '{request.service}'",
            f"Release {release.number} of '{request.env}' runs "
            f"{', '.join(sorted(r.name for r in release.desired if r.kind == 'service')) or 'no service'}.",
            "Name one of its services.", address=address))
    protected_in_state = any(r.kind == "environment" and r.config.get("protected") for r in release.desired)
    if protected_in_state and not protected_ok:
        raise _needs_approval(request, address)
    data_dir = desired.config.get("data_dir")
    return CommandRequest(env=request.env, service=request.service, release=release.number,
                          argv=list(request.argv), desired=desired,
                          data_dir=str((ws.root / data_dir).resolve()) if data_dir else None,
                          app=spec.app.name, user=env.user)


def is_protected(ws: Workspace, store: Store, env: str) -> bool:
    """Protected in the spec, or in the record of the live release (switching protection off is a change)."""
    spec, _ = ws.load_valid()
    found = spec.environments.get(env)
    live = store.live_release(env)
    in_state = live is not None and any(r.kind == "environment" and r.config.get("protected") for r in live.desired)
    return bool(found is not None and found.protected) or in_state


def command_plan(ws: Workspace, request: ExecRequest, store: Store, provider: Provider, who: Principal) -> Plan:
    """Save the command as a plan of one ``command`` change, gated by policy like any change, bound to the
    state serial and the spec as they are now; ``railguard apply`` runs it once approved."""
    require(who, Permission.plan, request.env)
    target = command_target(ws, request, store, who, protected_ok=True)
    observe_into(store, provider, request.env)  # the serial the plan binds to is the one apply will see
    facts = Facts(ws)
    versions = facts.versions(store, request.env)
    desired = facts.desired(request.env, versions)
    argv = " ".join(shlex.quote(a) for a in target.argv)
    diff = [FieldDiff(path="command", after=list(target.argv)), FieldDiff(path="release", after=target.release)]
    reason = f"one-off command in release {target.release}: {argv}"
    chosen = store.release(target.env, target.release)
    if chosen is not None and not chosen.status.ran_healthy:
        # The approver must see that this code never passed its own deploy (e.g. refused by the data guard).
        reason = (f"one-off command in release {target.release}, which {chosen.status.value} and never ran "
                  f"healthy: {argv}")
        diff.append(FieldDiff(path="release_status", after=chosen.status.value))
    change = Change(
        address=service_address(target.env, target.service), kind="service", action=Action.command,
        reason=reason, risk=Risk(request.risk), diff=diff)
    computed = Plan(env=target.env, base_serial=store.serial(target.env), desired_digest=desired_digest(desired),
                    changes=[change], desired=desired, id=new_id("plan"))
    return store.save_plan(guard.with_verdicts(store, computed, who))


def _needs_approval(request: ExecRequest, address: str) -> RailguardError:
    return RailguardError(error(
        "exec.needs_approval", f"'{request.env}' is protected: a one-off command needs an approval",
        f"{request.argv} would run with the secrets and data of '{request.env}', which only approved changes "
        "may touch.",
        f"Try it in an unprotected environment first (`railguard exec {request.service} --env staging -- ...`); "
        f"in '{request.env}', make it part of a reviewed change (e.g. the service's release command).",
        address=address))
