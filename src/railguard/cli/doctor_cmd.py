"""``railguard doctor`` and ``railguard ci github``: readiness checks in scratch, and the CI workflow.

``doctor`` runs in this process, not in the daemon: it reads the real state and data folders only and
does everything else in a scratch environment it tears down itself (see
:mod:`railguard.doctor`). People see each check as it finishes, then a summary; ``--json``
prints the whole report. Exit codes (docs/doctor.md): 0 no check failed, 1 doctor could not run,
2 a check failed (or warned, with ``--strict``), 130 interrupted.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from railguard.cli.common import ADMIN, OBSERVE, EnvOpt, JsonOpt, SpecOpt, add, pick_env
from railguard.cli.output import diagnostics_json, emit_json, escape, finish, guarded, out, print_diagnostics
from railguard.doctor.report import CheckResult, Report, Status, diagnostics, exit_code
from railguard.engine.workspace import Workspace, require_env

_TAGS = {Status.passed: "[green]PASS[/]", Status.warn: "[yellow]WARN[/]", Status.fail: "[red]FAIL[/]",
         Status.skipped: "[dim]SKIP[/]"}

CheckOpt = Annotated[Optional[list[str]], typer.Option(
    "--check", "-c", help="Run only this check (repeat, or comma-separate). Ids: `railguard doctor --list`.")]


def show(result: CheckResult) -> None:
    out.print(f"{_TAGS[result.status]}  {result.id:<19} {escape(result.summary)}  [dim]{result.seconds:.1f}s[/]")
    if result.status is Status.passed:
        return
    for finding in result.findings:
        if finding.status is Status.passed:
            continue
        subject = f"{finding.subject}: " if finding.subject else ""
        if finding.summary.startswith(subject):  # a summary that names its subject already ("staging: ...")
            subject = ""
        if len(result.findings) > 1:
            out.print(f"      {_TAGS[finding.status]} {escape(subject + finding.summary)}")
        for line in finding.evidence:
            out.print(f"        [dim]{escape(line)}[/]")
        if finding.remediation:
            fix = finding.remediation.replace("\n", "\n          ")
            out.print(f"        [bold]→[/] {escape(fix)}")


def summary(report: Report, code: int) -> None:
    counts = report.counts()
    text = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    if report.interrupted:
        out.print(f"[red]Interrupted ({report.interrupted}).[/] The scratch environment was removed.")
    for note in report.teardown:  # a Kubernetes environment's scratch namespace
        out.print(escape(note[:1].upper() + note[1:] + "."))
    out.print(f"{len(report.checks)} check(s): {text} in {report.seconds:.1f} s. Exit {code}.")


@guarded()
def doctor(
    env: EnvOpt = None,
    check: CheckOpt = None,
    spec: SpecOpt = None,
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too (exit 2).")] = False,
    list_checks: Annotated[bool, typer.Option("--list", help="List the checks and exit.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Prove the app is fit to ship: run readiness checks in a throwaway scratch environment."""
    # Imported here: the checks pull in the local runtime, which every other command would pay for at start-up.
    from railguard.doctor.runner import CHECKS, ISOLATION_CODES, run
    if list_checks:
        if as_json:
            finish(True, [], {"checks": [{"id": c.id, "title": c.title} for c in CHECKS]})
        for c in CHECKS:
            out.print(f"{c.id:<19} {c.title}")
        raise typer.Exit(0)
    ws = Workspace.locate(spec)
    parsed, _ = ws.load_valid(ISOLATION_CODES)
    name = pick_env(parsed, env)
    if not as_json:
        out.print(f"railguard doctor: {parsed.app.name}, environment {name} (in a scratch environment; "
                  "nothing real is touched)")
    report = run(ws, name, check, on_result=None if as_json else show)
    code = exit_code(report, strict)
    found = diagnostics(report)
    if as_json:
        emit_json({"ok": code == 0, "diagnostics": diagnostics_json(found),
                   "doctor": {**report.model_dump(mode="json"), "counts": report.counts(), "exit_code": code}})
        raise typer.Exit(code)
    if report.interrupted:
        print_diagnostics([d for d in found if d.code == "doctor.interrupted"])
    summary(report, code)
    raise typer.Exit(code)


ci = typer.Typer(help="Continuous integration: workflows that run Railguard's gates.", no_args_is_help=True)


@guarded()
def github(env: EnvOpt = None, spec: SpecOpt = None, as_json: JsonOpt = False) -> None:
    """Print a GitHub Actions workflow running validate, plan --detailed-exitcode and doctor."""
    from railguard.doctor.ci import github_workflow  # see doctor(): kept off every command's start-up
    ws = Workspace.locate(spec)
    parsed, _ = ws.load_valid()
    if env is not None:
        require_env(parsed, env)
    text = github_workflow(parsed, ws.spec_path, env)
    if as_json:
        finish(True, [], {"path": ".github/workflows/railguard.yml", "workflow": text})
    sys.stdout.write(text)


def register(app: typer.Typer) -> None:
    add(app, doctor, OBSERVE, "railguard doctor --env staging", "railguard doctor --env production --strict --json",
        "railguard doctor --list")
    add(ci, github, ADMIN, "railguard ci github --env staging > .github/workflows/railguard.yml", name="github")
    app.add_typer(ci, name="ci", rich_help_panel=ADMIN)
