"""A replica is proven before it is routed: the listener on its port must be its own, not merely answer.

Real processes on loopback: a replica that has not bound its port yet, and a foreign HTTP server (another OS user
when the suite runs as root, else the same user) that binds the replica's allocated port first and answers 200 to
everything. The readiness gate must fail, naming the holder, and pass once the port is the replica's.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from railguard.daemon.intrusions import PORT_CODE, Attempt, Intrusions
from railguard.providers.listeners import holders, loopback_listeners
from railguard.providers.local.ownership import Ownership
from railguard.providers.local.processes import ReplicaSpec, allocate_port, spawn, stop
from railguard.providers.local.replicas import Failure, gate
from railguard.providers.local.runtime import Replica

# Binds $PORT only once the file GO exists, then answers 200 "replica" to everything.
REPLICA = """
import os, time
from http.server import BaseHTTPRequestHandler, HTTPServer
while not os.path.exists(os.environ["GO"]):
    time.sleep(0.02)
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "7"); self.end_headers()
        self.wfile.write(b"replica")
    def log_message(self, *a): pass
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""
# The squatter: binds the port (retrying until it is free), says so, answers 200 "HIJACKED" to everything.
SQUATTER = """
import sys, socket, time
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        print("hit", self.headers.get("User-Agent"), flush=True)
        self.send_response(200); self.send_header("Content-Length", "8"); self.end_headers()
        self.wfile.write(b"HIJACKED")
    def log_message(self, *a): pass
deadline = time.monotonic() + 60
while True:
    try:
        server = HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.001)
print("bound", flush=True)
server.serve_forever()
"""
CONFIG: dict[str, Any] = {
    "health": {"mode": "http", "http": "/healthz", "timeout_ms": 1000, "interval_ms": 100, "healthy_threshold": 1,
               "start_period_ms": 0, "unhealthy_threshold": 3},
    "start_timeout_ms": 20000,
}


def squat(port: int, as_other_user: bool) -> subprocess.Popen[str]:
    """Start the squatter on ``port`` (as ``nobody`` when asked) and return once it listens."""
    user: dict[str, Any] = {}
    if as_other_user:
        nobody = pwd.getpwnam("nobody")
        user = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
    # Only the standard library: the system's Python, which any user may run (this venv's may be under /root).
    python = "/usr/bin/python3" if as_other_user and os.path.exists("/usr/bin/python3") else sys.executable
    proc = subprocess.Popen([python, "-c", SQUATTER, str(port)], stdout=subprocess.PIPE, text=True,
                            cwd="/", **user)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "bound"
    return proc


def end(proc: subprocess.Popen[str]) -> str:
    proc.kill()
    out, _ = proc.communicate(timeout=10)
    return out


@pytest.fixture(params=["other-user", "same-user"])
def as_other_user(request: pytest.FixtureRequest) -> Iterator[bool]:
    other = request.param == "other-user"
    if other and os.geteuid() != 0:
        pytest.skip("starting a process as another user needs root")
    yield other


def test_a_foreign_listener_on_the_allocated_port_fails_the_gate_and_the_replica_passes_once_it_owns_it(
        tmp_path: Path, as_other_user: bool) -> None:
    port = allocate_port()
    go = tmp_path / "go"
    spec = ReplicaSpec(name="production.web.r1.0", argv=[sys.executable, "-c", REPLICA], cwd=tmp_path,
                       env={"PORT": str(port), "GO": str(go), "PATH": os.environ["PATH"]}, port=port,
                       log_path=tmp_path / "replica.log")
    record = spawn(spec)
    squatter: subprocess.Popen[str] | None = None
    try:
        squatter = squat(port, as_other_user)
        with pytest.raises(Failure) as failed:
            gate([Replica(spec, record)], CONFIG)
        assert failed.value.code == "rollout.port_taken", failed.value
        holder = pwd.getpwnam("nobody").pw_uid if as_other_user else os.geteuid()
        assert failed.value.extra["holder_uid"] == holder and failed.value.extra["port"] == port
        reason = "held by another user" if as_other_user else "held by another process"
        assert reason in failed.value.cause, failed.value.cause
        # It answered a health check (that is how the gate learnt something listens), nothing else reached it.
        assert set(end(squatter).splitlines()) <= {"hit railguard-health"}
        # Once the port is the replica's own, the same gate passes: the check can tell them apart.
        go.touch()
        gate([Replica(spec, record)], CONFIG)
    finally:
        if squatter is not None and squatter.poll() is None:
            end(squatter)
        stop(record, 5.0)


