"""``diagnose``: why a service or an operation is unhealthy or failed, and the one right next step.

It gathers what a person would look at — the operation's error diagnostics and the step that failed,
the live status (health, restarts, warm releases), the releases, recent events, the log tail — and
:func:`assess` (pure) decides what they mean:

- a rollout that failed **before** its switch left traffic where it was: no rollback (it would go
  back further than the release that still runs); read the failed release's logs, fix, plan again;
- a failure **after** some services switched: roll back to the last release that ran healthy;
- a live release that crashes, fails its health checks or answers 5xx at the edge: roll back to the
  release before it (instant while warm), and read the bad release's logs;
- a replica killed by a signal from outside and already restarted is not a crash of the code;
- open incidents (and the rollbacks observation already made) are findings, with ``get_incident``.

Registered in :mod:`railguard.mcp.catalog`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from railguard.mcp import briefs
from railguard.mcp.catalog import tool
from railguard.mcp.gateway import operation_in_short, status_with
from railguard.mcp.inputs import DiagnoseArgs
from railguard.mcp.outputs import Diagnosis, MinuteBrief, NextAction, ServiceBrief
from railguard.mcp.results import Call, Outcome, act
from railguard.model.api import (
    EnvironmentStatus,
    Event,
    Health,
    Incident,
    LogFile,
    Operation,
    OperationStatus,
    Release,
    ReleaseStatus,
    ReplicaHealth,
)
from railguard.model.diagnostics import Diagnostic, RailguardError, error
from railguard.model.principals import Permission

LOG_READ = 200  # lines read per log file; repeats (health-check access lines) are folded, then the last kept
LOG_LINES = 20
EVENTS_READ = 40  # newest events searched for ones about the focus
BAD_HEALTH = tuple(h.value for h in ReplicaHealth if h.bad)  # one vocabulary: model/api.py


@dataclass
class Assessment:
    """What :func:`assess` concluded, and where to look next (the service and release whose logs to read)."""

    verdict: str = "healthy"
    findings: list[str] = field(default_factory=list)
    cause: Diagnostic | None = None
    focus: str | None = None
    log_release: int | None = None
    live_release: int | None = None
    last_good_release: int | None = None
    actions: list[NextAction] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def fold(lines: list[str]) -> list[str]:
    """Consecutive repeats as one line with a count, so a crash is not pushed out of the tail by noise."""
    out: list[str] = []
    count = 0
    for i, line in enumerate(lines):
        count += 1
        if i + 1 == len(lines) or lines[i + 1] != line:
            out.append(line[:300] + (f"  [×{count}]" if count > 1 else ""))
            count = 0
    return out[-LOG_LINES:]


def _service_of(step: str | None) -> str | None:
    """'replace staging/service.web' or 'staging/service.web: gate' → 'web'."""
    if not step or "/service." not in step:
        return None
    return step.split("/service.", 1)[1].split(":", 1)[0].split()[0]


ERROR_RATIO = 0.05  # a live release answering more 5xx than this over the last minute is erroring
MIN_REQUESTS = 20


def _erroring(svc: ServiceBrief) -> MinuteBrief | None:
    return _erroring_minute(svc.requests)


def _erroring_minute(minute: MinuteBrief | None) -> MinuteBrief | None:
    if minute is not None and minute.requests >= MIN_REQUESTS and minute.error_ratio > ERROR_RATIO:
        return minute
    return None


def _killed_and_recovered(svc: ServiceBrief, unhealthy: list[str]) -> bool:
    """One out-of-band kill the supervisor already repaired: not a crash of the code."""
    return (not unhealthy and svc.restarts <= 1 and bool(svc.last_exit)
            and all(e.startswith("killed by") for e in svc.last_exit))


def _replica_sets(svc: ServiceBrief) -> str:
    """A Kubernetes service's ReplicaSets in one line: which release each runs and how many pods are ready."""
    shown = [f"release {r.release}: {r.ready}/{r.replicas} ready ({r.name})" for r in svc.replica_sets[:4]]
    return f"{svc.name}'s ReplicaSets: {'; '.join(shown)}." if shown else ""


