"""Break each guardrail one line at a time and show that the suite notices (issue 18, "show it").

Why it exists: a test that cannot fail is a defect, and a guardrail without a failing test can be removed
by a refactor unnoticed. For every break below this script copies the repository to a throwaway folder,
replaces one exact piece of source (asserting it is found exactly once), runs the tests named for it there
(PYTHONPATH=<copy>/src) and records whether they failed, as they must. A baseline row runs the same tests
on the unbroken copy first: they must pass. Prints a Markdown table; exits 1 if any break went unnoticed
or the baseline failed.

Usage: python bench/guardrail_breaks.py [--fast] [--check] [--only SUBSTRING ...]
  --fast   skip breaks whose tests need real daemons (tests/e2e), for a quick look
  --check  run no test: only check that each break's source occurs exactly once in the file it names and
           that each test it names exists (a refactor that moves a guardrail shows up here first)
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNIT = "tests/test_guardrail_teeth.py"
E2E = "tests/e2e/test_guardrail_teeth.py"
HASH_LINE = '_UNHASHED = {"id", "created_at", "hash"}  # the plan\'s identity, not its content'
HASHED = ("format", "env", "base_serial", "desired_digest", "changes", "desired", "diagnostics", "requested_by",
          "verdicts", "source", "allow_data_loss")

# A test that leaks processes, in three ways the leftover-process fixture must catch (it is written into
# the copy; the "break" is the leak itself).
LEAKY_TESTS = '''
import os, subprocess, sys, tempfile
from pathlib import Path

SPEC = """
[app]
name = "leak"
[environments.staging]
edge_port = 18999
[services.web]
run = ["python", "app.py"]
"""


def test_leaks_a_child_in_its_tmp_path(tmp_path: Path) -> None:
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], cwd=tmp_path)


def test_leaks_a_process_outside_the_pytest_temp_root() -> None:
    folder = tempfile.mkdtemp(prefix="rg-leak-")
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], cwd=folder, start_new_session=True)


def test_leaks_a_daemon(tmp_path: Path) -> None:
    (tmp_path / "railguard.toml").write_text(SPEC)
    (tmp_path / "app.py").write_text("print('hi')")
    done = subprocess.run([sys.executable, "-m", "railguard", "daemon", "start"], cwd=tmp_path,
                          capture_output=True, timeout=120, check=False,
                          env={k: v for k, v in os.environ.items() if k != "RAILGUARD_HOME"})
    assert done.returncode == 0, done.stderr
'''


@dataclass
class Break:
    name: str
    file: str
    old: str
    new: str
    tests: list[str]
    add: dict[str, str] = field(default_factory=dict)  # extra files written into the copy
    expect_failures: int = 1  # at least this many tests must fail
    expect_text: str = ""  # ...each with this text in its report, when given

    @property
    def e2e(self) -> bool:
        return any("e2e" in t for t in self.tests)


def breaks() -> list[Break]:
    found = [
        Break(f"plan hash skips `{f}`", "src/railguard/model/plans.py", HASH_LINE,
              HASH_LINE.replace('"hash"}', f'"hash", "{f}"}}'), [f"{UNIT}::test_tampering_one_hashed_field_is_refused"])
        for f in HASHED
    ]
    found += [
        # The fast paths of the plan hash (issue 14): each must write exactly what the canonical dump would.
        Break("plan hash: a change's reason left out", "src/railguard/model/plans.py",
              """            f'"reason":{text(change.reason)},"risk":{text(str(change.risk))}}}')""",
              """            f'"risk":{text(str(change.risk))}}}')""",
              ["tests/test_plan_format.py::test_each_changes_canonical_text_is_exactly_its_dumps",
               "tests/test_plan_format.py::test_hashes_of_both_formats_are_pinned"], expect_failures=2),
        Break("plan hash: a config's cached text used for a replaced config", "src/railguard/model/resources.py",
              "    return cached[1] if cached is not None and cached[0] is resource.config else None",
              "    return cached[1] if cached is not None else None",
              ["tests/test_plan_format.py::test_a_config_that_is_not_plain_json_or_was_replaced_is_encoded_again"]),
        Break("inventory: a live resource's drifted config recorded as the desired one",
              "src/railguard/model/resources.py",
              "    if like is not None and resource.fingerprint == like.fingerprint and resource.config == like"
              ".config:",
              "    if like is not None and resource.fingerprint == like.fingerprint:",
              ["tests/test_observe_for_plan.py::"
               "test_an_unchanged_live_resource_reuses_the_desired_configs_text_and_the_store_still_holds_the_report"]),
        Break("plan format 2: policies see no fields of a create", "src/railguard/policy/guardrails.py",
              '"paths": [d.path for d in diffs(change)]},', '"paths": [d.path for d in change.diff]},',
              ["tests/test_plan_format.py::test_policies_the_mcp_brief_and_both_formats_see_the_same_fields_of_a_create"]),
        Break("plan hash compared to the stored hash: off", "src/railguard/engine/apply.py",
              "    if recomputed != stored_hash or plan.hash != stored_hash or plan.id != plan_id:",
              "    if plan.id != plan_id:",
              [f"{UNIT}::test_an_edited_stored_hash_is_refused",
               f"{UNIT}::test_the_apply_check_compares_the_body_with_the_stored_hash_itself"]),
        Break("stale plan refusal (serial): off", "src/railguard/engine/apply.py",
              "    if serial != plan.base_serial:", "    if False:", ["tests/test_apply.py"]),
        Break("spec changed since plan: off", "src/railguard/engine/apply.py",
              "    if current_desired_digest is not None and current_desired_digest != plan.desired_digest:",
              "    if False:", ["tests/test_apply.py"]),
        Break("self-approval check: off", "src/railguard/engine/guard.py",
              "    if principal.id == plan.requested_by:", "    if False:",
              [f"{UNIT}::test_a_principal_who_may_approve_cannot_approve_their_own_plan",
               f"{E2E}::test_an_admin_cannot_approve_their_own_plan"], expect_failures=3),
        Break("rollback target: the oldest earlier release", "src/railguard/state/releases.py",
              '"WHERE env = ? AND status = ? AND number < ? ORDER BY number DESC"',
              '"WHERE env = ? AND status = ? AND number < ? ORDER BY number ASC"',
              [f"{UNIT}::test_rollback_without_a_target_restores_the_newest_earlier_release"]),
        Break("audit: edited-content check off", "src/railguard/state/audit.py",
              '        if _entry_hash(entry["prev_hash"], entry) != entry["hash"]:', "        if False:",
              [f"{UNIT}::test_audit_verify_finds_an_edited_entry"]),
        Break("audit: prev_hash link check off", "src/railguard/state/audit.py",
              '        if entry["prev_hash"] != prev:', "        if False:",
              [f"{UNIT}::test_audit_verify_finds_a_removed_entry",
               f"{UNIT}::test_audit_verify_finds_a_broken_prev_hash_link"], expect_failures=2),
        Break("audit: anchor check off (removed or truncated entries)", "src/railguard/state/audit.py",
              '        if pinned["count"] > count or (pinned["count"] == count and pinned["hash"] != last_hash):',
              "        if False:", [f"{UNIT}::test_audit_verify_finds_a_truncated_log"]),
        Break("stale lock: zombie branch off", "src/railguard/state/locks.py",
              "            if proc.status() == psutil.STATUS_ZOMBIE:", "            if False:",
              [f"{UNIT}::test_a_lock_held_by_a_zombie_is_broken"]),
        Break("stale lock: a dead pid counts as alive", "src/railguard/state/locks.py",
              "        except (psutil.NoSuchProcess, psutil.ZombieProcess):\n            return False",
              "        except (psutil.NoSuchProcess, psutil.ZombieProcess):\n            return True",
              [f"{UNIT}::test_a_lock_held_by_a_dead_pid_is_broken"]),
        Break("stale lock: start time ignored (reused pid)", "src/railguard/state/locks.py",
              "        return bool(abs(started - self.pid_started) < 0.5)", "        return True",
              [f"{UNIT}::test_a_lock_held_by_a_reused_pid_is_broken"]),
        Break("lock: a live holder's lock is broken", "src/railguard/state/locks.py",
              "            if holder is not None and holder.alive():", "            if False:",
              [f"{UNIT}::test_a_lock_held_by_a_live_process_is_never_broken",
               f"{UNIT}::test_a_lock_of_another_host_is_never_broken"], expect_failures=2),
        Break("redaction of stored events: off", "src/railguard/state/events.py",
              "(env, now(), kind, address, self._redact(message), self._redact(canonical_json(data or {}))),",
              "(env, now(), kind, address, message, canonical_json(data or {})),", [E2E + "::test_a_secret_sent_into"
                                                                                   "_every_stored_text_is_redacted"]),
        Break("redaction of journal details: off", "src/railguard/state/operations.py",
              "(operation_id, step, phase, self._redact(canonical_json(detail or {})), now()),",
              "(operation_id, step, phase, canonical_json(detail or {}), now()),",
              [E2E + "::test_a_secret_sent_into_every_stored_text_is_redacted"]),
        Break("redaction of operation errors: off", "src/railguard/state/operations.py",
              '"error": self._redact(canonical_json(problem)) if problem else None})',
              '"error": canonical_json(problem) if problem else None})',
              [E2E + "::test_a_secret_sent_into_every_stored_text_is_redacted"]),
        Break("redaction of audit details: off", "src/railguard/state/audit.py",
              '"detail": json.loads(store.redact(canonical_json(detail or {})))}',
              '"detail": json.loads(canonical_json(detail or {}))}',
              [E2E + "::test_a_secret_sent_into_every_stored_text_is_redacted"]),
        Break("redaction of approval reasons: off", "src/railguard/state/approvals.py",
              "principal, store.redact(reason),", "principal, reason,",
              [E2E + "::test_a_secret_sent_into_every_stored_text_is_redacted"]),
        Break("lifecycle: an illegal transition is not refused", "src/railguard/state/lifecycles.py",
              "        if not self.allows(old, new):", "        if False:", ["tests/test_lifecycles.py"],
              expect_failures=5),
        # The rehearsal's second run is skipped only when the first changed nothing in the copy (issue 14).
        Break("rehearsal: second run skipped whatever the first changed", "src/railguard/data/rehearsal.py",
              "        if print_before is not None and fingerprint(scratch) == print_before:",
              "        if print_before is not None:",
              ["tests/data/test_snapshots.py::test_a_command_that_appends_a_row_each_run_still_runs_twice",
               "tests/data/test_snapshots.py::"
               "test_a_command_whose_first_run_leaves_a_file_that_breaks_the_second_is_still_caught",
               "tests/data/test_snapshots.py::test_any_change_to_the_copy_means_a_second_run"], expect_failures=11),
        Break("rehearsal fingerprint: content not compared", "src/railguard/data/rehearsal.py",
              'f"{content}\\n".encode())', '"\\n".encode())',
              ["tests/data/test_snapshots.py::test_any_change_to_the_copy_means_a_second_run"]),
        Break("a test leaks processes (child, outside the temp root, daemon)", "tests/test_leak_probe.py", "", "",
              ["tests/test_leak_probe.py"], add={"tests/test_leak_probe.py": LEAKY_TESTS}, expect_failures=3,
              expect_text="the test left processes running"),
    ]
    return found


def target_problems(root: Path, brk: Break) -> list[str]:
    """What is wrong with ``brk`` against the sources under ``root`` (empty when it can be applied)."""
    problems = []
    if brk.old:
        path = root / brk.file
        count = path.read_text().count(brk.old) if path.exists() else 0
        if count != 1:
            problems.append(f"expected its source exactly once in {brk.file}, found {count}")
    for test in brk.tests:
        rel, _, name = test.partition("::")
        path = root / rel
        text = brk.add.get(rel) or (path.read_text() if path.exists() else "")
        if not text or (name and f"def {name}(" not in text):
            problems.append(f"names a test that does not exist: {test}")
    return problems


def copy_repo(dest: Path) -> None:
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
                                    ".railguard", "*.egg-info")
    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)


def apply_break(copy: Path, brk: Break) -> None:
    for rel, text in brk.add.items():
        (copy / rel).write_text(text)
    if not brk.old:
        return
    path = copy / brk.file
    text = path.read_text()
    count = text.count(brk.old)
    if count != 1:
        raise SystemExit(f"break {brk.name!r}: expected the source exactly once in {brk.file}, found {count}")
    path.write_text(text.replace(brk.old, brk.new))


def run_tests(copy: Path, tests: list[str]) -> tuple[int, int, str]:
    """Run ``tests`` in ``copy``; return (exit code, failed or errored tests, the output)."""
    env = {**os.environ, "PYTHONPATH": str(copy / "src")}
    env.pop("RAILGUARD_HOME", None)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                           "-rfE", *tests], cwd=copy, env=env, capture_output=True, text=True, timeout=3600,
                          check=False)
    out = done.stdout + done.stderr
    failed = sum(1 for line in out.splitlines() if line.startswith(("FAILED ", "ERROR ")))
    return done.returncode, failed, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="skip breaks whose tests need real daemons")
    parser.add_argument("--check", action="store_true",
                        help="run no test: check that every break's source and tests are found")
    parser.add_argument("--only", nargs="*", default=[], help="run only breaks whose name contains one of these")
    args = parser.parse_args()
    chosen = [b for b in breaks() if not (args.fast and b.e2e) and (not args.only or
                                                                     any(o in b.name for o in args.only))]
    wrong = {b.name: target_problems(ROOT, b) for b in chosen}
    for name, problems in wrong.items():
        for problem in problems:
            print(f"break {name!r}: {problem}", file=sys.stderr)
    if args.check or any(wrong.values()):
        print(f"{len(chosen)} breaks, {sum(1 for p in wrong.values() if p)} with a missing target")
        return 1 if any(wrong.values()) else 0
    rows, unnoticed = [], 0
    with tempfile.TemporaryDirectory(prefix="rg-breaks-") as tmp:
        base = Path(tmp) / "baseline"
        copy_repo(base)
        tests = sorted({t for b in chosen if not b.add for t in b.tests})
        if tests:  # (never an empty list: pytest would run the whole suite)
            started = time.monotonic()
            code, failed, tail = run_tests(base, tests)
            ok = code == 0
            rows.append(("(none: baseline, every test below must pass)", "pass" if ok else f"FAIL ({failed})",
                         "ok" if ok else "BASELINE BROKEN", time.monotonic() - started))
            if not ok:
                print("\n".join(tail.strip().splitlines()[-20:]), file=sys.stderr)
                unnoticed += 1
        for n, brk in enumerate(chosen):
            copy = Path(tmp) / f"break-{n}"
            copy_repo(copy)
            apply_break(copy, brk)
            started = time.monotonic()
            code, failed, tail = run_tests(copy, brk.tests)
            caught = code != 0 and failed >= brk.expect_failures and (
                not brk.expect_text or tail.count(brk.expect_text) >= brk.expect_failures)
            if not caught:
                unnoticed += 1
                print(f"UNNOTICED: {brk.name}\n" + "\n".join(tail.strip().splitlines()[-20:]), file=sys.stderr)
            rows.append((brk.name, f"{failed} failed", "caught" if caught else "UNNOTICED",
                         time.monotonic() - started))
            shutil.rmtree(copy, ignore_errors=True)
            print(f"{brk.name}: {'caught' if caught else 'UNNOTICED'}", file=sys.stderr, flush=True)
    print(f"\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}\n")
    print("| break (one line of src, or a leaking test) | tests after the break | verdict | seconds |")
    print("|---|---|---|---|")
    for name, result, verdict, seconds in rows:
        print(f"| {name} | {result} | {verdict} | {seconds:.0f} |")
    print(f"\n{len(chosen)} breaks, {unnoticed} unnoticed")
    return 1 if unnoticed else 0


if __name__ == "__main__":
    sys.exit(main())
