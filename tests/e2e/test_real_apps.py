"""Apps started the way their docs say: console scripts installed by the build, pyproject-only projects.

Real builds (pip against the local package index), real processes, the real Caddy edge. What a user
sees when a command is missing or a release command fails is checked in the human output too.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from railguard.engine.starter import install_command

from ..conftest import stop_daemon
from .harness import Workspace, free_port, make_workspace, wait_for

SPEC = """
[app]
name = "realapp"

[environments.staging]
edge_port = {port}

[services.web]
{build}
run = {run}
env = {{ VERSION = "{version}" }}
start_timeout = "30s"
stop_timeout = "3s"
drain_timeout = "2s"

[services.web.health]
http = "/healthz"
interval = "500ms"
timeout = "400ms"

[[services.web.routes]]
path = "/"
"""

# A WSGI app: its version, the interpreter it runs on, and a note kept in the data folder.
WSGI_APP = '''
import os
import sys
from pathlib import Path

NOTE = Path(os.environ["RAILGUARD_DATA_DIR"]) / "note.txt"


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/note" and environ["REQUEST_METHOD"] == "POST":
        NOTE.parent.mkdir(parents=True, exist_ok=True)
        NOTE.write_bytes(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
    body = {"/healthz": "ok", "/exe": sys.executable,
            "/note": NOTE.read_text() if NOTE.exists() else ""}.get(path, os.environ["VERSION"] + " {marker}")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
'''

# A pyproject-only project with a console script that serves on $PORT with the standard library.
PYPROJECT = '''
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "pyonly"
version = "1.0"

[project.scripts]
pyonly-serve = "pyonly:main"

[tool.setuptools]
py-modules = ["pyonly"]
'''

PYONLY = '''
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = (sys.executable if self.path == "/exe" else "pyonly " + os.environ["VERSION"]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main():
    HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
'''


def _workspace(tmp_path: Path, files: dict[str, str], run: str, version: str = "1") -> Workspace:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    build = install_command(tmp_path)  # what `railguard init` picks for these files
    ws = Workspace(tmp_path, free_port(), free_port())
    _spec(ws, run, build, version)
    return ws


def _spec(ws: Workspace, run: str, build: list[str] | None, version: str) -> None:
    line = f"build = {build!r}".replace("'", '"') if build else ""
    (ws.root / "railguard.toml").write_text(SPEC.format(port=ws.port, build=line, run=run, version=version))


def _artifacts(ws: Workspace) -> Path:
    return (ws.root / ".railguard" / "artifacts").resolve()


def test_waitress_serve_installed_by_requirements_survives_redeploy_and_rollback(tmp_path: Path) -> None:
    run = '["waitress-serve", "--listen=127.0.0.1:$PORT", "wsgiapp:app"]'
    ws = _workspace(tmp_path, {"requirements.txt": "waitress\n", "wsgiapp.py": WSGI_APP.replace("{marker}", "a")},
                    run)
    try:
        code, result = ws.deploy()
        assert code == 0, result
        assert ws.get().text == "1 a"
        exe = ws.get("/exe").text
        assert Path(exe).is_relative_to(_artifacts(ws)), exe  # the artifact's own interpreter
        assert httpx.post(f"http://127.0.0.1:{ws.port}/note", content=b"kept", timeout=5, trust_env=False).text \
            == "kept"
        # A code change: a new artifact, built again in its own folder; its waitress-serve runs too.
        (tmp_path / "wsgiapp.py").write_text(WSGI_APP.replace("{marker}", "b"))
        _spec(ws, run, install_command(tmp_path), "2")
        code, result = ws.deploy()
        assert code == 0, result
        assert ws.get().text == "2 b" and ws.get("/note").text == "kept"
        assert ws.get("/exe").text != exe and Path(ws.get("/exe").text).is_relative_to(_artifacts(ws))
        code, result = ws.rg_json("rollback", "--env", "staging")
        assert code == 0, result
        assert ws.get().text == "1 a" and ws.get("/note").text == "kept" and ws.get("/exe").text == exe
    finally:
        stop_daemon(tmp_path)


def test_pyproject_only_app_is_installed_and_runs_on_its_own_interpreter(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, {"pyproject.toml": PYPROJECT, "pyonly.py": PYONLY}, '["pyonly-serve"]')
    (tmp_path / "railguard.toml").write_text((tmp_path / "railguard.toml").read_text().replace(
        'http = "/healthz"', 'http = "/"'))
    try:
        code, result = ws.deploy()
        assert code == 0, result
        assert ws.get().text == "pyonly 1"
        exe = Path(ws.get("/exe").text)
        assert exe.is_relative_to(_artifacts(ws)) and exe.parent.name == "bin", exe
        installed = list(exe.parent.parent.glob("lib/python*/site-packages/pyonly.py"))
        assert installed, "the project was not installed into the artifact's venv"
    finally:
        stop_daemon(tmp_path)


def test_a_run_command_missing_from_the_release_says_so(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, {"app.py": "print('never runs')\n"}, '["gunicorn", "app:app"]')
    try:
        code, result = ws.deploy()
        assert code == 1
        diag = result["diagnostics"][0]
        assert diag["code"] == "rollout.start_failed", diag
        assert "'gunicorn' is not installed in the release environment" in diag["detail"]
        assert "requirements.txt/pyproject" in diag["detail"]
        human = ws.rg("deploy", "--env", "staging", "--yes")
        assert human.returncode == 1 and "is not installed in the release environment" in human.stderr
        assert "Live at" not in human.stdout + human.stderr
    finally:
        stop_daemon(tmp_path)


def test_failing_release_command_shows_its_log_tail_to_people_and_no_live_url(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    try:
        ws.write_spec(migrate="fail")
        human = ws.rg("deploy", "--env", "staging", "--yes")
        assert human.returncode == 1
        assert "rollout.release_failed" in human.stderr
        assert "migration 0003 failed: column already exists" in human.stderr  # the log tail, not only in --json
        assert "Live at" not in human.stdout + human.stderr
        # Applied, but no replica behind the route: a deploy with nothing to do does not claim "Live at" either.
        ws.write_spec(replicas=0)
        assert ws.deploy()[0] == 0
        again = ws.rg("deploy", "--env", "staging", "--yes")
        assert again.returncode == 0 and "Nothing is live in staging yet" in again.stdout, again.stdout
        assert "Live at" not in again.stdout
    finally:
        stop_daemon(tmp_path)


def test_plan_output_says_what_happens_next_for_denied_and_approval_plans(ws: Workspace) -> None:
    spec = (ws.root / "railguard.toml").read_text()
    rule = ('\n[[policies]]\nname = "{name}"\nexpression = \'change.action == "create"\'\neffect = "{effect}"\n'
            'message = "{message}"\n')
    (ws.root / "railguard.toml").write_text(
        spec + rule.format(name="freeze", effect="deny", message="staging is frozen for the audit"))
    denied = ws.rg("plan", "--env", "staging")
    assert denied.returncode == 1, denied.stderr  # a plan nothing may apply is a failure to plan (policy.denied)
    assert "policy.denied" in denied.stdout + denied.stderr
    assert "Denied by policy" in denied.stdout and "staging is frozen for the audit" in denied.stdout
    assert "Saved. Review it" not in denied.stdout
    (ws.root / "railguard.toml").write_text(
        spec + rule.format(name="review", effect="require_approval", message="new services are reviewed"))
    gated = ws.rg("plan", "--env", "staging")
    assert gated.returncode == 0, gated.stderr
    assert "needs an approval by" in gated.stdout and "railguard approve plan-" in gated.stdout
    assert "Saved. Review it" not in gated.stdout


# A package with a console script that serves the app's page on $PORT: installed from a wheel made here,
# so the dependency layer is real (uv, --no-index) and needs no package index.
SERVE_TOOL = '''
import os
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/write-release":
            try:
                Path("written.txt").write_text("x")
                body = "wrote"
            except OSError as exc:
                body = "refused: " + str(exc)
        else:
            body = Path("page.html").read_text().strip() + " " + os.environ["VERSION"]
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def main():
    if Path("write-at-start").exists():
        Path("db.sqlite3").write_text("data in the release")
    HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
'''


def test_layered_builds_stream_reuse_their_layer_refuse_writes_and_tampered_artifacts(tmp_path: Path) -> None:
    from tests.wheels import make_wheel

    wheels = tmp_path.parent / f"{tmp_path.name}-wheels"
    make_wheel(wheels, "rgserve", "1.0", SERVE_TOOL, {"rgserve": "rgserve:main"})
    ws = _workspace(tmp_path, {"requirements.txt": f"--no-index\n--find-links {wheels}\nrgserve==1.0\n",
                               "page.html": "page-one"}, '["rgserve"]')
    spec = tmp_path / "railguard.toml"
    # No warm set to switch back to: a rollback starts the old artifact again, so it is checked first.
    spec.write_text(spec.read_text().replace('http = "/healthz"', 'http = "/"').replace(
        '[environments.staging]\n', '[environments.staging]\nrollback_window = "0s"\n'))
    layers_dir = _artifacts(ws) / ".layers"
    try:
        code, result = ws.deploy()
        assert code == 0, result
        assert ws.get().text == "page-one 1"  # the layer's console script, run from the artifact
        journal = result["operation"]["journal"]
        lines = [e["detail"]["line"] for e in journal if e["phase"] == "output"]
        assert any("rgserve==1.0" in line for line in lines), lines  # uv's own output, streamed into the journal
        first_layer = sorted(p.name for p in layers_dir.iterdir() if p.is_dir())

        # An unknown package: the resolver's own words reach the terminal; nothing live is touched.
        requirements = tmp_path / "requirements.txt"
        good = requirements.read_text()
        requirements.write_text(good + "rg-no-such-package-anywhere\n")
        human = ws.rg("deploy", "--env", "staging", "--yes")
        assert human.returncode == 1
        assert "rollout.build_failed" in human.stderr and "rg-no-such-package-anywhere" in human.stderr
        assert "was not found" in human.stderr or "No solution found" in human.stderr, human.stderr
        assert ws.get().text == "page-one 1"
        requirements.write_text(good)

        # A template-only change: a new artifact on the same layer; people see the build's lines.
        (tmp_path / "page.html").write_text("page-two")
        human = ws.rg("deploy", "--env", "staging", "--yes")
        assert human.returncode == 0, human.stderr
        assert "reusing layer" in human.stdout
        assert ws.get().text == "page-two 1"
        assert sorted(p.name for p in layers_dir.iterdir() if p.is_dir()) == first_layer
        assert "refused" in ws.get("/write-release").text  # the running replica cannot write its release
        shown = ws.rg("logs", "web", "--env", "staging", "--build")
        assert shown.returncode == 0 and "reusing layer" in shown.stdout, shown.stdout + shown.stderr
        newest = ws.rg_json("operations", "--env", "staging")[1]["operations"][0]["id"]
        assert "reusing layer" in ws.rg("operations", newest).stdout

        # A release that writes its data into its own folder fails, and says where data belongs.
        (tmp_path / "write-at-start").write_text("")
        code, result = ws.deploy()
        assert code == 1
        diag = result["diagnostics"][0]
        assert diag["code"] == "artifact.write_refused", diag
        assert "$RAILGUARD_DATA_DIR" in diag["detail"] and "db.sqlite3" in diag["detail"]
        assert ws.get().text == "page-two 1"  # nothing live touched
        (tmp_path / "write-at-start").unlink()

        # Someone rewrites the first release's artifact: rolling back to it is refused, with an event.
        first = next(p for p in _artifacts(ws).iterdir() if (p / "artifact.json").is_file()
                     and (p / "src" / "page.html").read_text() == "page-one")
        page = first / "src" / "page.html"
        os.chmod(page.parent, 0o755)
        os.chmod(page, 0o644)
        page.write_text("page-evil")
        code, result = ws.rg_json("rollback", "--env", "staging")
        assert code == 1, result
        assert result["diagnostics"][0]["code"] == "artifact.tampered", result
        assert "src/page.html" in result["diagnostics"][0]["detail"]
        assert ws.get().text == "page-two 1"
        events = wait_for(lambda: [e for e in ws.rg_json("events", "--env", "staging")[1]["events"]
                                   if e["kind"] == "artifact.tampered"], "the tamper event")
        assert "src/page.html" in events[0]["message"]
    finally:
        stop_daemon(tmp_path)
