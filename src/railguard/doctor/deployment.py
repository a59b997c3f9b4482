"""A whole scratch deployment: the real engine and runtime on a scratch state folder and edge.

Used where one process is not enough: the rollback drill (deploy, deploy, roll back) and the
``depends_on`` half of honest-health (stop one service under another). It drives the same code a
real deployment runs (planner, journaled executor, the runtime's
:class:`~railguard.providers.base.Provider` from :mod:`railguard.providers.registry`, with its edge)
on its own state folder inside the scratch, an edge on a free port, and the environment's resources
rewritten for scratch: data in a scratch copy, variables pointing away from every real environment,
and warm replicas dropped before a rollback (so it really starts the old release on the new data).
Artifacts are shared with the rest of the scratch. Created by those checks; closed by them or by the
scratch's teardown.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import httpx

from railguard.doctor.context import STOP_S, CheckStop, Context
from railguard.doctor.isolation import rewrite
from railguard.doctor.report import Finding, Status
from railguard.engine import planner
from railguard.engine.apply import execute
from railguard.engine.execute import Context as ExecContext
from railguard.engine.observe import state_protected
from railguard.engine.rollback import rollback
from railguard.model.diagnostics import Diagnostic, RailguardError
from railguard.model.plans import Action, Change, Risk
from railguard.model.principals import Principal, Role
from railguard.model.resources import Resource, make_resource
from railguard.providers.base import ApplyRequest, HealthRequest, HealthResponse, ShutdownRequest, TickRequest
from railguard.providers.registry import open_provider
from railguard.secrets.keys import load_key
from railguard.state import secretstore
from railguard.state.store import Store

PORT_TRIES = 3
# The doctor acts on its own scratch state folder only; it is that folder's admin.
DOCTOR = Principal(id="railguard-doctor", role=Role.admin, kind="user")
WARM_MS = 3_600_000
DB_SECRETS = "RAILGUARD_DB_"  # managed databases' generated passwords (see providers/local/dbservers.password_name)


class Deployment:
    def __init__(self, ctx: Context, data: Path, label: str) -> None:
        self.ctx = ctx
        self.data = data
        # The doctor's own copy, handed to the scratch user now: a root provider hands a configured data folder
        # over only when it is new, empty or already the user's (never someone else's files).
        ctx.scratch.hand_over(data)
        self.home = ctx.scratch.socket_folder(label)
        (ctx.scratch.home / "artifacts").mkdir(exist_ok=True)
        (self.home / "artifacts").symlink_to(ctx.scratch.home / "artifacts", target_is_directory=True)
        made: dict[tuple[str, str], str] = {}  # the scratch databases' own passwords: generated here, memory only

        def secrets(env: str, versions: dict[str, int]) -> dict[str, str]:
            # A managed database in scratch is a new server with a password of its own, never the real one's.
            real = scratch_secrets(ctx, env, [n for n in versions if not n.startswith(DB_SECRETS)])
            return {**real, **{n: made[(env, n)] for n in versions if (env, n) in made}}

        self.provider = open_provider(self.home, secrets=secrets,
                                      store_secret=lambda env, name, value: made.__setitem__((env, name), value))
        self.store = Store.open(self.home)
        self.port, self.notes = ctx.scratch.port()
        ctx.scratch.closers.append(self.close)

    def resources(self, desired: list[Resource]) -> list[Resource]:
        """The environment's resources as this scratch deployment runs them."""
        out: list[Resource] = []
        for r in desired:
            config: dict[str, Any] = dict(r.config)
            if r.kind == "edge":
                config.update(port=self.port, bind="127.0.0.1")
            elif r.kind == "service":
                fixed = rewrite(dict(config["env"]), self.ctx.data_dirs(), self.data, self.ctx.edge_ports(),
                                self.port, self.ctx.scratch.root)
                if fixed.unsafe:
                    raise CheckStop(Finding(
                        status=Status.skipped, subject=r.name, summary=f"not run: {'; '.join(fixed.unsafe.values())}",
                        evidence=["A scratch deployment never touches a real environment's data."],
                        remediation="Point the variable at a SQLite file under the environment's data_dir."))
                # Kept warm (not stopped with a graceful wait) so a deploy does not pay the old release's
                # exit; the drill drops warm replicas itself before rolling back (see drop_warm).
                config.update(env=fixed.values, data_dir=str(self.data), rollback_window_ms=WARM_MS)
            out.append(make_resource(r.env, r.kind, r.name, config, r.depends_on))
        return out

    def exec_context(self) -> ExecContext:
        user = self.ctx.scratch.user
        if user is None:
            return ExecContext(source_root=self.ctx.source_root, spec_root=self.ctx.ws.root)
        # Isolated scratch: the drill's replicas run as the scratch user, its builds as rg-build-scratch-<app>
        # (the provider names build users after ``app``), never as the real environment's users.
        return ExecContext(source_root=self.ctx.source_root, spec_root=self.ctx.ws.root,
                           app=f"scratch-{self.ctx.spec.app.name}", users={self.ctx.env: user})

    def apply(self, desired: list[Resource]) -> tuple[dict[str, Any], list[Diagnostic]]:
        """Deploy the environment's ``desired`` resources (rewritten here for scratch).

        The edge goes first, so a service that reaches another through it (there is no other way
        between services) can pass its health check on a first deployment. On a taken edge port the
        edge moves to another free port and everything is rewritten again."""
        for attempt in range(PORT_TRIES):
            record, problems = self._apply_once(self.resources(desired))
            if not any(d.code == "edge.port_in_use" for d in problems) or attempt == PORT_TRIES - 1:
                return record, problems
            old = self.port
            self.port, notes = self.ctx.scratch.port()
            self.notes += [*notes, f"scratch edge port {old} was taken by another program; moved to {self.port}"]
        raise AssertionError("unreachable")

    def _apply_once(self, desired: list[Resource]) -> tuple[dict[str, Any], list[Diagnostic]]:
        env = self.ctx.env
        live = {o.address: o for o in self.store.inventory(env)}
        first = [make_resource(r.env, r.kind, r.name, r.config, []) for r in desired
                 if r.kind == "edge" and r.address not in live]
        for batch in ([first] if first else []) + [desired]:
            computed = planner.plan(env, batch, self.store.inventory(env), self.store.serial(env))
            if batch is first:
                computed = computed.model_copy(update={"changes": [c for c in computed.changes
                                                                   if c.action.value != "delete"]})
            record = execute(self.store, env=env, kind="apply", plan_id=None, changes=computed.changes,
                             desired=batch, provider=self.provider, principal="railguard-doctor",
                             ctx=self.exec_context()).model_dump(mode="json")
            problems = _diagnostics(record)
            if record["status"] != "succeeded":
                return record, problems
        return record, problems

    def rollback(self, to: int) -> tuple[dict[str, Any], list[Diagnostic]]:
        try:
            record = rollback(self.store, self.ctx.env, self.provider, DOCTOR, self.exec_context(), to)
        except RailguardError as exc:
            if exc.diagnostics[0].code != "rollback.schema_changed":
                raise
            # The schema rule a real rollback applies: refused before the old code meets the new schema.
            return {"status": "failed"}, list(exc.diagnostics)
        return record.model_dump(mode="json"), _diagnostics(record.model_dump(mode="json"))

    def probe(self, paths: list[str]) -> list[tuple[str, int | None, str]]:
        """GET each route path through the scratch edge: (path, status or None, detail)."""
        found: list[tuple[str, int | None, str]] = []
        with httpx.Client(trust_env=False, timeout=5.0) as client:
            for path in paths:
                try:
                    answer = client.get(f"http://127.0.0.1:{self.port}{path}")
                    found.append((path, answer.status_code, answer.text[:120].strip()))
                except httpx.HTTPError as exc:
                    found.append((path, None, f"{type(exc).__name__}: {exc}"))
        return found

    def drop_warm(self) -> int:
        """Stop the replicas kept warm, so a rollback has to start the old release afresh."""
        # A pass "after every rollback window" retires every warm set; fast stops, as everywhere in scratch.
        events = self.provider.tick(TickRequest(now=math.inf, stop_timeout=STOP_S)).events
        return sum(1 for e in events if e.kind == "release.warm_stopped")

    def stop_service(self, name: str) -> None:
        """Stop every replica of a deployed service, keeping its route (which then answers 503)."""
        live = next((o for o in self.store.inventory(self.ctx.env) if o.kind == "service" and
                     o.address.endswith(f"/service.{name}")), None)
        if live is None:
            return
        stopped = make_resource(self.ctx.env, "service", name, {**live.config, "replicas": 0}, live.depends_on)
        change = Change(address=stopped.address, kind="service", action=Action.update, risk=Risk.disruptive,
                        reason="doctor: stop every replica of a dependency", before_fingerprint=live.fingerprint,
                        after_fingerprint=stopped.fingerprint)
        self.provider.apply_change(ApplyRequest(env=self.ctx.env, change=change, desired=stopped,
                                                operation_id="doctor", data_dir=str(self.data)))

    def check_now(self, name: str) -> HealthResponse:
        """Health-check every replica of a deployed service now."""
        return self.provider.health(HealthRequest(env=self.ctx.env, address=f"{self.ctx.env}/service.{name}",
                                                  fresh=True))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.provider.shutdown(ShutdownRequest(everything=True, stop_timeout=STOP_S))
        with contextlib.suppress(Exception):
            self.store.close()


