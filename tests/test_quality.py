"""Static checks run as part of the suite: layering (import-linter), types (mypy), lint (ruff)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    exe = BIN / tool if (BIN / tool).exists() else shutil.which(tool)
    assert exe, f"{tool} is not installed; install the dev extras"
    return subprocess.run([str(exe), *args], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


def test_layers_hold() -> None:
    done = _run("lint-imports")
    assert done.returncode == 0, done.stdout + done.stderr


def test_types_check() -> None:
    done = _run("mypy")
    assert done.returncode == 0, done.stdout + done.stderr


def test_lint() -> None:
    done = _run("ruff", "check", "src", "tests", "bench")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_module_says_why_it_exists() -> None:
    missing = []
    for path in (ROOT / "src" / "railguard").rglob("*.py"):
        text = path.read_text().lstrip()
        if not (text.startswith('"""') or text.startswith("'''")):
            missing.append(str(path.relative_to(ROOT)))
    assert missing == []
