"""Read tools: who the server is, live status, releases, logs, events, policies, operations.

Each is one or two daemon reads, shaped into a bounded answer with paging and the next calls that
make sense (a degraded service → ``diagnose``; an operation in flight → ``get_operation``). The
daemon redacts every secret value from what it sends; these tools add nothing from elsewhere except
the environment names of the spec on disk. Registered in :mod:`railguard.mcp.catalog`.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import anyio

from railguard.mcp import briefs, suggest
from railguard.mcp.catalog import read_tool
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
    EventsOut,
    LogsOut,
    OperationOut,
    OperationsOut,
    PoliciesOut,
    ReleasesOut,
    StatusOut,
    WhoamiOut,
)
from railguard.mcp.results import Call, Outcome, act, page
from railguard.mcp.tools_spec import spec_environments
from railguard.model.api import Health, OperationStatus, ReleaseStatus
from railguard.model.diagnostics import Diagnostic

MAX_LINE = 500
MAX_LOG_CHARS = 20_000
POLL_S = 0.25


@read_tool("whoami", title="Who am I", inputs=NoArgs, outputs=WhoamiOut)
async def whoami(call: Call, args: NoArgs) -> Outcome:
    """Who this server acts as (a token, or the local OS user), its role, the tools it may call and the
    environments of the spec. Start here."""
    found = (await call.gw.call("GET", "whoami"))["principal"]
    principal = {k: found.get(k) for k in ("id", "role", "envs", "kind")}
    envs = spec_environments(call.gw)
    scope = f", limited to {', '.join(found['envs'])}" if found.get("envs") else ""
    summary = (f"Acting as {found['id']} (role {found['role']}{scope}); {len(call.allowed)} tools available"
               + (f"; environments: {', '.join(envs)}." if envs else "."))
    return Outcome(summary, {"principal": principal, "same_user_mode": found.get("kind") == "user",
                             "tools": sorted(call.allowed), "environments": envs, "spec": call.gw.spec_path()},
                   next_actions=[act("get_status", f"See what runs in {e}.", env=e) for e in (envs or [])[:2]])


@read_tool("get_status", title="Live status of an environment", inputs=StatusArgs, outputs=StatusOut)
async def get_status(call: Call, args: StatusArgs) -> Outcome:
    """The live state of an environment: each service's release, replica health and restarts (problems first,
    paged), warm releases kept for instant rollback, the edge URL, an operation in flight, and drift from the
    applied spec."""
    found = (await call.gw.call("GET", "status", params={"env": args.env, "spec": call.gw.spec_path()}))["status"]
    services = briefs.problems_first([briefs.service_brief(s) for s in found["services"]])
    counts = dict(Counter(s["status"] for s in services))
    shown = services[args.offset:args.offset + args.limit]
    drift = found.get("drift") or {}
    edge = found.get("edge") or {}
    actions: list[dict[str, Any]] = []
    if found.get("operation"):
        actions.append(suggest.follow(found["operation"]))
    for svc in [s for s in services if s["status"] in (Health.degraded, Health.missing) or s["restarts"]][:2]:
        actions.append(act("diagnose", f"{svc['name']} is {svc['status']} with {svc['restarts']} restart(s).",
                           env=args.env, service=svc["name"]))
    # What observation found comes first: an agent reads the evidence before planning over a rolled-back release.
    unresolved = (await call.gw.call("GET", "incidents", params={"env": args.env, "open": "1"}))["incidents"]
    for incident in unresolved[:1]:
        actions.append(act("get_incident", f"Incident {incident['id']} ({incident['state']}): "
                           f"{incident['summary'][:200]}", incident_id=incident["id"]))
    if not services:
        actions.append(act("plan", "Nothing runs yet: plan a first deploy.", env=args.env))
    elif drift.get("spec_changed_since_apply"):
        actions.append(act("plan", "The spec or app source on disk differs from what was last applied: see the "
                           "changes.", env=args.env))
    listing = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing deployed"
    summary = (f"{args.env}: {len(services)} service(s), {listing}"
               + (f"; edge {edge['url']}" if edge.get("url") else "")
               + (f"; operation {found['operation']['id']} is {found['operation']['status']}"
                  if found.get("operation") else "")
               + ("; the live state differs from the applied spec" if drift.get("live_differs") else "")
               + (f"; {len(unresolved)} unresolved incident(s)" if unresolved else "") + ".")
    pg = page(args.offset, args.limit, len(services))
    details = [f"- {s['name']}: {s['status']}, release {s['release']}, {s['healthy']}/{s['replicas']} healthy, "
               f"{s['restarts']} restart(s)" + (f", warm: {s['warm']}" if s["warm"] else "") for s in shown[:20]]
    if pg["next_offset"] is not None:
        actions.append(act("get_status", "Next page of services.", env=args.env, offset=pg["next_offset"],
                           limit=args.limit))
    return Outcome(summary, {
        "env": found["env"], "serial": found["serial"], "url": edge.get("url"), "edge_running": edge.get("running"),
        "counts": counts, "services": shown, "page": pg, "operation": found.get("operation"),
        "drift": {"live_differs": bool(drift.get("live_differs")), "details": (drift.get("details") or [])[:20],
                  "spec_changed_since_apply": drift.get("spec_changed_since_apply")}}, next_actions=actions,
                   details=details)


@read_tool("list_releases", title="Releases of an environment", inputs=ReleasesArgs, outputs=ReleasesOut)
async def list_releases(call: Call, args: ReleasesArgs) -> Outcome:
    """The numbered releases of an environment, newest first (live, superseded, failed; rollbacks name the
    release they restored). A release number is what `rollback` takes as `to`."""
    rows = (await call.gw.call("GET", "releases", params={"env": args.env, "limit": args.offset + args.limit}))
    releases = rows["releases"]
    total = int(releases[0]["number"]) if releases else 0  # numbers count up from 1 per environment
    shown = [briefs.release_brief(r) for r in releases[args.offset:args.offset + args.limit]]
    live = next((r["number"] for r in releases if r["status"] == ReleaseStatus.live), None)
    pg = page(args.offset, args.limit, total)
    actions = [act("list_releases", "Older releases.", env=args.env, offset=pg["next_offset"], limit=args.limit)] \
        if pg["next_offset"] is not None else []
    return Outcome(f"{args.env}: {total} release(s)" + (f", release {live} is live." if live else ", none live."),
                   {"releases": shown, "page": pg}, next_actions=actions)


@read_tool("read_logs", title="Recent logs of a service", inputs=LogsArgs, outputs=LogsOut)
async def read_logs(call: Call, args: LogsArgs) -> Outcome:
    """The last lines of a service's replica logs (and its release command's), one entry per log file,
    bounded and with secret values redacted. Pass `release` to read only that release's logs."""
    params = {"env": args.env, "service": args.service, "lines": args.lines, "release": args.release}
    found = (await call.gw.call("GET", "logs", params=params))["logs"]
    budget, truncated, files = MAX_LOG_CHARS, False, []
    for entry in reversed(found["files"]):  # newest release last in name order: keep it whole first
        lines = [line if len(line) <= MAX_LINE else line[:MAX_LINE] + "…" for line in entry["lines"]]
        kept: list[str] = []
        for line in reversed(lines):
            if budget - len(line) < 0:
                truncated = True
                break
            budget -= len(line)
            kept.append(line)
        files.append({"name": entry["name"], "lines": list(reversed(kept))})
    files.reverse()
    count = sum(len(f["lines"]) for f in files)
    summary = (f"{count} line(s) from {len(files)} log file(s) of {args.service} in {args.env}"
               + (" (cut to fit; pass `release` or fewer `lines`)." if truncated else ".")
               if files else f"No logs for {args.service} in {args.env} (is it deployed?).")
    text = [f"{f['name']}: {line}" for f in files for line in f["lines"]][-40:]
    return Outcome(summary, {"files": files, "truncated": truncated}, details=text,
                   next_actions=[] if files else [act("get_status", "See which services run.", env=args.env)])


