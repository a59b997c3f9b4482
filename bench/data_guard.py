"""Benchmark: what the data guard adds to a release (snapshot + rehearsal) and how long a restore takes.

Builds a SQLite database of the given size in a temporary data folder, then times, through the same
functions the local provider's rollout calls: the snapshot (backup API + checksum + schema), the rehearsal
(scratch copy + an additive release command run twice, as a subprocess like the real one) and a restore
(checksum verification + backup API into the live file). Figures go to docs/benchmarks.md.

    python bench/data_guard.py --mb 10 --mb 100
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from railguard.data import rehearsal, snapshots

MIGRATE = """
import os, sqlite3, pathlib
db = sqlite3.connect(pathlib.Path(os.environ["RAILGUARD_DATA_DIR"]) / "app.db")
if "tags" not in {r[1] for r in db.execute("PRAGMA table_info(items)")}:
    db.execute("ALTER TABLE items ADD COLUMN tags TEXT")
db.commit()
"""


def build(path: Path, mb: int) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    row = "x" * 1000
    rows = mb * 1000
    db.executemany("INSERT INTO items (body) VALUES (?)", ((row,) for _ in range(rows)))
    db.commit()
    db.close()


def once(mb: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "data"
        data.mkdir()
        build(data / "app.db", mb)
        size = (data / "app.db").stat().st_size / 1e6

        def run(folder: Path, label: str) -> None:
            subprocess.run([sys.executable, "-c", MIGRATE], env={**os.environ, "RAILGUARD_DATA_DIR": str(folder)},
                           check=True)

        t0 = time.perf_counter()
        backup = snapshots.take(data, root / "backups", "bench", 1)
        t1 = time.perf_counter()
        found = rehearsal.rehearse(data, root / "scratch", run, [], snapshots.files(root / "backups", backup),
                                  rehearsal.known_shapes(backup))
        t2 = time.perf_counter()
        assert backup is not None and not found.losses
        started = time.perf_counter()
        run(data, "real")  # the real run, for comparison
        real = time.perf_counter() - started
        t3 = time.perf_counter()
        snapshots.restore(root / "backups", backup, data)
        t4 = time.perf_counter()
        return {"size_mb": size, "snapshot_s": t1 - t0, "rehearsal_s": t2 - t1, "added_s": t2 - t0,
                "release_command_s": real, "restore_s": t4 - t3}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, action="append", default=[])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    for mb in args.mb or [10, 100]:
        results = [once(mb) for _ in range(args.runs)]
        med = {k: sorted(r[k] for r in results)[len(results) // 2] for k in results[0]}
        print(f"{med['size_mb']:.0f} MB: snapshot {med['snapshot_s']:.2f} s, rehearsal {med['rehearsal_s']:.2f} s, "
              f"added {med['added_s']:.2f} s (the release command alone {med['release_command_s']:.2f} s), "
              f"restore {med['restore_s']:.2f} s  (median of {args.runs})")


if __name__ == "__main__":
    main()
