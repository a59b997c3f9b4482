"""Benchmark: the rehearsal fence's cost (:func:`railguard.data.pgrehearsal.fence`), paid before every Postgres
rehearsal and at every apply, adoption and restart: the rehearsal role set up again, pg_hba.conf read (and
rewritten only when it differs), CONNECT revoked and checked, in one psql session. A managed-like server is made
(initdb, start, :func:`railguard.providers.local.dbservers.secure`), then ``--calls`` fences are timed: wall and
the CPU of this process and its children (psql), the server's own CPU aside. Figures go to docs/benchmarks.md.

    python bench/pg_fence.py --calls 20
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import shutil
import socket
import tempfile
import time
from pathlib import Path

from railguard.data import pgrehearsal
from railguard.data.postgres import Cluster
from railguard.providers.local.dbservers import secure


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    root = Path(tempfile.mkdtemp(prefix="pgfence-"))
    os.chmod(root, 0o711)  # the server's own user (when root) traverses it
    cluster = Cluster(root / "c", port, secrets.token_urlsafe(16), app_password=secrets.token_urlsafe(16),
                      rehearse_password=secrets.token_urlsafe(16))
    try:
        cluster.init()
        cluster.start()
        secure(cluster, "main")
        started, cpu = time.monotonic(), _cpu()
        for _ in range(args.calls):
            pgrehearsal.fence(cluster)
        wall, used = (time.monotonic() - started) / args.calls, (_cpu() - cpu) / args.calls
        print(f"fence: {wall * 1000:.1f} ms wall, {used * 1000:.1f} ms CPU (this process and psql) per call, "
              f"load {os.getloadavg()[0]:.2f}")
    finally:
        cluster.remove()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