def assess(env: str, service: str | None, status: EnvironmentStatus, releases: list[Release],
           op: Operation | None, incidents: list[Incident] | None = None) -> Assessment:
    """What the facts mean: verdict, findings, cause, the service and release to read logs of, next actions."""
    entries = {s.name: s for s in status.services}
    briefed: dict[str, ServiceBrief] = {}

    def brief(name: str) -> ServiceBrief:  # only the services looked at are briefed (not all 200 of them)
        if name not in briefed:
            briefed[name] = briefs.service_brief(entries[name])
        return briefed[name]

    live = next((r for r in releases if r.status is ReleaseStatus.live), None)
    found = Assessment(focus=service, live_release=live.number if live else None)
    findings, actions = found.findings, found.actions
    if status.operation is not None:
        flight = status.operation
        found.verdict = "progressing"
        findings.append(f"Operation {flight.id} ({flight.kind.value}) is {flight.status.value}.")
        actions.append(act("get_operation", "Wait for it to end.", operation_id=flight.id, wait_s=30))
    if op is not None and op.status is OperationStatus.failed:
        problems = list(op.error.diagnostics) if op.error else []
        step = briefs.failed_step(op)
        focus = service or _service_of(step)
        made = next((r for r in releases if r.operation_id == op.id), None)
        found.verdict, found.focus, found.diagnostics = "failed", focus, problems
        found.cause = problems[0] if problems else None
        found.log_release = made.number if made else None
        findings.append(f"Operation {op.id} ({op.kind.value}) failed at '{step or 'an early check'}'"
                        + (f": {problems[0].summary}." if problems else "."))
        switched = sorted(s.name for s in entries.values() if made and s.release == made.number)
        if made and switched:
            good = briefs.last_good(releases, before=made.number)
            findings.append(f"{', '.join(switched)} already run(s) release {made.number}: the change is half done.")
            if good is not None:
                found.last_good_release = good.number
                actions.append(act("rollback", f"Restore release {good.number}, the last one that ran healthy.",
                                   env=env, to=good.number))
        elif live is not None:
            findings.append(f"Traffic never moved: {env} still runs release {live.number}. A rollback is not "
                            "needed (it would go back further than the release that runs now).")
            found.last_good_release = live.number
        else:
            findings.append(f"Nothing of it went live, and nothing ran in {env} before.")
        if focus in entries and (sets := _replica_sets(brief(focus))):
            findings.append(sets)
        if focus and made:
            actions.append(act("read_logs", f"Read the failed release {made.number}'s logs.", env=env,
                               service=focus, release=made.number, lines=50))
        actions.append(act("plan", "After fixing the cause (see the remediation), plan again.", env=env))
        return found
    for found_incident in (incidents or [])[:3]:  # newest first: what observation already found and did
        if service is not None and found_incident.service not in (None, service):
            continue
        findings.append(f"Incident {found_incident.id} ({found_incident.state.value}): {found_incident.summary}"
                        + (f" Rolled back by operation {found_incident.operation}." if found_incident.operation
                           else ""))
        actions.append(act("get_incident", "Read its evidence and next actions.", incident_id=found_incident.id))
    candidates = [brief(service)] if service in entries else [
        brief(s.name) for s in status.services if briefs.recent_restarts(s)
        or _erroring_minute(briefs.minute(s.requests)) or s.status in (Health.degraded, Health.missing)]
    if service is not None and service not in entries:
        found.verdict = "missing"
        findings.append(f"No service '{service}' runs in {env}.")
        actions.append(act("plan", "See what deploying the spec would do.", env=env))
        return found
    for svc in candidates[:1]:
        found.focus = svc.name
        unhealthy = [h for h in svc.health if h in BAD_HEALTH]  # "unknown": not checked yet since it started
        erroring = _erroring(svc)
        if _killed_and_recovered(svc, unhealthy) and not erroring:
            findings.append(f"{svc.name} is healthy again: a replica was {svc.last_exit[0]} and the supervisor "
                            "restarted it. Nothing in the code needs fixing for that; find out who sent the signal.")
            continue
        if not (svc.restarts or unhealthy or erroring):
            findings.append(f"{svc.name} is healthy: release {svc.release}, {svc.replicas} replica(s).")
            continue
        verdict = "crashing" if svc.restarts else "degraded" if unhealthy else "erroring"
        found.verdict, found.log_release = verdict, svc.release
        what = (f"{svc.restarts} restart(s) in the last 10 minutes" if svc.restarts else "")
        if svc.last_exit:
            what += f" (last: {'; '.join(svc.last_exit)})"
        what += (("; " if what else "") + f"replica health {', '.join(svc.health)}") if unhealthy else ""
        if erroring:
            what += (("; " if what else "") + f"{erroring.error_ratio:.0%} of {erroring.requests} requests in "
                     "the last minute got a 5xx at the edge")
        findings.append(f"{svc.name} runs release {svc.release}: {what}.")
        if sets := _replica_sets(svc):
            findings.append(sets)
        good = briefs.last_good(releases, before=svc.release) if svc.release else None
        cause = error("service.degraded", f"{svc.name} is {verdict} on release {svc.release}",
                      f"The live replicas of {svc.address}: {what}. Its log tail shows what they print.",
                      f"Roll back to release {good.number} while you fix it, then plan again." if good else
                      "Fix the cause shown in the logs, then plan again.", address=svc.address,
                      extra={"release": svc.release, "restarts": svc.restarts, "health": svc.health})
        found.cause, found.diagnostics = cause, [cause]
        if good is not None:
            found.last_good_release = good.number
            warm = " (still warm: instant)" if good.number in svc.warm else ""
            findings.append(f"Release {good.number} ran before it{warm}.")
            actions.append(act("rollback", f"Restore release {good.number}, which ran before the bad one{warm}.",
                               env=env, to=good.number))
        actions.append(act("read_logs", f"Read release {svc.release}'s logs.", env=env, service=svc.name,
                           release=svc.release, lines=50))
    if not candidates and status.operation is None:
        findings.append(f"All {len(entries)} service(s) in {env} are healthy." if entries else
                        f"Nothing runs in {env} yet.")
        if not entries:
            actions.append(act("plan", "Plan a first deploy.", env=env))
    return found


