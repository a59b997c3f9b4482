"""The spec is the agent's text: what it names for an environment (data folder, OS user) is only ever the
environment's own, on a daemon that runs as root and isolates environments.

A staging-only agent that points staging's data folder at a folder holding someone else's files (here a stand-in
for the daemon's keys) gets a refused deploy with a diagnostic, and the folder keeps its owner and mode; naming
production's user as staging's is refused before anything runs.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from .harness import free_port
from .test_adversarial import HOSTILE, Deployment, reachable_python, site  # noqa: F401 (site: fixture)

SPEC = """
[app]
name = "authority"

[environments.staging]
edge_port = {port}
{extra}

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


def test_a_spec_cannot_hand_staging_someone_elses_folder_or_user(site: Path) -> None:  # noqa: F811
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("isolation needs root and useradd")
    python = reachable_python(site)
    if python is None:
        pytest.skip("no Python other users can run")
    keys = site / "keys"  # root's, not empty: what must never become staging's user's
    keys.mkdir(mode=0o700)
    (keys / "signing.key").write_text("not the app's")
    d = Deployment(site, python, {})
    d.staging = free_port()
    shutil.copy(HOSTILE, site / "hostile.py")
    (site / "railguard.toml").write_text(SPEC.format(port=d.staging, extra=f'data_dir = "{keys}"'))
    done = d.rg("deploy", "--env", "staging", "--yes", "--json")
    assert "Traceback" not in done.stderr, done.stderr
    answer = json.loads(done.stdout)
    assert not answer["ok"], answer
    codes = [diag["code"] for diag in answer["diagnostics"]]
    assert "rollout.data_dir_taken" in codes, answer
    assert all(diag["remediation"] for diag in answer["diagnostics"])
    assert {os.lstat(p).st_uid for p in (keys, keys / "signing.key")} == {0}
    assert keys.stat().st_mode & 0o777 == 0o700

    # Production's user (a name the spec's other environment runs as) is refused when the spec is read...
    production = f'\n[environments.production]\nedge_port = {free_port()}\n'
    (site / "railguard.toml").write_text(SPEC.format(port=d.staging, extra='user = "rg-authority-production"')
                                         + production)
    done = d.rg("plan", "--env", "staging", "--json")
    answer = json.loads(done.stdout)
    assert done.returncode != 0 and "spec.shared_resource" in [x["code"] for x in answer["diagnostics"]], answer
    # ...and an account that exists already (a login, a service's) by the daemon, which never adopts one.
    (site / "railguard.toml").write_text(SPEC.format(port=d.staging, extra='user = "nobody"'))
    done = d.rg("deploy", "--env", "staging", "--yes", "--json")
    answer = json.loads(done.stdout)
    assert not answer["ok"] and "rollout.user_taken" in [x["code"] for x in answer["diagnostics"]], answer
