"""A first deploy that cannot pass until a one-off command creates its database (Flask's tutorial: `flask
--app flaskr init-db`): the failed release can run that command when named with `--release N`, with the
release's databases' URLs (it has no replica to take them from), and the next deploy passes. Before, exec
refused every release that never ran healthy and its remediation sent the user back to deploying. Real
daemon, processes and Caddy."""

from __future__ import annotations

import json
from pathlib import Path

from ..conftest import stop_daemon
from .harness import Workspace, free_port

APP = '''
import os, sqlite3
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATH = os.environ["DATABASE_URL"].removeprefix("sqlite:///")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            rows = sqlite3.connect(f"file:{PATH}?mode=ro", uri=True).execute("SELECT body FROM post").fetchall()
        except sqlite3.Error:
            self.send_response(500)
            self.end_headers()
            return
        body = "\\n".join(r[0] for r in rows).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
'''
INIT_DB = '''
import os, sqlite3
db = sqlite3.connect(os.environ["DATABASE_URL"].removeprefix("sqlite:///"))
db.executescript("DROP TABLE IF EXISTS post; CREATE TABLE post (body TEXT); INSERT INTO post VALUES ('hello');")
db.commit()
print("Initialized the database.")
'''
SPEC = """
[app]
name = "blog"
[environments.staging]
edge_port = {port}
[databases.main]
engine = "sqlite"
[services.web]
run = ["python", "app.py"]
databases = ["main"]
start_timeout = "8s"
stop_timeout = "2s"
drain_timeout = "1s"
[services.web.health]
http = "/"
interval = "300ms"
timeout = "250ms"
start_period = "1s"
[[services.web.routes]]
path = "/"
"""


def test_a_failed_first_release_runs_the_command_its_deploy_needs(tmp_path: Path) -> None:
    ws = Workspace(tmp_path, free_port(), free_port())
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "init_db.py").write_text(INIT_DB)
    (tmp_path / "railguard.toml").write_text(SPEC.format(port=ws.port))
    try:
        code, first = ws.deploy()
        assert code == 1, first  # no table yet: the health check answers 500
        done = ws.rg("exec", "web", "--env", "staging", "--json", "--", "python", "init_db.py")
        refused = json.loads(done.stdout)["diagnostics"][0]
        assert refused["code"] == "exec.no_release", refused
        assert "--release 1 -- ...`" in refused["remediation"], refused["remediation"]
        # Protected, the command is a plan, and its approver reads that the release never passed its deploy.
        spec = (tmp_path / "railguard.toml").read_text()
        (tmp_path / "railguard.toml").write_text(spec.replace("[environments.staging]\n",
                                                              "[environments.staging]\nprotected = true\n"))
        done = ws.rg("exec", "web", "--env", "staging", "--release", "1", "--json", "--", "python", "init_db.py")
        planned = json.loads(done.stdout)["plan"]
        (change,) = planned["changes"]
        assert "which failed and never ran healthy" in change["reason"], change
        assert {"path": "release_status", "after": "failed"}.items() <= next(
            d for d in change["diff"] if d["path"] == "release_status").items(), change
        (tmp_path / "railguard.toml").write_text(spec)
        done = ws.rg("exec", "web", "--env", "staging", "--release", "1", "--json", "--", "python", "init_db.py")
        ran = json.loads(done.stdout)
        assert done.returncode == 0, ran
        assert ran["exec"]["output"] == ["Initialized the database."], ran
        code, second = ws.deploy()
        assert code == 0, second
        assert ws.get("/").text == "hello"
    finally:
        stop_daemon(tmp_path)
