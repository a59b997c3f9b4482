"""``railguard init`` for a Django project: settings module, WSGI/ASGI entry, ``migrate``, data out of the release.

Django's own docs deploy a project through ``<project>.wsgi:application`` under gunicorn (or its ASGI
module under uvicorn) and run ``manage.py migrate`` before the new code serves. Its settings read no
variable for where the SQLite file and uploads go (``BASE_DIR / "db.sqlite3"``, inside the release), so
init names the settings line to change, with its line number. Everything is read with :mod:`ast`; the
settings are never imported. Called by :func:`railguard.engine.appdetect.detect_choices`.
"""

from __future__ import annotations

import ast
from pathlib import Path

from railguard.engine.appdetect import (
    DATA,
    HEALTH_PATH,
    SECRET_WORDS,
    Choices,
    _build_why,
    _health,
    _run,
    install_command,
    undeclared,
)
from railguard.engine.appscan import Deps, PyFile, read

DATA_EXPR = 'os.environ.get("DJANGO_DATA_DIR", BASE_DIR)'


def _settings_module(folder: Path, files: list[PyFile]) -> str | None:
    try:
        tree = ast.parse(read(folder / "manage.py"))
    except (SyntaxError, ValueError):
        tree = None
    for node in ast.walk(tree) if tree is not None else []:
        if isinstance(node, ast.Call) and len(node.args) == 2 and isinstance(node.args[0], ast.Constant) \
                and node.args[0].value == "DJANGO_SETTINGS_MODULE" and isinstance(node.args[1], ast.Constant) \
                and isinstance(node.args[1].value, str):
            return node.args[1].value
    candidates = [f.module for f in files if f.module.endswith(".settings")]
    return min(candidates, key=len) if candidates else None


def _reads_env(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Attribute | ast.Name) and getattr(n, "attr", getattr(n, "id", "")) in
               ("environ", "getenv", "env", "config") for n in ast.walk(node))


def _sqlite_name(settings: PyFile) -> int | None:
    """The line of DATABASES["default"]["NAME"] when it is an SQLite file chosen in code, not by a variable."""
    for stmt in (settings.tree.body if settings.tree else []):
        if not (isinstance(stmt, ast.Assign) and any(getattr(t, "id", "") == "DATABASES" for t in stmt.targets)):
            continue
        for node in ast.walk(stmt.value):
            if not isinstance(node, ast.Dict):
                continue
            keys = {k.value: v for k, v in zip(node.keys, node.values, strict=True)
                    if isinstance(k, ast.Constant) and isinstance(k.value, str)}
            engine, name = keys.get("ENGINE"), keys.get("NAME")
            if isinstance(engine, ast.Constant) and "sqlite3" in str(engine.value) and name is not None \
                    and not _reads_env(name):
                return name.lineno
    return None


def _assigned_in_code(settings: PyFile, name: str) -> int | None:
    for stmt in (settings.tree.body if settings.tree else []):
        if isinstance(stmt, ast.Assign) and any(getattr(t, "id", "") == name for t in stmt.targets) \
                and not _reads_env(stmt.value):
            return stmt.lineno
    return None


def _true(settings: PyFile, name: str) -> int | None:
    for stmt in (settings.tree.body if settings.tree else []):
        if isinstance(stmt, ast.Assign) and any(getattr(t, "id", "") == name for t in stmt.targets) \
                and isinstance(stmt.value, ast.Constant) and stmt.value.value is True:
            return stmt.lineno
    return None


def _empty_list(settings: PyFile, name: str) -> int | None:
    for stmt in (settings.tree.body if settings.tree else []):
        if isinstance(stmt, ast.Assign) and any(getattr(t, "id", "") == name for t in stmt.targets) \
                and isinstance(stmt.value, ast.List) and not stmt.value.elts:
            return stmt.lineno
    return None


