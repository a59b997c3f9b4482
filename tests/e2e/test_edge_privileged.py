"""An isolated edge on a port below 1024: Caddy runs as rg-edge with CAP_NET_BIND_SERVICE, and nothing else has it.

Root runs the daemon; each environment's Caddy runs as ``rg-edge``, which may not bind a low port. The one
environment that asks for one gets a Caddy started with that single capability (ambient, bounding set cut to
it, no new privileges); its resolver, its replicas and the other environment's Caddy get none. When the port
moves above 1024, its Caddy is restarted without the capability.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
from pathlib import Path

import pytest

from .harness import free_port, wait_for
from .test_adversarial import HOSTILE, Deployment, reachable_python, site  # noqa: F401 (site: fixture)

SPEC = """
[app]
name = "lowport"

[environments.low]
edge_port = {low}

[environments.high]
edge_port = {high}

[services.web]
run = ["python", "hostile.py"]
start_timeout = "20s"
[services.web.health]
http = "/healthz"
interval = "500ms"
timeout = "400ms"
start_period = "1s"
[[services.web.routes]]
path = "/"
"""
NET_BIND_SERVICE = 1 << 10


def free_low_port() -> int | None:
    for port in range(810, 900):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return None


def caps(pid: int) -> dict[str, int]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {k: int(fields[k].strip(), 16) for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb")} | {
        "NoNewPrivs": int(fields["NoNewPrivs"].strip())}


def edge_pids(d: Deployment, env: str) -> tuple[int, int]:
    folder = d.state / "edge" / env
    return tuple(int(json.loads((folder / name).read_text())["pid"])  # type: ignore[return-value]
                 for name in ("caddy.pid", "resolver.pid"))


def test_a_low_port_edge_gets_only_net_bind_service_and_only_while_it_needs_it(site: Path) -> None:  # noqa: F811
    if os.geteuid() != 0 or shutil.which("useradd") is None or shutil.which("setpriv") is None:
        pytest.skip("isolation needs root, useradd and setpriv")
    python = reachable_python(site)
    low = free_low_port()
    if python is None or low is None:
        pytest.skip("no Python other users can run, or no free port in 810-899")
    d = Deployment(site, python, {})
    high = free_port()
    shutil.copy(HOSTILE, site / "hostile.py")
    (site / "railguard.toml").write_text(SPEC.format(low=low, high=high))
    d.rg_json("deploy", "--env", "low", "--yes")
    d.rg_json("deploy", "--env", "high", "--yes")
    assert wait_for(lambda: d.get(low).text == "ok" or None, f"the edge on port {low} to serve")
    assert d.get(high).text == "ok"

    edge_uid = pwd.getpwnam("rg-edge").pw_uid
    caddy, resolver = edge_pids(d, "low")
    assert os.stat(f"/proc/{caddy}").st_uid == edge_uid and os.stat(f"/proc/{resolver}").st_uid == edge_uid
    held = caps(caddy)
    assert held["CapEff"] == held["CapAmb"] == held["CapBnd"] == NET_BIND_SERVICE and held["NoNewPrivs"] == 1, held
    # Nothing else gained it: not the resolver beside it, not the replicas, not the other environment's Caddy.
    assert caps(resolver)["CapEff"] == 0
    for env in ("low", "high"):
        status = d.rg_json("status", "--env", env)["status"]
        assert status["isolation"] == "isolated", status
        pids = [r["pid"] for s in status["services"] for r in s["replicas"]]
        assert pids and all(caps(pid)["CapEff"] == 0 and caps(pid)["CapAmb"] == 0 for pid in pids), env
    other, _ = edge_pids(d, "high")
    assert os.stat(f"/proc/{other}").st_uid == edge_uid and caps(other)["CapEff"] == 0

    # The port moves above 1024: its Caddy is restarted without the capability, and serves there.
    moved = free_port()
    (site / "railguard.toml").write_text(SPEC.format(low=moved, high=high))
    d.rg_json("deploy", "--env", "low", "--yes")
    assert wait_for(lambda: d.get(moved).text == "ok" or None, f"the edge on port {moved} to serve")
    again, _ = edge_pids(d, "low")
    assert again != caddy and caps(again)["CapEff"] == 0 and os.stat(f"/proc/{again}").st_uid == edge_uid
