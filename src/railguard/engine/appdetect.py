"""``railguard init``'s choices for one app folder: entry point, production server, release command, data.

From the facts :mod:`railguard.engine.appscan` read (never by importing the app), decide how the app runs
the way its framework's docs say in production: a package app's ``create_app`` factory or a module's app
object served by gunicorn, uvicorn or waitress (whichever the project already depends on, otherwise one
the build adds), Django through its WSGI/ASGI module with ``migrate`` as the release command, data pointed
into ``$RAILGUARD_DATA_DIR`` through environment variables (and the one line of code to change when the
framework reads no variable). Each choice carries the sentence that explains it, which
:mod:`railguard.engine.starter` writes as a comment. Pure: no I/O beyond reading the folder.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from railguard.engine.appscan import WSGI_FRAMEWORKS, Deps, Prefix, PyFile, read, read_deps, scan

PREFERRED_FILES = ("wsgi", "asgi", "app", "main", "application", "server", "api", "run", "hello")
HEALTH_PATH = re.compile(r"^/(healthz?|health-?check|up|ping|livez|readyz|_health)/?$")
SQL_DRIVERS = ("psycopg", "psycopg2", "psycopg2-binary", "asyncpg", "mysqlclient", "pymysql", "mysql-connector-python")
DATA = "$RAILGUARD_DATA_DIR"
# Variables an app commonly reads for where its data goes, and what points them into the data folder.
DATA_VARIABLES = {
    "DATA_DIR": DATA, "DATA_PATH": DATA, "STORAGE_DIR": DATA, "STORAGE_PATH": DATA, "INSTANCE_PATH": DATA,
    "UPLOAD_FOLDER": f"{DATA}/uploads", "UPLOAD_DIR": f"{DATA}/uploads", "UPLOADS_DIR": f"{DATA}/uploads",
    "MEDIA_ROOT": f"{DATA}/media", "DATABASE_PATH": f"{DATA}/app.db", "DB_PATH": f"{DATA}/app.db",
    "SQLITE_PATH": f"{DATA}/app.db", "DATABASE_FILE": f"{DATA}/app.db",
}
# Drivers a plain postgresql:// URL works with (SQLAlchemy's default dialect, psycopg2.connect, dj-database-url).
POSTGRES_URL_DRIVERS = ("psycopg2", "psycopg2-binary")
URL_VARIABLES = ("DATABASE_URL", "SQLALCHEMY_DATABASE_URI", "DB_URL", "DATABASE_URI")
# Import names whose distribution is known, so an app that imports one without declaring it still builds.
KNOWN_IMPORTS = {
    "flask": "flask", "fastapi": "fastapi", "starlette": "starlette", "django": "django", "quart": "quart",
    "sqlalchemy": "sqlalchemy", "flask_sqlalchemy": "flask-sqlalchemy", "flask_migrate": "flask-migrate",
    "alembic": "alembic", "jinja2": "jinja2", "werkzeug": "werkzeug", "pydantic": "pydantic",
    "requests": "requests", "httpx": "httpx", "yaml": "pyyaml", "dotenv": "python-dotenv",
    "gunicorn": "gunicorn", "uvicorn": "uvicorn", "waitress": "waitress", "hypercorn": "hypercorn",
    "jwt": "pyjwt", "falcon": "falcon", "bottle": "bottle", "litestar": "litestar",
}
# Imports a declared distribution always brings along (its own requirements): neither added to the build nor
# reported as undeclared when one of these is declared.
BROUGHT_BY = {
    "werkzeug": ("flask", "quart"), "jinja2": ("flask", "quart"), "click": ("flask", "quart", "uvicorn"),
    "itsdangerous": ("flask",), "markupsafe": ("jinja2", "flask", "quart"), "starlette": ("fastapi",),
    "pydantic": ("fastapi", "sqlmodel", "pydantic-settings"),
    "pydantic_core": ("pydantic", "fastapi", "sqlmodel", "pydantic-settings"),
    "typing_extensions": ("pydantic", "fastapi", "sqlmodel", "sqlalchemy", "pydantic-settings"),
    "sqlalchemy": ("sqlmodel", "alembic", "flask-sqlalchemy"), "asgiref": ("django",), "sqlparse": ("django",),
    "anyio": ("starlette", "fastapi", "httpx"), "hypercorn": ("quart",),
}
LOG_TO_STDOUT = re.compile(r"^(\w+_)?LOG(S|GING)?_TO_(STDOUT|CONSOLE)$")
SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD", "PASSWD", "API_KEY", "PRIVATE_KEY", "CREDENTIAL")


@dataclass(frozen=True)
class Entry:
    """What the server imports: ``module:attr``, called first when ``factory``."""

    module: str
    attr: str
    factory: bool
    interface: str  # "wsgi" | "asgi"
    framework: str  # flask, fastapi, starlette, quart, django, wsgi, asgi
    file: str


@dataclass
class Choices:
    """Everything init decided, each with the reason written beside it in railguard.toml."""

    name: str
    framework: str
    entry: str  # the file the app starts from, for people
    run: list[str]
    run_why: str
    build: list[str] | None
    build_why: str
    server: str | None = None  # gunicorn, uvicorn, waitress, hypercorn; None: the app serves itself
    server_added: bool = False  # not among the app's dependencies: the build installs it
    release: list[str] | None = None
    release_why: str = ""
    health: str | None = None  # an HTTP path, or None for a TCP check
    health_why: str = ""
    env: dict[str, tuple[str, str]] = field(default_factory=dict)  # NAME -> (value, why)
    secrets: list[str] = field(default_factory=list)
    optional_secrets: list[str] = field(default_factory=list)  # secret-looking, read with a default: not listed
    dotenv: list[str] = field(default_factory=list)  # names a .env file sets (never its values): not deployed
    required: list[str] = field(default_factory=list)  # read without a default, neither data nor secret
    changes: list[str] = field(default_factory=list)  # lines of app code to change, "file:line: ..."
    static: tuple[str, str, str] | None = None  # (URL path, folder in the artifact, why): served by the edge
    database: tuple[str, str] | None = None  # (variable, why): a managed Postgres database's URL arrives there
    warnings: list[str] = field(default_factory=list)  # what will fail as written, printed by init


def undeclared(files: list[PyFile], deps: Deps) -> tuple[list[str], list[str]]:
    """Third-party imports no dependency file declares: (known distributions to install, unknown imports)."""
    local = {f.module.split(".")[0] for f in files}
    imported = {i for f in files for i in f.imports} - local - set(sys.stdlib_module_names) - {"__future__"}
    imported = {i for i in imported if not any(deps.has(d) for d in BROUGHT_BY.get(i, ()))}
    known = sorted({KNOWN_IMPORTS[i] for i in imported if i in KNOWN_IMPORTS and not deps.has(KNOWN_IMPORTS[i])})
    unknown = sorted(i for i in imported if i not in KNOWN_IMPORTS and not deps.has(i))
    return known, unknown


def install_command(folder: Path, extra: list[str] | None = None) -> list[str] | None:
    """The build that installs the app's dependencies into its artifact's venv, with pip.

    requirements.txt is installed as it always was; a pyproject.toml that declares a [project] is
    installed too (``pip install .``), alone or beside the requirements; ``extra`` names packages the
    app does not declare but init chose (its production server). Nothing to install: no build at all.
    """
    deps = read_deps(folder)
    argv = ["python", "-m", "pip", "install", "--no-input"]
    if (folder / "requirements.txt").is_file():
        argv += ["-r", "requirements.txt"]
    if deps.installable and unpackaged(folder) is not None:
        argv += ["-r", "pyproject.toml"]  # uv reads [project].dependencies; the app runs from its folder
    elif deps.installable:
        argv.append(".")
    argv += extra or []
    return argv if len(argv) > 5 else None


# Build backends that ship the package named after the project (``my_app/``, ``src/my_app/`` or ``my_app.py``)
# unless their own table says otherwise; setuptools and pdm discover what there is, and are trusted to.
NAME_RULE_BACKENDS = ("hatchling", "poetry.core", "flit_core")
# [tool.X] keys that say what a backend ships (then it is trusted): hatch's build, Poetry's packages, ...
PACKAGING_KEYS = (("hatch", "build"), ("poetry", "packages"), ("flit", "module"), ("setuptools", None),
                  ("pdm", "build"))


def unpackaged(folder: Path) -> str | None:
    """The package a [project]'s build backend would look for and not find (Litestar's hello-world: one
    ``app.py``, hatchling wants ``litestar_hello_world/``), or None when the project can be built as a package.

    Such an app runs from its folder; ``pip install .`` would fail in the backend, so only its dependencies are
    installed (``-r pyproject.toml``)."""
    import tomllib

    try:
        data = tomllib.loads(read(folder / "pyproject.toml"))  # "" when missing or not a regular file: no project
    except (tomllib.TOMLDecodeError, RecursionError):
        return None
    project, tool, system = data.get("project"), data.get("tool"), data.get("build-system")
    backend = system.get("build-backend") if isinstance(system, dict) else None
    if not isinstance(project, dict) or not isinstance(project.get("name"), str) or not isinstance(backend, str) \
            or not backend.startswith(NAME_RULE_BACKENDS) or (folder / "setup.py").exists():
        return None
    if isinstance(tool, dict) and any(isinstance(tool.get(t), dict) and (k is None or k in tool[t])
                                      for t, k in PACKAGING_KEYS):
        return None  # the project says what to ship
    name = re.sub(r"[-_.]+", "_", project["name"]).lower()
    if any((folder / p).exists() for p in (name, f"src/{name}", f"{name}.py", f"src/{name}.py")):
        return None
    return name


def safe_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-").lstrip("0123456789-")
    return (name or "app")[:40].rstrip("-") or "app"


def _frameworks(files: list[PyFile]) -> dict[str, str]:
    """Factory function name -> framework, across files (a factory made in one file, called in another)."""
    return {name: fw for f in files for name, fw in f.factories.items() if fw}


def _interface(framework: str) -> str:
    return "wsgi" if framework in WSGI_FRAMEWORKS else "asgi"


def _entries(files: list[PyFile], deps: Deps) -> list[Entry]:
    factories = _frameworks(files)
    fallback = next((fw for fw in ("flask", "fastapi", "starlette", "quart", "litestar", "falcon", "bottle")
                     if deps.has(fw)), "")
    found: list[Entry] = []
    for f in files:
        for attr, fw in f.apps.items():
            found.append(Entry(f.module, attr, False, _interface(fw), fw, f.path))
        for attr, factory in f.made_by_factory.items():
            if factory in ("get_wsgi_application", "get_asgi_application"):
                continue  # Django's, handled with its settings
            fw = factories.get(factory) or fallback
            if fw:
                found.append(Entry(f.module, attr, False, _interface(fw), fw, f.path))
        for factory, fw in f.factories.items():
            # A factory that makes its app through another function (`get_app()` calling `create_app(store)`):
            # the framework its module imports, else the one the project declares.
            fw = fw or next((i for i in ("flask", "quart", "falcon", "bottle", "litestar", "fastapi", "starlette")
                             if i in f.imports), "") or fallback
            if fw:
                found.append(Entry(f.module, factory, True, _interface(fw), fw, f.path))
        found += [Entry(f.module, a, False, "wsgi", "wsgi", f.path) for a in sorted(f.wsgi_callables)]
        found += [Entry(f.module, a, False, "asgi", "asgi", f.path) for a in sorted(f.asgi_callables)]

    def rank(e: Entry) -> tuple[int, int, int, int]:
        leaf = e.module.rsplit(".", 1)[-1]
        named = PREFERRED_FILES.index(leaf) if leaf in PREFERRED_FILES else len(PREFERRED_FILES)
        return (e.framework in ("wsgi", "asgi"), e.factory, e.module.count("."), named)

    return sorted(found, key=rank)


def _server(deps: Deps, interface: str) -> tuple[str, bool]:
    """The production server: one the project depends on, else the usual one for the interface, added.

    A server a declared framework requires counts as declared: Quart's own is Hypercorn, FastAPI's and
    Litestar's ``[standard]`` extras bring uvicorn."""
    has_uvicorn = deps.has("uvicorn") or bool({"standard", "all"} & deps.extras_of("fastapi")) \
        or bool({"standard", "full"} & deps.extras_of("litestar"))
    if interface == "asgi":
        for name, present in (("uvicorn", has_uvicorn), ("hypercorn", deps.has("hypercorn", "quart"))):
            if present:
                return name, False
        return "uvicorn", True
    for name in ("gunicorn", "waitress"):
        if deps.has(name):
            return name, False
    return "gunicorn", True


