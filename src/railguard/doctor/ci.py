"""Check ``ci-gate`` and ``railguard ci github``: the repository's CI runs Railguard's gates.

The check reads the CI files of the repository holding the spec (from the spec's folder up to the git
root: GitHub/Gitea/Forgejo workflows, GitLab, CircleCI, Azure, Bitbucket, Woodpecker, Jenkinsfile) as
text and looks for ``railguard validate`` and ``railguard plan ... --detailed-exitcode`` (a failing
spec or an errored plan must fail the build), and ``railguard doctor``. :func:`github_workflow` writes
the workflow that does all three, which ``railguard ci github`` prints.
"""

from __future__ import annotations

import re
from pathlib import Path

from railguard.doctor.context import Context
from railguard.doctor.report import Finding, Status
from railguard.model.spec import Spec

PATTERNS = (".github/workflows/*.yml", ".github/workflows/*.yaml", ".gitea/workflows/*.yml",
            ".forgejo/workflows/*.yml", ".gitlab-ci.yml", ".circleci/config.yml", "azure-pipelines.yml",
            "bitbucket-pipelines.yml", ".woodpecker.yml", ".woodpecker/*.yml", "Jenkinsfile")
WANTED = {
    "validate": re.compile(r"railguard\s+validate\b"),
    "plan": re.compile(r"railguard\s+plan\b[^\n]*--detailed-exitcode"),
    "doctor": re.compile(r"railguard\s+doctor\b"),
}
FIX = "railguard ci github > .github/workflows/railguard.yml"


def repository_root(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return None


def ci_files(spec_dir: Path) -> list[Path]:
    root = repository_root(spec_dir)
    folders = [spec_dir] if root is None else \
        [f for f in (spec_dir, *spec_dir.parents) if f == root or root in f.parents]
    found: list[Path] = []
    for folder in folders:
        for pattern in PATTERNS:
            found += sorted(p for p in folder.glob(pattern) if p.is_file())
    return found


def _lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace").replace("\\\n", " ")
    return text.splitlines()


def check(ctx: Context) -> list[Finding]:
    files = ci_files(ctx.ws.root)
    if not files:
        return [Finding(status=Status.fail, subject="ci", summary="no CI configuration found",
                        evidence=[f"looked for {', '.join(PATTERNS)} from {ctx.ws.root} up to the repository root"],
                        remediation=f"Add a workflow that runs the gates: `{FIX}`")]
    hits: dict[str, list[str]] = {key: [] for key in WANTED}
    for path in files:
        for number, line in enumerate(_lines(path), 1):
            for key, pattern in WANTED.items():
                if pattern.search(line) and not line.lstrip().startswith("#"):
                    hits[key].append(f"{_rel(path, ctx.ws.root)}:{number}")
    shown = [f"read {', '.join(_rel(p, ctx.ws.root) for p in files)}"]
    findings: list[Finding] = []
    for key, what in (("validate", "`railguard validate`"), ("plan", "`railguard plan --detailed-exitcode`")):
        if hits[key]:
            findings.append(Finding(status=Status.passed, subject="ci", summary=f"CI runs {what}",
                                    evidence=[*shown, f"{what} at {', '.join(hits[key])}"]))
        else:
            findings.append(Finding(status=Status.fail, subject="ci", summary=f"CI does not run {what}",
                                    evidence=[*shown, f"no line runs {what}"],
                                    remediation=f"Run it on every push and pull request, e.g. `{FIX}`."))
    if not hits["doctor"]:
        findings.append(Finding(status=Status.warn, subject="ci", summary="CI does not run `railguard doctor`",
                                evidence=[*shown, "no line runs `railguard doctor`"],
                                remediation=f"Add a step `railguard doctor --env {ctx.env}` "
                                            "(see `railguard ci github`)."))
    return findings


def _rel(path: Path, base: Path) -> str:
    root = repository_root(base) or base
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _fixture_note(spec: Spec) -> str:
    """A fresh checkout has no data: the release checks protect the spec's [doctor] fixture, or nothing."""
    fixture = spec.doctor.fixture if spec.doctor is not None else None
    if fixture is None:
        return ("      # No [doctor] fixture in the spec: on this fresh checkout the release checks have no data to\n"
                "      # protect and only warn. Set `[doctor] fixture = \"seed.sql\"` so a destructive release\n"
                "      # command fails this job.\n")
    shown = fixture if isinstance(fixture, str) else " ".join(fixture)
    return (f"      # The release checks run on the data of the spec's [doctor] fixture ({shown}): a release\n"
            "      # command that drops tables, columns or rows fails this job.\n")


def github_workflow(spec: Spec, spec_path: Path, env: str | None = None) -> str:
    """A GitHub Actions workflow running validate, plan (per environment) and doctor."""
    root = repository_root(spec_path.parent)
    folder = str(spec_path.parent.relative_to(root)) if root else "."
    spec_arg = "" if spec_path.name == "railguard.toml" else f" --spec {spec_path.name}"
    doctor_env = env or next((n for n, e in spec.environments.items() if not e.protected),
                             next(iter(spec.environments), "staging"))
    plans = "".join(f"""\
      - name: Plan {name} (exit 0 no changes, 2 changes to review, 1 error)
        run: |
          set +e
          railguard plan --env {name} --detailed-exitcode{spec_arg} --out plan-{name}.json
          code=$?
          if [ "$code" -eq 1 ]; then exit 1; fi
          echo "railguard plan --env {name}: exit $code"
""" for name in spec.environments)
    return f"""# Railguard's gates on every push and pull request. Written by `railguard ci github`.
name: railguard

on:
  push:
    branches: [main]
  pull_request:

jobs:
  railguard:
    runs-on: ubuntu-latest
    timeout-minutes: 20
    defaults:
      run:
        working-directory: {folder}
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - name: Install Railguard
        run: python -m pip install railguard
      - name: Validate the spec
        run: railguard validate{spec_arg}
{plans}{_fixture_note(spec)}      - name: Readiness checks (exit 2 when a check fails)
        run: railguard doctor --env {doctor_env}{spec_arg}
      - name: Stop Railguard's daemon
        if: always()
        run: railguard daemon stop --everything{spec_arg}
"""
