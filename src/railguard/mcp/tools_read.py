"""Read tools: who the server is, live status, releases, logs, events, policies, operations.

Each is one or two daemon reads, shaped into a bounded answer with paging and the next calls that
make sense (a degraded service → ``diagnose``; an operation in flight → ``get_operation``). The
daemon redacts every secret value from what it sends; these tools add nothing from elsewhere except
the environment names of the spec on disk. Registered in :mod:`railguard.mcp.catalog`.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from typing import TYPE_CHECKING

import anyio

from railguard.mcp import briefs, suggest
from railguard.mcp.catalog import read_tool
from railguard.mcp.gateway import operation_in_short, operations_in_short, status_with
from railguard.mcp.inputs import (
    EnvArgs,
    EventsArgs,
    LogsArgs,
    NoArgs,
    OperationArgs,
    OperationsArgs,
    ReleasesArgs,
    StatusArgs,
)
from railguard.mcp.outputs import (
    Events,
    LogsPayload,
    NextAction,
    OperationPayload,
    Operations,
    PoliciesPayload,
    Releases,
    Status,
    Whoami,
)
from railguard.mcp.results import Call, Outcome, act, page
from railguard.mcp.tools_spec import spec_environments
from railguard.model.api import Drift, Health, LogFile, Operation, ReleaseStatus

if TYPE_CHECKING:
    from railguard.client import Client

MAX_LINE = 500
MAX_LOG_CHARS = 20_000
POLL_S = 0.25


@read_tool("whoami", title="Who am I", inputs=NoArgs, outputs=Whoami)
async def whoami(call: Call, args: NoArgs) -> Outcome:
    """Who this server acts as (a token, or the local OS user), its role, the tools it may call and the
    environments of the spec. Start here."""
    answer = await call.gw.run(lambda c: c.whoami())
    found = answer.principal
    envs = spec_environments(call.gw)
    scope = f", limited to {', '.join(found.envs)}" if found.envs else ""
    summary = (f"Acting as {found.id} (role {found.role.value}{scope}); {len(call.allowed)} tools available"
               + (f"; environments: {', '.join(envs)}." if envs else ".")
               + (" The daemon runs without workload isolation (--allow-shared-user): app code runs as its user."
                  if answer.shared_user_allowed else ""))
    return Outcome(summary, Whoami(principal=found, same_user_mode=found.kind == "user", tools=sorted(call.allowed),
                                   environments=envs, spec=call.gw.spec_path(), isolation=answer.isolation,
                                   shared_user_allowed=answer.shared_user_allowed),
                   next_actions=[act("get_status", f"See what runs in {e}.", env=e) for e in (envs or [])[:2]])


@read_tool("get_status", title="Live status of an environment", inputs=StatusArgs, outputs=Status)
async def get_status(call: Call, args: StatusArgs) -> Outcome:
    """The live state of an environment: each service's release, replica health and restarts (problems first,
    paged), warm releases kept for instant rollback, the edge URL, an operation in flight, and drift from the
    applied spec."""
    spec = call.gw.spec_path()
    # The unresolved incidents come in the same request as the status (one request less for both processes).
    read = await call.gw.run(lambda c: status_with(c, args.env, spec, incidents=True))
    found, unresolved = read.status, read.incidents or []
    ordered = briefs.statuses_problems_first(found.services)
    counts = dict(Counter(s.status.value for s, _ in ordered))
    services = [s for s, _ in ordered]
    shown = [briefs.service_brief(s) for s in services[args.offset:args.offset + args.limit]]
    drift, edge, flight = found.drift, found.edge, found.operation
    actions: list[NextAction] = []
    if flight is not None:
        actions.append(suggest.follow(flight.id))
    for svc, restarts in [p for p in ordered if p[0].status in (Health.degraded, Health.missing) or p[1]][:2]:
        actions.append(act("diagnose", f"{svc.name} is {svc.status.value} with {restarts} restart(s).",
                           env=args.env, service=svc.name))
    # What observation found comes first: an agent reads the evidence before planning over a rolled-back release.
    for incident in unresolved[:1]:
        actions.append(act("get_incident", f"Incident {incident.id} ({incident.state.value}): "
                           f"{incident.summary[:200]}", incident_id=incident.id))
    if not services:
        actions.append(act("plan", "Nothing runs yet: plan a first deploy.", env=args.env))
    elif drift.spec_changed_since_apply:
        actions.append(act("plan", "The spec or app source on disk differs from what was last applied: see the "
                           "changes.", env=args.env))
    listing = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing deployed"
    summary = (f"{args.env}: {len(services)} service(s), {listing}"
               + (f"; edge {edge.url}" if edge.url else "")
               + (f"; operation {flight.id} is {flight.status.value}" if flight is not None else "")
               + ("; the live state differs from the applied spec" if drift.live_differs else "")
               + (f"; {len(unresolved)} unresolved incident(s)" if unresolved else "") + ".")
    pg = page(args.offset, args.limit, len(services))
    details = [f"- {s.name}: {s.status.value}, release {s.release}, {s.healthy}/{s.replicas} healthy, "
               f"{s.restarts} restart(s)" + (f", warm: {s.warm}" if s.warm else "") for s in shown[:20]]
    if pg.next_offset is not None:
        actions.append(act("get_status", "Next page of services.", env=args.env, offset=pg.next_offset,
                           limit=args.limit))
    return Outcome(summary, Status(
        env=found.env, serial=found.serial, url=edge.url, edge_running=edge.running, counts=counts, services=shown,
        page=pg, operation=flight, drift=Drift(live_differs=drift.live_differs, details=drift.details[:20],
                                               spec_changed_since_apply=drift.spec_changed_since_apply)),
                   next_actions=actions, details=details)


@read_tool("list_releases", title="Releases of an environment", inputs=ReleasesArgs, outputs=Releases)
async def list_releases(call: Call, args: ReleasesArgs) -> Outcome:
    """The numbered releases of an environment, newest first (live, superseded, failed; rollbacks name the
    release they restored). A release number is what `rollback` takes as `to`."""
    releases = await call.gw.run(lambda c: c.releases(args.env, args.offset + args.limit))
    total = releases[0].number if releases else 0  # numbers count up from 1 per environment
    shown = [briefs.release_brief(r) for r in releases[args.offset:args.offset + args.limit]]
    live = next((r.number for r in releases if r.status is ReleaseStatus.live), None)
    pg = page(args.offset, args.limit, total)
    actions = [act("list_releases", "Older releases.", env=args.env, offset=pg.next_offset, limit=args.limit)] \
        if pg.next_offset is not None else []
    return Outcome(f"{args.env}: {total} release(s)" + (f", release {live} is live." if live else ", none live."),
                   Releases(releases=shown, page=pg), next_actions=actions)


@read_tool("read_logs", title="Recent logs of a service", inputs=LogsArgs, outputs=LogsPayload)
async def read_logs(call: Call, args: LogsArgs) -> Outcome:
    """The last lines of a service's replica logs (and its release command's), one entry per log file,
    bounded and with secret values redacted. Pass `release` to read only that release's logs."""
    found = await call.gw.run(lambda c: c.logs(args.env, args.service, args.release, args.lines))
    budget, truncated, files = MAX_LOG_CHARS, False, []
    for entry in reversed(found.files):  # newest release last in name order: keep it whole first
        lines = [line if len(line) <= MAX_LINE else line[:MAX_LINE] + "…" for line in entry.lines]
        kept: list[str] = []
        for line in reversed(lines):
            if budget - len(line) < 0:
                truncated = True
                break
            budget -= len(line)
            kept.append(line)
        files.append(LogFile(name=entry.name, lines=list(reversed(kept))))
    files.reverse()
    count = sum(len(f.lines) for f in files)
    summary = (f"{count} line(s) from {len(files)} log file(s) of {args.service} in {args.env}"
               + (" (cut to fit; pass `release` or fewer `lines`)." if truncated else ".")
               if files else f"No logs for {args.service} in {args.env} (is it deployed?).")
    text = [f"{f.name}: {line}" for f in files for line in f.lines][-40:]
    return Outcome(summary, LogsPayload(files=files, truncated=truncated), details=text,
                   next_actions=[] if files else [act("get_status", "See which services run.", env=args.env)])


