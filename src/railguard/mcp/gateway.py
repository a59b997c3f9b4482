"""The MCP server's one road to Railguard: the daemon's API client, acting as the server's principal.

Every tool reaches the daemon through :class:`railguard.client.Client` (run in a worker thread:
the client is synchronous), so a model can do exactly what the server's principal may do and no
more: the token in ``RAILGUARD_TOKEN`` when the server started, or, without one, the local OS user
(same-user mode, ``admin``). The principal's role, from ``GET /v1/whoami``, decides which tools are
listed; the daemon checks every request again.

Starting the daemon: only in same-user mode, like the CLI. With a token the server never starts
it, because a daemon that ran in token-only mode (``--require-token``) and died would come back in
same-user mode and quietly widen what every local process may do; a person restarts it instead.
Used by :mod:`railguard.mcp.server` and the tool modules.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio.to_thread

from railguard.client import Client
from railguard.engine.workspace import Workspace
from railguard.mcp.briefs import MAX_STEPS
from railguard.model.api import EnvironmentStatus, Event, Incident, Operation, PlanAnswer, PlanDetail, Release
from railguard.model.diagnostics import RailguardError, error, has_errors
from railguard.model.principals import Principal

T = TypeVar("T")
PRINCIPAL_TTL_S = 2.0  # a revoked token is refused by the daemon anyway; this only spares round trips
SHORT_STEPS = MAX_STEPS  # journal steps a tool shows; the daemon sends no more than these
PLANS_KEPT = 8  # saved plans whose bodies this server holds (show_plan, approval_status)


# Operations in short: a model reads an operation's newest steps and where it failed, never its whole journal (a
# 200-service deploy journals ~2,200 entries, 250 KB that the daemon encoded and this server parsed on every call).
# A daemon that does not know ``steps`` sends whole journals; the briefs read either.
def operations_in_short(client: Client, env: str | None, limit: int | None) -> list[Operation]:
    rows = client.call("GET", "operations", params={"env": env, "limit": limit, "steps": SHORT_STEPS})["operations"]
    return [Operation.model_validate(r) for r in rows]


def operation_in_short(client: Client, op_id: str, after: int | None = None, wait_s: float = 0.0) -> Operation:
    """The operation; with ``after``, once more than that many steps are journaled or it ended (a long-poll)."""
    params: dict[str, object] = {"steps": SHORT_STEPS}
    if after is not None:
        params.update(after=after, wait=wait_s)
    return Operation.model_validate(client.call("GET", f"operations/{op_id}", params=params)["operation"])


@dataclass
class StatusWith:
    """An environment's status and the reads asked along with it (``None``: not asked). The releases are in
    short (no services, source or data guard): what they are and how they went."""

    status: EnvironmentStatus
    releases: list[Release] | None = None
    events: list[Event] | None = None
    operations: list[Operation] | None = None
    incidents: list[Incident] | None = None


def status_with(client: Client, env: str, spec: str | None, releases: int | None = None, events: int | None = None,
                operations: int | None = None, incidents: bool = False) -> StatusWith:
    """The status of ``env`` and, in the same request (``GET /v1/status?with=``), its newest releases, events and
    operations (journals in short) and its unresolved incidents: what ``get_status`` and ``diagnose`` read, each of
    which cost both processes a request of its own. A daemon that does not know ``with`` answers the status
    alone; the rest is then asked for as before."""
    wanted = {"releases": releases, "events": events, "operations": operations, "incidents": incidents or None}
    named = [k for k, v in wanted.items() if v is not None]
    params: dict[str, Any] = {"env": env, "spec": spec, "with": ",".join(named) or None,
                              "releases": releases, "events": events, "operations": operations,
                              "steps": SHORT_STEPS if operations is not None else None}
    answer = client.call("GET", "status", params=params)
    found = StatusWith(EnvironmentStatus.model_validate(answer["status"]))
    if releases is not None:
        found.releases = ([Release.model_validate(r) for r in answer["releases"]] if "releases" in answer
                          else client.releases(env, releases))
    if events is not None:
        found.events = ([Event.model_validate(r) for r in answer["events"]] if "events" in answer
                        else client.events(env, events))
    if operations is not None:
        found.operations = ([Operation.model_validate(r) for r in answer["operations"]] if "operations" in answer
                            else operations_in_short(client, env, operations))
    if incidents:
        found.incidents = ([Incident.model_validate(r) for r in answer["incidents"]] if "incidents" in answer
                           else client.incidents(env))
    return found


class Gateway:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.token = os.environ.get("RAILGUARD_TOKEN") or None
        self.autostart = self.token is None
        self.client = Client(ws, autostart=False)  # sends the token as a bearer on every request
        self._principal: tuple[float, Principal] | None = None
        self._envs: tuple[tuple[int, int], dict[str, bool] | None] | None = None
        self._plans: dict[str, PlanAnswer] = {}  # plan id -> its body as first read (a saved plan never changes)

    def close(self) -> None:
        self.client.close()

    def run_sync(self, request: Callable[[Client], T]) -> T:
        """One typed client call (``lambda c: c.status(env)``), starting the daemon once if it may."""
        try:
            return request(self.client)
        except RailguardError as exc:
            down = exc.diagnostics and exc.diagnostics[0].code == "daemon.unavailable"
            if not (down and self.autostart) or self.client.alive():
                raise
            self.client.start_daemon()
            return request(self.client)

    async def run(self, request: Callable[[Client], T]) -> T:
        return await anyio.to_thread.run_sync(lambda: self.run_sync(request))

    async def principal(self, fresh: bool = False) -> Principal:
        """Who the daemon says the server acts as (cached for a moment); raises when it cannot tell."""
        cached = self._principal
        if not fresh and cached is not None and time.monotonic() - cached[0] < PRINCIPAL_TTL_S:
            return cached[1]
        found = (await self.run(lambda c: c.whoami())).principal
        self._principal = (time.monotonic(), found)
        return found

    async def principal_or_none(self, fresh: bool = False) -> Principal | None:
        try:
            return await self.principal(fresh)
        except RailguardError:
            self._principal = None
            return None

    def plan_detail(self, client: Client, plan_id: str) -> PlanDetail:
        """A saved plan and where it stands (status, approvals). Its body (~300 KB for 200 services, parsed by
        the daemon and here) is read once; later reads ask the daemon only where it stands, which it answers
        as the principal after checking it may read the plan, with the plan's hash to match the body held."""
        held = self._plans.get(plan_id)
        found: PlanDetail | None = None
        if held is not None:
            state = client.call("GET", f"plans/{plan_id}", params={"view": "state"})
            if "plan" in state:  # a daemon that does not know the view answered the whole record
                found = PlanDetail.model_validate(state)
            elif state.get("hash") == held.hash:
                return PlanDetail(plan=held, status=state["status"], approvals=state["approvals"],
                                  approval=state["approval"])
        found = found or client.plan_record(plan_id)
        if len(self._plans) >= PLANS_KEPT:
            self._plans.pop(next(iter(self._plans)), None)
        self._plans[plan_id] = found.plan
        return found

    def spec_path(self) -> str:
        return str(self.ws.spec_path)

    def environments(self) -> dict[str, bool] | None:
        """The spec's environments (name → protected), re-read only when the file changes; None if it is invalid."""
        try:
            stat = self.ws.spec_path.stat()
        except OSError:
            return None
        key = (stat.st_mtime_ns, stat.st_size)
        if self._envs is not None and self._envs[0] == key:
            return self._envs[1]
        try:
            spec, diagnostics = self.ws.load()
        except RailguardError:
            spec, diagnostics = None, []
        found = None if spec is None or has_errors(diagnostics) else {
            name: env.protected for name, env in spec.environments.items()}
        self._envs = (key, found)
        return found

    def require_env(self, env: str) -> None:
        """Refuse an environment the spec on disk does not define (when the spec can be read at all)."""
        found = self.environments()
        if found is not None and env not in found:
            raise RailguardError(error(
                "spec.unknown_environment", f"No environment '{env}'",
                f"The spec defines these environments: {', '.join(sorted(found)) or 'none'}.",
                "Pass one of them as `env` (whoami lists them).", address=f"environments.{env}"))