PLACEHOLDER = "railguard-doctor-placeholder"  # what scratch runs of a protected environment get for each secret
PLACEHOLDERS_USED = "placeholders-used"  # ctx.cache: the secret names the running check handed placeholders for


def scratch_secrets(ctx: Context, env: str, names: list[str]) -> dict[str, str]:
    """The secret values the doctor's scratch runs of ``env`` get. The doctor runs the working tree's code, which no
    one has reviewed (an agent may have written it a minute ago), so a protected environment's real values never
    reach it: each name gets :data:`PLACEHOLDER`, and the check says so (runner: ``PLACEHOLDERS_USED``). Other
    environments' real values are read from the state folder (held in memory, redacted from every finding)."""
    if protected(ctx, env):
        used = ctx.cache.setdefault(PLACEHOLDERS_USED, set())
        used.update(names)
        return {n: PLACEHOLDER for n in names}
    return real_secrets(ctx.ws.home, env, names)


def protected(ctx: Context, env: str) -> bool:
    """Whether ``env`` is protected by the working tree's spec or by what was applied (the state), as the guardrails
    judge it: the working tree is the agent's to edit, so `protected = false` there hands out no real values."""
    key = f"protected:{env}"
    found = ctx.cache.get(key)
    if not isinstance(found, bool):
        found = ctx.spec.environments[env].protected
        if not found and (ctx.ws.home / "state.db").exists():
            store = Store.open(ctx.ws.home)
            try:
                found = state_protected(store, env)
            finally:
                store.close()
        ctx.cache[key] = found
    return found