def _related(event: Event, focus: str | None, op: Operation | None) -> bool:
    return bool(focus and (f".{focus}." in event.message or (event.address or "").endswith(f"service.{focus}"))) \
        or (op is not None and event.data.get("operation") == op.id)


@tool("diagnose", title="Diagnose a service or operation", inputs=DiagnoseArgs, outputs=Diagnosis,
      permission=Permission.read, read_only=True, idempotent=True)
async def diagnose(call: Call, args: DiagnoseArgs) -> Outcome:
    """Why a service or an operation is unhealthy or failed, and what to do next: combines the operation's error
    diagnostics and failed step, the live status (health, restarts, warm releases), the releases, recent events
    and the log tail. Its next actions say whether to roll back (and to which release) or to fix and plan again."""
    gw, spec = call.gw, call.gw.spec_path()
    recent_failed = not args.operation_id and args.service is None
    # One request for the status and every read that does not depend on what it says (it was five).
    read = await gw.run(lambda c: status_with(c, args.env, spec, releases=50, events=EVENTS_READ, incidents=True,
                                              operations=1 if recent_failed else None))
    status, releases, events = read.status, read.releases or [], read.events or []
    op: Operation | None = None
    if args.operation_id:
        op_id = args.operation_id
        op = await gw.run(lambda c: operation_in_short(c, op_id))
        if op.env != args.env:
            raise RailguardError(error(
                "mcp.env_mismatch", f"Operation {op.id} ran in '{op.env}', not '{args.env}'",
                "The operation named belongs to another environment.",
                f"Call diagnose with env '{op.env}'.", address=op.id))
    elif recent_failed:
        recent = read.operations or []
        op = recent[0] if recent and recent[0].status is OperationStatus.failed else None
    found = assess(args.env, args.service, status, releases, op, read.incidents or [])
    focus, tail = found.focus, []
    if focus:
        logs = await gw.run(lambda c: c.logs(args.env, focus, found.log_release, LOG_READ))
        tail = [LogFile(name=f.name, lines=fold(f.lines)) for f in logs.files[-2:]]
    related = [briefs.event_brief(e, 300) for e in events if _related(e, focus, op)][-8:]
    brief = next((briefs.service_brief(s) for s in status.services if s.name == focus), None)
    summary = f"{args.env}" + (f"/{focus}" if focus else "") + f": {found.verdict}. " + " ".join(found.findings)
    details = [f"{f.name}: {line}" for f in tail for line in f.lines[-8:]]
    return Outcome(summary, details=details, payload=Diagnosis(
        verdict=found.verdict, findings=found.findings, cause=found.cause, service=brief,
        operation=briefs.operation_brief(op) if op else None, live_release=found.live_release,
        last_good_release=found.last_good_release, log_tail=tail, events=related,
    ), diagnostics=found.diagnostics, next_actions=found.actions)
