"""A large spec's TOML parsed in a child process answers exactly as tomllib does (values with their types, and the
same exception for a bad text), and every failure of the child (a crash, a deep text, a timeout, a value JSON cannot
carry) falls back to tomllib in process. Real child processes throughout."""

from __future__ import annotations

import json
import math
import os
import pwd
import resource
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import psutil
import pytest

from railguard.engine import specmemo, tomlchild
from railguard.model.counters import COUNTS
from railguard.model.specfile import parse_spec
from railguard.sources import asuser

ROOT = Path(__file__).parent.parent
CASES: dict[str, str] = json.loads((ROOT / "tests" / "golden" / "toml" / "tricky.json").read_text(encoding="utf-8"))
SPECS = sorted([*ROOT.glob("examples/**/*.toml"), *(ROOT / "tests" / "golden").glob("**/*.toml")])
PAD = "\n" + "# padding past tomlchild.MIN_BYTES, so loads() sends the text to the child\n" * 8000
DEEP = {
    "arrays": "a = " + "[" * 60_000 + "]" * 60_000 + "\n",
    "inline tables": "a = " + "{b = " * 20_000 + "1" + "}" * 20_000 + "\n",
    "one bracket a line": "a = [\n" + "[\n" * 30_000 + "]\n" * 30_000 + "]\n",
    "dotted key": "a = " + ".".join(["k"] * 30_000) + " = 1\n",
    "dotted header": "[" + ".".join(["k"] * 30_000) + "]\n",
    "after a multi-line string": 'a = """x\ny""", ' + "[" * 30_000 + "\n",
    "hidden by a literal multi-line string": "a = [ '''x\ny''', " + "[" * 30_000 + " '\n",
    # The first string ends at its escaped backslash, so the brackets after it are code (a lexer taking \\" for an
    # escaped quote would read them as part of a string running to the quote before y, and pass the text).
    "after a string ending in an escaped backslash": 'a = ["x\\\\", ' + "[" * 30_000 + "1" + "]" * 30_000 + ', "y"]\n',
}