def placeholder_finding(names: set[str], env: str) -> Finding:
    return Finding(
        status=Status.skipped, summary=f"secrets: placeholder values for {', '.join(sorted(names))} "
        f"(protected '{env}': its real values never reach the working tree's unreviewed code)",
        evidence=[f"each of {', '.join(sorted(names))} was set to '{PLACEHOLDER}' in the scratch runs; a check that "
                  "needs a real value (a database password, an API key) fails or passes on the placeholder"],
        remediation="Run the doctor on an unprotected environment (e.g. staging) to check the code with that "
        "environment's real secrets.")


def real_secrets(home: Path, env: str, names: list[str]) -> dict[str, str]:
    """The environment's secret values, read (never written) from the real state folder, for scratch replicas."""
    if not names or not (home / "state.db").exists():
        return {}
    store = Store.open(home)
    try:
        if not secretstore.has_secrets(store, env):
            return {}
        return {n: v for _, n, v in secretstore.values(store, load_key(home, create=False), env) if n in names}
    finally:
        store.close()


def _diagnostics(record: dict[str, Any]) -> list[Diagnostic]:
    return [Diagnostic.model_validate(d) for d in (record.get("error") or {}).get("diagnostics", [])]


def failure_evidence(problems: list[Diagnostic]) -> list[str]:
    lines: list[str] = []
    for d in problems[:2]:
        lines.append(f"{d.code}: {d.detail}")
        lines += [f"log: {line}" for line in (d.extra.get("log_tail") or [])[-8:]]
        if d.extra.get("last_check"):
            lines.append(f"last health check: {d.extra['last_check']}")
    return lines
