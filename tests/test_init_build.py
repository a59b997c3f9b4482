"""`railguard init` picks the build that installs what the app declares: requirements, a pyproject project, both."""

from __future__ import annotations

from pathlib import Path

import pytest

from railguard.engine.starter import detect, install_command

PIP = ["python", "-m", "pip", "install", "--no-input"]
PROJECT = '[project]\nname = "shop"\nversion = "1"\ndependencies = ["waitress"]\n'
TOOL_ONLY = "[tool.ruff]\nline-length = 100\n"
POETRY = ('[tool.poetry]\nname = "shop"\nversion = "1"\n[tool.poetry.dependencies]\npython = "^3.11"\nwaitress = "*"\n'
          '[build-system]\nrequires = ["poetry-core"]\nbuild-backend = "poetry.core.masonry.api"\n')


@pytest.mark.parametrize(("files", "expected"), [
    ({}, None),
    ({"requirements.txt": "waitress\n"}, [*PIP, "-r", "requirements.txt"]),
    ({"pyproject.toml": PROJECT}, [*PIP, "."]),
    ({"pyproject.toml": TOOL_ONLY}, None),
    ({"pyproject.toml": POETRY}, [*PIP, "."]),  # a Poetry package: its dependencies come with it
    ({"pyproject.toml": POETRY.replace('version = "1"', 'version = "1"\npackage-mode = false')}, None),
    ({"pyproject.toml": "not [valid toml"}, None),
    ({"requirements.txt": "waitress\n", "pyproject.toml": PROJECT}, [*PIP, "-r", "requirements.txt", "."]),
    ({"requirements.txt": "waitress\n", "pyproject.toml": TOOL_ONLY}, [*PIP, "-r", "requirements.txt"]),
])
def test_install_command_follows_the_dependency_files(tmp_path: Path, files: dict[str, str],
                                                      expected: list[str] | None) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert install_command(tmp_path) == expected
    (tmp_path / "app.py").write_text("print('serving')\n")  # imports nothing the build would have to add
    found = detect(tmp_path)
    assert found is not None and found.build == expected


def test_imports_a_declared_framework_brings_are_neither_added_nor_reported(tmp_path: Path) -> None:
    """Flask brings werkzeug and click, pydantic brings pydantic_core, pyjwt is imported as jwt: none of them is
    missing (init used to add werkzeug to the build and tell the user to "add the packages" jwt, click...)."""
    (tmp_path / "requirements.txt").write_text("flask\npydantic\npyjwt\ngunicorn\n")
    (tmp_path / "app.py").write_text(
        "import click\nimport jwt\nimport pydantic_core\nfrom flask import Flask\nfrom werkzeug.security import "
        "check_password_hash\nimport somethingelse\n\napp = Flask(__name__)\n")
    found = detect(tmp_path)
    assert found is not None and found.build == [*PIP, "-r", "requirements.txt"], found.build
    why = found.choices.build_why
    assert "werkzeug" not in why and "jwt" not in why and "click" not in why and "pydantic_core" not in why, why
    assert "somethingelse" in why  # a real unknown import is still reported


@pytest.mark.parametrize(("root_on", "health"), [("router", "/docs"), ("app", "/")])
def test_a_fastapi_root_route_counts_only_on_the_app_itself(tmp_path: Path, root_on: str, health: str) -> None:
    """full-stack-fastapi-template: `@router.get("/")` under an /api/v1/items prefix made init check `/`, which the
    app does not serve (404), instead of FastAPI's /docs."""
    (tmp_path / "requirements.txt").write_text("fastapi\nuvicorn\n")
    (tmp_path / "main.py").write_text(
        "from fastapi import APIRouter, FastAPI\n\napp = FastAPI()\nrouter = APIRouter()\n\n\n"
        f"@{root_on}.get(\"/\")\ndef listing():\n    return []\n\n\napp.include_router(router, prefix=\"/items\")\n")
    found = detect(tmp_path)
    assert found is not None and found.health == health, found.health


def test_no_app_names_the_folder_below_that_holds_a_django_project(tmp_path: Path) -> None:
    """django-polls repositories keep requirements.txt at the top and manage.py one folder down: init said only
    "run railguard init in the app's folder"."""
    from railguard.engine.starter import write_starter
    from railguard.model.diagnostics import RailguardError

    (tmp_path / "requirements.txt").write_text("Django==4.2.3\n")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "manage.py").write_text("import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', "
                                                 "'site.settings')\n")
    with pytest.raises(RailguardError) as refused:
        write_starter(tmp_path)
    remediation = refused.value.diagnostics[0].remediation
    assert "`railguard init` in site" in remediation and "copy requirements.txt into it" in remediation, remediation


