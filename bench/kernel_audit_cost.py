"""What the kernel audit witness costs (docs/guardrails.md, "What is recorded"): start, covering a new uid (the
first replica of an environment's user: four auditctl rules), covering it again (every later replica), stop.

Run as root on a machine with auditctl: ``python bench/kernel_audit_cost.py [rounds]``. It adds rules only under
its own key for uid 65534 (nobody) and removes them; auditing is left as it was found.
"""

from __future__ import annotations

import statistics
import sys
import time

from railguard.daemon.kernelaudit import KernelAudit


def main(rounds: int) -> None:
    timings: dict[str, list[float]] = {"start": [], "first watch": [], "watch again": [], "stop": []}
    for _ in range(rounds):
        audit = KernelAudit("railguard-bench", lambda found: None)
        at = time.perf_counter()
        if not audit.start():
            sys.exit(audit.state)
        timings["start"].append(time.perf_counter() - at)
        at = time.perf_counter()
        audit.watch(65534, "bench")
        timings["first watch"].append(time.perf_counter() - at)
        at = time.perf_counter()
        audit.watch(65534, "bench")
        timings["watch again"].append(time.perf_counter() - at)
        at = time.perf_counter()
        audit.stop()
        timings["stop"].append(time.perf_counter() - at)
    for name, values in timings.items():
        print(f"{name}: median {statistics.median(values) * 1000:.3f} ms, max {max(values) * 1000:.3f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