@read_tool("list_events", title="Events timeline", inputs=EventsArgs, outputs=Events)
async def list_events(call: Call, args: EventsArgs) -> Outcome:
    """The events timeline, newest first: operations, releases, replica restarts, recoveries, approvals and
    requests for them. Page with `offset`."""
    events = list(reversed(await call.gw.run(lambda c: c.events(args.env, args.offset + args.limit + 1))))
    shown = [briefs.event_brief(e) for e in events[args.offset:args.offset + args.limit]]
    more = len(events) > args.offset + args.limit
    pg = page(args.offset, args.limit, len(events) if not more else args.offset + args.limit + 1)
    actions = [act("list_events", "Older events.", env=args.env, offset=pg.next_offset, limit=args.limit)] \
        if more else []
    return Outcome(f"{len(shown)} event(s)" + (f" in {args.env}" if args.env else "") + ", newest first.",
                   Events(events=shown, page=pg), next_actions=actions)


@read_tool("list_policies", title="Policies that apply", inputs=EnvArgs, outputs=PoliciesPayload)
async def list_policies(call: Call, args: EnvArgs) -> Outcome:
    """The guardrails and spec rules that apply to an environment: protection, promotion source and soak time,
    the blast-radius limit, freezes, built-in rules and custom CEL rules, with their effects."""
    spec = call.gw.spec_path()
    policies = await call.gw.run(lambda c: c.policies(spec, args.env))
    summary = (f"{args.env} is {'protected' if policies.protected else 'not protected'}; "
               f"{len(policies.built_in)} built-in rules, {len(policies.rules)} custom rule(s), "
               f"{len(policies.freezes)} freeze(s).")
    return Outcome(summary, PoliciesPayload(policies=policies))