@read_tool("list_events", title="Events timeline", inputs=EventsArgs, outputs=EventsOut)
async def list_events(call: Call, args: EventsArgs) -> Outcome:
    """The events timeline, newest first: operations, releases, replica restarts, recoveries, approvals and
    requests for them. Page with `offset`."""
    rows = (await call.gw.call("GET", "events", params={"env": args.env, "limit": args.offset + args.limit + 1}))
    events = list(reversed(rows["events"]))
    shown = [{"id": e["id"], "at": e["at"], "env": e["env"], "kind": e["kind"], "address": e["address"],
              "message": e["message"][:500]} for e in events[args.offset:args.offset + args.limit]]
    more = len(events) > args.offset + args.limit
    pg = page(args.offset, args.limit, len(events) if not more else args.offset + args.limit + 1)
    actions = [act("list_events", "Older events.", env=args.env, offset=pg["next_offset"], limit=args.limit)] \
        if more else []
    return Outcome(f"{len(shown)} event(s)" + (f" in {args.env}" if args.env else "") + ", newest first.",
                   {"events": shown, "page": pg}, next_actions=actions)


@read_tool("list_policies", title="Policies that apply", inputs=EnvArgs, outputs=PoliciesOut)
async def list_policies(call: Call, args: EnvArgs) -> Outcome:
    """The guardrails and spec rules that apply to an environment: protection, promotion source and soak time,
    the blast-radius limit, freezes, built-in rules and custom CEL rules, with their effects."""
    found = (await call.gw.call("GET", "policies", params={"env": args.env, "spec": call.gw.spec_path()}))
    policies = found["policies"]
    summary = (f"{args.env} is {'protected' if policies['protected'] else 'not protected'}; "
               f"{len(policies['built_in'])} built-in rules, {len(policies['rules'])} custom rule(s), "
               f"{len(policies['freezes'])} freeze(s).")
    return Outcome(summary, {"policies": policies})