def test_a_django_project_with_debug_on_and_staticfiles_gets_its_settings_lines(tmp_path: Path) -> None:
    """The MDN local library tutorial: DEBUG = True in the code, STATIC_ROOT set, staticfiles installed. init
    said nothing of DEBUG (tracebacks and settings for anyone, in production) and collected no static files."""
    (tmp_path / "requirements.txt").write_text("Django==5.1\ngunicorn\n")
    (tmp_path / "manage.py").write_text("import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', "
                                        "'lib.settings')\n")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "__init__.py").write_text("")
    (tmp_path / "lib" / "wsgi.py").write_text("from django.core.wsgi import get_wsgi_application\n"
                                              "application = get_wsgi_application()\n")
    (tmp_path / "lib" / "settings.py").write_text(
        "import os\nfrom pathlib import Path\nBASE_DIR = Path(__file__).resolve().parent.parent\n"
        "SECRET_KEY = os.environ['DJANGO_SECRET_KEY']\nDEBUG = True\n"
        "INSTALLED_APPS = ['django.contrib.admin', 'django.contrib.staticfiles']\n"
        "STATIC_ROOT = BASE_DIR / 'collected'\nSTATIC_URL = '/assets/'\n")
    found = detect(tmp_path)
    assert found is not None
    c = found.choices
    assert 'lib/settings.py:5: DEBUG = os.environ.get("DJANGO_DEBUG") == "1"' in c.changes, c.changes
    assert any(ch.startswith('lib/settings.py:4: os.environ.get("DJANGO_SECRET_KEY", "")') for ch in c.changes), \
        c.changes
    assert not any("STATIC_ROOT" in ch for ch in c.changes), c.changes  # it has one: collected/
    assert c.build == [*PIP, "-r", "requirements.txt", "&&", "python", "manage.py", "collectstatic", "--noinput"]
    assert c.static is not None and c.static[:2] == ("/assets", "collected"), c.static


def test_a_fastapi_app_in_src_importing_src_with_a_postgres_driver(tmp_path: Path) -> None:
    """A FastAPI homework app (goit_web_hw_11): src/main.py imports `src.models`, the database is Postgres through
    SQLAlchemy and psycopg2. init ran `uvicorn main:app` (no such module from the root) and gave the app no
    database, though it reads DATABASE_URL and declares psycopg2-binary."""
    (tmp_path / "requirements.txt").write_text("fastapi\nuvicorn\nsqlalchemy\npsycopg2-binary==2.9.9\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "database.py").write_text("import os\nDATABASE_URL = os.getenv('DATABASE_URL')\n")
    (tmp_path / "src" / "models.py").write_text("X = 1\n")
    (tmp_path / "src" / "main.py").write_text("from fastapi import FastAPI\nimport src.models as models\n"
                                              "from src.database import DATABASE_URL\napp = FastAPI()\n")
    found = detect(tmp_path)
    assert found is not None
    c = found.choices
    assert c.run[:2] == ["uvicorn", "src.main:app"], c.run
    assert c.database is not None and c.database[0] == "DATABASE_URL", c.database
    assert "DATABASE_URL" not in c.env and "DATABASE_URL" not in c.required, (c.env, c.required)
    from railguard.engine.starter import render
    from railguard.model.specfile import parse_spec

    text = render(found, [18080, 18443])
    assert 'databases = ["main"]' in text and '[databases.main]' in text and 'engine = "postgres"' in text, text
    spec, problems = parse_spec(text)
    assert spec is not None and not [p for p in problems if p.severity == "error"], problems


def test_a_flask_secret_key_in_the_code_is_a_change_to_make(tmp_path: Path) -> None:
    """Flask's tutorial (flaskr) signs its sessions with SECRET_KEY="dev" from the code; init said nothing."""
    (tmp_path / "requirements.txt").write_text("flask\n")
    (tmp_path / "flaskr").mkdir()
    (tmp_path / "flaskr" / "__init__.py").write_text(
        "import os\nfrom flask import Flask\n\n\ndef create_app():\n    app = Flask(__name__)\n"
        "    app.config.from_mapping(\n        SECRET_KEY=\"dev\",\n    )\n    return app\n")
    found = detect(tmp_path)
    assert found is not None
    assert any(c.startswith('flaskr/__init__.py:8: SECRET_KEY=os.environ["FLASK_SECRET_KEY"],')
               for c in found.choices.changes), found.choices.changes
