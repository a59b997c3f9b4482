"""Facts about an app folder read from its files, for ``railguard init``: never by importing or running it.

The app is untrusted code, and importing it would run it (and need its dependencies). So every fact
here comes from parsing: dependency files as text/TOML, Python files with :mod:`ast`. Called by
:mod:`railguard.engine.appdetect`, which turns these facts into choices (server, entry point, data).
"""

from __future__ import annotations

import ast
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from railguard.sources.readfile import read_regular, text_mode

MAX_FILES = 400
MAX_BYTES = 400_000
SKIP_DIRS = {"tests", "test", "migrations", "node_modules", "venv", "env", "build", "dist", "site-packages",
             "__pycache__", "docs", "alembic", "static", "templates", "media"}
# Calls that make an app object, by the class name, and the framework they belong to.
APP_CLASSES = {"Flask": "flask", "FastAPI": "fastapi", "Starlette": "starlette", "Quart": "quart",
               "Litestar": "litestar", "Bottle": "bottle"}
# Classes whose bare name says too little (Falcon's `App`): they count only as the dotted name written
# (`falcon.App()`, `falcon.asgi.App()`) or imported from that module (`from falcon import App`).
QUALIFIED_APP_CLASSES = {"falcon.App": "falcon", "falcon.API": "falcon", "falcon.asgi.App": "falcon-asgi"}
# Frameworks whose apps are WSGI callables; every other framework's are ASGI.
WSGI_FRAMEWORKS = ("flask", "falcon", "bottle")
FACTORY_NAMES = ("create_app", "make_app", "app_factory", "get_app")
_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[([^\]]*)\])?")