def django_choices(folder: Path, files: list[PyFile], deps: Deps, name: str, root: Path | None = None
                   ) -> Choices | None:
    """The choices for the Django project in ``folder``; ``root``: the spec's folder when the project sits in a
    folder below it (``src/manage.py``): commands then name ``src/manage.py`` and the server imports from ``src``."""
    settings_module = _settings_module(folder, files)
    if settings_module is None:
        return None
    project = settings_module.rsplit(".", 1)[0]
    modules = {f.module: f for f in files}
    has_asgi, has_wsgi = f"{project}.asgi" in modules, f"{project}.wsgi" in modules
    if deps.has("gunicorn") or deps.has("waitress"):
        server, interface, added = ("gunicorn" if deps.has("gunicorn") else "waitress"), "wsgi", False
    elif deps.has("uvicorn") and has_asgi:
        server, interface, added = "uvicorn", "asgi", False
    else:
        server, interface, added = "gunicorn", "wsgi", True
    if interface == "wsgi" and not has_wsgi:
        return None
    target = f"{project}.{interface}:application"
    missing, unknown = undeclared(files, deps)
    extra = sorted({*missing, *([server] if added else [])})
    urls = [f for f in files if f.module.endswith("urls")]
    admin = any("urls" in f.attributes and "site" in f.attributes for f in urls)
    declared = sorted("/" + p for f in urls for p in f.strings if HEALTH_PATH.match("/" + p))
    health, health_why = _health(urls, "/admin/login/" if admin else None)
    if declared:
        health, health_why = declared[0], f"the URLconf declares {declared[0]}"
    sub = folder.relative_to(root).as_posix() if root is not None else ""
    manage = f"{sub}/manage.py" if sub else "manage.py"
    run = _run(server, target, False, interface)
    if sub and server == "gunicorn":
        run[1:1] = ["--chdir", sub]
    elif sub and server == "uvicorn":
        run[2:2] = ["--app-dir", sub]
    choices = Choices(
        name, "django", manage, run,
        f"Django project {project} (settings {settings_module}) through {target}, served by {server}"
        + (" (the project depends on it)" if not added else "") + (f", imported from {sub}/" if sub else ""),
        install_command(root or folder, extra), _build_why(deps, extra, unknown, root or folder),
        server, added, ["python", manage, "migrate", "--noinput"],
        "Django's migrations run once per release, before any new replica takes traffic", health, health_why)
    choices.env["DJANGO_SETTINGS_MODULE"] = (settings_module, "the settings module manage.py names")
    if sub and server == "waitress":  # waitress-serve has no --chdir: Python resolves this from the release
        choices.env["PYTHONPATH"] = (sub, f"the project's modules are in {sub}/")
    settings = modules.get(settings_module)
    if settings is not None:
        _settings_changes(settings, choices)
        _static_files(settings, choices, manage)
        choices.changes.sort(key=lambda c: int(c.split(":")[1]) if c.startswith(settings.path + ":") else 0)
    if sub:
        choices.changes = [f"{sub}/{c}" for c in choices.changes]
        if choices.static is not None:
            path, static, why = choices.static
            choices.static = (path, f"{sub}/{static}", why.replace(f"serves {static}/", f"serves {sub}/{static}/"))
    return choices


def _string(settings: PyFile, name: str) -> str | None:
    for stmt in (settings.tree.body if settings.tree else []):
        if isinstance(stmt, ast.Assign) and any(getattr(t, "id", "") == name for t in stmt.targets) \
                and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
            return stmt.value.value
    return None


def _under_base_dir(settings: PyFile, name: str) -> tuple[int, str | None] | None:
    """``NAME = BASE_DIR / "x"`` or ``os.path.join(BASE_DIR, "x")``: (line, "x"); another value: (line, None);
    not assigned: None."""
    for stmt in (settings.tree.body if settings.tree else []):
        if not (isinstance(stmt, ast.Assign) and any(getattr(t, "id", "") == name for t in stmt.targets)):
            continue
        value = stmt.value
        parts = ([value.left, value.right] if isinstance(value, ast.BinOp) and isinstance(value.op, ast.Div)
                 else list(value.args) if isinstance(value, ast.Call) and getattr(value.func, "attr", "") == "join"
                 else [])
        if len(parts) == 2 and getattr(parts[0], "id", "") == "BASE_DIR" and isinstance(parts[1], ast.Constant) \
                and isinstance(parts[1].value, str) and "/" not in parts[1].value.strip("/") \
                and parts[1].value.strip("/") not in ("", ".", ".."):
            return stmt.lineno, parts[1].value.strip("/")
        return stmt.lineno, None
    return None


