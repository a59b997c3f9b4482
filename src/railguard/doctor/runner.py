"""Running the doctor: pick the checks, run them one by one in scratch, always tear the scratch down.

The list of checks (:data:`CHECKS`) is the public contract: ids are stable, documented in
docs/doctor.md, selectable with ``--check``. The run loads the spec (errors stop it before anything
starts), creates the scratch, runs each check with its findings timed, and on Ctrl-C or SIGTERM stops
at once, reports the unfinished checks as skipped and still tears the scratch down (with both
signals ignored meanwhile, so a second Ctrl-C cannot leave processes behind). A check that crashes is
reported as skipped with ``internal.error`` rather than blamed on the app. Called by ``railguard doctor``.
"""

from __future__ import annotations

import difflib
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from railguard.doctor import ci, drill, envs, health, kube, lifecycle, monitoring, releases, timeouts
from railguard.doctor.context import CheckStop, Context
from railguard.doctor.deployment import PLACEHOLDERS_USED, placeholder_finding
from railguard.doctor.report import CheckResult, Finding, Report, Status, combine
from railguard.doctor.scratch import Interrupted, Scratch
from railguard.engine.plan import desired_for
from railguard.engine.workspace import Workspace, require_env
from railguard.model.diagnostics import RailguardError, error
from railguard.secrets.redaction import Redactor
from railguard.sources.snapshot import list_files


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    run: Callable[[Context], list[Finding]]


CHECKS: list[Check] = [
    Check("timeouts", "Timeouts are declared and fit; no HTTP call without a timeout", timeouts.check),
    Check("idempotent-release", "The release command can run twice without changing anything", releases.idempotent),
    Check("migrations-forward", "The release command upgrades the previous release's data", releases.forward),
    Check("honest-health", "The health check fails when a dependency is broken", health.check),
    Check("env-parity", "Every environment declares the same names, and everything the code reads",
          envs.parity),
    Check("env-isolation", "No two environments share a port, host, data folder or database", envs.isolation),
    Check("graceful-shutdown", "On SIGTERM, requests in flight finish within stop_timeout",
          lifecycle.graceful_shutdown),
    Check("port-binding", "The app listens on $PORT", lifecycle.port_binding),
    Check("monitoring", "Every service has a health check and failures reach someone", monitoring.check),
    Check("rollback-drill", "Previous release, current, rollback: healthy at every step", drill.check),
    Check("ci-gate", "CI runs validate and plan --detailed-exitcode", ci.check),
]


def select_checks(ids: list[str] | None) -> list[Check]:
    if not ids:
        return list(CHECKS)
    known = {c.id: c for c in CHECKS}
    wanted = [i.strip() for raw in ids for i in raw.split(",") if i.strip()]
    unknown = [i for i in wanted if i not in known]
    if unknown:
        guess = difflib.get_close_matches(unknown[0], list(known), n=1, cutoff=0.5)
        raise RailguardError(error(
            "doctor.unknown_check", f"No check '{unknown[0]}'",
            f"The doctor's checks are: {', '.join(known)}.",
            (f"Did you mean '{guess[0]}'? " if guess else "") + "Pass ids with --check (see docs/doctor.md).",
            address=f"doctor/{unknown[0]}", extra={"suggestion": guess[0] if guess else None}))
    return [c for c in CHECKS if c.id in wanted]


# Validation already refuses environments that share resources; the doctor still runs so env-isolation can
# report them with its evidence (and the further links it finds).
ISOLATION_CODES = frozenset({"spec.shared_resource", "spec.edge_port_conflict", "spec.data_dir_unsafe",
                             "spec.namespace_shared"})


def context(ws: Workspace, env: str, scratch: Scratch) -> Context:
    spec, _ = ws.load_valid(ISOLATION_CODES)
    require_env(spec, env)
    desired = desired_for(ws, spec, env)
    source_root = (ws.root / spec.app.source).resolve()
    digest = next((r.config["source"] for r in desired if r.kind == "service"), "") or ""
    return Context(ws=ws, spec=spec, env=env, source_root=source_root, files=list_files(source_root),
                   source_digest=digest, desired=desired, scratch=scratch)