def _run(server: str, target: str, factory: bool, interface: str) -> list[str]:
    if server == "gunicorn":
        workers = ["--worker-class", "uvicorn.workers.UvicornWorker"] if interface == "asgi" else []
        return ["gunicorn", "--bind", "127.0.0.1:$PORT", "--workers", "2", *workers, "--access-logfile", "-",
                f"{target}()" if factory else target]
    if server == "uvicorn":
        return ["uvicorn", target, *(["--factory"] if factory else []), "--host", "127.0.0.1", "--port", "$PORT"]
    if server == "waitress":
        return ["waitress-serve", "--listen=127.0.0.1:$PORT", *(["--call"] if factory else []), target]
    return ["hypercorn", f"{target}()" if factory else target, "--bind", "127.0.0.1:$PORT"]


def _prefix_text(prefix: Prefix, files: list[PyFile]) -> str | None:
    """A prefix's text: as written, or the one string a class attribute of that name holds (settings)."""
    if prefix.text is not None:
        return prefix.text
    values = {v for f in files for v in f.class_strings.get(prefix.attribute or "", [])}
    return values.pop() if prefix.attribute and len(values) == 1 else None


def _refers(where: PyFile, written: str, module: str, name: str) -> bool:
    """Whether ``written`` in ``where`` (``api_router``, ``utils.router``) names ``name`` of ``module``."""
    head, _, attr = written.rpartition(".")
    if not head:
        return (where.module == module and written == name) or where.from_imports.get(written) == f"{module}.{name}"
    return attr == name and (head == module or where.from_imports.get(head) == module)


