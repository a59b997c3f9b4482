"""``railguard init``: detect the app in a folder and write a commented starter spec.

Detection looks at files, never runs anything: a Python web app is recognised by
its dependency files and entry points (Flask, FastAPI, Django, or a plain
``http.server`` script). The build installs what the app declares (requirements.txt,
a pyproject.toml [project]) into the artifact's own venv. The starter spec is valid as
written, so ``railguard validate`` passes right after ``init``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from railguard.model.diagnostics import RailguardError, error

ENTRY_POINTS = ("app.py", "main.py", "server.py", "wsgi.py", "asgi.py", "manage.py")
DEP_FILES = ("requirements.txt", "pyproject.toml", "setup.py", "Pipfile")


@dataclass(frozen=True)
class Detected:
    name: str
    framework: str
    entry: str
    run: list[str]
    build: list[str] | None
    health: str


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[:200_000]
    except OSError:
        return ""


def _safe_name(folder: Path) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", folder.name.lower()).strip("-")
    name = name.lstrip("0123456789-")
    return (name or "app")[:40]


def _declares_project(pyproject: Path) -> bool:
    """Whether pyproject.toml has a [project] table, i.e. is an installable package (not only tool settings)."""
    try:
        return isinstance(tomllib.loads(_read(pyproject)).get("project"), dict)
    except tomllib.TOMLDecodeError:
        return False


def install_command(folder: Path) -> list[str] | None:
    """The build that installs the app's dependencies into its artifact's venv, with pip.

    requirements.txt is installed as it always was; a pyproject.toml that declares a [project] is
    installed too (``pip install .``), alone or beside the requirements, so a pyproject-only app
    does not run without its packages. Nothing to install: no build at all.
    """
    argv = ["python", "-m", "pip", "install", "--no-input"]
    if (folder / "requirements.txt").is_file():
        argv += ["-r", "requirements.txt"]
    if (folder / "pyproject.toml").is_file() and _declares_project(folder / "pyproject.toml"):
        argv.append(".")
    return argv if len(argv) > 5 else None


def detect(folder: Path) -> Detected | None:
    entries = [e for e in ENTRY_POINTS if (folder / e).is_file()]
    deps = " ".join(_read(folder / f) for f in DEP_FILES if (folder / f).is_file()).lower()
    if not entries:
        return None
    entry = entries[0]
    code = _read(folder / entry)
    build = install_command(folder)
    health = "/healthz" if re.search(r"['\"]/healthz['\"]", code) else (
        "/health" if re.search(r"['\"]/health['\"]", code) else "/")
    if entry == "manage.py" or "django" in deps:
        return Detected(_safe_name(folder), "django", "manage.py",
                        ["python", "manage.py", "runserver", "127.0.0.1:$PORT", "--noreload"], build, health)
    module = entry.removesuffix(".py")
    if "fastapi" in deps or "fastapi" in code.lower():
        return Detected(_safe_name(folder), "fastapi", entry,
                        ["python", "-m", "uvicorn", f"{module}:app", "--host", "127.0.0.1", "--port", "$PORT"],
                        build, health)
    if "flask" in deps or "flask" in code.lower():
        return Detected(_safe_name(folder), "flask", entry,
                        ["python", "-m", "flask", "--app", module, "run", "--host", "127.0.0.1", "--port", "$PORT"],
                        build, health)
    return Detected(_safe_name(folder), "python", entry, ["python", entry], build, health)


def _argv(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def render(found: Detected) -> str:
    build_line = (f"build = {_argv(found.build)}" if found.build
                  else '# build = ["python", "-m", "pip", "install", "-r", "requirements.txt"]')
    return f'''# railguard.toml: the desired state of this app in every environment.
# Detected: a {found.framework} app ({found.entry}). Check the commands below, then run
#   railguard validate            # every problem at once, with line numbers
#   railguard plan --env staging  # what would change, saved for review
# The JSON Schema of this file: `railguard schema`.

[app]
name = "{found.name}"
source = "."            # folder snapshotted for each release (honours .gitignore and .railguardignore)

[environments.staging]
edge_port = 8080        # the environment's public port, served by the Caddy edge

[environments.production]
edge_port = 8443
protected = true        # changes that are not "safe" need approval
# Per-environment overrides of any service field:
# [environments.production.services.web]
# replicas = 2

[services.web]
{build_line}
run = {_argv(found.run)}   # argv, no shell; $PORT is the port Railguard allocates
# release = ["python", "migrate.py"]   # runs once per release, before any traffic
replicas = 1
env = {{ LOG_LEVEL = "info" }}          # plain values only
secrets = []                            # names only; values never live in this file
start_timeout = "60s"
stop_timeout = "10s"
drain_timeout = "30s"

[services.web.health]
http = "{found.health}"   # must really check the app's dependencies, not just answer 200
interval = "2s"
timeout = "1s"
start_period = "20s"
healthy_threshold = 2
unhealthy_threshold = 3

[[services.web.routes]]
path = "/"
'''


def write_starter(folder: Path, force: bool = False) -> tuple[Path, Detected]:
    target = folder / "railguard.toml"
    if target.exists() and not force:
        raise RailguardError(error(
            "init.exists", "railguard.toml already exists",
            f"{target} is already there; init never overwrites a spec.",
            "Edit it, or run `railguard init --force` to replace it.", file=str(target),
        ))
    found = detect(folder)
    if found is None:
        raise RailguardError(error(
            "init.no_app", "No app found in this folder",
            f"None of {', '.join(ENTRY_POINTS)} exists in {folder}, so Railguard cannot guess how to run it.",
            "Run `railguard init` in the app's folder, or write railguard.toml by hand "
            "(`railguard schema` lists every field).",
            address=str(folder),
        ))
    target.write_text(render(found), encoding="utf-8")
    return target, found
