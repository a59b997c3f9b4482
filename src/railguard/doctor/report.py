"""The doctor's results: per check a status, findings with evidence and remediation, and exit codes.

A check returns one :class:`CheckResult` made of :class:`Finding` values (one per service, pair of
environments, file, ...). The check's status is the worst of its findings. The CLI renders the
report for people, prints it as JSON for agents, and exits with :func:`exit_code` (documented in
docs/doctor.md). Pure data; no I/O.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from railguard.model.diagnostics import Diagnostic, error, warning


class Status(StrEnum):
    passed = "pass"
    warn = "warn"
    fail = "fail"
    skipped = "skipped"


# Which status wins when findings are combined: a failure outranks everything.
_RANK = {Status.fail: 3, Status.warn: 2, Status.passed: 1, Status.skipped: 0}

EXIT_OK = 0  # no check failed (warnings and skipped checks allowed, unless --strict)
EXIT_ERROR = 1  # doctor could not run: bad spec, unknown environment or check id
EXIT_FAILED = 2  # at least one check failed (or warned, with --strict)
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM: the scratch environment was torn down, the report is partial


class Finding(BaseModel):
    """One observation of a check: what it ran and saw, and what to do about it."""

    model_config = ConfigDict(frozen=True)

    status: Status
    subject: str | None = Field(default=None, description="What it is about: a service, a file, two environments.")
    summary: str = Field(description="One line.")
    evidence: list[str] = Field(default_factory=list, description="What was run and what was seen.")
    remediation: str = Field(default="", description="What to do; empty when there is nothing to do.")


class CheckResult(BaseModel):
    """The outcome of one check."""

    model_config = ConfigDict(frozen=True)

    id: str
    title: str
    status: Status
    summary: str
    findings: list[Finding]
    seconds: float = 0.0


def worst(statuses: list[Status]) -> Status:
    return max(statuses, key=lambda s: _RANK[s]) if statuses else Status.skipped


def combine(check_id: str, title: str, findings: list[Finding], seconds: float = 0.0) -> CheckResult:
    """The check's status is the worst finding's; its summary is that finding's (plus how many more)."""
    if not findings:
        findings = [Finding(status=Status.skipped, summary="nothing to check")]
    status = worst([f.status for f in findings])
    top = [f for f in findings if f.status is status]
    summary = top[0].summary + (f" (and {len(top) - 1} more)" if len(top) > 1 else "")
    return CheckResult(id=check_id, title=title, status=status, summary=summary, findings=findings,
                       seconds=round(seconds, 3))


class Report(BaseModel):
    """A whole doctor run."""

    app: str
    env: str
    checks: list[CheckResult]
    seconds: float
    scratch: str = Field(description="The scratch folder used (removed at the end).")
    interrupted: str | None = Field(default=None, description="The signal that stopped the run, if any.")
    cleanup: list[str] = Field(default_factory=list, description="Leftover processes the teardown had to kill.")
    teardown: list[str] = Field(default_factory=list, description="What the teardown removed besides the scratch "
                                "folder: a Kubernetes environment's scratch namespace.")

    def counts(self) -> dict[str, int]:
        found = {s.value: 0 for s in Status}
        for check in self.checks:
            found[check.status.value] += 1
        return found


def exit_code(report: Report, strict: bool = False) -> int:
    if report.interrupted:
        return EXIT_INTERRUPTED
    bad = {Status.fail, Status.warn} if strict else {Status.fail}
    return EXIT_FAILED if any(c.status in bad for c in report.checks) else EXIT_OK


def diagnostics(report: Report) -> list[Diagnostic]:
    """Failed and warning findings in the one error shape (for ``--json`` consumers and the summary)."""
    found: list[Diagnostic] = []
    for check in report.checks:
        for f in check.findings:
            if f.status not in (Status.fail, Status.warn):
                continue
            make = error if f.status is Status.fail else warning
            code = "doctor.check_failed" if f.status is Status.fail else "doctor.check_warning"
            # No "(staging): staging: ..." when the summary names its subject already.
            subject = f" ({f.subject})" if f.subject and not f.summary.startswith(f"{f.subject}: ") else ""
            found.append(make(
                code, f"{check.id}{subject}: {f.summary}",
                " ".join(f.evidence) or f.summary, f.remediation or "See docs/doctor.md.",
                address=f"doctor/{check.id}", extra={"check": check.id, "subject": f.subject}))
    if report.interrupted:
        found.append(error(
            "doctor.interrupted", f"The doctor run was interrupted ({report.interrupted})",
            "The checks that had not finished are reported as skipped. The scratch environment was torn down; "
            "no real environment was touched.",
            "Run `railguard doctor` again; use --check ID to run only some checks.", address="doctor"))
    return found
