"""Mutation testing of the guardrail and planning modules: how many one-token breaks the fast tests notice.

Usage: python bench/mutation.py [--workdir DIR] [--workers 1] [--keep] [--report-only]

Runs mutmut 3 (pip-installed into the current environment when missing) in a throwaway copy of
the repository, over the modules listed in SCOPE, against the fast tests only (FAST_TESTS: no
daemon, no real processes; the end-to-end suites are too slow to run once per mutant). Mutmut
maps each mutated function to the tests that call it, so a mutant is only run against those.
Prints one line per module (killed / total, score) and every surviving mutant with its diff;
docs/benchmarks.md records the figures and explains each survivor. A mutant in a function no
fast test calls counts as surviving ("no tests"): a guardrail only the slow suites exercise
still deserves a fast test. Takes about 10-20 minutes on 2 cores with one worker.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTMUT = "mutmut>=3.3,<4"

# module file -> functions in scope, as mutmut names them: "x_<function>", "xǁ<Class>ǁ<method>"; "*" = all.
SCOPE: dict[str, list[str]] = {
    "src/railguard/secrets/redaction.py": ["*"],
    "src/railguard/state/locks.py": ["*"],
    "src/railguard/model/plans.py": ["xǁPlanǁcontent_hash", "xǁPlanǁsealed"],  # the plan hash
    "src/railguard/engine/rollback.py": ["x_pick_target"],  # the rollback target
    "src/railguard/state/approvals.py": ["*"],
    "src/railguard/state/audit.py": ["*"],
    "src/railguard/policy/guardrails.py": ["*"],
    "src/railguard/engine/planner.py": ["*"],
}

# Everything under tests/ except what starts daemons, replicas, Caddy or subprocess CLIs (mutants would not
# even reach those: a subprocess imports the unmutated package) and the quality gate (mypy, ruff).
SLOW_TESTS = ["tests/e2e", "tests/local", "tests/test_cli.py", "tests/test_quality.py", "tests/doctor/test_run.py",
              "tests/doctor/test_apps.py", "tests/mcp/test_session.py", "tests/mcp/test_http.py",
              "tests/mcp/test_bad_input.py"]
FAST_TESTS = ["tests/", *(f"--ignore={p}" for p in SLOW_TESTS)]


def _ensure_mutmut() -> None:
    if importlib.util.find_spec("mutmut") is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", MUTMUT], check=True)


def _prepare(work: Path) -> None:
    """A copy of the repository with a mutmut configuration; the worktree itself is never touched."""
    for name in ("src", "tests", "docs", "examples"):
        if (ROOT / name).exists():
            shutil.copytree(ROOT / name, work / name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", ".hypothesis"))
    shutil.copy2(ROOT / "pyproject.toml", work / "pyproject.toml")
    lines = ["[mutmut]", "source_paths = src/", "also_copy =", "    docs/", "    examples/", "only_mutate ="]
    lines += [f"    {path}" for path in SCOPE]
    lines += ["pytest_add_cli_args_test_selection ="] + [f"    {arg}" for arg in FAST_TESTS]
    lines += ["pytest_add_cli_args =", "    -x", "    -p", "    no:cacheprovider"]
    (work / "setup.cfg").write_text("\n".join(lines) + "\n")


def _patterns() -> list[str]:
    """mutmut run arguments selecting exactly the mutants in SCOPE."""
    out = []
    for module_file, functions in SCOPE.items():
        module = module_file.removeprefix("src/").removesuffix(".py").replace("/", ".")
        out += [f"{module}.*" if f == "*" else f"{module}.{f}__mutmut_*" for f in functions]
    return out


def _in_scope(module_file: str, mutant: str) -> bool:
    # mutant: railguard.state.locks.xǁHolderǁalive__mutmut_3 -> function part "xǁHolderǁalive"
    function = mutant.rsplit("__mutmut_", 1)[0].rsplit(".", 1)[-1]
    return any(fnmatch.fnmatchcase(function, pattern) for pattern in SCOPE[module_file])


def _results(work: Path) -> dict[str, dict[str, int | None]]:
    """module file -> {mutant name: exit code}, read from mutmut's per-file .meta records."""
    out: dict[str, dict[str, int | None]] = {}
    for module_file in SCOPE:
        meta = work / "mutants" / (module_file + ".meta")
        codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
        out[module_file] = {name: code for name, code in codes.items() if _in_scope(module_file, name)}
    return out


def _show(work: Path, mutant: str) -> str:
    done = subprocess.run([sys.executable, "-m", "mutmut", "show", mutant], cwd=work, capture_output=True, text=True,
                          check=False)
    return done.stdout.strip()


def report(work: Path) -> int:
    results = _results(work)
    total_killed = total = 0
    survivors: list[tuple[str, str, str]] = []
    print(f"{'module':45} {'killed':>7} {'total':>6} {'score':>7}")
    for module_file, codes in results.items():
        # 1/3 killed by a failing test; 36/-24/24/152/255 a timeout (the mutant hangs: noticed too).
        killed = sum(1 for code in codes.values() if code in (1, 3, 36, -24, 24, 152, 255))
        total_killed, total = total_killed + killed, total + len(codes)
        score = f"{100 * killed / len(codes):.1f}%" if codes else "-"
        print(f"{module_file.removeprefix('src/railguard/'):45} {killed:7} {len(codes):6} {score:>7}")
        survivors += [(module_file, name, "no tests" if code == 33 else "survived" if code == 0 else f"exit {code}")
                      for name, code in sorted(codes.items()) if code not in (1, 3, 36, -24, 24, 152, 255)]
    print(f"{'all':45} {total_killed:7} {total:6} {100 * total_killed / max(total, 1):6.1f}%")
    for _, name, why in survivors:
        print(f"\n--- {name} ({why})\n{_show(work, name)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, help="Where the copy lives (default: a new temporary folder).")
    parser.add_argument("--workers", type=int, default=1, help="Mutants tested at once (default 1).")
    parser.add_argument("--keep", action="store_true", help="Keep the working copy (to inspect mutants).")
    parser.add_argument("--report-only", action="store_true", help="Only print the report of a kept --workdir.")
    args = parser.parse_args()
    _ensure_mutmut()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="railguard-mutation-"))
    try:
        if not args.report_only:
            work.mkdir(parents=True, exist_ok=True)
            _prepare(work)
            # Property tests with few, derandomized examples: every mutant meets the same inputs (tests/conftest.py).
            environ = {**os.environ, "HYPOTHESIS_PROFILE": "mutation"}
            subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(args.workers), *_patterns()],
                           cwd=work,
                           check=True, stdout=subprocess.DEVNULL, env=environ)
        return report(work)
    finally:
        if not args.keep and not args.report_only and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
