"""The app's build is hostile too: in isolated mode it runs as the app's build user, never as root.

One deployment whose ``build`` command tries to write the state folder, read the state database and the
secret key, and leaves a process behind that keeps appending to the app's sources. The build must run
unprivileged, every attempt must fail, the process must be gone, and the artifact must end up sealed:
root's, read-only, and unchanged since sealing (the replica started, so it verified).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
from pathlib import Path

import pytest

from railguard.secrets.keys import key_dir
from tests.wheels import make_wheel

from .harness import free_port, wait_for
from .test_adversarial import HOSTILE, Deployment, reachable_python, site  # noqa: F401 (site: fixture)

SPEC = """
[app]
name = "buildattack"

[environments.staging]
edge_port = {port}

[services.web]
run = ["python", "hostile.py"]
build = ["python", "build_attack.py"]
env = {{ TARGET_STATE = "{state}", TARGET_KEYS = "{keys}" }}
start_timeout = "20s"
[services.web.health]
http = "/healthz"
interval = "500ms"
timeout = "400ms"
start_period = "1s"
[[services.web.routes]]
path = "/"
"""

BUILD_ATTACK = r'''
import json, os, pathlib, subprocess, sys

state, keys = pathlib.Path(os.environ["TARGET_STATE"]), pathlib.Path(os.environ["TARGET_KEYS"])
report = {"uid": os.getuid(), "groups": os.getgroups()}


def attempt(name, action):
    try:
        report[name] = bool(action())
    except OSError as exc:
        report[name] = False
        report[name + "_error"] = type(exc).__name__


import rgbuildtool  # from the dependency layer, built by the build user too

report["layer"] = rgbuildtool.VALUE
attempt("write_state", lambda: (state / "pwned-by-build").write_text("x"))
attempt("read_state_db", lambda: (state / "state.db").read_bytes())
attempt("read_key", lambda: b"".join(p.read_bytes() for p in keys.iterdir()))
# A process left behind, trying to change the artifact once it is sealed (and every environment runs it).
subprocess.Popen([sys.executable, "-c", "import pathlib, time\n"
                  "while True:\n"
                  "    try:\n"
                  "        pathlib.Path('hostile.py').open('a').write('# tampered\\n')\n"
                  "    except OSError:\n"
                  "        pass\n"
                  "    time.sleep(0.05)\n"], start_new_session=True, stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
pathlib.Path("build-report.json").write_text(json.dumps(report))
'''


def _uid_processes(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def test_isolated_build_runs_unprivileged_and_the_artifact_stays_sealed(site: Path) -> None:  # noqa: F811
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("isolation needs root and useradd")
    python = reachable_python(site)
    if python is None:
        pytest.skip("no Python other users can run")
    d = Deployment(site, python, {})
    d.staging = free_port()
    (site / "railguard.toml").write_text(SPEC.format(port=d.staging, state=d.state, keys=key_dir()))
    (site / "build_attack.py").write_text(BUILD_ATTACK)
    make_wheel(site / "wheels", "rgbuildtool", "1.0", "VALUE = 'from the layer'\n")
    (site / "requirements.txt").write_text(f"--no-index\n--find-links {site / 'wheels'}\nrgbuildtool==1.0\n")
    assert d.rg("secret", "set", "API_TOKEN", "--env", "staging", stdin="stg-build-4e1f").returncode == 0
    assert any(key_dir().glob("*.key")), "the secret key exists (so reading it is a real attempt)"
    d.rg_json("deploy", "--env", "staging", "--yes")
    assert wait_for(lambda: d.get(d.staging, "/healthz").status_code == 200 or None, "staging to serve")

    status = d.rg_json("status", "--env", "staging")["status"]
    artifacts = [p for p in (d.state / "artifacts").iterdir() if not p.name.startswith(".")]
    assert len(artifacts) == 1, artifacts
    artifact = artifacts[0]
    report = json.loads((artifact / "src" / "build-report.json").read_text())
    builder = pwd.getpwuid(report["uid"])
    assert builder.pw_name.startswith("rg-build-"), builder
    # The build ran as the app's build user, without root's groups, and every attempt failed.
    assert report["layer"] == "from the layer"
    assert set(report["groups"]) <= {builder.pw_gid}, report
    assert report["write_state"] is False and report["read_state_db"] is False and report["read_key"] is False
    assert not (d.state / "pwned-by-build").exists()
    # Nothing of the build user is left running, and the artifact is root's and read-only throughout.
    # Killed when the build ended; SIGKILL is delivered asynchronously, so give the kernel a moment to reap it.
    wait_for(lambda: _uid_processes(builder.pw_uid) == [] or None, "the build user's processes to be gone", 10)
    layer = next(p for p in (d.state / "artifacts" / ".layers").iterdir() if not p.name.startswith("."))
    entries = [artifact, layer] + [Path(root) / name for top in (artifact, layer)
                                   for root, dirs, files in os.walk(top) for name in [*dirs, *files]]
    for entry in entries:
        info = entry.lstat()
        assert info.st_uid == 0, entry
        if not stat.S_ISLNK(info.st_mode):
            assert info.st_mode & 0o222 == 0 and not info.st_mode & (stat.S_ISUID | stat.S_ISGID), entry
    sealed = (artifact / "src" / "hostile.py").read_bytes()
    # The replica verified the artifact before it started; a restart verifies it again.
    assert status["isolation"] == "isolated"
    assert d.rg("deploy", "--env", "staging", "--yes").returncode == 0
    assert (artifact / "src" / "hostile.py").read_bytes() == sealed
    assert d.get(d.staging, "/healthz").status_code == 200
    # The doctor says plainly whether its own scratch runs are isolated. Which one it is depends on whether a
    # scratch user can reach this run's TMPDIR and Python (a private session TMPDIR: not; CI's checkout: it can);
    # tests/e2e/test_doctor_isolation.py makes sure of the isolated case. Never silent either way.
    doctor = d.rg("doctor", "--check", "env-isolation", "--json")
    said = ["the doctor's scratch build and replicas are not isolated: they run as root",
            "the doctor's scratch runs are isolated: they run as rg-scratch-"]
    assert sum(s in doctor.stdout for s in said) == 1, doctor