def route_path(files: list[PyFile], where: PyFile, receiver: str, path: str, depth: int = 0) -> str | None:
    """The path a route declared on ``receiver`` in ``where`` is served at: the prefixes of the routers it is
    mounted through added (``/health-check/`` on a router mounted at ``/api/v1/utils``), or None when one of
    them cannot be read from the code or the router is mounted nowhere init can see."""
    if receiver not in where.routers or receiver in where.apps:
        return path  # on the app itself (or on something init does not know as a router): as written
    own = _prefix_text(where.routers[receiver], files)
    mounts = [(f, m) for f in files for m in f.mounts if _refers(f, m.child, where.module, receiver)]
    if own is None or len(mounts) != 1 or depth > 8:
        return None
    parent, mount = mounts[0]
    above = _prefix_text(mount.prefix, files)
    if above is None:
        return None
    return route_path(files, parent, mount.parent, above.rstrip("/") + own.rstrip("/") + path, depth + 1)


def _health(files: list[PyFile], default: str | None) -> tuple[str | None, str]:
    found: dict[str, str] = {}  # served path -> as declared
    for f in files:
        for declared in (p for p in f.paths if HEALTH_PATH.match(p)):
            receivers = {r for r, p in f.routes if p == declared}
            for served in {route_path(files, f, r, declared) for r in receivers} if receivers else {declared}:
                if served is not None:
                    found.setdefault(served, declared)
    if found:
        path = min(found, key=lambda p: (len(p), p))
        under = f" ({found[path]} on a router mounted at {path[:-len(found[path])]})" if path != found[path] else ""
        return path, f"the app declares {path}{under}"
    if default:
        return default, "no health route found; this page always exists: add a route that checks the database"
    return None, "no health route found: a TCP check only proves the port is open; add one that checks the database"


