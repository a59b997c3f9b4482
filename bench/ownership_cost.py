"""What the port ownership check costs a health-check pass (CPU time, not wall time: the machine is shared).

Starts REPLICAS real child processes, each listening on its own loopback port (plus CONNECTIONS established
loopback connections, so /proc/net/tcp holds what a busy machine's does), then measures, in CPU time:

- one read of the kernel's listener table (``loopback_listeners``: a sock_diag dump of listening sockets), done
  once per pass, and the same read from /proc/net/tcp + tcp6 (the fallback);
- a pass of ``Ownership.verify`` over every replica with the proven inodes remembered (the steady state);
- the first verification of every replica (the process-tree look: descendants and /proc/<pid>/fd links).

Usage: python bench/ownership_cost.py [REPLICAS] [CONNECTIONS]
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from railguard.providers.listeners import loopback_listeners
from railguard.providers.local.ownership import Ownership
from railguard.providers.local.processes import ReplicaRecord, ReplicaSpec

LISTENER = """
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64)
print(s.getsockname()[1], flush=True)
time.sleep(3600)
"""


def cpu() -> float:
    return time.process_time()  # this process's user + system CPU, at nanosecond resolution (os.times: 10 ms)


def main() -> None:
    replicas = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    connections = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    procs = [subprocess.Popen([sys.executable, "-c", LISTENER], stdout=subprocess.PIPE, text=True)
             for _ in range(replicas)]
    held: list[socket.socket] = []
    try:
        ports = [int(p.stdout.readline()) for p in procs if p.stdout is not None]
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(connections + 1)
        for _ in range(connections):
            client = socket.create_connection(server.getsockname())
            held += [client, server.accept()[0]]
        pairs = [(ReplicaSpec(name=f"e.s.r1.{i}", argv=[], cwd=Path("/"), env={}, port=port,
                              log_path=Path("/dev/null")),
                  ReplicaRecord(name=f"e.s.r1.{i}", pid=proc.pid, create_time=0.0, pgid=proc.pid, port=port,
                                argv=[], log_path="", started_at=time.time()))
                 for i, (proc, port) in enumerate(zip(procs, ports, strict=True))]
        rounds = 50
        start = cpu()
        for _ in range(rounds):
            table = loopback_listeners()
        read_ms = (cpu() - start) / rounds * 1000
        start = cpu()
        for _ in range(rounds):
            assert loopback_listeners(("/proc/net/tcp", "/proc/net/tcp6")) == table
        proc_ms = (cpu() - start) / rounds * 1000
        owned = Ownership()
        start = cpu()
        assert all(owned.verify(spec, record, table) is None for spec, record in pairs)
        cold_ms = (cpu() - start) * 1000
        start = cpu()
        for _ in range(rounds):
            table = loopback_listeners()
            assert all(owned.verify(spec, record, table) is None for spec, record in pairs)
        pass_ms = (cpu() - start) / rounds * 1000
        print(f"{replicas} replicas, {connections} loopback connections ({len(held)} sockets), "
              f"load {os.getloadavg()[0]:.1f}")
        print(f"  listener table read (once per pass):        {read_ms:.2f} ms CPU (sock_diag, LISTEN only)")
        print(f"  the same from /proc/net/tcp + tcp6:         {proc_ms:.2f} ms CPU (the fallback)")
        print(f"  pass, table read + verify every replica:    {pass_ms:.2f} ms CPU "
              f"({pass_ms / replicas * 1000:.1f} us per replica)")
        print(f"  first verification of every replica (cold): {cold_ms:.1f} ms CPU "
              f"({cold_ms / replicas:.2f} ms per replica, once per process)")
    finally:
        for sock in held:
            sock.close()
        for proc in procs:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
