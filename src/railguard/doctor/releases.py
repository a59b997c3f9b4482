"""Checks ``idempotent-release`` and ``migrations-forward``: the release command on real-shaped data.

Both work on scratch copies of the environment's data folder (see
:meth:`railguard.doctor.context.Context.data_copy`), never on the folder itself.
idempotent-release runs the release command twice: the second run must succeed and leave the data's
logical fingerprint unchanged. migrations-forward runs it from an empty folder and from the previous
release's data (the environment's data, or, when that is empty, what the previous release's own
release command produces): both must succeed, and no table or file may lose data on the way.
"""

from __future__ import annotations

from pathlib import Path

from railguard.doctor.apps import Prepared, Ran, prepare, run_release
from railguard.doctor.context import CheckStop, Context
from railguard.doctor.fingerprint import differences, losses
from railguard.doctor.history import history
from railguard.doctor.pgscratch import data_print, origin
from railguard.doctor.report import Finding, Status

TWICE = ("Make the release command safe to run twice: CREATE TABLE IF NOT EXISTS, INSERT OR IGNORE for seed "
         "rows, and record applied migrations (a schema_version table) so each runs once.")


def _with_release(ctx: Context) -> list[str]:
    return [n for n in ctx.service_names() if ctx.configs[n]["release"]]


def _seed(ctx: Context) -> tuple[Path, int, str]:
    data, copied = ctx.data_copy()
    what = (f"a scratch copy of {ctx.data_dir()} ({copied} file(s) or database(s))" if copied
            else f"an empty folder ({ctx.data_dir()} is empty or missing)")
    if pg := origin(ctx):
        what += f"; {pg}"
    return data, copied, what


def nothing_to_protect(ctx: Context, name: str, seen: str) -> Finding:
    """No real data and no fixture: the data checks proved nothing, so they warn instead of passing."""
    return Finding(status=Status.warn, subject=name, summary="nothing to protect: no data and no fixture",
                   evidence=[seen, f"{ctx.data_dir()} holds no data and the spec sets no [doctor] fixture"],
                   remediation="Give the release checks data to protect: set `[doctor] fixture = \"seed.sql\"` (SQL "
                               "run into fixture_database) or a command (argv) that writes sample data into "
                               "$RAILGUARD_DATA_DIR; CI runs on a fresh checkout, where only the fixture exists.")


def _log(ran: Ran) -> list[str]:
    return [ran.describe(), *(f"log: {line}" for line in ran.log[-8:])]


def idempotent(ctx: Context) -> list[Finding]:
    names = _with_release(ctx)
    if not names:
        return [Finding(status=Status.skipped, summary="no service has a release command")]
    data, copied, what = _seed(ctx)
    findings: list[Finding] = []
    for name in names:
        try:
            prepared = prepare(ctx, name, data)
        except CheckStop as stop:
            findings.append(stop.finding)
            continue
        start = data_print(ctx, data)  # the data before the first run: a first run that wipes it is no pass
        first = run_release(ctx, prepared, data, "first")
        if not first.ok:
            # Failing once is migrations-forward's finding; running twice cannot be judged after it.
            findings.append(Finding(status=Status.skipped, subject=name,
                                    summary=f"the first run already failed on {what} (see migrations-forward)",
                                    evidence=_log(first)))
            continue
        before = data_print(ctx, data)
        second = run_release(ctx, prepared, data, "second")
        after = data_print(ctx, data)
        if not second.ok:
            findings.append(Finding(status=Status.fail, subject=name, summary="the second run failed",
                                    evidence=[f"first run on {what}: {first.describe()}", *_log(second)],
                                    remediation=TWICE))
            continue
        changed = differences(before, after)
        lost = losses(start, after)
        if lost:
            findings.append(Finding(
                status=Status.fail, subject=name, summary=f"running it deleted data: {lost[0]}",
                evidence=[f"ran twice on {what}", first.describe(), second.describe(),
                          f"before the first run: {start.describe()}", f"after the second: {after.describe()}",
                          *lost],
                remediation="A release command must keep existing data: migrate tables in place instead of dropping "
                            "and recreating them. " + TWICE))
            continue
        if changed:
            findings.append(Finding(
                status=Status.fail, subject=name, summary=f"the second run changed the data: {changed[0]}",
                evidence=[f"first run on {what}: {first.describe()}", f"second run: {second.describe()}",
                          f"before the second run: {before.describe()}", f"after: {after.describe()}", *changed],
                remediation=TWICE))
            continue
        if not copied:
            findings.append(nothing_to_protect(ctx, name, f"ran twice on {what}; the second run changed nothing"))
            continue
        findings.append(Finding(
            status=Status.passed, subject=name, summary="ran twice; the second run changed nothing",
            evidence=[f"ran {' '.join(prepared.config['release'])} twice on {what}", first.describe(),
                      second.describe(), f"data before and after the second run: {after.describe()}"]))
    return findings