def _data_env(files: list[PyFile], deps: Deps, choices: Choices) -> None:
    """Point what the app reads for its data into the data folder; list the secrets it needs."""
    driver = any(deps.has(d) for d in SQL_DRIVERS)
    for read_ in (r for f in files for r in f.env_reads):
        name = read_.name
        if name in choices.env or name in choices.secrets or name.startswith("RAILGUARD_") or name == "PORT":
            continue
        suffix = next((v for v in DATA_VARIABLES if name.endswith("_" + v)), None)  # LOOK_STORAGE_PATH
        if name in DATA_VARIABLES or suffix is not None:
            choices.env[name] = (DATA_VARIABLES.get(name) or DATA_VARIABLES[suffix or ""],
                                 f"the app reads {name}: its data lives in the data folder")
        elif name.endswith("ALLOWED_HOSTS"):
            choices.env[name] = ("localhost,127.0.0.1", f"the app reads {name}: add your public host names")
        elif name in URL_VARIABLES and choices.database is None and _takes_postgres_url(files, deps):
            choices.database = (name, f"the app reads {name} and declares a Postgres driver: Railguard runs a "
                                      "Postgres server per environment and passes its URL (docs/data.md)")
        elif name in URL_VARIABLES and not driver and "sqlite" in (read_.default or "sqlite"):
            choices.env[name] = (f"sqlite:///{DATA}/app.db",
                                 f"the app reads {name}: its SQLite file lives in the data folder")
        elif any(word in name.upper() for word in SECRET_WORDS) or name.upper().endswith("_KEY"):
            # A listed secret must be set before any plan applies, so only the ones the app needs are listed: read
            # without a default, or a signing key (`os.environ.get("SECRET_KEY") or "you-will-never-guess"`: the
            # fallback is in the public code). An optional integration's credential (Microblog's MAIL_PASSWORD, a
            # settings field `SMTP_PASSWORD: str | None = None`) is named in a comment instead.
            if read_.required or ("SECRET" in name.upper() and not read_.settings):
                choices.secrets.append(name)
            elif name not in choices.optional_secrets:
                choices.optional_secrets.append(name)
        elif LOG_TO_STDOUT.match(name):
            choices.env[name] = ("1", f"the app reads {name}: Railguard keeps each replica's stdout as its log "
                                      "(`railguard logs`), and a log file would be written into the read-only release")
        elif read_.required and name not in choices.required:
            choices.required.append(name)
    choices.secrets = sorted(set(choices.secrets))
    choices.optional_secrets = sorted(set(choices.optional_secrets) - set(choices.secrets))


