"""What `sys.setswitchinterval` does to a request that releases the GIL often while a background pass computes.

Why it exists: the daemon's API threads release the GIL at every SQLite step and socket call; each time, a
CPU-bound background pass (observer, supervisor, health checks) may take it, and the request waits until the
pass is asked to drop it (the switch interval, 5 ms by default). This measures that alone, in one process: a
"request" of N SQLite point reads (each a GIL release) timed while a background thread runs pure-Python work for
a given share of the time (its duty cycle, like a pass every 0.5 s), for each switch interval; and the background
work done per second (its throughput: the price of switching more often). Median of several requests.

Usage: .venv/bin/python bench/gil_switch.py [--reads 50] [--duty 0.05 0.2 1.0] [--intervals 0.005 0.001 0.0005]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time


def background(stop: threading.Event, duty: float, done: list[int]) -> None:
    period = 0.1
    while not stop.is_set():
        end = time.perf_counter() + period * duty
        n = 0
        while time.perf_counter() < end:  # a pass: pure Python, never releasing the GIL on its own
            n += sum(i * i for i in range(200))
            done[0] += 1
        if duty < 1.0:
            time.sleep(period * (1 - duty))


def request(db: sqlite3.Connection, reads: int) -> float:
    t0 = time.perf_counter()
    for i in range(reads):
        db.execute("SELECT v FROM t WHERE k = ?", (i % 100,)).fetchone()
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=50)
    parser.add_argument("--duty", type=float, nargs="+", default=[0.05, 0.2, 1.0])
    parser.add_argument("--intervals", type=float, nargs="+", default=[0.005, 0.001, 0.0005])
    parser.add_argument("--requests", type=int, default=40)
    opts = parser.parse_args()
    path = os.path.join(tempfile.mkdtemp(), "t.db")
    db = sqlite3.connect(path, check_same_thread=False)
    db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    db.executemany("INSERT INTO t VALUES (?, ?)", [(i, "x" * 50) for i in range(100)])
    db.commit()
    print(f"load {os.getloadavg()[0]:.2f}; {opts.reads} SQLite reads per request; python {sys.version.split()[0]}")
    print(f"{'duty':>6}{'interval ms':>13}{'req p50 ms':>12}{'req p95 ms':>12}{'bg units/s':>12}")
    alone = statistics.median(request(db, opts.reads) for _ in range(opts.requests))
    print(f"{'none':>6}{'-':>13}{alone:>12.2f}{'-':>12}{'-':>12}")
    for duty in opts.duty:
        for interval in opts.intervals:
            sys.setswitchinterval(interval)
            stop, done = threading.Event(), [0]
            thread = threading.Thread(target=background, args=(stop, duty, done), daemon=True)
            thread.start()
            time.sleep(0.2)
            t0, d0 = time.perf_counter(), done[0]
            times = []
            for _ in range(opts.requests):
                times.append(request(db, opts.reads))
                time.sleep(0.013)  # arrive at unrelated moments of the background's cycle
            rate = (done[0] - d0) / (time.perf_counter() - t0)
            stop.set()
            thread.join()
            times.sort()
            print(f"{duty:>6}{interval * 1000:>13}{statistics.median(times):>12.2f}"
                  f"{times[int(0.95 * (len(times) - 1))]:>12.2f}{rate:>12.0f}")
    sys.setswitchinterval(0.005)


if __name__ == "__main__":
    main()