def norm(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read(path: Path, limit: int = MAX_BYTES) -> str:
    """The first ``limit`` characters of the app's file at ``path`` ("" when it is not a readable regular file:
    a FIFO or a device put under a file's name is neither waited on nor read without end)."""
    try:
        return text_mode(read_regular(path, 4 * limit + 4), errors="replace")[:limit]  # UTF-8: 4 bytes a char at most
    except OSError:
        return ""


@dataclass(frozen=True)
class Requirement:
    name: str
    extras: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Deps:
    """What the project declares it needs, and in which files."""

    requirements: tuple[Requirement, ...]
    files: tuple[str, ...]  # requirements.txt, pyproject.toml ([project] only), Pipfile, setup.py
    project_name: str | None = None
    installable: bool = False  # pyproject.toml has a [project] table
    requires_python: str | None = None  # [project].requires-python

    def has(self, *names: str) -> bool:
        wanted = {norm(n) for n in names}
        return any(r.name in wanted for r in self.requirements)

    def extras_of(self, name: str) -> frozenset[str]:
        found: set[str] = set()
        for r in self.requirements:
            if r.name == norm(name):
                found |= r.extras
        return frozenset(found)


def _requirement(line: str) -> Requirement | None:
    line = line.split("#", 1)[0].strip()
    if not line or line.startswith(("-", "git+", "http:", "https:", "file:", ".", "/")):
        return None
    match = _REQ_NAME.match(line)
    if match is None:
        return None
    extras = frozenset(e.strip().lower() for e in (match.group(3) or "").split(",") if e.strip())
    return Requirement(norm(match.group(1)), extras)


def read_deps(folder: Path) -> Deps:
    reqs: list[Requirement] = []
    files: list[str] = []
    for path in sorted(folder.glob("requirements*.txt")):
        files.append(path.name)
        reqs += [r for r in map(_requirement, read(path).splitlines()) if r]
    name, installable, requires_python = None, False, None
    pyproject = folder / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(read(pyproject))
        except (tomllib.TOMLDecodeError, RecursionError):
            data = {}
        project = data.get("project")
        if isinstance(project, dict):
            files.append("pyproject.toml")
            installable = True
            name = project.get("name") if isinstance(project.get("name"), str) else None
            reqs += [r for r in map(_requirement, _strings(project.get("dependencies"))) if r]
            requires = project.get("requires-python")
            requires_python = requires if isinstance(requires, str) else None
        poetry = data.get("tool", {}).get("poetry", {}) if isinstance(data.get("tool"), dict) else {}
        if isinstance(poetry, dict) and isinstance(poetry.get("dependencies"), dict):
            reqs += [Requirement(norm(n)) for n in poetry["dependencies"] if n.lower() != "python"]
            # A Poetry package with a build backend installs with `pip install .` like a [project] does
            # (Poetry's `package-mode = false` projects cannot be built).
            backend = data.get("build-system", {}).get("build-backend") if isinstance(data.get("build-system"),
                                                                                       dict) else None
            if not installable and isinstance(backend, str) and backend.startswith("poetry") \
                    and poetry.get("package-mode", True) is not False:
                files.append("pyproject.toml")
                installable = True
                name = poetry.get("name") if isinstance(poetry.get("name"), str) else None
    if (folder / "Pipfile").is_file():
        files.append("Pipfile")
        try:
            packages = tomllib.loads(read(folder / "Pipfile")).get("packages", {})
        except (tomllib.TOMLDecodeError, RecursionError):
            packages = {}
        reqs += [Requirement(norm(n)) for n in packages] if isinstance(packages, dict) else []
    return Deps(tuple(reqs), tuple(files), name, installable, requires_python)


def _strings(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


@dataclass(frozen=True)
class EnvRead:
    """The app reads a variable: ``os.environ["X"]`` (required) or ``.get``/``getenv`` (with a default)."""

    name: str
    required: bool
    default: str | None
    settings: bool = False  # a field of a pydantic-settings class, read from the variable of its name


# Route groups mounted under a prefix: FastAPI's APIRouter(prefix=...), Flask's and Quart's Blueprint(url_prefix=...);
# the call that mounts one on its parent, and that call's keyword for the prefix added there.
ROUTER_CLASSES = {"APIRouter": "prefix", "Blueprint": "url_prefix"}
MOUNT_CALLS = {"include_router": "prefix", "register_blueprint": "url_prefix"}
ROUTE_METHODS = {"get", "post", "put", "patch", "delete", "head", "options", "route", "api_route", "add_url_rule",
                 "add_api_route", "websocket"}


@dataclass(frozen=True)
class Prefix:
    """A path prefix as written: a string, an attribute to look up (``settings.API_V1_STR``), or unknown."""

    text: str | None = ""  # None: an expression init cannot read
    attribute: str | None = None  # the attribute's name, its value a class-level string somewhere in the app


@dataclass(frozen=True)
class Mount:
    """``parent.include_router(child, prefix=...)``: ``child`` as written (``utils.router``, ``api_router``)."""

    parent: str
    child: str
    prefix: Prefix


@dataclass
class PyFile:
    """What one Python file says about the app, found in its syntax tree."""

    path: str  # relative, with '/'
    module: str  # dotted import path from the folder ("shop", "shop.app", "hello")
    imports: set[str] = field(default_factory=set)  # top-level package names imported
    apps: dict[str, str] = field(default_factory=dict)  # module-level name -> framework ("flask", ...)
    factories: dict[str, str] = field(default_factory=dict)  # factory function -> framework ("" if unknown)
    made_by_factory: dict[str, str] = field(default_factory=dict)  # name = create_app() -> the factory's name
    wsgi_callables: set[str] = field(default_factory=set)  # def application(environ, start_response)
    asgi_callables: set[str] = field(default_factory=set)  # async def app(scope, receive, send)
    env_reads: list[EnvRead] = field(default_factory=list)
    paths: set[str] = field(default_factory=set)  # route-like string constants ("/healthz")
    # Receivers of a call whose first argument is "/" (`@app.get("/")`, `app.add_url_rule("/")`): the root route
    # is the app's only when the receiver is the app (`@router.get("/")` is relative to the router's prefix).
    root_receivers: set[str] = field(default_factory=set)
    strings: set[str] = field(default_factory=set)  # other short string constants (for sqlite URLs)
    keywords: set[str] = field(default_factory=set)  # keyword argument names used in calls
    attributes: set[str] = field(default_factory=set)  # attribute names read (instance_path, ...)
    main_guard: bool = False  # has `if __name__ == "__main__":`
    from_imports: dict[str, str] = field(default_factory=dict)  # `from falcon import App`: App -> falcon.App
    routes: list[tuple[str, str]] = field(default_factory=list)  # (receiver, path): `@router.get("/health")`
    routers: dict[str, Prefix] = field(default_factory=dict)  # module-level router name -> its own prefix
    mounts: list[Mount] = field(default_factory=list)
    class_strings: dict[str, list[str]] = field(default_factory=dict)  # class-level NAME = "text" (settings)
    assigns: dict[str, int] = field(default_factory=dict)  # module-level NAME -> line (settings)
    tree: ast.Module | None = None


def _call_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _dotted(node: ast.expr) -> str:
    """``falcon.asgi.App`` for that attribute chain, "" when it is not names all the way down."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else ""
    return ""


def app_class(func: ast.expr, from_imports: dict[str, str]) -> str | None:
    """The framework of an app object made by calling ``func``, or None when it makes none we know."""
    name = _call_name(func)
    if name in APP_CLASSES:
        return APP_CLASSES[name]
    dotted = _dotted(func)
    if isinstance(func, ast.Name) and name in from_imports:
        dotted = from_imports[name]
    return QUALIFIED_APP_CLASSES.get(dotted)


def _prefix(call: ast.Call, keyword: str) -> Prefix:
    value = next((k.value for k in call.keywords if k.arg == keyword), None)
    if value is None:
        return Prefix("")
    if (text := _const(value)) is not None:
        return Prefix(text)
    if isinstance(value, ast.Attribute):
        return Prefix(None, value.attr)
    return Prefix(None)


def _const(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _env_read(node: ast.AST) -> EnvRead | None:
    """os.environ["X"], os.environ.get("X", d), os.getenv("X", d), environ.get(...)."""
    if isinstance(node, ast.Subscript) and _call_name(node.value) == "environ":
        name = _const(node.slice)
        return EnvRead(name, True, None) if name else None
    if isinstance(node, ast.Call) and node.args:
        func = node.func
        is_get = isinstance(func, ast.Attribute) and func.attr in ("get", "setdefault") and \
            _call_name(func.value) == "environ"
        if is_get or _call_name(func) == "getenv":
            name = _const(node.args[0])
            if name:
                default = node.args[1] if len(node.args) > 1 else None
                return EnvRead(name, False, _const(default))
    return None


def scan_file(path: Path, rel: str, module: str) -> PyFile | None:
    try:
        tree = ast.parse(read(path), filename=rel)
    except (SyntaxError, ValueError):
        return None
    found = PyFile(rel, module, tree=tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.imports |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.imports.add(node.module.split(".")[0])
            found.from_imports |= {a.asname or a.name: f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level:  # `from .routes import utils`: relative to here
            package = module.split(".") if rel.endswith("__init__.py") else module.split(".")[:-1]
            base = package[:len(package) - node.level + 1] + ([node.module] if node.module else [])
            if len(package) >= node.level and base:
                found.from_imports |= {a.asname or a.name: ".".join([*base, a.name]) for a in node.names}
        elif isinstance(node, ast.Call):
            found.keywords |= {k.arg for k in node.keywords if k.arg}
            if node.args and _const(node.args[0]) == "/" and isinstance(node.func, ast.Attribute) \
                    and isinstance(node.func.value, ast.Name):
                found.root_receivers.add(node.func.value.id)
            if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
                method, receiver = node.func.attr, node.func.value.id
                route = _const(node.args[0]) if node.args else None
                if method in ROUTE_METHODS and route is not None and route.startswith("/"):
                    found.routes.append((receiver, route))
                elif method in MOUNT_CALLS and node.args and (child := _dotted(node.args[0])):
                    found.mounts.append(Mount(receiver, child, _prefix(node, MOUNT_CALLS[method])))
        elif isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if not isinstance(stmt, ast.Assign | ast.AnnAssign):
                    continue
                target = stmt.target if isinstance(stmt, ast.AnnAssign) else \
                    stmt.targets[0] if len(stmt.targets) == 1 else None
                if isinstance(target, ast.Name) and (text := _const(stmt.value)) is not None:
                    found.class_strings.setdefault(target.id, []).append(text)
        elif isinstance(node, ast.Attribute):
            found.attributes.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) < 200:
            (found.paths if node.value.startswith("/") else found.strings).add(node.value)
        if (read_ := _env_read(node)) is not None:
            found.env_reads.append(read_)
    for stmt in tree.body:
        _top_level(found, stmt)
    found.env_reads += _settings_fields(tree)
    return found


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _settings_fields(tree: ast.Module) -> list[EnvRead]:
    """The variables a pydantic-settings class reads: one per field (``SECRET_KEY: str``), after its
    ``env_prefix``; required when the field has no default. FastAPI's own docs keep settings so."""
    settings: set[str] = set()
    reads: list[EnvRead] = []
    for node in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        bases = {_dotted(b).rsplit(".", 1)[-1] for b in node.bases}
        if not ("BaseSettings" in bases or bases & settings):
            continue
        settings.add(node.name)
        prefix = ""
        for stmt in node.body:
            config = stmt.value if isinstance(stmt, ast.Assign | ast.AnnAssign) and isinstance(stmt.value, ast.Call) \
                and _call_name(stmt.value.func) in ("SettingsConfigDict", "dict") else None
            literal = stmt.value if isinstance(stmt, ast.Assign | ast.AnnAssign) and isinstance(stmt.value, ast.Dict) \
                else None
            if config is not None:
                prefix = _const(_keyword(config, "env_prefix")) or prefix
            elif literal is not None:  # model_config = {"env_prefix": "SHOP_"}
                prefix = next((_const(v) or "" for k, v in zip(literal.keys, literal.values, strict=True)
                               if k is not None and _const(k) == "env_prefix"), prefix)
            elif isinstance(stmt, ast.ClassDef) and stmt.name == "Config":  # pydantic v1
                prefix = next((_const(a.value) or "" for a in stmt.body if isinstance(a, ast.Assign)
                               and any(getattr(t, "id", "") == "env_prefix" for t in a.targets)), prefix)
        for stmt in node.body:
            if not isinstance(stmt, ast.AnnAssign) or not isinstance(stmt.target, ast.Name) \
                    or stmt.target.id.startswith("_") or stmt.target.id == "model_config" \
                    or "ClassVar" in ast.dump(stmt.annotation):
                continue
            name, value = prefix + stmt.target.id.upper(), stmt.value
            if isinstance(value, ast.Call) and _call_name(value.func) == "Field":
                alias = _const(_keyword(value, "validation_alias")) or _const(_keyword(value, "alias"))
                name = alias.upper() if alias else name
                default = value.args[0] if value.args else _keyword(value, "default")
                required = (default is None or isinstance(default, ast.Constant) and default.value is Ellipsis) \
                    and _keyword(value, "default_factory") is None
                reads.append(EnvRead(name, required, _const(default), settings=True))
            else:
                reads.append(EnvRead(name, value is None, _const(value), settings=True))
    return reads


def _top_level(found: PyFile, stmt: ast.stmt) -> None:
    if isinstance(stmt, ast.Assign | ast.AnnAssign):
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        for name in names:
            found.assigns[name] = stmt.lineno
        value = stmt.value
        if isinstance(value, ast.Call) and names:
            called = _call_name(value.func)
            if (framework := app_class(value.func, found.from_imports)) is not None:
                found.apps[names[0]] = framework
            elif called in ROUTER_CLASSES:
                found.routers[names[0]] = _prefix(value, ROUTER_CLASSES[called])
            elif called in FACTORY_NAMES or called == "get_wsgi_application" or called == "get_asgi_application":
                found.made_by_factory[names[0]] = called
    elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
        args = [a.arg for a in stmt.args.args]
        # A server calls a factory with no arguments: one that needs some (Falcon's look example's
        # `create_app(image_store)`, called by its `get_app()`) is not an entry point.
        required = len(stmt.args.posonlyargs) + len(stmt.args.args) - len(stmt.args.defaults) + sum(
            d is None for d in stmt.args.kw_defaults)
        if stmt.name in FACTORY_NAMES and required == 0:
            made = {fw for n in ast.walk(stmt) if isinstance(n, ast.Call)
                    and (fw := app_class(n.func, found.from_imports)) is not None}
            found.factories[stmt.name] = made.pop() if len(made) == 1 else ""
        elif isinstance(stmt, ast.FunctionDef) and args[-2:] == ["environ", "start_response"]:
            found.wsgi_callables.add(stmt.name)
        elif isinstance(stmt, ast.AsyncFunctionDef) and args[-3:] == ["scope", "receive", "send"]:
            found.asgi_callables.add(stmt.name)
    elif isinstance(stmt, ast.If) and isinstance(stmt.test, ast.Compare):
        left = stmt.test.left
        if isinstance(left, ast.Name) and left.id == "__name__":
            found.main_guard = True


def python_files(folder: Path) -> list[tuple[Path, str, str]]:
    """(path, relative path, module) of the app's own Python files: the root, packages, a src/ layout."""
    found: list[tuple[Path, str, str]] = []

    def walk(directory: Path, prefix: str, depth: int) -> None:
        try:
            entries = sorted(directory.iterdir())
        except OSError:
            return
        for entry in entries:
            if len(found) >= MAX_FILES:
                return
            if entry.is_symlink() or entry.name.startswith("."):
                continue
            if entry.is_file() and entry.suffix == ".py":
                stem = entry.stem
                module = prefix.rstrip(".") if stem == "__init__" else prefix + stem
                found.append((entry, str(entry.relative_to(folder)), module))
            elif entry.is_dir() and entry.name not in SKIP_DIRS and depth < 4:
                if (entry / "__init__.py").is_file() and entry.name.isidentifier():
                    walk(entry, prefix + entry.name + ".", depth + 1)
                elif depth == 0 and entry.name == "src":
                    walk(entry, "", depth + 1)  # src layout: src/pkg imports as pkg

    walk(folder, "", 0)
    return found


def scan(folder: Path) -> list[PyFile]:
    files = []
    for path, rel, module in python_files(folder):
        parsed = scan_file(path, rel, module)
        if parsed is not None:
            files.append(parsed)
    # A src/ folder whose code imports `src.x` is run from the root as the package `src` (`uvicorn
    # src.main:app`), not a src layout whose packages are installed: its modules are named so.
    in_src = [f for f in files if f.path.startswith("src/")]
    if any("src" in f.imports for f in in_src) and not (folder / "src" / "__init__.py").is_file():
        for f in in_src:
            f.module = f"src.{f.module}"
    return files