def _takes_postgres_url(files: list[PyFile], deps: Deps) -> bool:
    """Whether a plain ``postgresql://`` URL works: psycopg2 (SQLAlchemy's default for that scheme), or psycopg 3 /
    asyncpg when the code names its own scheme (``postgresql+psycopg://``, as the full-stack FastAPI template's
    settings rewrite the URL they are given)."""
    if any(deps.has(d) for d in POSTGRES_URL_DRIVERS):
        return True
    return any(deps.has(driver) and any(t.startswith(f"postgresql+{driver}") for f in files for t in f.strings)
               for driver in ("psycopg", "asyncpg"))


def _flask_instance(files: list[PyFile], entry: Entry, choices: Choices) -> None:
    """Flask keeps data in its instance folder, inside the release; it reads no variable for where that is."""
    # Flask-SQLAlchemy puts a relative SQLite path ("sqlite:///shop.db") in the instance folder.
    sqlalchemy = any("flask_sqlalchemy" in f.imports for f in files)
    uses = any("instance_path" in f.attributes or "instance_relative_config" in f.keywords
               or sqlalchemy and any(s.startswith("sqlite:///") and not s.startswith("sqlite:////") for s in f.strings)
               for f in files)
    if not uses:
        return
    choices.env["FLASK_INSTANCE_PATH"] = (DATA, "Flask's instance folder (config, SQLite files) in the data folder")
    if any("FLASK_INSTANCE_PATH" == r.name for f in files for r in f.env_reads):
        return
    for f in files:
        for node in ast.walk(f.tree or ast.Module(body=[], type_ignores=[])):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "Flask" \
                    and not any(k.arg == "instance_path" for k in node.keywords):
                choices.changes.append(
                    f"{f.path}:{node.lineno}: pass instance_path=os.environ.get(\"FLASK_INSTANCE_PATH\") to Flask(...) "
                    f"(and import os), so the instance folder is the data folder, not the release")
                return


