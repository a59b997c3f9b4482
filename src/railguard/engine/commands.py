"""``railguard exec``'s use case: which release a one-off command runs in, and whether it may run now.

A one-off command (a migration, ``createsuperuser``, a data fix) runs with the exact context of one release
of one service: the live release, or ``--release N`` while its artifact is kept. It reads and writes the
environment's data with its secrets, so it is a change: in a protected environment it needs the approval
any change needs, and this use case refuses it outright there (``exec.needs_approval``); elsewhere the
principal needs the ``apply`` permission. Called by the daemon's exec sessions; the provider runs it.
"""

from __future__ import annotations

from railguard.engine.guard import require
from railguard.engine.workspace import Workspace
from railguard.model.api import ExecRequest
from railguard.model.diagnostics import RailguardError, error
from railguard.model.principals import Permission, Principal
from railguard.model.resources import service_address
from railguard.providers.base import CommandRequest
from railguard.state.store import Store


def command_target(ws: Workspace, request: ExecRequest, store: Store, who: Principal) -> CommandRequest:
    """The command as the provider runs it, after every check; raises a diagnostic otherwise."""
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
    if env.protected:
        raise _needs_approval(request, address)
    if release is None or not release.status.ran_healthy:
        which = f"release {request.release}" if request.release is not None else "live release"
        raise RailguardError(error(
            "exec.no_release", f"'{request.env}' has no {which} to run the command in",
            f"The {which} of '{request.env}' "
            + ("is not recorded." if release is None else f"is {release.status.value}: it never ran healthy."),
            f"Deploy first (`railguard deploy --env {request.env}`), or pick a release listed by "
            f"`railguard releases --env {request.env}`.", address=address))
    desired = next((r for r in release.desired if r.address == address), None)
    if desired is None:
        raise RailguardError(error(
            "exec.no_release", f"Release {release.number} has no service '{request.service}'",
            f"Release {release.number} of '{request.env}' runs "
            f"{', '.join(sorted(r.name for r in release.desired if r.kind == 'service')) or 'no service'}.",
            "Name one of its services.", address=address))
    protected_in_state = any(r.kind == "environment" and r.config.get("protected") for r in release.desired)
    if protected_in_state:
        raise _needs_approval(request, address)
    data_dir = desired.config.get("data_dir")
    return CommandRequest(env=request.env, service=request.service, release=release.number,
                          argv=list(request.argv), desired=desired,
                          data_dir=str((ws.root / data_dir).resolve()) if data_dir else None)


def _needs_approval(request: ExecRequest, address: str) -> RailguardError:
    return RailguardError(error(
        "exec.needs_approval", f"'{request.env}' is protected: a one-off command needs an approval",
        f"{request.argv} would run with the secrets and data of '{request.env}', which only approved changes "
        "may touch.",
        f"Try it in an unprotected environment first (`railguard exec {request.service} --env staging -- ...`); "
        f"in '{request.env}', make it part of a reviewed change (e.g. the service's release command).",
        address=address))