def _static_files(settings: PyFile, choices: Choices, manage: str = "manage.py") -> None:
    """Django serves no static files in production (DEBUG off, or any server but runserver): collectstatic
    copies them into STATIC_ROOT at build time, inside the artifact, and the edge serves that folder under
    STATIC_URL, so a release's CSS moves (and rolls back) with its code."""
    if "django.contrib.staticfiles" not in settings.strings:
        return
    url = _string(settings, "STATIC_URL") or "static/"
    if "://" in url or url.strip("/") == "":
        return  # a CDN, or the site's root: nothing for the edge to serve here
    root = _under_base_dir(settings, "STATIC_ROOT")
    if root is not None and root[1] is None:
        choices.changes.append(f"{settings.path}:{root[0]}: STATIC_ROOT = BASE_DIR / \"staticfiles\"  (init cannot "
                               "tell where this one is; then add the build's collectstatic and `static` by hand: "
                               "docs/apps.md)")
        return
    folder = (root[1] if root is not None else None) or "staticfiles"
    if root is None:
        line = settings.assigns.get("STATIC_URL") or max(settings.assigns.values(), default=1)
        choices.changes.append(f"{settings.path}:{line}: STATIC_ROOT = BASE_DIR / \"staticfiles\"  "
                               "(add it: the build's collectstatic copies the static files there)")
    collect = ["python", manage, "collectstatic", "--noinput"]
    choices.build = [*(choices.build or []), *(["&&"] if choices.build else []), *collect]
    choices.build_why += ("; then `collectstatic` copies the static files into STATIC_ROOT "
                          f"({folder}/) inside the artifact")
    choices.static = ("/" + url.strip("/"), folder,
                      f"the edge serves {folder}/ (filled by collectstatic) under /{url.strip('/')}/ itself, "
                      "from the release's own artifact: Django serves no static files in production")
    # collectstatic imports the settings in the build, which has the spec's variables but no secrets.
    for i, change in enumerate(choices.changes):
        if ': SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]' in change:
            choices.changes[i] = (change.split(": SECRET_KEY", 1)[0] + ': SECRET_KEY = os.environ.get('
                                  '"DJANGO_SECRET_KEY", "")  (then list DJANGO_SECRET_KEY in secrets and `railguard '
                                  'secret set` it; empty only in the build, whose collectstatic needs no key)')
    for line, name in _required_secret_reads(settings):
        choices.changes.append(f'{settings.path}:{line}: os.environ.get("{name}", "")  (not os.environ["{name}"]: '
                               "the build's collectstatic imports the settings without secrets)")


def _secretish(name: str) -> bool:
    return any(word in name.upper() for word in SECRET_WORDS) or name.upper().endswith("_KEY")


def _required_secret_reads(settings: PyFile) -> list[tuple[int, str]]:
    """``os.environ["X"]`` of a secret-looking X in the settings: (line, X)."""
    found = []
    for node in ast.walk(settings.tree) if settings.tree else []:
        if isinstance(node, ast.Subscript) and getattr(node.value, "attr", "") == "environ" \
                and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str) \
                and _secretish(node.slice.value):
            found.append((node.lineno, node.slice.value))
    return sorted(found)


def _settings_changes(settings: PyFile, choices: Choices) -> None:
    where = settings.path
    sqlite = _sqlite_name(settings)
    media = _assigned_in_code(settings, "MEDIA_ROOT")
    if sqlite is not None or media is not None:
        choices.env["DJANGO_DATA_DIR"] = (DATA, "the SQLite file and uploads live in the data folder, "
                                                "not in the release (every release would start empty)")
    if sqlite is not None:
        choices.changes.append(f'{where}:{sqlite}: "NAME": os.path.join({DATA_EXPR}, "db.sqlite3"),')
    if media is not None:
        choices.changes.append(f'{where}:{media}: MEDIA_ROOT = os.path.join({DATA_EXPR}, "media")')
    hosts = _empty_list(settings, "ALLOWED_HOSTS")
    if hosts is not None:
        choices.env["DJANGO_ALLOWED_HOSTS"] = ("localhost,127.0.0.1", "host names Django answers for (add yours)")
        choices.changes.append(f'{where}:{hosts}: ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", '
                               '"localhost").split(",")')
    debug = _true(settings, "DEBUG")
    if debug is not None:  # tracebacks and settings shown to anyone who hits an error, in every environment
        choices.changes.append(f'{where}:{debug}: DEBUG = os.environ.get("DJANGO_DEBUG") == "1"')
    key = _assigned_in_code(settings, "SECRET_KEY")
    if key is not None:
        choices.changes.append(f'{where}:{key}: SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]  '
                               '(then list DJANGO_SECRET_KEY in secrets and `railguard secret set` it)')
    if any(c.startswith(where) for c in choices.changes) and "os" not in settings.imports:
        choices.changes.append(f"{where}:1: import os")
    choices.changes.sort(key=lambda c: int(c.split(":")[1]) if c.startswith(where) else 0)
