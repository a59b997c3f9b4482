"""`railguard init` golden files: tests/golden/init/<layout>/app/ -> <layout>/railguard.toml.

One folder per app layout (a Flask factory package, a single-file Flask app, Django, FastAPI, Starlette, a
pyproject-only project, requirements only, no dependencies). The app's files are copied to a folder named
after the layout, init writes its spec there with fixed edge ports, and the result must equal the golden
spec and be valid. Detection reads the code and never runs it: the apps' dependencies are not installed
here. UPDATE_GOLDEN=1 rewrites the expected files after an intended change.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from railguard.engine.starter import detect, free_ports, write_starter
from railguard.model.diagnostics import has_errors
from railguard.model.specfile import parse_spec

GOLDEN = Path(__file__).parent / "golden" / "init"
LAYOUTS = sorted(p.name for p in GOLDEN.iterdir() if (p / "app").is_dir())


@pytest.mark.parametrize("layout", LAYOUTS)
def test_init_golden(layout: str, tmp_path: Path) -> None:
    folder = tmp_path / layout
    shutil.copytree(GOLDEN / layout / "app", folder, ignore=shutil.ignore_patterns("__pycache__"))
    path, found = write_starter(folder, ports=[8080, 8443])
    got = path.read_text()
    expected = GOLDEN / layout / "railguard.toml"
    if os.environ.get("UPDATE_GOLDEN"):
        expected.write_text(got)
    assert got == expected.read_text()
    spec, diagnostics = parse_spec(got, file="railguard.toml")
    assert spec is not None and not has_errors(diagnostics), diagnostics
    assert found.run == list(spec.services["web"].run)


def test_layouts_cover_what_the_issue_names() -> None:
    assert {"flask-factory", "flask-single", "django", "fastapi", "starlette", "pyproject-only",
            "requirements-only", "no-deps"} <= set(LAYOUTS)


def test_detection_never_runs_the_app(tmp_path: Path) -> None:
    """An app whose import would leave a mark: init reads it with ast, so the mark never appears."""
    mark = tmp_path / "ran"
    (tmp_path / "app.py").write_text(f"open({str(mark)!r}, 'w').write('x')\nfrom flask import Flask\n"
                                     "app = Flask(__name__)\n")
    found = detect(tmp_path)
    assert found is not None and found.framework == "flask" and not mark.exists()


def test_free_ports_skip_ports_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        taken = busy.getsockname()[1]
        ports = free_ports(2, first=taken)
        assert taken not in ports and len(set(ports)) == 2 and all(p > taken for p in ports)


def test_detection_survives_broken_and_hostile_files(tmp_path: Path) -> None:
    """Syntax errors, binary files, symlinks out of the folder and deep nesting are skipped, never followed or run."""
    (tmp_path / "broken.py").write_text("def (:\n")
    (tmp_path / "blob.py").write_bytes(b"\x00\xff" * 1000)
    (tmp_path / "outside").symlink_to("/")
    deep = tmp_path / "a"
    for part in "bcdefg":
        deep = deep / part
        deep.mkdir(parents=True, exist_ok=True)
        (deep / "__init__.py").write_text("")
    (tmp_path / "requirements.txt").write_text("fastapi\nuvicorn[standard]==0.30\n-e git+https://x/y\n# comment\n")
    assert detect(tmp_path) is None  # no app among them: init says so instead of guessing
    (tmp_path / "api.py").write_text("from fastapi import FastAPI\napi = FastAPI()\n")
    found = detect(tmp_path)
    assert found is not None and found.run[:2] == ["uvicorn", "api:api"] and not found.choices.server_added


def test_a_health_route_on_a_blueprint_is_checked_under_its_prefix(tmp_path: Path) -> None:
    """A route on a router or blueprint is served under the prefixes it is mounted through; one whose prefix
    init cannot read is not guessed at (the check would fail every deploy with a 404)."""
    pkg = tmp_path / "shop"
    pkg.mkdir()
    (tmp_path / "requirements.txt").write_text("flask\ngunicorn\n")
    (pkg / "__init__.py").write_text(
        "from flask import Flask\n\n\ndef create_app():\n    app = Flask(__name__)\n    from . import ops\n"
        "    app.register_blueprint(ops.bp, url_prefix='/internal')\n    return app\n")
    (pkg / "ops.py").write_text(
        "from flask import Blueprint\n\nbp = Blueprint('ops', __name__, url_prefix='/ops')\n\n\n"
        "@bp.get('/healthz')\ndef healthz():\n    return 'ok'\n")
    found = detect(tmp_path)
    assert found is not None and found.health == "/internal/ops/healthz", found
    (pkg / "__init__.py").write_text((pkg / "__init__.py").read_text().replace("'/internal'", "PREFIX"))
    found = detect(tmp_path)
    assert found is not None and found.health is None, found  # unreadable prefix: a TCP check, not a guess


def test_pydantic_settings_fields_are_variables_after_their_prefix(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("fastapi\npydantic-settings\n")
    for config in ("{'env_prefix': 'SHOP_'}", "SettingsConfigDict(env_prefix='SHOP_')"):
        (tmp_path / "main.py").write_text(
            "from fastapi import FastAPI\nfrom pydantic_settings import BaseSettings, SettingsConfigDict\n\n\n"
            f"class Settings(BaseSettings):\n    model_config = {config}\n    api_token: str\n"
            "    upload_dir: str = 'uploads'\n    title: str\n\n\nsettings = Settings()\napp = FastAPI()\n")
        found = detect(tmp_path)
        assert found is not None
        assert found.choices.secrets == ["SHOP_API_TOKEN"] and found.choices.required == ["SHOP_TITLE"], config
        assert found.choices.env["SHOP_UPLOAD_DIR"][0] == "$RAILGUARD_DATA_DIR/uploads"


def test_a_project_requiring_a_newer_python_is_warned_about_at_init(tmp_path: Path) -> None:
    import sys

    newer = f"{sys.version_info[0]}.{sys.version_info[1] + 1}"
    (tmp_path / "pyproject.toml").write_text(
        f'[project]\nname = "app"\nversion = "0.1.0"\nrequires-python = ">={newer}"\n'
        'dependencies = ["fastapi[standard]"]\n')
    (tmp_path / "main.py").write_text("from fastapi import FastAPI\napp = FastAPI()\n")
    found = detect(tmp_path)
    assert found is not None and len(found.choices.warnings) == 1 and f">={newer}" in found.choices.warnings[0]
    assert "requires-python" in found.choices.build_why
    (tmp_path / "pyproject.toml").write_text((tmp_path / "pyproject.toml").read_text().replace(f">={newer}", ">=3.8"))
    found = detect(tmp_path)
    assert found is not None and found.choices.warnings == []


def test_a_sqlite_file_named_in_the_code_is_a_line_to_change(tmp_path: Path) -> None:
    """FastAPI's SQL tutorial names its database "sqlite:///./sql_app.db": made in the working directory, which is
    the read-only release; a file whose path comes from a variable is moved by that variable instead."""
    (tmp_path / "requirements.txt").write_text("fastapi\nsqlalchemy\n")
    (tmp_path / "main.py").write_text('from fastapi import FastAPI\n\nSQLALCHEMY_DATABASE_URL = "sqlite:///./sql_app.db"\n'
                                      "app = FastAPI()\n")
    found = detect(tmp_path)
    assert found is not None and len(found.choices.changes) == 1, found.choices.changes
    assert found.choices.changes[0].startswith("main.py:3: f\"sqlite:///{os.environ['RAILGUARD_DATA_DIR']}/sql_app.db\"")
    (tmp_path / "main.py").write_text('import os\nfrom fastapi import FastAPI\n\n'
                                      'DB = os.environ.get("DB_PATH", "sql_app.db")\napp = FastAPI()\n')
    found = detect(tmp_path)
    assert found is not None and found.choices.changes == [] and found.choices.env["DB_PATH"][0].endswith("/app.db")


def test_init_names_what_dotenv_sets_and_never_copies_a_value(tmp_path: Path) -> None:
    folder = tmp_path / "flask-microblog"
    shutil.copytree(GOLDEN / "flask-microblog" / "app", folder)
    path, found = write_starter(folder, ports=[8080, 8443])
    assert found.choices.dotenv == ["ELASTICSEARCH_URL", "MAIL_SERVER", "SECRET_KEY"]
    assert "not-read-by-init" not in path.read_text() and "localhost:9200" not in path.read_text()


@pytest.mark.parametrize(("code", "framework", "interface"), [
    ("import bottle\napp = bottle.Bottle()\n", "bottle", "wsgi"),
    ("import falcon\napi = falcon.API()\n", "falcon", "wsgi"),
    ("import falcon.asgi\napp = falcon.asgi.App()\n", "falcon-asgi", "asgi"),
    ("from litestar import Litestar\napp = Litestar(route_handlers=[])\n", "litestar", "asgi"),
])
def test_each_framework_app_object_is_served_by_a_server_of_its_interface(
        tmp_path: Path, code: str, framework: str, interface: str) -> None:
    (tmp_path / "main.py").write_text(code)
    found = detect(tmp_path)
    assert found is not None and found.framework == framework, found
    assert found.run[0] == ("gunicorn" if interface == "wsgi" else "uvicorn"), found.run
    (tmp_path / "main.py").write_text("class App:\n    pass\n\n\napp = App()\n")  # a bare `App` is nobody's
    found = detect(tmp_path)
    assert found is not None and found.framework == "python"  # at most a script named like an entry point
