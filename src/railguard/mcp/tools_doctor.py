"""``doctor`` over MCP: the readiness checks, run in a scratch environment, with progress notifications.

An agent learns before its second deploy that a release command is not idempotent or a health check lies.
The doctor never touches a real environment (it works on copies in a scratch folder with its own ports,
processes and edge, torn down even when interrupted), so the tool is read-only and open to every role,
the viewer included. It runs in the MCP server's process (like ``railguard doctor`` in the CLI's), on a
worker thread; each finished check is reported as an MCP progress notification. Registered in
:mod:`railguard.mcp.catalog`.
"""

from __future__ import annotations

from typing import Annotated

import anyio
import anyio.from_thread
import anyio.to_thread
from pydantic import Field

from railguard.doctor.report import CheckResult, Status, diagnostics, exit_code
from railguard.doctor.runner import CHECKS
from railguard.doctor.runner import run as run_doctor
from railguard.mcp.catalog import tool
from railguard.mcp.inputs import Args, Env
from railguard.mcp.outputs import DoctorPayload
from railguard.mcp.results import Call, Outcome, act
from railguard.model.principals import Permission

CheckId = Annotated[str, Field(pattern=r"^[a-z][a-z-]{1,40}$", description="A check id, e.g. 'idempotent-release'.")]


class DoctorArgs(Args):
    env: Env
    checks: list[CheckId] | None = Field(default=None, max_length=20, description=(
        "Only these checks (ids: " + ", ".join(c.id for c in CHECKS) + "); all by default."))


@tool("doctor", title="Readiness checks in a scratch environment", inputs=DoctorArgs, outputs=DoctorPayload,
      permission=Permission.read, read_only=True, idempotent=True, needs_daemon=False)
async def doctor(call: Call, args: DoctorArgs) -> Outcome:
    """Prove the app is fit to ship before deploying it: timeouts, the release command run twice and on the
    previous data, honest health, variables, isolation, graceful shutdown, $PORT, monitoring, a rollback drill,
    CI. Runs in a throwaway scratch environment (never a real one); takes seconds to a minute; reports each
    finished check as a progress notification. Each check says pass/warn/fail with evidence and remediation."""
    total = len(args.checks or CHECKS)
    done: list[CheckResult] = []

    async def notify(count: float, message: str) -> None:
        if call.progress is not None:
            await call.progress(count, float(total), message)

    def on_result(result: CheckResult) -> None:  # on the worker thread
        done.append(result)
        anyio.from_thread.run(notify, float(len(done)), f"{result.id}: {result.status.value} — {result.summary}"[:300])

    report = await anyio.to_thread.run_sync(lambda: run_doctor(call.gw.ws, args.env, args.checks,
                                                                on_result=on_result))
    code = exit_code(report, False)
    counts = report.counts()
    failed = [c for c in report.checks if c.status is Status.fail]
    summary = (f"doctor on {args.env}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
               + (f"; failed: {', '.join(c.id for c in failed)}." if failed else "."))
    actions = ([act("validate_spec", "Fix what the failed checks say (each has a remediation), then validate.")]
               if failed else [act("plan", "Fit to ship: plan the deploy.", env=args.env)])
    return Outcome(summary, DoctorPayload(doctor={**report.model_dump(mode="json"), "counts": counts,
                                                  "exit_code": code}),
                   diagnostics=diagnostics(report), next_actions=actions,
                   details=[f"{c.id}: {c.status.value} — {c.summary}" for c in report.checks])
