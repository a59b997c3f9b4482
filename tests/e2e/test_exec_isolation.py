"""``railguard exec`` on an isolated environment with no replica running: it runs as the environment's own user.

With no replica to take the user from, the command must still run as the user a rollout gives the
environment (``rg-<app>-<env>``), so it can use the environment's data folder, and never as root nor as a
user made up for the occasion.
"""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path

import pytest

from .harness import free_port, wait_for
from .test_adversarial import HOSTILE, Deployment, reachable_python, site  # noqa: F401 (site: fixture)

SPEC = """
[app]
name = "execiso"

[environments.staging]
edge_port = {port}

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
PROBE = ("import os, pathlib; d = pathlib.Path(os.environ['RAILGUARD_DATA_DIR']); (d / 'from-exec').write_text('1'); "
         "print('uid', os.getuid(), 'groups', os.getgroups())")


def test_exec_without_a_running_replica_runs_as_the_environments_user(site: Path) -> None:  # noqa: F811
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("isolation needs root and useradd")
    python = reachable_python(site)
    if python is None:
        pytest.skip("no Python other users can run")
    d = Deployment(site, python, {})
    d.staging = free_port()
    shutil.copy(HOSTILE, site / "hostile.py")
    (site / "railguard.toml").write_text(SPEC.format(port=d.staging))
    d.rg_json("deploy", "--env", "staging", "--yes")
    assert wait_for(lambda: d.get(d.staging, "/healthz").status_code == 200 or None, "staging to serve")
    user = pwd.getpwnam("rg-execiso-staging")
    data = d.state / "data" / "staging"
    assert data.stat().st_uid == user.pw_uid

    assert d.rg("daemon", "stop", "--everything").returncode == 0  # no replica runs from here on
    status = d.rg_json("status", "--env", "staging")["status"]
    assert not [r for s in status["services"] for r in s["replicas"] if r["pid"]], status
    ran = d.rg("exec", "web", "--env", "staging", "--", "python", "-c", PROBE)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"uid {user.pw_uid} groups [{user.pw_gid}]" in ran.stdout or f"uid {user.pw_uid} groups []" in ran.stdout, \
        ran.stdout
    # It used the environment's data folder, which stays its user's alone.
    assert (data / "from-exec").stat().st_uid == user.pw_uid
    assert data.stat().st_uid == user.pw_uid and data.stat().st_mode & 0o077 == 0