def _typed(value: Any) -> Any:
    """The value with every leaf's type beside it (1 == 1.0 == True in Python; not in TOML), NaN comparable."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}, list(value)
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return "float", "nan"
    return type(value).__name__, value


def _answer(loads: Any, text: str) -> tuple[str, Any]:
    try:
        return "ok", _typed(loads(text))
    except tomllib.TOMLDecodeError as exc:
        return "error", str(exc)
    except RecursionError:
        return "too deep", None


def test_the_golden_cases_are_there() -> None:
    assert len(CASES) > 30


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_tricky_text_parses_or_fails_exactly_as_tomllib(name: str) -> None:
    text = CASES[name]
    direct = tomlchild.child_loads(text)  # the child (after the pre-check), without the size threshold
    if direct is not None:
        assert _answer(lambda _: direct, text) == _answer(tomllib.loads, text)
    padded = text + PAD
    assert len(padded) >= tomlchild.MIN_BYTES
    assert _answer(tomlchild.loads, padded) == _answer(tomllib.loads, padded)


def test_the_child_answers_the_plain_cases_itself() -> None:
    # Not every case falls back: the comparison above is of the child's answers, not of tomllib with itself.
    answered = [name for name, text in CASES.items() if tomlchild.child_loads(text) is not None]
    assert "a Railguard spec" in answered and "null-like strings" in answered and "escapes and unicode" in answered
    assert len(answered) >= 12
    for refused in ("dates and times", "byte-order mark", "inline table over lines (1.1)", "escape \\e (1.1)",
                    "duplicate key", "multi-line strings"):
        assert refused not in answered, refused


def test_every_spec_in_the_repository_parses_the_same() -> None:
    assert len(SPECS) > 20
    answered = 0
    for path in SPECS:
        text = path.read_text(encoding="utf-8")
        direct = tomlchild.child_loads(text)
        if direct is not None:
            answered += 1
            assert _typed(direct) == _typed(tomllib.loads(text)), path
    assert answered > len(SPECS) // 2


def test_dates_fall_back_to_tomllib_with_its_types() -> None:
    text = 'a = 1979-05-27T07:32:00-07:00\nb = 1979-05-27T07:32:00Z\nc = 1979-05-27\nd = 07:32:00\n' + PAD
    assert tomlchild.run_child(text) is None  # the child refuses what JSON cannot carry (exit 4)
    fast, slow = tomlchild.loads(text), tomllib.loads(text)
    assert _typed(fast) == _typed(slow)
    assert [type(v.tzinfo) for v in (fast["a"], fast["b"])] == [type(v.tzinfo) for v in (slow["a"], slow["b"])]


@pytest.mark.parametrize("name", sorted(DEEP))
def test_a_deep_text_never_reaches_the_child_and_tomllib_answers(name: str) -> None:
    text = DEEP[name] + PAD
    assert not tomlchild.shallow(text)
    assert _answer(tomlchild.loads, text) == _answer(tomllib.loads, text)


@pytest.mark.parametrize("name", sorted(DEEP))
def test_a_child_started_for_a_text_the_pre_check_refuses_is_killed_unfed(name: str) -> None:
    """The pre-check runs while the child starts: a refused text leaves no child behind, and none was fed it."""
    before = {c.pid for c in psutil.Process().children()}
    assert tomlchild.child_loads(DEEP[name] + PAD) is None
    assert {c.pid for c in psutil.Process().children()} <= before


def test_the_child_crashing_is_a_fallback_not_a_failure() -> None:
    # The pre-check exists because this kills the child: a real stack overflow (SIGSEGV) in the native parser.
    text = DEEP["arrays"]
    done = subprocess.run([sys.executable, "-I", "-S", "-c", tomlchild.CHILD, str(tomlchild._toml_rs_folder())],
                          input=text.encode(), capture_output=True, timeout=120,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_STACK, (8 << 20, 8 << 20)))
    assert done.returncode == -signal.SIGSEGV  # the usual 8 MB stack (an unlimited one would only delay it)
    assert tomlchild.run_child(text) is None
    spec, diagnostics = parse_spec(text + PAD, loads=lambda t: tomlchild.run_child(t) or tomllib.loads(t))
    assert spec is None and [d.code for d in diagnostics] == ["spec.toml_syntax"]
    assert diagnostics[0].summary == "The spec is nested too deeply"


def test_a_timeout_kills_the_child_and_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _bench_spec(2000)
    monkeypatch.setattr(tomlchild, "TIMEOUT_S", 0.001)
    assert tomlchild.child_loads(text) is None
    fallbacks = COUNTS["toml-child-fallback"]
    assert tomlchild.loads(text + PAD) == tomllib.loads(text + PAD)
    assert COUNTS["toml-child-fallback"] == fallbacks + 1  # counted: a fallback costs both parses


def test_bad_toml_gets_tomllibs_diagnostic_line_and_all() -> None:
    good = _bench_spec(2500)
    assert len(good) >= tomlchild.MIN_BYTES
    lines = good.splitlines(keepends=True)
    for broken in ("x = = 1\n", 'name = "unterminated\n', "[services.s3]\n", "replicas = 01\n", "a = { b = 1,\n"):
        text = "".join(lines[:4000] + [broken] + lines[4000:])
        with_child = parse_spec(text, "railguard.toml", tomlchild.loads)
        in_process = parse_spec(text, "railguard.toml")
        assert with_child[0] is None and with_child[1] == in_process[1], broken
        assert with_child[1][0].code == "spec.toml_syntax" and with_child[1][0].line is not None


def test_a_large_spec_parses_through_the_child_to_the_same_spec() -> None:
    text = _bench_spec(2500)
    assert tomlchild.child_loads(text) is not None  # the child path is the one tested
    specmemo.forget()
    answered = COUNTS["toml-child"]
    memo = specmemo.parse(text, "railguard.toml")
    specmemo.forget()
    assert COUNTS["toml-child"] == answered + 1
    assert memo[0] is not None and memo[0] == parse_spec(text, "railguard.toml")[0] and memo[1] == []


def test_the_caller_never_imports_the_native_parser() -> None:
    code = ("import sys; sys.path.insert(0, 'bench'); from plan_scale import synthetic_spec; "
            "from railguard.engine import tomlchild; assert tomlchild.child_loads(synthetic_spec(1500)); "
            "print('toml_rs' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.strip() == "False"


def _bench_spec(n: int) -> str:
    sys.path.insert(0, str(ROOT / "bench"))
    from plan_scale import synthetic_spec

    return synthetic_spec(n)


# A child that reports who it runs as (it reads its text first, as the real one does).
WHO = ("import os, json, sys; sys.stdin.buffer.read(); status = open('/proc/self/status').read().splitlines(); "
       "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'groups': os.getgroups(), "
       "'no_new_privs': [l.split()[1] for l in status if l.startswith('NoNewPrivs:')]}))")


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root caller has an authority to drop")
def test_as_root_the_child_runs_as_nobody_without_groups_or_new_privileges(monkeypatch: pytest.MonkeyPatch) -> None:
    nobody = pwd.getpwnam("nobody")
    monkeypatch.setattr(tomlchild, "CHILD", WHO)
    assert tomlchild.run_child("a = 1\n") == {"uid": nobody.pw_uid, "gid": nobody.pw_gid, "groups": [],
                                              "no_new_privs": ["1"]}


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root caller has an authority to drop")
def test_as_root_without_setpriv_no_child_starts_and_tomllib_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asuser.shutil, "which", lambda name: None)
    before = {c.pid for c in psutil.Process().children()}
    text = 'a = "x"\n' + PAD
    assert tomlchild.child_loads(text) is None
    assert {c.pid for c in psutil.Process().children()} <= before
    assert tomlchild.loads(text) == tomllib.loads(text)


def test_an_early_parse_of_the_same_text_is_the_answer_and_no_second_child_starts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    text = _bench_spec(2500)
    before = dict(COUNTS)
    tomlchild.start_early(text)
    tomlchild.start_early(_bench_spec(2600))  # one parse ahead at most: this one is not started
    tomlchild._early[0].thread.join()
    monkeypatch.setattr(tomlchild, "child_loads", lambda t: pytest.fail("a second child was started"))
    assert tomlchild.loads(text) == tomllib.loads(text)
    assert COUNTS["toml-child-early"] == before.get("toml-child-early", 0) + 1
    assert COUNTS["toml-child"] == before.get("toml-child", 0) + 1
    assert not tomlchild._early


def test_an_early_parse_of_another_text_is_waited_for_and_not_used() -> None:
    early, asked = _bench_spec(2500), _bench_spec(2500).replace('LOG_LEVEL = "info"', 'LOG_LEVEL = "debug"', 1)
    before = {c.pid for c in psutil.Process().children()}
    earlies = COUNTS["toml-child-early"]
    tomlchild.start_early(early)
    assert tomlchild.loads(asked) == tomllib.loads(asked) != tomllib.loads(early)
    assert COUNTS["toml-child-early"] == earlies and not tomlchild._early
    assert {c.pid for c in psutil.Process().children()} <= before  # both children reaped


def test_railguard_validate_parses_a_large_spec_while_it_imports(tmp_path: Path) -> None:
    (tmp_path / "railguard.toml").write_text(_bench_spec(2500))
    counts = tmp_path / "counts"
    env = {**os.environ, "RAILGUARD_DEBUG_COUNTS": str(counts)}
    env.pop("RAILGUARD_SPEC", None)
    done = subprocess.run([sys.executable, "-m", "railguard", "validate", "--spec", str(tmp_path / "railguard.toml"),
                           "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert json.loads(done.stdout)["valid"] is True and len(json.loads(done.stdout)["services"]) == 2500
    names = sorted(line.split()[1] for line in counts.read_text().splitlines())
    assert names == ["spec-parse", "toml-child", "toml-child-early"]