def _previous_data(ctx: Context, name: str) -> tuple[Path | None, str]:
    """Data as the previous release left it: the environment's own, or made by the previous release."""
    data, copied, what = _seed(ctx)
    if copied:
        return data, what
    past = history(ctx)
    config = past.services().get(name)
    if past.previous is None or config is None or not config.get("release"):
        return None, f"{what}; no earlier release to make data with ({past.reason})"
    number = int(past.previous["number"])
    old = prepare(ctx, name, data, config=config, previous=number)
    made = run_release(ctx, old, data, f"previous-r{number}")
    if not made.ok:
        raise CheckStop(Finding(
            status=Status.skipped, subject=name,
            summary=f"the previous release's ({number}) own release command failed in scratch",
            evidence=_log(made), remediation="Nothing to judge: the previous release's data could not be made."))
    return data, f"data made by release {number}'s release command ({made.describe()})"


def forward(ctx: Context) -> list[Finding]:
    names = _with_release(ctx)
    if not names:
        return [Finding(status=Status.skipped, summary="no service has a release command")]
    findings: list[Finding] = []
    for name in names:
        try:
            findings.append(_forward_one(ctx, name))
        except CheckStop as stop:
            findings.append(stop.finding)
    return findings


def _forward_one(ctx: Context, name: str) -> Finding:
    empty = ctx.scratch.folder("empty")
    from_empty = run_release(ctx, prepare(ctx, name, empty), empty, "from-empty")
    data, what = _previous_data(ctx, name)
    if data is None:
        if not from_empty.ok:
            return Finding(status=Status.fail, subject=name, summary="the release command fails from an empty folder",
                           evidence=_log(from_empty), remediation="Make the release command create what it needs.")
        return nothing_to_protect(ctx, name, "no previous data to migrate forward from; from an empty folder it "
                                             f"succeeds ({what}; from empty: {from_empty.describe()})")
    prepared: Prepared = prepare(ctx, name, data)
    before = data_print(ctx, data)
    onward = run_release(ctx, prepared, data, "forward")
    after = data_print(ctx, data)
    if not onward.ok:
        return Finding(
            status=Status.fail, subject=name, summary="the release command fails on the previous release's data"
                                                      + (" (it succeeds only from empty)" if from_empty.ok else ""),
            evidence=[f"from {what}: {onward.describe()}", *(f"log: {line}" for line in onward.log[-8:]),
                      f"from empty: {from_empty.describe()}"],
            remediation="Write migrations that upgrade existing data (ALTER TABLE ... ADD COLUMN, guarded by a "
                        "schema version), not only a schema for an empty database.")
    lost = losses(before, after)
    if lost:
        return Finding(
            status=Status.fail, subject=name, summary=f"the release command deleted data: {lost[0]}",
            evidence=[f"from {what}: {onward.describe()}", f"before: {before.describe()}",
                      f"after: {after.describe()}", *lost],
            remediation="A release command must keep existing data: migrate tables in place instead of dropping "
                        "and recreating them; back up before any destructive step.")
    if not from_empty.ok:
        return Finding(status=Status.fail, subject=name, summary="the release command fails from an empty folder",
                       evidence=_log(from_empty), remediation="Make the release command create what it needs.")
    return Finding(
        status=Status.passed, subject=name, summary="succeeds from empty and from the previous release's data",
        evidence=[f"from empty: {from_empty.describe()}", f"from {what}: {onward.describe()}",
                  *(differences(before, after) or ["the data did not change"])])