@read_tool("list_operations", title="Recent operations", inputs=OperationsArgs, outputs=OperationsOut)
async def list_operations(call: Call, args: OperationsArgs) -> Outcome:
    """Recent operations (applies and rollbacks), newest first, with their status and the step that failed."""
    rows = (await call.gw.call("GET", "operations", params={"env": args.env, "limit": args.limit}))["operations"]
    shown = [{k: v for k, v in briefs.operation_brief(r).items() if k not in ("steps",)} for r in rows]
    return Outcome(f"{len(shown)} operation(s)" + (f" in {args.env}." if args.env else "."), {"operations": shown})


@read_tool("get_operation", title="Follow an operation", inputs=OperationArgs, outputs=OperationOut)
async def get_operation(call: Call, args: OperationArgs) -> Outcome:
    """An operation's status and newest journal steps, waiting up to `wait_s` seconds for it to end. A failed
    operation's diagnostics say why; `diagnose` says what to do next."""
    deadline = time.monotonic() + args.wait_s
    while True:
        record = (await call.gw.call("GET", f"operations/{args.operation_id}"))["operation"]
        if not OperationStatus(record["status"]).in_flight or time.monotonic() + POLL_S > deadline:
            break
        await anyio.sleep(POLL_S)
    brief = briefs.operation_brief(record)
    problems = [Diagnostic.model_validate(d) for d in (record.get("error") or {}).get("diagnostics", [])]
    summary = f"Operation {record['id']} ({record['kind']} on {record['env']}) {record['status']}"
    if problems:
        summary += f" at {brief['failed_step'] or 'a step'}: {problems[0].summary}"
    elif OperationStatus(record["status"]).in_flight:
        summary += f" ({brief['steps_total']} journal entries so far)"
    return Outcome(summary + ".", {"operation": brief}, problems, suggest.after_operation(record))
