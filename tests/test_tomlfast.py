"""The fast TOML path answers exactly as tomllib does (values, and the same exception for a bad text), and never
hands the native parser a text nested deep enough to overflow its stack (which would end the daemon)."""

from __future__ import annotations

import math
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from railguard.model import tomlfast
from railguard.model.specfile import parse_spec

ROOT = Path(__file__).parent.parent
SPECS = sorted([*ROOT.glob("examples/**/*.toml"), *(ROOT / "tests" / "golden").glob("**/*.toml")])

EDGE_CASES = [
    'a = { x = 1,\n y = 2 }\n', 'a = { x = 1, }\n', 'a = "\\e"\n', 'a = "\\x41"\n', 'a = 07:32\n',  # TOML 1.1 only
    'a = 1\na = 2\n', '[a]\nx=1\n[a]\ny=2\n', 'a = 1e1000\nb = -0.0\nc = nan\n', 'a = 99999999999999999999\n',
    'a = 1979-05-27T07:32:00.999999-07:00\nb = 1979-05-27\nc = 1979-05-27T07:32:00\nd = 07:32:00\n',
    'a = "x\x7fy"\n', '[a.b]\nc=1\n[a]\nb.d=2\n', '[[a]]\nx=1\n[[a]]\nx=2\n', 'a = {x=1}\n[a.y]\n',
    'a = 1\r\nb = 2\r\n', 'a = 1\rb = 2\n', '"é" = 1\n', 'a = 01\n', '"" = 1\n', '\ufeffa = 1\n',
    'a = [1, "]]]", \'[[[\', {b = "#"}] # ]]]\n', 'a = "unterminated\nb = [[[[1]]]]\n', 'a = ]\n',
    'a = [\n  1,\n  2,\n]\n', 'a.b.c = 1\n[x.y]\nz = [[1], [2]]\n',
]


def _same(text: str) -> tuple[str, Any]:
    try:
        return "ok", _nan(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        return "error", str(exc)


def _nan(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, dict):
        return {k: _nan(v) for k, v in value.items()}
    return [_nan(v) for v in value] if isinstance(value, list) else value


def _fast(text: str) -> tuple[str, Any]:
    try:
        return "ok", _nan(tomlfast.loads(text))
    except tomllib.TOMLDecodeError as exc:
        return "error", str(exc)


@pytest.mark.parametrize("text", EDGE_CASES)
def test_edge_cases_parse_or_fail_exactly_as_tomllib(text: str) -> None:
    assert _fast(text) == _same(text)


def test_every_spec_in_the_repository_parses_the_same_and_takes_the_fast_path() -> None:
    assert len(SPECS) > 20
    fast = 0
    for path in SPECS:
        text = path.read_text(encoding="utf-8")
        assert _fast(text) == _same(text), path
        fast += tomlfast.shallow(text)
    assert fast > len(SPECS) // 2  # most real specs are shallow: the fast path is what is tested here


def test_types_are_tomllibs() -> None:
    text = 'a = 1979-05-27T07:32:00-07:00\nb = 1979-05-27T07:32:00Z\nc = 1.0\nd = true\n'
    fast, slow = tomlfast.loads(text), tomllib.loads(text)
    assert fast == slow and [type(v) for v in fast.values()] == [type(v) for v in slow.values()]
    assert [type(v.tzinfo) for v in (fast["a"], fast["b"])] == [type(v.tzinfo) for v in (slow["a"], slow["b"])]


@pytest.mark.parametrize("text", [
    "a = " + "[" * 60_000 + "]" * 60_000 + "\n",
    "a = " + "{b = " * 20_000 + "1" + "}" * 20_000 + "\n",
    "a = [\n" + "[\n" * 30_000 + "]\n" * 30_000 + "]\n",  # one bracket a line
    "a = " + ".".join(["k"] * 30_000) + " = 1\n",
    "[" + ".".join(["k"] * 30_000) + "]\n",
    'a = """x\ny""", ' + "[" * 30_000 + "\n",
    "a = [ '''x\ny''', " + "[" * 30_000 + " '\n",  # a multi-line string that would hide the brackets
])
def test_deep_nesting_never_reaches_the_native_parser(text: str) -> None:
    assert not tomlfast.shallow(text)
    # What the daemon does with such a text, in a child process: a stack overflow there would be a signal.
    code = ("import sys; from railguard.model.specfile import parse_spec; spec, d = parse_spec(sys.stdin.read()); "
            "print(spec is None and [x.code for x in d])")
    done = subprocess.run([sys.executable, "-c", code], input=text, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]
    assert "spec.toml_syntax" in done.stdout or "spec." in done.stdout


def test_a_shallow_10k_service_spec_takes_the_fast_path_and_validates() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from plan_scale import synthetic_spec

    text = synthetic_spec(300)
    assert tomlfast.shallow(text) and tomlfast.loads(text) == tomllib.loads(text)
    spec, diagnostics = parse_spec(text)
    assert spec is not None and not diagnostics and len(spec.services) == 300
