"""The daemon's governance requests: tokens, secrets listing, the audit log, the policy catalogue.

A mixin of :class:`railguard.daemon.service.Daemon`, kept apart so the operations
side stays readable. Audit entries never carry secret values: only the identifying
fields of a request (environment, plan, name, role, kind) are recorded.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from railguard.daemon.incidents import action
from railguard.daemon.intrusions import EVENT, Attempt, message
from railguard.daemon.status import parsed_spec
from railguard.engine.guard import require
from railguard.engine.workspace import Workspace, require_env
from railguard.model.api import (
    AuditEntry,
    AuditVerification,
    BuiltInRule,
    CreatedToken,
    Evidence,
    IncidentKind,
    Policies,
    SecretInfo,
    TokenInfo,
)
from railguard.model.diagnostics import RailguardError, error
from railguard.model.principals import WIDENING_ROLES, Permission, Principal, Role
from railguard.model.resources import environment_config
from railguard.providers import registry
from railguard.providers.base import DescribeRequest, Provider
from railguard.state import audit, secretstore, tokens
from railguard.state.store import Store

if TYPE_CHECKING:
    from railguard.daemon.observation import Observer

_SEEN_LOCK = threading.Lock()  # the per-environment counts of refused attempts (security_summary)
AUDITED_FIELDS = ("env", "plan_id", "kind", "name", "role", "envs", "to", "from", "confirm", "reason", "channel",
                  "path", "forget")

BUILT_IN = [
    ("guard.protected_env", "require_approval", "In a protected environment, every change that is not safe."),
    ("guard.protected_delete", "require_approval", "Deletes in a protected environment; the approver types the "
     "address back (--confirm)."),
    ("guard.protection_in_state", "require_approval", "Switching protection off or changing policy of an "
     "environment that is protected in state."),
    ("guard.agent_in_protected", "require_approval", "Any change an agent makes to a protected environment."),
    ("guard.weakening", "require_approval", "Removing or loosening health checks, replicas to 0, shorter drain, "
     "in a protected environment."),
    ("guard.promotion", "deny", "A protected environment runs only artifacts that soaked in promote_from."),
    ("guard.blast_radius", "require_approval", "More disruptive/destructive changes than max_disruptive_changes."),
    ("guard.freeze", "deny", "Any apply to a protected environment during a freeze window."),
]


class Governance:
    home: Path
    anchor: Path
    provider: Provider
    observer: Observer
    _seen_security: dict[str, tuple[int, str | None]] | None = None

    def store(self) -> Store:
        raise NotImplementedError

    def audit(self, who: str, action: str, outcome: str, body: dict[str, Any],  # raw request JSON: see below
              payload: dict[str, Any] | None) -> None:  # the answer's JSON as sent, whichever route answered
        """Record a request. ``body`` is the raw request JSON (a refused request may not parse into its model)
        and ``payload`` the answer's JSON as sent: the audit reads the same fields whatever the route."""
        detail = {k: body[k] for k in AUDITED_FIELDS if k in body}
        plan = (payload or {}).get("plan") or {}
        plan_id = body.get("plan_id") or plan.get("id") or (payload or {}).get("approval", {}).get("plan_id")
        plan_hash = plan.get("hash") or (payload or {}).get("approval", {}).get("plan_hash")
        env = body.get("env") or body.get("to") or plan.get("env")
        if payload and "operation" in payload:
            detail["operation"] = payload["operation"]["id"]
            env = env or payload["operation"]["env"]
        if env is None and plan_id:
            found = self.store().plan_record(plan_id)
            env, plan_hash = (found.env, plan_hash or found.hash) if found else (None, plan_hash)
        if plan:
            detail["decision"] = plan.get("summary", {}).get("decision")
        try:
            audit.append(self.store(), self.anchor, principal=who, action=action, outcome=outcome,
                         env=env, plan_id=plan_id,
                         plan_hash=plan_hash, detail=detail)
        except RailguardError:
            pass  # a damaged store is reported by the request itself

    def check_spec(self, spec: str, who: Principal) -> None:
        """Pin the daemon to one workspace: the first spec it serves is the only one, except for an admin.

        Without this, any token holder could point the daemon (possibly another OS user) at another folder.
        """
        path = str(Path(spec).resolve())
        store = self.store()
        pinned = store.setting("spec_path")
        if pinned is None:
            # Anyone may pin the spec beside the state folder (the default layout); any other path only an admin.
            if who.role is not Role.admin and Path(path).parent != self.home.resolve().parent:
                raise RailguardError(error(
                    "auth.forbidden", "Only an admin may choose the spec this daemon serves",
                    f"{who.id} asked about {path}, which is not beside the state folder {self.home}.",
                    "Have an admin run a command with that spec first, or use the spec beside the state folder."))
            store.set_setting_once("spec_path", path)
            return
        if pinned != path and who.role is not Role.admin:
            raise RailguardError(error(
                "auth.forbidden", "This daemon serves another spec",
                f"The daemon of {self.home} serves {pinned}; {who.id} asked about {path}. Only an admin may point "
                "it at another spec.", "Use the spec this daemon serves, or a state folder of your own "
                "(RAILGUARD_HOME)."))

    def audit_entries(self, env: str | None, limit: int) -> list[AuditEntry]:
        return audit.entries(self.store(), env, limit)

    def audit_verify(self) -> AuditVerification:
        found = audit.verify(self.store(), self.anchor)
        if not found.ok:
            raise RailguardError(error(
                "audit.tampered", "The audit log was tampered with", "; ".join(found.problems) + ".",
                "Treat the state folder as compromised: restore it from a backup and review who had access.",
                extra=found.model_dump(mode="json")))
        return found

    def create_token(self, who: Principal, name: str, role: str, envs: list[str] | None,
                     expires_in_s: Any, typed: Any) -> CreatedToken:
        require(who, Permission.admin, None)
        try:
            wanted = Role(role)
        except ValueError as exc:
            raise RailguardError(error("daemon.bad_request", f"Unknown role '{role}'",
                                       f"Roles are: {', '.join(r.value for r in Role)}.",
                                       "Pick one of them with --role.")) from exc
        if wanted in WIDENING_ROLES and who.kind == "user" and (not who.tty or typed != f"{role}:{name}"):
            raise RailguardError(error(
                "auth.needs_terminal", f"Creating a '{role}' token needs a confirmation on a terminal",
                "A token above 'agent' widens power, so in same-user mode it must be confirmed by typing "
                f"'{role}:{name}' on a terminal; a command run without one (an agent) is refused.",
                "Run `railguard token create` yourself in a terminal."))
        seconds = float(expires_in_s) if isinstance(expires_in_s, int | float) and expires_in_s > 0 else None
        text, record = tokens.create(self.store(), name, wanted, envs, who.id, seconds)
        return CreatedToken(**dict(record), token=text)  # the only answer that carries the secret

    def list_tokens(self) -> list[TokenInfo]:
        return tokens.listing(self.store())

    def revoke_token(self, name_or_id: str, who: Principal | None = None) -> TokenInfo:
        target = next((t for t in tokens.listing(self.store()) if name_or_id in (t.id, t.name)), None)
        if who is not None and target is not None and target.role in (Role.approver.value, Role.admin.value):
            # Revoking the people who approve leaves an agent alone with the environments: a person does it.
            self.terminal_check(who, f"revoke the {target.role} token '{target.name}'")
        return tokens.revoke(self.store(), name_or_id)

    def terminal_check(self, who: Principal, what: str) -> None:
        """Same-user mode: the OS user's request must come from a terminal (an agent's subprocess has none)."""
        if who.kind == "user" and not who.tty:
            raise RailguardError(error(
                "auth.needs_terminal", f"To {what} as the local user needs a terminal",
                "In same-user mode this action must come from a process with a controlling terminal, so a command "
                "an agent runs without one cannot weaken what guards the protected environments.",
                "Run the command yourself in a terminal, or use an admin token."))

    def kubeconfig_trust(self, who: Principal, path: Any, forget: bool) -> dict[str, Any]:
        """A person trusts (or stops trusting) a kubeconfig file that runs a program or reads files: see
        :mod:`railguard.providers.kubernetes.kubeconfig`. Admin only and, as the local user, from a terminal."""
        require(who, Permission.admin, None)
        if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
            raise RailguardError(error("daemon.bad_request", "'path' must be an absolute path",
                                       "The daemon reads the kubeconfig itself, from its own working folder.",
                                       "Pass the kubeconfig's absolute path."))
        self.terminal_check(who, "stop trusting a kubeconfig" if forget else "trust a kubeconfig")
        if forget:
            return {"path": str(Path(path).resolve()), "forgotten": registry.forget_kubeconfig(self.home, Path(path))}
        return registry.trust_kubeconfig(self.home, Path(path), who.id)

    def trusted_kubeconfigs(self, who: Principal) -> list[dict[str, Any]]:
        require(who, Permission.admin, None)
        return registry.trusted_kubeconfigs(self.home)

    def list_secrets(self, env: str | None, who: Principal) -> list[SecretInfo]:
        return [s for s in secretstore.listing(self.store(), env) if who.allows(Permission.read, s.env)]

    def policies(self, spec_path: str, env: str) -> Policies:
        spec = parsed_spec(Workspace(Path(spec_path), self.home))  # parsed again only when the file changes
        require_env(spec, env)
        config = environment_config(spec, env)
        return Policies.model_validate({
            "env": env, "protected": config["protected"], "promote_from": config["promote_from"],
            "soak_ms": config["soak_ms"], "max_disruptive_changes": config["max_disruptive_changes"],
            "freezes": config["freezes"],
            "built_in": [BuiltInRule(rule=r, effect=e, applies_to=d) for r, e, d in BUILT_IN],
            "rules": config["policies"]})

    def record_intrusion(self, attempt: Attempt) -> None:
        """A refused attempt (see :mod:`railguard.daemon.intrusions`): an event, a signed audit entry and, when an
        environment's own OS user made it (its app code), an incident on that environment."""
        store = self.store()
        data: dict[str, Any] = {"principal": attempt.principal, "what": attempt.what, "code": attempt.code,
                                **attempt.detail}
        if attempt.suppressed:
            data["suppressed"] = attempt.suppressed
        line = message(attempt)
        with _SEEN_LOCK:  # the event and its count together: security_summary never counts one twice
            store.add_event(attempt.env, EVENT, line, data=data)
            known = self._security_seen().get(attempt.env) if attempt.env is not None else None
            if attempt.env is not None and known is not None:  # counted from the timeline once; from then on here
                self._security_seen()[attempt.env] = (known[0] + 1, line)
        if not attempt.audited:  # a refused request was audited by the API already
            audit.append(store, self.anchor, principal=attempt.principal, action=EVENT,
                         outcome=f"refused: {attempt.code}", env=attempt.env, detail=data)
        if attempt.env is not None and "uid" in attempt.detail:
            self.observer.incidents.open(
                IncidentKind.security_refused, attempt.env,
                f"code of {attempt.env} (OS user {attempt.detail.get('user')}) "
                + (f"held a port allocated to environment {attempt.detail.get('victim_env')}: not routed there"
                   if attempt.detail.get("victim_env") else "tried the control plane and was refused"),
                evidence=[Evidence(kind="security", summary=line, lines=[attempt.what])],
                next_actions=[
                    action("list_events", f"railguard events --env {attempt.env}",
                           "Read every refused attempt recorded for this environment (kind security.refused).",
                           env=attempt.env),
                    action("list_releases", f"railguard releases --env {attempt.env}",
                           "Find the release whose code tried it; review that code, roll it back if it is not "
                           "yours, then acknowledge the incident (`railguard incident ID --ack`).",
                           env=attempt.env)])

    def security_summary(self, env: str) -> tuple[int, str | None]:
        """How many refused attempts are recorded for ``env`` and the newest: read from the timeline once per
        daemon (a scan of the environment's events), then kept up to date as attempts are recorded, so a status
        poll does not scan the events each time."""
        with _SEEN_LOCK:
            known = self._security_seen().get(env)
            if known is None:
                refused = self.store().events(env, 1_000_000, kind=EVENT)
                known = self._security_seen()[env] = (len(refused), refused[-1].message if refused else None)
            return known

    def _security_seen(self) -> dict[str, tuple[int, str | None]]:
        if self._seen_security is None:  # per daemon: the class attribute is only the "not yet" marker
            self._seen_security = {}
        return self._seen_security

    def environment_users(self) -> dict[str, str]:
        """OS user -> environment, for the environments whose processes run as their own user now."""
        store = self.store()
        found: dict[str, str] = {}
        for env in store.environment_names():
            user = self.provider.describe(DescribeRequest(env=env)).user
            if user:
                found[user] = env
        return found
