"""Where a large plan's time goes: the daemon's plan of N services against N live, in process, phase by phase.

Usage: python bench/plan_phases.py [--rounds R] [N]          (default 10000 services, 4 rounds)
       python bench/plan_phases.py --validate [--rounds R] [N] (validation only, see below)

The plan is ``usecases.plan`` as the daemon runs it (GC paused, the fake provider holding the live services of
bench/plan_scale.py's mix: 10% changed, 2% missing, 2% extra), each round on a freshly written spec so the parse
is never the memo's. Each phase is timed where the plan calls it: ``parse`` (``Facts.parsed``: read, TOML
(``toml``: the child process of engine/tomlchild.py), models, ``checks``), ``desired`` (resources and
fingerprints), ``observe`` (the provider's report recorded into the store), ``planner``, ``save`` (hash, body,
SQLite). The first round also records the inventory (every row new, as in a fresh daemon's first plan).

``--validate``: ``Workspace.load`` of the N-service spec in process (what a plan's parse costs, and what
``railguard validate`` does after its imports), and ``railguard validate --json`` as a whole process.

Every run starts with a fixed loop (``calibration``): this machine's speed moves by a third run to run, so a
phase is compared with the loop measured beside it, and two trees are compared by alternating runs (the
``PYTHONPATH`` of each) rather than one after the other.
"""

from __future__ import annotations

import collections
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import plan_scale  # the synthetic spec and the live mix


def calibration() -> float:
    started = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - started


def _timed(owner: Any, name: str, label: str, spent: dict[str, float]) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[label] += time.perf_counter() - started

    setattr(owner, name, wrapper)


def phases(n: int, rounds: int) -> None:
    from railguard.engine import planner, specmemo, tomlchild, usecases
    from railguard.engine.facts import Facts
    from railguard.engine.workspace import Workspace
    from railguard.model import checks
    from railguard.providers.fake import FakeProvider
    from railguard.state.store import Store

    root = Path(tempfile.mkdtemp(prefix="rg-phases-"))
    (root / "railguard.toml").write_text(plan_scale.synthetic_spec(n))
    (root / "svc.py").write_text("print('hi')\n")
    home = root / ".railguard"
    home.mkdir(mode=0o700)
    desired = Facts(Workspace(root / "railguard.toml", home)).desired("staging", {})
    specmemo.forget()
    provider = FakeProvider(live={"staging": {o.address: o for o in plan_scale.mixed_observed(desired, n)}})
    del desired
    spent: dict[str, float] = collections.defaultdict(float)
    for owner, name, label in ((Facts, "parsed", "parse"), (tomlchild, "loads", "toml"), (checks, "check", "checks"),
                               (Facts, "desired", "desired"), (usecases, "observe_for_plan", "observe"),
                               (planner, "plan", "planner"), (Store, "save_plan", "save")):
        _timed(owner, name, label, spent)
    store = Store.open(home)
    print(f"calibration loop {calibration():.2f} s; {n:,} services against {n:,} live, in process")
    columns = ("total", "parse", "toml", "checks", "desired", "observe", "planner", "save")
    print("| round | " + " | ".join(columns) + " |")
    print("|---:|" + "---:|" * len(columns))
    rows: dict[str, list[float]] = collections.defaultdict(list)
    for i in range(rounds):
        specmemo.forget()
        spent.clear()
        (root / "railguard.toml").write_text(plan_scale.synthetic_spec(n) + f"# round {i}\n")
        started = time.perf_counter()
        usecases.plan(Workspace(root / "railguard.toml", home), "staging", store, provider)
        spent["total"] = time.perf_counter() - started
        for c in columns:
            rows[c].append(spent[c])
        print(f"| {i + 1} | " + " | ".join(f"{spent[c]:.3f}" for c in columns) + " |", flush=True)
    later = {c: v[1:] or v for c, v in rows.items()}  # the first round also writes the whole inventory
    print("| median of rounds 2+ | " + " | ".join(f"{statistics.median(later[c]):.3f}" for c in columns) + " |")


def validate(n: int, rounds: int) -> None:
    from railguard.engine import specmemo
    from railguard.engine.workspace import Workspace

    root = Path(tempfile.mkdtemp(prefix="rg-validate-"))
    (root / "railguard.toml").write_text(plan_scale.synthetic_spec(n))
    (root / "svc.py").write_text("print('hi')\n")
    print(f"calibration loop {calibration():.2f} s; {n:,} services")
    print("| round | `Workspace.load` in process | `railguard validate --json` whole process |")
    print("|---:|---:|---:|")
    env = {**os.environ, "NO_COLOR": "1", "RAILGUARD_HOME": str(root / ".railguard")}
    loads, wholes = [], []
    for i in range(rounds):
        (root / "railguard.toml").write_text(plan_scale.synthetic_spec(n) + f"# round {i}\n")
        specmemo.forget()
        started = time.perf_counter()
        spec, diagnostics = Workspace(root / "railguard.toml", root / ".railguard").load()
        loads.append(time.perf_counter() - started)
        assert spec is not None and not [d for d in diagnostics if d.is_error], diagnostics[:3]
        del spec, diagnostics
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "railguard", "validate", "--json"], cwd=root, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        wholes.append(time.perf_counter() - started)
        print(f"| {i + 1} | {loads[-1]:.3f} s | {wholes[-1]:.3f} s |", flush=True)
    print(f"| median | {statistics.median(loads):.3f} s | {statistics.median(wholes):.3f} s |")


def main() -> None:
    args = sys.argv[1:]
    checking = "--validate" in args
    args = [a for a in args if a != "--validate"]
    rounds = 4
    if "--rounds" in args:
        at = args.index("--rounds")
        rounds = int(args[at + 1])
        del args[at:at + 2]
    n = int(args[0]) if args else 10000
    (validate if checking else phases)(n, rounds)


if __name__ == "__main__":
    main()
