"""Every one-line break of bench/guardrail_breaks.py still names source that exists, exactly once.

The breaks script proves each guardrail has a test that fails without it, by replacing exact source text in a
throwaway copy. A refactor that moves or rewrites a guarded line would silently leave the script pointing at
nothing; this check (the script's ``--check``: no tests run, ~0.1 s) turns that into a red suite at once.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_guardrail_break_still_has_its_target_and_its_tests() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "guardrail_breaks.py"), "--check"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 with a missing target" in done.stdout, done.stdout
