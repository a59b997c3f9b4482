"""The edge beyond proxying, end to end: static files served by Caddy, HTTPS with the internal CA, bad folders."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx

from .harness import Workspace, free_port

STATIC = '''build = ["python", "-c", "import shutil; shutil.copytree('assets', 'staticfiles')"]
static = [{ path = "/static", folder = "staticfiles", cache = "24h" }]
'''


def _app_log(ws: Workspace) -> str:
    return "".join(p.read_text() for p in (ws.root / ".railguard" / "logs").rglob("*.log"))


def test_static_files_and_https_through_the_edge(ws: Workspace) -> None:
    (ws.root / "assets").mkdir()
    (ws.root / "assets" / "app.css").write_text("body{}")
    https_port = free_port()
    ws.write_spec(build=STATIC)
    spec = ws.root / "railguard.toml"
    text = spec.read_text().replace(f"edge_port = {ws.port}\n", f"edge_port = {ws.port}\nhttps_port = {https_port}\n")
    spec.write_text(text + '\n[[services.web.routes]]\nhost = "app.localhost"\npath = "/"\n')
    code, result = ws.deploy()
    assert code == 0, result

    # Static files come from the edge, with caching headers; the app never sees those requests.
    css = ws.get("/static/app.css")
    assert (css.status_code, css.text) == (200, "body{}")
    assert css.headers["cache-control"] == "public, max-age=86400" and css.headers.get("etag")
    assert ws.get("/static/missing.css").status_code == 404
    assert ws.version() == "v1"  # the app answers everything else
    log = _app_log(ws)
    assert "GET / " in log and "/static/" not in log

    # HTTPS for the route's host, verified with the CA file `railguard edge-ca` names; HTTP redirects there.
    done = ws.rg("edge-ca", "--env", "staging")
    assert done.returncode == 0, done.stderr
    ca = Path(done.stdout.strip())
    assert ca.is_file() and "BEGIN CERTIFICATE" in ca.read_text()
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca)), timeout=10, trust_env=False) as client:
        resp = client.get(f"https://127.0.0.1:{https_port}/", headers={"Host": "app.localhost"},
                          extensions={"sni_hostname": "app.localhost"})
        assert resp.status_code == 200 and resp.text.startswith("v1")
        assert client.get(f"https://127.0.0.1:{https_port}/static/app.css", headers={"Host": "app.localhost"},
                          extensions={"sni_hostname": "app.localhost"}).text == "body{}"
    redirect = httpx.get(f"http://127.0.0.1:{ws.port}/x", headers={"Host": "app.localhost"}, timeout=5,
                         trust_env=False)
    assert redirect.status_code == 308
    assert redirect.headers["location"] == f"https://app.localhost:{https_port}/x"
    status = ws.status()
    assert status["edge"]["https_port"] == https_port and status["edge"]["ca_root"] == str(ca)

    # A build whose static folder links out of the artifact is refused before anything starts.
    spec.write_text(spec.read_text().replace(
        "shutil.copytree('assets', 'staticfiles')",
        "import os, shutil; shutil.copytree('assets', 'staticfiles'); os.symlink('/etc', 'staticfiles/etc')"))
    code, result = ws.deploy()
    assert code != 0
    assert "rollout.static_outside" in str(result), result
    assert ws.get("/static/app.css").text == "body{}" and ws.version() == "v1"  # traffic unchanged
    assert ws.get("/static/etc/hostname").status_code == 404


def test_static_folder_validation(ws: Workspace) -> None:
    ws.write_spec(build='static = [{ path = "/static", folder = "../outside" }]\n')
    code, result = ws.rg_json("validate")
    assert code != 0
    assert [d["code"] for d in result["diagnostics"] if d["severity"] == "error"] == ["spec.static_outside"]
    ws.write_spec(build='static = [{ path = "/static", folder = "nothere" }]\n')
    code, result = ws.deploy()
    assert code != 0 and "rollout.static_missing" in str(result)
