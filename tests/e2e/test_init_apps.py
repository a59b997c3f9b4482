"""Real apps of the layouts `railguard init` knows, deployed the way their docs say, with data that survives.

One flow per production server: a Flask package app with an app factory under gunicorn (which init adds to
the build), a Django project under waitress-serve with `migrate` as its release command and its secret key
from a secret, a FastAPI app under uvicorn. Each: `railguard init` writes the spec (nothing edited but the
edge ports, so tests running side by side do not collide), deploy, write data through the edge, redeploy,
read the data back, roll back, read it again. Real builds against the package index, real
processes, the real Caddy edge.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ..conftest import stop_daemon
from .harness import Workspace, free_port

APPS = Path(__file__).parent / "apps"


def _init(tmp_path: Path, layout: str, copy: bool = True) -> Workspace:
    root = tmp_path / layout
    if copy:
        shutil.copytree(APPS / layout, root, ignore=shutil.ignore_patterns("__pycache__"))
    ws = Workspace(root, free_port(), free_port())
    code, found = ws.rg_json("init")
    assert code == 0, found
    spec = (root / "railguard.toml").read_text()
    ports = iter([ws.port, free_port()])
    (root / "railguard.toml").write_text(re.sub(r"(?m)^edge_port = \d+", lambda _: f"edge_port = {next(ports)}",
                                                spec))
    return ws


def _post(ws: Workspace, path: str, text: str) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{ws.port}{path}", content=text.encode(), timeout=10, trust_env=False)


def _flow(ws: Workspace) -> None:
    """Deploy, write a note through the edge, redeploy, roll back: the note is there each time.

    The redeploy changes a variable, not the code: a new release with new processes from the same artifact,
    so the flow pays for one build (the builds themselves are tested in test_real_apps.py).
    """
    old, new = "v-one", "v-two"
    code, result = ws.deploy()
    assert code == 0, result
    assert ws.get("/version").text == old
    assert _post(ws, "/notes", "kept across releases").status_code in (200, 201)
    spec = ws.root / "railguard.toml"
    spec.write_text(spec.read_text().replace("[services.web.env]\n", f'[services.web.env]\nAPP_VERSION = "{new}"\n'))
    code, result = ws.deploy()
    assert code == 0, result
    assert ws.get("/version").text == new and "kept across releases" in ws.get("/notes").text
    code, result = ws.rg_json("rollback", "--env", "staging")
    assert code == 0, result
    assert ws.get("/version").text == old and "kept across releases" in ws.get("/notes").text
    # The note is in a file of the environment's data folder (the SQLite database), not in the release.
    data = ws.root / ".railguard" / "data" / "staging"
    assert any(b"kept across releases" in f.read_bytes() for f in data.rglob("*") if f.is_file()), \
        sorted(str(f) for f in data.rglob("*"))


@pytest.fixture
def stop(tmp_path: Path) -> Path:
    yield tmp_path  # type: ignore[misc]
    for child in tmp_path.iterdir():
        stop_daemon(child)


@pytest.mark.timeout(600)  # a real build against the package index
def test_flask_factory_package_under_gunicorn(stop: Path) -> None:
    ws = _init(stop, "flaskpkg")
    spec = (ws.root / "railguard.toml").read_text()
    assert '"gunicorn"' in spec and '"notes:create_app()"' in spec and "FLASK_INSTANCE_PATH" in spec
    _flow(ws)


@pytest.mark.timeout(600)
def test_django_project_under_waitress_with_migrate_and_a_secret_key(stop: Path) -> None:
    ws = _init(stop, "djangoproj")
    spec = (ws.root / "railguard.toml").read_text()
    assert '"waitress-serve"' in spec and '"migrate", "--noinput"' in spec and '"DJANGO_SECRET_KEY"' in spec
    done = subprocess.run([sys.executable, "-m", "railguard", "secret", "set", "DJANGO_SECRET_KEY", "--env",
                           "staging"], input="k" * 50, text=True, capture_output=True, cwd=ws.root, check=False)
    assert done.returncode == 0, done.stderr
    _flow(ws)


@pytest.mark.timeout(600)
def test_django_project_one_folder_down_under_gunicorn(stop: Path) -> None:
    """The repository's top holds requirements.txt, its Django project sits in src/ (src/manage.py): a layout
    thousands of repositories share. init at the top runs the server from src/ and names src/manage.py."""
    root = stop / "djangosub"
    shutil.copytree(APPS / "djangoproj", root / "src", ignore=shutil.ignore_patterns("__pycache__", "requirements.txt"))
    (root / "requirements.txt").write_text("django\ngunicorn\n")
    ws = _init(stop, "djangosub", copy=False)
    spec = (ws.root / "railguard.toml").read_text()
    assert '["gunicorn", "--chdir", "src",' in spec and '["python", "src/manage.py", "migrate", "--noinput"]' in spec
    done = subprocess.run([sys.executable, "-m", "railguard", "secret", "set", "DJANGO_SECRET_KEY", "--env",
                           "staging"], input="k" * 50, text=True, capture_output=True, cwd=ws.root, check=False)
    assert done.returncode == 0, done.stderr
    _flow(ws)


@pytest.mark.timeout(600)
def test_fastapi_app_under_uvicorn(stop: Path) -> None:
    ws = _init(stop, "fastapiapp")
    spec = (ws.root / "railguard.toml").read_text()
    assert '["uvicorn", "main:app"' in spec and "DATABASE_PATH" in spec
    _flow(ws)