@read_tool("list_operations", title="Recent operations", inputs=OperationsArgs, outputs=Operations)
async def list_operations(call: Call, args: OperationsArgs) -> Outcome:
    """Recent operations (applies and rollbacks), newest first, with their status and the step that failed."""
    rows = await call.gw.run(lambda c: operations_in_short(c, args.env, args.limit))
    shown = [briefs.operation_brief(r) for r in rows]
    return Outcome(f"{len(shown)} operation(s)" + (f" in {args.env}." if args.env else "."),
                   Operations(operations=shown))


def _operation_after(op_id: str, after: int | None, wait_s: float, client: Client) -> Operation:
    return operation_in_short(client, op_id, after, wait_s)


@read_tool("get_operation", title="Follow an operation", inputs=OperationArgs, outputs=OperationPayload)
async def get_operation(call: Call, args: OperationArgs) -> Outcome:
    """An operation's status and newest journal steps, waiting up to `wait_s` seconds for it to end. A failed
    operation's diagnostics say why; `diagnose` says what to do next."""
    deadline = time.monotonic() + args.wait_s
    seen = -1  # the first read answers at once
    while True:
        # A long-poll: the daemon answers when a step is journaled or the operation ends, so the wait ends the
        # moment the operation does, not at the next poll.
        after, wait = seen, max(0.0, min(deadline - time.monotonic(), 10.0))
        record = await call.gw.run(functools.partial(_operation_after, args.operation_id,
                                                     after if after >= 0 else None, wait))
        seen = len(record.journal) if record.journal_total is None else record.journal_total
        if not record.status.in_flight or time.monotonic() >= deadline:
            break
        if seen <= after:  # the wait ran out without news (or a daemon that does not wait): pace the next ask
            await anyio.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
    brief = briefs.operation_brief(record)
    problems = list(record.error.diagnostics) if record.error else []
    summary = f"Operation {record.id} ({record.kind.value} on {record.env}) {record.status.value}"
    if problems:
        summary += f" at {brief.failed_step or 'a step'}: {problems[0].summary}"
    elif record.status.in_flight:
        summary += f" ({brief.steps_total} journal entries so far)"
    return Outcome(summary + ".", OperationPayload(operation=brief), problems, suggest.after_operation(record))
