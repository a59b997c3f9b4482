"""Check ``monitoring``: every service has a health check, and failures reach someone.

A service without a health check is routed as soon as its port opens and is never known to be
broken; a spec without an ``[alerts]`` hook tells nobody when a rollout fails or a replica keeps
crashing. Both are warnings that come with the snippet to add. A configured hook is checked for
what can be checked without sending anything: a command that exists, a webhook URL that parses.
Static: starts nothing, sends nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse

from railguard.doctor.context import Context
from railguard.doctor.report import Finding, Status

HEALTH_SNIPPET = """[services.{name}.health]
http = "/healthz"       # an endpoint that really checks the database and other dependencies
interval = "2s"
timeout = "1s"
start_period = "10s"
unhealthy_threshold = 3"""

ALERTS_SNIPPET = """[alerts]
webhook = "https://hooks.example.com/railguard"   # receives a JSON POST per failure
# or: command = ["python", "ops/page.py"]         # gets the failure as JSON on stdin"""


def check(ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    for name in ctx.service_names():
        health = ctx.spec.resolved_service(ctx.env, name).health
        if health is None:
            findings.append(Finding(
                status=Status.warn, subject=name, summary="no health check",
                evidence=[f"[services.{name}] has no health section in '{ctx.env}': a replica gets traffic as soon "
                          "as it starts and a broken one is never noticed"],
                remediation="Add one:\n" + HEALTH_SNIPPET.format(name=name)))
        else:
            mode = f"http {health.http}" if health.http else ("tcp" if health.tcp else f"exec {health.exec}")
            findings.append(Finding(status=Status.passed, subject=name, summary=f"health check: {mode}",
                                    evidence=[f"{mode} every {health.interval}, unhealthy after "
                                              f"{health.unhealthy_threshold} failures"]))
    findings.append(_alerts(ctx))
    return findings


def _alerts(ctx: Context) -> Finding:
    alerts = ctx.spec.alerts
    if alerts is None:
        return Finding(status=Status.warn, subject="alerts", summary="no alert hook: failures reach no one",
                       evidence=["the spec has no [alerts] section"],
                       remediation="Add one:\n" + ALERTS_SNIPPET)
    problems: list[str] = []
    evidence: list[str] = []
    if alerts.webhook:
        parsed = urlparse(alerts.webhook)
        evidence.append(f"webhook {parsed.scheme}://{parsed.hostname}{parsed.path} (not called by the doctor)")
        if not parsed.hostname:
            problems.append(f"the webhook {alerts.webhook!r} has no host")
    if alerts.command:
        program = alerts.command[0]
        local = (ctx.ws.root / program) if "/" in program else None
        found = (local is not None and local.exists()) or shutil.which(program) is not None
        evidence.append(f"command {' '.join(alerts.command)} (not run by the doctor)")
        if not found:
            problems.append(f"the alert command {program!r} is not found (relative to {Path(ctx.ws.root)} or PATH)")
    if problems:
        return Finding(status=Status.warn, subject="alerts", summary=problems[0], evidence=evidence + problems,
                       remediation="Fix [alerts] so a failure can reach someone.")
    return Finding(status=Status.passed, subject="alerts", summary="an alert hook is configured", evidence=evidence)