def detect_choices(folder: Path) -> Choices | None:
    """The choices for the app in ``folder``, or None when no app is found."""
    found = _detect_choices(folder)
    deps = read_deps(folder)
    if found is not None and (folder / ".env").is_file():
        found.dotenv = dotenv_names(folder / ".env")
    if found is not None and (python := _python_excluded(deps.requires_python)) is not None:
        found.warnings.append(f"pyproject.toml says requires-python = {deps.requires_python!r}, which excludes "
                              f"Python {python} (the one Railguard runs on): the build will refuse it; run Railguard "
                              f"from a Python the project accepts")
    return found


_DOTENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")


def dotenv_names(path: Path) -> list[str]:
    """The variable names a ``.env`` file sets, never their values (which init does not read into anything).

    The file is left out of every release (it is named like a secret), so what ``load_dotenv()`` found there on
    the developer's machine is missing in a replica unless the spec gives it."""
    return sorted({m.group(1) for line in read(path, 100_000).splitlines() if (m := _DOTENV_LINE.match(line))})


def _detect_choices(folder: Path) -> Choices | None:
    deps = read_deps(folder)
    files = scan(folder)
    name = safe_name(deps.project_name or folder.resolve().name)
    if (folder / "manage.py").is_file():
        from railguard.engine.djangoapp import django_choices

        found = django_choices(folder, files, deps, name)
        if found is not None:
            _data_env(files, deps, found)
            return found
    entries = _entries(files, deps)
    if entries:
        return _served(folder, files, deps, name, entries[0])
    # A repository whose Django project sits one folder down (src/manage.py, requirements.txt at the top: a
    # layout thousands of repositories share): the release holds the whole repository, commands run from it.
    below = sorted(p.parent for p in folder.glob("*/manage.py") if p.parent.name.isidentifier())
    if len(below) == 1:
        from railguard.engine.djangoapp import django_choices

        sub_files = scan(below[0])
        found = django_choices(below[0], sub_files, _merged(deps, read_deps(below[0])), name, root=folder)
        if found is not None:
            _data_env(sub_files, deps, found)
            return found
    return _script(folder, files, deps, name)


def _merged(top: Deps, below: Deps) -> Deps:
    """What the repository declares at its top and in the project's own folder (which the build does not read:
    its requirements are named in the comment as undeclared when only there)."""
    return Deps(top.requirements + below.requirements, top.files, top.project_name, top.installable,
                top.requires_python)