def test_the_listener_table_reads_loopback_and_wildcard_listeners_with_their_uid() -> None:
    import socket

    with socket.socket() as loop, socket.socket(socket.AF_INET6) as wild:
        loop.bind(("127.0.0.1", 0))
        loop.listen()
        wild.bind(("::", 0))
        wild.listen()
        table = loopback_listeners()
        # The kernel's socket dump (sock_diag, what is used) and /proc/net/tcp(6) (the fallback) agree.
        assert table == loopback_listeners(("/proc/net/tcp", "/proc/net/tcp6"))
        for sock in (loop, wild):
            port = sock.getsockname()[1]
            assert [h.uid for h in table[port]] == [os.geteuid()], table.get(port)
            assert holders(port) == table[port]
        # An ownership check names a listener the replica's process tree does not hold (a sleeper holds neither).
        port = loop.getsockname()[1]
        spec = ReplicaSpec(name="e.s.r1.0", argv=["x"], cwd=Path("/"), env={}, port=port, log_path=Path("/dev/null"))
        from railguard.providers.local.processes import ReplicaRecord

        mine = ReplicaRecord(name="e.s.r1.0", pid=os.getpid(), create_time=0.0, pgid=0, port=port, argv=[],
                             log_path="", started_at=time.time())
        assert Ownership().verify(spec, mine, table) is None  # this process holds it: its own
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], close_fds=True)
        try:
            other = ReplicaRecord(name="e.s.r1.0", pid=sleeper.pid, create_time=0.0, pgid=sleeper.pid, port=port,
                                  argv=[], log_path="", started_at=time.time())
            found = Ownership().verify(spec, other, table)
        finally:
            sleeper.kill()
            sleeper.wait()
        assert found is not None and "held by another process" in found.reason, found


def test_a_held_port_is_recorded_against_the_holders_environment() -> None:
    recorded: list[Attempt] = []
    intrusions = Intrusions(recorded.append, lambda: {"nobody": "staging"})
    intrusions.port_held(pwd.getpwnam("nobody").pw_uid, 41234, "production", "production.web.r1.0: port held")
    intrusions.flush()
    deadline = time.monotonic() + 10
    while not recorded and time.monotonic() < deadline:
        time.sleep(0.02)
    [attempt] = recorded
    assert attempt.env == "staging" and attempt.principal == "os:nobody" and attempt.code == PORT_CODE
    assert attempt.detail["victim_env"] == "production" and attempt.detail["port"] == 41234


@pytest.mark.parametrize("holders_own_port", [False, True])
def test_a_refused_bind_is_attributed_to_the_environment_squatting_the_port(holders_own_port: bool) -> None:
    """The kernel audit reports production's replica refused a bind (EADDRINUSE). Who holds the port decides:
    another environment's process on a port that is not its own squats it (the record is the holder's, naming
    production as the victim); on a port of its own, production's process was the one trying another's port."""
    if os.geteuid() != 0:
        pytest.skip("the holder runs as another OS user (nobody): that needs root")
    from types import SimpleNamespace

    from railguard.daemon.intrusions import KERNEL_CODE
    from railguard.daemon.service import Daemon

    port = allocate_port()
    squatter = squat(port, as_other_user=True)
    try:
        nobody = pwd.getpwnam("nobody")
        daemon_user = pwd.getpwnam("daemon")  # stands for production's user: any uid other than the holder's
        attempt = Attempt(source="kernel", principal="os:daemon", env="production",
                          what=f"bind 127.0.0.1:{port}: EADDRINUSE", code=KERNEL_CODE,
                          detail={"uid": daemon_user.pw_uid, "user": "daemon", "syscall": "bind",
                                  "errno": "EADDRINUSE", "target": f"127.0.0.1:{port}"})
        owner = SimpleNamespace(intrusions=SimpleNamespace(environment_of=lambda user: {"nobody": "staging"}.get(user)),
                                _env_ports=lambda env: {port} if holders_own_port else set())
        Daemon._attribute(owner, attempt)  # type: ignore[arg-type]
    finally:
        end(squatter)
    assert attempt.detail["holder_uid"] == nobody.pw_uid and attempt.detail["holder_env"] == "staging"
    if holders_own_port:
        assert attempt.env == "production" and attempt.principal == "os:daemon", attempt
        assert "held by nobody, environment staging" in attempt.what, attempt.what
    else:
        assert attempt.env == "staging" and attempt.principal == "os:nobody", attempt
        assert attempt.detail["uid"] == nobody.pw_uid and attempt.detail["victim_env"] == "production", attempt
        assert "daemon (environment production)" in attempt.what, attempt.what
