"""A spec's TOML: ``tomllib`` in process against the child parse of engine/tomlchild.py, whole cost each.

Usage: python bench/toml_child.py [N ...]   (services; default 300 1000 3000 10000; --rounds R, default 5)

For each size (the synthetic spec of bench/plan_scale.py), R rounds alternating the two, medians of:
``tomllib.loads`` CPU and wall time; the child path's CPU in the caller (the nesting pre-check, starting the
child, reading its answer, ``json.loads``) and in the child (interpreter start, ``toml_rs``, ``json.dumps``),
and its wall time.
The garbage collector is off for both, as in the daemon (engine/gcpause.py).
"""

from __future__ import annotations

import gc
import os
import resource
import statistics
import sys
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from plan_scale import synthetic_spec

from railguard.engine import tomlchild


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    args = sys.argv[1:]
    rounds = 5
    if "--rounds" in args:
        at = args.index("--rounds")
        rounds = int(args[at + 1])
        del args[at:at + 2]
    sizes = [int(a) for a in args] or [300, 1000, 3000, 10000]
    gc.disable()
    print("| services | text | tomllib CPU | tomllib wall | child path: caller CPU | child CPU | total CPU | wall "
          "| load |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        text = synthetic_spec(n)
        slow, slow_wall, caller, child, wall = [], [], [], [], []
        for _ in range(rounds):
            started, began = _cpu(resource.RUSAGE_SELF), time.perf_counter()
            expected = tomllib.loads(text)
            slow_wall.append(time.perf_counter() - began)
            slow.append(_cpu(resource.RUSAGE_SELF) - started)
            started, started_child = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
            began = time.perf_counter()
            found = tomlchild.child_loads(text)
            wall.append(time.perf_counter() - began)
            caller.append(_cpu(resource.RUSAGE_SELF) - started)
            child.append(_cpu(resource.RUSAGE_CHILDREN) - started_child)
            assert found == expected, "the child's answer differs from tomllib's"
            del expected, found
            gc.collect()
        med = statistics.median
        print(f"| {n:,} | {len(text) / 1e6:.2f} MB | {med(slow) * 1000:.0f} ms | {med(slow_wall) * 1000:.0f} ms | "
              f"{med(caller) * 1000:.0f} ms | "
              f"{med(child) * 1000:.0f} ms | {(med(caller) + med(child)) * 1000:.0f} ms | {med(wall) * 1000:.0f} ms | "
              f"{os.getloadavg()[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
