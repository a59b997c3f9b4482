"""Check ``timeouts``: every service's timeouts are declared and fit; no outgoing HTTP call waits forever.

The spec half reads each service as the environment resolves it: start, stop and health timeouts
must be declared (not left to defaults nobody chose) and fit together (a health check shorter than
its interval and than the start window; a start period inside the start window). The code half runs
ruff's flake8-bandit rule S113 (``request-without-timeout``: ``requests``/``httpx`` calls without a
timeout) as a subprocess on the app's Python files, plus the ``urlopen`` scan of
:mod:`railguard.doctor.codescan`, which no maintained rule covers. Static: starts nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from railguard.doctor.codescan import python_files, scan
from railguard.doctor.context import Context
from railguard.doctor.report import Finding, Status
from railguard.model.durations import parse_ms

RUFF_RULE = "S113"
RUFF_TIMEOUT_S = 120.0
_CHUNK = 400


def _declared(ctx: Context, name: str) -> set[str]:
    """Service fields written in the spec for this environment (base or override), not defaulted."""
    fields = set(ctx.spec.services[name].model_fields_set)
    override = ctx.spec.environments[ctx.env].services.get(name)
    if override is not None:
        fields |= set(override.model_fields_set)
    return fields


def _spec_findings(ctx: Context, name: str) -> list[Finding]:
    service = ctx.spec.resolved_service(ctx.env, name)
    declared = _declared(ctx, name)
    where = f"[services.{name}]"
    fails: list[str] = []
    warns: list[str] = []
    start, stop = parse_ms(service.start_timeout), parse_ms(service.stop_timeout)
    facts = [f"start_timeout {service.start_timeout}", f"stop_timeout {service.stop_timeout}"]
    for key in ("start_timeout", "stop_timeout"):
        if key not in declared:
            warns.append(f"{key} is not declared (the default {getattr(service, key)} applies)")
    health = service.health
    if health is not None:
        interval, timeout, period = parse_ms(health.interval), parse_ms(health.timeout), parse_ms(health.start_period)
        facts += [f"health timeout {health.timeout} every {health.interval}", f"start_period {health.start_period}"]
        set_in_health = set(health.model_fields_set)
        if "timeout" not in set_in_health:
            warns.append(f"health.timeout is not declared (the default {health.timeout} applies)")
        if timeout > interval:
            fails.append(f"health.timeout {health.timeout} is longer than health.interval {health.interval}: "
                         "checks would overlap")
        if timeout >= start:
            fails.append(f"health.timeout {health.timeout} is not shorter than start_timeout "
                         f"{service.start_timeout}: one slow check uses the whole start window")
        if period > start:
            fails.append(f"health.start_period {health.start_period} is longer than start_timeout "
                         f"{service.start_timeout}: the rollout gives up before failures even count")
    if stop < 1000:
        warns.append(f"stop_timeout {service.stop_timeout} leaves almost no time to finish in-flight requests")
    if fails or warns:
        return [Finding(
            status=Status.fail if fails else Status.warn, subject=name, summary="; ".join(fails or warns),
            evidence=[f"{name} in '{ctx.env}': " + ", ".join(facts), *(fails + warns)[1:]],
            remediation=f"Declare them in {where} so they fit, e.g.\nstart_timeout = \"30s\"\nstop_timeout = \"10s\"\n"
                        f"[services.{name}.health]\ninterval = \"2s\"\ntimeout = \"1s\"\nstart_period = \"10s\"")]
    return [Finding(status=Status.passed, subject=name, summary="timeouts are declared and fit together",
                    evidence=[f"{name} in '{ctx.env}': " + ", ".join(facts)])]


def run_ruff(ctx: Context, files: list[str]) -> tuple[list[dict[str, Any]], str | None, str]:
    """ruff's S113 findings on ``files``; (findings, problem, the command line shown as evidence)."""
    base = [sys.executable, "-m", "ruff", "check", "--isolated", "--select", RUFF_RULE, "--output-format", "json",
            "--no-cache", "--exit-zero"]
    shown = " ".join(["ruff", *base[3:], f"<{len(files)} Python file(s)>"])
    found: list[dict[str, Any]] = []
    for start in range(0, len(files), _CHUNK):
        try:
            done = subprocess.run([*base, *files[start:start + _CHUNK]], cwd=ctx.source_root, capture_output=True,
                                  text=True, timeout=RUFF_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return [], f"ruff could not run: {exc}", shown
        if done.returncode != 0:
            return [], f"ruff failed (exit {done.returncode}): {done.stderr.strip()[-300:]}", shown
        try:
            found += json.loads(done.stdout or "[]")
        except ValueError:
            return [], f"ruff printed something that is not JSON: {done.stdout[:200]!r}", shown
    return found, None, shown


def _code_findings(ctx: Context) -> list[Finding]:
    files = python_files(ctx.files)
    if not files:
        return [Finding(status=Status.skipped, summary="no Python files in the app source to scan",
                        evidence=[f"source: {ctx.source_root}"])]
    found, problem, shown = run_ruff(ctx, files)
    if problem:
        return [Finding(status=Status.skipped, summary=problem, evidence=[shown],
                        remediation="Install ruff into Railguard's environment (`pip install ruff`).")]
    findings: list[Finding] = []
    for item in found[:30]:
        rel = str(item.get("filename", "?")).removeprefix(str(ctx.source_root) + "/")
        line = item.get("location", {}).get("row", 0)
        findings.append(Finding(
            status=Status.fail, subject=f"{rel}:{line}", summary=f"{item.get('message', 'call without a timeout')}",
            evidence=[f"{shown}: {item.get('code')} {item.get('name', '')} at {rel}:{line}"],
            remediation="Pass a timeout, e.g. requests.get(url, timeout=10): without one a slow peer holds the "
                        "request (and a worker) forever."))
    urlopen = scan(ctx.source_root, ctx.files).calls
    for call in urlopen[:30]:
        findings.append(Finding(
            status=Status.fail, subject=f"{call.file}:{call.line}", summary=f"{call.call}() without a timeout",
            evidence=[f"Python's ast: {call.call}(...) at {call.file}:{call.line} passes no timeout "
                      "(no ruff rule covers urlopen)"],
            remediation="Pass timeout=..., e.g. urlopen(url, timeout=10)."))
    if not findings:
        findings.append(Finding(
            status=Status.passed, summary=f"no outgoing HTTP call without a timeout in {len(files)} Python file(s)",
            evidence=[f"{shown}: no finding", "ast scan for urllib.request.urlopen without timeout: none"]))
    return findings


def check(ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    for name in ctx.service_names():
        findings += _spec_findings(ctx, name)
    return findings + _code_findings(ctx)