def _served(folder: Path, files: list[PyFile], deps: Deps, name: str, entry: Entry) -> Choices:
    server, added = _server(deps, entry.interface)
    target = f"{entry.module}:{entry.attr}"
    missing, unknown = undeclared(files, deps)
    extra = sorted({*missing, *([server] if added else [])})
    build = install_command(folder, extra)
    kind = "app factory" if entry.factory else "app object"
    run_why = (f"{entry.framework} {kind} {target} ({entry.file}), served by {server}, the production "
               f"{entry.interface.upper()} server" + (" the project depends on" if not added else ""))
    default_health = "/" if any("/" in f.paths for f in files) else None
    if entry.framework == "fastapi":  # "/" only when the app itself serves it; FastAPI always serves /docs
        default_health = "/" if any(entry.attr in f.root_receivers for f in files if f.path == entry.file) \
            else "/docs"
    elif entry.framework == "litestar" and default_health is None:  # Litestar serves its OpenAPI page by default
        default_health = "/schema"
    health, health_why = _health(files, default_health)
    choices = Choices(name, entry.framework, entry.file, _run(server, target, entry.factory, entry.interface),
                      run_why, build, _build_why(deps, extra, unknown, folder), server, added,
                      health=health, health_why=health_why)
    if entry.framework == "flask":
        _flask_instance(files, entry, choices)
        _flask_secret_key(files, choices)
        _flask_migrate(folder, deps, entry, choices)
    elif (folder / "alembic.ini").is_file() and deps.has("alembic"):
        choices.release, choices.release_why = ["alembic", "upgrade", "head"], "alembic.ini: migrations first"
    if "FLASK_INSTANCE_PATH" not in choices.env:  # Flask's instance folder, once moved, holds its SQLite files
        _sqlite_beside_code(files, choices)
    _data_env(files, deps, choices)
    return choices


SQLITE_FILE = re.compile(r"^(?:sqlite(?:\+\w+)?:///(?!/)(?:\./)?)?([\w.-]+\.(?:db|sqlite3?))$")


def _sqlite_beside_code(files: list[PyFile], choices: Choices) -> None:
    """A SQLite file named in the code with no variable to move it (Quart's blog example:
    ``Path(app.root_path) / "blog.db"``; FastAPI's SQL tutorial: ``"sqlite:///./sql_app.db"``) is created beside the
    code or in the working directory, both inside the read-only release: name the line to change."""
    for f in files:
        if any(r.name == "RAILGUARD_DATA_DIR" for r in f.env_reads) or f.tree is None:
            continue
        # A variable's default (os.environ.get("DB", "app.db")) is moved by the variable: _data_env's part.
        defaults = {id(a) for n in ast.walk(f.tree) if isinstance(n, ast.Call) for a in n.args[1:]
                    if getattr(n.func, "attr", getattr(n.func, "id", "")) in ("get", "getenv", "setdefault")}
        for node in ast.walk(f.tree):
            if not isinstance(node, ast.Constant) or not isinstance(node.value, str) or id(node) in defaults:
                continue
            if (match := SQLITE_FILE.match(node.value)) is None:
                continue
            name = match.group(1)
            url = node.value != name
            code = (f'f"sqlite:///{{os.environ[\'RAILGUARD_DATA_DIR\']}}/{name}"' if url
                    else f'os.path.join(os.environ["RAILGUARD_DATA_DIR"], "{name}")')
            choices.changes.append(f"{f.path}:{node.lineno}: {code}  (and import os): the SQLite file {name} would "
                                   f"be made inside the release, which is read-only; Railguard gives every replica "
                                   f"and release command its data folder in RAILGUARD_DATA_DIR")
            return


def _flask_secret_key(files: list[PyFile], choices: Choices) -> None:
    """A secret key written in the code (Flask's tutorial: ``SECRET_KEY="dev"``) signs every session cookie: anyone
    who reads the code can forge one. Name the line; the variable becomes a secret."""
    for f in files:
        for node in ast.walk(f.tree or ast.Module(body=[], type_ignores=[])):
            line = None
            if isinstance(node, ast.keyword) and node.arg == "SECRET_KEY" and isinstance(node.value, ast.Constant) \
                    and isinstance(node.value.value, str):
                line, code = node.value.lineno, 'SECRET_KEY=os.environ["FLASK_SECRET_KEY"],'
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
                    and isinstance(node.value.value, str) and any(
                        getattr(t, "attr", "") == "secret_key" or isinstance(t, ast.Subscript)
                        and isinstance(t.slice, ast.Constant) and t.slice.value == "SECRET_KEY" for t in node.targets):
                line, code = node.lineno, 'app.config["SECRET_KEY"] = os.environ["FLASK_SECRET_KEY"]'
            if line is not None:
                choices.changes.append(f"{f.path}:{line}: {code}  (then list FLASK_SECRET_KEY in secrets and "
                                       "`railguard secret set` it: a key in the code signs anyone's session cookie)")
                return


