"""Check ``rollback-drill``: deploy the previous release, then the current one, then roll back, in scratch.

The previous release (see :mod:`railguard.doctor.history`) is run from its own artifact, copied
out of the real state folder; nothing of it is rebuilt. The drill starts from a scratch copy of the
environment's data (its managed Postgres databases too: the scratch deployment's servers are filled from
the doctor's scratch copy before the first deploy, :func:`railguard.doctor.pgscratch.seed_deployment`) and
drives the real engine through a scratch deployment
(:mod:`railguard.doctor.deployment`); warm replicas are dropped first, so the rollback starts the
previous release fresh on the data the current release's ``release`` command migrated: a migration that breaks
rollback fails here instead of during an incident. After each step every routed path is requested
through the scratch edge; an answer of 500 or more fails the step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from railguard.doctor import pgscratch
from railguard.doctor.context import CheckStop, Context
from railguard.doctor.deployment import Deployment, failure_evidence
from railguard.doctor.history import history
from railguard.doctor.report import Finding, Status
from railguard.model.diagnostics import Diagnostic
from railguard.model.resources import Resource

REMEDIATION = ("Keep migrations backward compatible for one release (expand, then contract): add columns and "
               "tables, keep the old ones until the release that stops using them is the one you would roll back "
               "to. Then `railguard doctor --check rollback-drill` again.")


def check(ctx: Context) -> list[Finding]:
    past = history(ctx)
    if past.previous is None:
        return past.nothing_to_roll_back(ctx)
    number = int(past.previous["number"])
    previous = [Resource.model_validate(r) for r in past.previous["desired"]]
    for name, config in past.services().items():
        if ctx.scratch.copy_artifact(ctx.real_home, config["source"] or "", config["build"]) is None:
            return [Finding(status=Status.skipped, subject=name,
                            summary=f"the artifact of release {number} is gone from {ctx.real_home / 'artifacts'}",
                            remediation="Nothing to fix in the app: that release cannot be run again.")]
    data, copied = ctx.data_copy("drill-data")
    try:
        deployment = Deployment(ctx, data, "drill")
        evidence = [f"previous release: {past.reason}; data: scratch copy of {ctx.data_dir()} ({copied} file(s))"]
        # The databases the first deploy will create, as the previous release declared them (else as now).
        declared = {r.name: r for r in ctx.desired if r.kind == "database"}
        declared |= {r.name: r for r in previous if r.kind == "database"}
        evidence += pgscratch.seed_deployment(ctx, deployment.provider, data, deployment.exec_context().app,
                                              list(declared.values()))
        steps = [(f"deploy the previous release ({number})", lambda: deployment.apply(previous)),
                 ("deploy the current working tree", lambda: deployment.apply(ctx.desired))]
        for label, step in steps:
            failed = _step(deployment, label, step, evidence)
            if failed:
                return [failed]
        first = min(r.number for r in deployment.store.releases(ctx.env) if r.status != "failed")
        deployment.drop_warm()  # a warm rollback would only switch the edge back; start it on the new data
        failed = _step(deployment, f"roll back to the previous release (scratch release {first})",
                       lambda: deployment.rollback(first), evidence, after_migration=True)
        if failed:
            return [failed]
    except CheckStop as stop:
        return [stop.finding]
    return [Finding(status=Status.passed, summary=f"release {number} → current → rollback: every step healthy",
                    evidence=evidence + deployment.notes)]


def _step(deployment: Deployment, label: str, step: Callable[[], tuple[dict[str, Any], list[Diagnostic]]],
          evidence: list[str], after_migration: bool = False) -> Finding | None:
    started = time.monotonic()
    record, problems = step()
    took = time.monotonic() - started
    if record["status"] != "succeeded":
        summary = (f"the previous release does not start on the data the current release migrated: "
                   f"{problems[0].summary if problems else 'rollback failed'}" if after_migration
                   else f"{label} failed: {problems[0].summary if problems else record['status']}")
        return Finding(status=Status.fail, summary=summary,
                       evidence=[*evidence, f"{label}: {record['status']} in {took:.1f} s",
                                 *failure_evidence(problems)],
                       remediation=REMEDIATION if after_migration else
                       "Fix what the evidence shows; each release must deploy on the data it will meet.")
    edge = [o.config for o in deployment.store.inventory(deployment.ctx.env) if o.kind == "edge"]
    paths = sorted({route["path"] for config in edge for route in config["routes"]})
    answers = deployment.probe(paths)
    shown = ", ".join(f"GET {p} → {s if s is not None else detail}" for p, s, detail in answers)
    evidence.append(f"{label}: healthy in {took:.1f} s" + (f"; {shown}" if shown else ""))
    broken = [(p, s, detail) for p, s, detail in answers if s is None or s >= 500]
    if broken:
        path, status, detail = broken[0]
        what = f"GET {path} answered {status}: {detail}" if status is not None else f"GET {path} failed: {detail}"
        return Finding(status=Status.fail,
                       summary=(f"after the rollback the previous release breaks on migrated data: {what}"
                                if after_migration else f"{label}: {what}"),
                       evidence=evidence, remediation=REMEDIATION if after_migration else
                       "Fix the error the route answers with; see the logs in the evidence.")
    return None

