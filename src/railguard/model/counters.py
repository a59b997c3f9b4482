"""Debug counters: how often the expensive steps of a request run (spec parses, source hashes).

Why it exists: "parse once, snapshot once" is a property that regresses silently, so the steps
that should run once per request count themselves. Counting is off the record by default: an
in-process :data:`COUNTS` always counts (tests read and reset it), and only when
``RAILGUARD_DEBUG_COUNTS`` names a file is each count also appended to it as one line
``<pid> <name>``, so ``bench/deploy_counts.py`` can count across the CLI and the daemon it starts.
Bumped by :func:`railguard.model.specfile.parse_spec`, :mod:`railguard.sources.snapshot` and
:mod:`railguard.engine.tomlchild` (whether a large spec's TOML child answered or fell back).
"""

from __future__ import annotations

import os
from collections import Counter

ENV = "RAILGUARD_DEBUG_COUNTS"
COUNTS: Counter[str] = Counter()


def bump(name: str) -> None:
    COUNTS[name] += 1
    path = os.environ.get(ENV)
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as handle:  # one short append: lines of two processes never mix
            handle.write(f"{os.getpid()} {name}\n")
    except OSError:
        pass  # a debug aid never fails a request