def _flask_migrate(folder: Path, deps: Deps, entry: Entry, choices: Choices) -> None:
    if deps.has("flask-migrate") and (folder / "migrations").is_dir():
        app = f"{entry.module}:{entry.attr}()" if entry.factory else f"{entry.module}:{entry.attr}"
        choices.release = ["flask", "--app", app, "db", "upgrade"]
        choices.release_why = "Flask-Migrate with a migrations/ folder: the schema is upgraded before traffic"
    elif (folder / "alembic.ini").is_file() and deps.has("alembic"):
        choices.release, choices.release_why = ["alembic", "upgrade", "head"], "alembic.ini: migrations first"


def _build_why(deps: Deps, added: list[str], unknown: list[str], folder: Path | None = None) -> str:
    declared = " and ".join(deps.files)
    parts = [f"installs what {declared} declare{'s' if len(deps.files) == 1 else ''}"] if declared else []
    if folder is not None and deps.installable and (package := unpackaged(folder)) is not None:
        parts.append(f"not the project itself: its build backend would look for a package {package}/ that is not "
                     f"there; the app runs from its folder")
    if added:
        parts.append(f"installs {', '.join(added)}, which the app uses but does not declare (declare "
                     f"{'them' if len(added) > 1 else 'it'} in requirements.txt to pin the version)")
    if unknown:
        parts.append(f"the app also imports {', '.join(unknown)}, which nothing declares: add the packages")
    if (python := _python_excluded(deps.requires_python)) is not None:
        parts.append(f"BUT pyproject.toml says requires-python = {deps.requires_python!r}, which excludes Python "
                     f"{python}, the one Railguard runs on and makes the artifacts from: the build will refuse it; "
                     f"run Railguard from a Python the project accepts")
    return "; ".join(parts) or "the app declares no dependencies"


def _python_excluded(requires: str | None) -> str | None:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    python = ".".join(map(str, sys.version_info[:3]))
    try:
        return None if requires is None or SpecifierSet(requires).contains(python, prereleases=True) else python
    except InvalidSpecifier:
        return None


def _script(folder: Path, files: list[PyFile], deps: Deps, name: str) -> Choices | None:
    """No framework app: a package run with ``python -m`` or a script that serves itself."""
    mains = [f for f in files if f.module.endswith(".__main__") and f.module.count(".") == 1]
    # A root script with a __main__ guard, else one named like an entry point (it may serve at module level).
    scripts = [f for f in files if "/" not in f.path and f.main_guard] or \
        [f for f in files if "/" not in f.path and f.module in PREFERRED_FILES]
    scripts.sort(key=lambda f: (f.module not in PREFERRED_FILES, f.path))
    if mains:
        module = mains[0].module.removesuffix(".__main__")
        run, entry, why = ["python", "-m", module], mains[0].path, f"the package runs with python -m {module}"
    elif scripts:
        run, entry, why = ["python", scripts[0].path], scripts[0].path, f"{scripts[0].path} serves by itself"
    else:
        return None
    health, health_why = _health(files, None)
    missing, unknown = undeclared(files, deps)
    choices = Choices(name, "python", entry, run, why + "; it must listen on 127.0.0.1:$PORT",
                      install_command(folder, missing), _build_why(deps, missing, unknown, folder), health=health,
                      health_why=health_why)
    _data_env(files, deps, choices)
    return choices

