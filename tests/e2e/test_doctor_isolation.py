"""The doctor runs the app's code in scratch as its own unprivileged user when it runs as root.

An app whose release command and server both report who they run as and try the control plane's files
(read the state database, list the key folder, write the state folder). The environment is deployed for
real (isolated), then the doctor runs the checks that build, release, start and drill it. Every scratch
process must have run as ``rg-scratch-<app>`` (not root, not the environment's user, no supplementary
groups), every attempt must have failed, and the report must say the scratch runs are isolated.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest

from railguard.secrets.keys import key_dir

from .harness import free_port, wait_for
from .test_adversarial import Deployment, reachable_python, site  # noqa: F401 (site: fixture)

SPEC = """
[app]
name = "scratchy"

[environments.staging]
edge_port = {port}

[services.web]
run = ["python", "app.py", "serve"]
release = ["python", "app.py", "release"]
env = {{ TARGET_STATE = "{state}", TARGET_KEYS = "{keys}", REPORT_TO = "{reports}" }}
start_timeout = "20s"
[services.web.health]
http = "/healthz"
interval = "300ms"
timeout = "300ms"
start_period = "1s"
[[services.web.routes]]
path = "/"
"""

APP = r'''
import json, os, pathlib, sqlite3, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

state, keys = pathlib.Path(os.environ["TARGET_STATE"]), pathlib.Path(os.environ["TARGET_KEYS"])
report = {"mode": sys.argv[1], "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
          "instance": os.environ.get("RAILGUARD_INSTANCE", ""), "data": os.environ.get("RAILGUARD_DATA_DIR", "")}


def attempt(name, action):
    try:
        action()
        report[name] = True
    except Exception as exc:
        report[name] = f"{type(exc).__name__}"


attempt("read_state_db", lambda: (state / "state.db").read_bytes())
attempt("list_keys", lambda: list(keys.iterdir()))
attempt("write_state", lambda: (state / "pwned-by-scratch").write_text("x"))
attempt("write_data", lambda: (pathlib.Path(report["data"]) / "mine.txt").write_text("ok"))
out = pathlib.Path(os.environ["REPORT_TO"]) / f"{sys.argv[1]}-{os.getpid()}.json"
out.write_text(json.dumps(report))
if sys.argv[1] == "release":
    db = sqlite3.connect(os.path.join(report["data"], "app.db"))
    db.execute("CREATE TABLE IF NOT EXISTS t (x)")
    db.commit()
    sys.exit(0)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
'''


def test_doctor_scratch_runs_as_its_own_user_when_root(site: Path) -> None:  # noqa: F811
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("isolation needs root and useradd")
    python = reachable_python(site)
    if python is None:
        pytest.skip("no Python other users can run")
    reports = Path(tempfile.mkdtemp(prefix="rg-doctor-reports-", dir="/tmp"))
    scratch_base = Path(tempfile.mkdtemp(prefix="rg-doctor-tmp-", dir="/tmp"))  # outside the app's tree
    try:
        reports.chmod(0o1777)  # every process of the app may leave its report here, whoever it runs as
        scratch_base.chmod(0o755)  # the session's TMPDIR is private (0700): no scratch user could reach it
        d = Deployment(site, python, {"TMPDIR": str(scratch_base)})
        d.staging = free_port()
        (site / "railguard.toml").write_text(SPEC.format(port=d.staging, state=d.state, keys=key_dir(),
                                                         reports=reports))
        (site / "app.py").write_text(APP)
        d.rg_json("deploy", "--env", "staging", "--yes")
        assert wait_for(lambda: d.get(d.staging, "/healthz").status_code == 200 or None, "staging to serve")
        real = {p.name for p in reports.iterdir()}  # what the real environment's processes wrote
        (site / "app.py").write_text(APP + "\n# version 2\n")  # the drill needs a release to roll back from
        done = d.rg("doctor", "--env", "staging", "--check",
                    "idempotent-release,port-binding,rollback-drill,env-isolation", "--json")
        assert "Traceback" not in done.stderr, done.stderr
        report = json.loads(done.stdout)
        checks = {c["id"]: c for c in report["doctor"]["checks"]}
        for name in ("idempotent-release", "port-binding", "rollback-drill"):
            assert checks[name]["status"] == "pass", checks[name]
        summaries = [f["summary"] for f in checks["env-isolation"]["findings"]]
        assert "the doctor's scratch runs are isolated: they run as rg-scratch-scratchy" in summaries, summaries

        scratch_user = pwd.getpwnam("rg-scratch-scratchy")
        ran = [json.loads(p.read_text()) for p in reports.iterdir() if p.name not in real]
        modes = {r["mode"] for r in ran}
        # Single scratch processes and the drill's whole scratch deployment (another instance mark) both ran.
        assert len({r["instance"] for r in ran if r["mode"] == "serve"}) >= 2, ran
        assert {"release", "serve"} <= modes, ran
        for seen in ran:
            assert (seen["uid"], seen["gid"]) == (scratch_user.pw_uid, scratch_user.pw_gid), seen
            assert set(seen["groups"]) <= {scratch_user.pw_gid}, seen
            assert seen["read_state_db"] == "PermissionError" and seen["list_keys"] == "PermissionError", seen
            assert seen["write_state"] == "PermissionError", seen
            assert seen["write_data"] is True, seen  # its own scratch data folder, and only that
        assert not (d.state / "pwned-by-scratch").exists()
        # The real environment still runs as its own user, and nothing of the scratch user is left running.
        assert d.get(d.staging, "/healthz").status_code == 200
        left = [pid for pid in os.listdir("/proc") if pid.isdigit() and _uid(pid) == scratch_user.pw_uid]
        assert left == [], left
    finally:
        shutil.rmtree(reports, ignore_errors=True)
        shutil.rmtree(scratch_base, ignore_errors=True)


def _uid(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None