@contextmanager
def _signals() -> Iterator[None]:
    """SIGTERM interrupts the run like Ctrl-C does (main thread only; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise Interrupted("SIGTERM")

    before = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


@contextmanager
def _shielded() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM while tearing down: a second signal must not leave processes behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _run_one(check: Check, ctx: Context) -> CheckResult:
    started = time.monotonic()
    # A Kubernetes environment's scratch is a namespace: its checks run there, or say why they do not apply.
    run = kube.CHECKS.get(check.id, check.run) if kube.is_kubernetes(ctx) else check.run
    if check.id == "env-isolation" and kube.is_kubernetes(ctx):
        run = kube.isolation
    ctx.cache[PLACEHOLDERS_USED] = set()
    try:
        findings = run(ctx)
    except CheckStop as stop:
        findings = [stop.finding]
    except RailguardError as exc:
        first = exc.diagnostics[0]
        findings = [Finding(status=Status.skipped, summary=f"could not run: {first.summary}",
                            evidence=[first.detail], remediation=first.remediation)]
    except Exception as exc:  # a bug in one check must not hide the others' results
        if os.environ.get("RAILGUARD_DEBUG"):
            traceback.print_exc()
        findings = [Finding(status=Status.skipped, summary=f"internal error in the check: {type(exc).__name__}: {exc}",
                            evidence=["This is a bug in Railguard, not a finding about the app (internal.error)."],
                            remediation="Re-run with RAILGUARD_DEBUG=1 to see the traceback and report it.")]
    used = ctx.cache.pop(PLACEHOLDERS_USED, set())
    if used:  # a protected environment: say which secrets the scratch runs got as placeholders
        findings = [*findings, placeholder_finding(used, ctx.env)]
    return combine(check.id, check.title, _redacted(ctx, findings), time.monotonic() - started)


def _redacted(ctx: Context, findings: list[Finding]) -> list[Finding]:
    """Scratch runs get the environment's secrets; a log tail or an error that echoes one never shows it."""
    pairs = [(n, v) for key, got in ctx.cache.items() if key.startswith("secrets:") and isinstance(got, dict)
             for n, v in got.items()]
    if not pairs:
        return findings
    redact = Redactor()
    redact.update(pairs)
    return [f.model_copy(update={"summary": redact(f.summary), "evidence": [redact(e) for e in f.evidence],
                                 "remediation": redact(f.remediation)}) for f in findings]


def run(ws: Workspace, env: str, ids: list[str] | None = None, *, base: Path | None = None,
        allocate: Callable[[], int] | None = None,
        on_result: Callable[[CheckResult], Any] | None = None) -> Report:
    """Run the selected checks against ``env``; the scratch is gone when this returns or raises."""
    checks = select_checks(ids)
    spec, _ = ws.load_valid(ISOLATION_CODES)
    require_env(spec, env)
    started = time.monotonic()
    results: list[CheckResult] = []
    interrupted: str | None = None
    cleanup: list[str] = []
    ctx: Context | None = None
    try:
        scratch = Scratch(base, allocate)
        scratch.isolate(spec.app.name)  # as root: the app's code in scratch runs as rg-scratch-<app>
    except OSError as exc:
        raise RailguardError(error(
            "doctor.no_scratch", "The scratch folder could not be created",
            f"The doctor works in a temporary folder and could not make one: {exc}.",
            "Point TMPDIR at a writable folder with some free space, then run `railguard doctor` again.",
            address=str(base or "$TMPDIR"))) from exc
    try:
        with _signals():
            try:
                ctx = context(ws, env, scratch)
                for check in checks:
                    result = _run_one(check, ctx)
                    results.append(result)
                    if on_result is not None:
                        on_result(result)
            except (KeyboardInterrupt, Interrupted) as exc:
                interrupted = exc.signame if isinstance(exc, Interrupted) else "SIGINT"
    finally:
        with _shielded():
            cleanup = scratch.close()
    if interrupted:
        done = {r.id for r in results}
        for check in checks:
            if check.id not in done:
                results.append(combine(check.id, check.title, [Finding(
                    status=Status.skipped, summary=f"not finished: interrupted by {interrupted}")]))
    return Report(app=spec.app.name, env=env, checks=results, seconds=round(time.monotonic() - started, 3),
                  scratch=str(scratch.root), interrupted=interrupted, cleanup=cleanup,
                  teardown=list(ctx.notes) if ctx is not None else [])
