"""What the app's Python code reads from the environment, found with Python's own parser (``ast``).

Finds ``os.environ["X"]`` (a required read: KeyError when unset), ``os.environ.get("X")``,
``os.getenv("X")`` and ``os.environ.setdefault("X", ...)`` (optional reads), also through
``from os import environ, getenv``; only literal names count. Also finds calls of
``urllib.request.urlopen`` without a timeout, which no maintained linter rule covers (ruff's S113
covers ``requests`` and ``httpx``). And reads the variable names listed in ``.env.example``. Test
files are skipped: they run on a developer's machine, not in an environment. Called by the
env-parity and timeouts checks.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

MAX_FILE_BYTES = 2_000_000
_TEST_FILE = re.compile(r"(^|/)(tests?/|test_[^/]*\.py$|[^/]*_test\.py$|conftest\.py$)")
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")


@dataclass(frozen=True)
class EnvRead:
    name: str
    file: str
    line: int
    required: bool  # os.environ["X"]: the program fails when X is unset

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class NoTimeoutCall:
    file: str
    line: int
    call: str


def python_files(files: list[str]) -> list[str]:
    return [f for f in files if f.endswith(".py") and not _TEST_FILE.search(f)]


class _Visitor(ast.NodeVisitor):
    def __init__(self, file: str) -> None:
        self.file = file
        self.reads: list[EnvRead] = []
        self.calls: list[NoTimeoutCall] = []
        self.environ_names = {"environ"}  # from os import environ (as ...)
        self.getenv_names = {"getenv"}
        self.urlopen_names = {"urlopen"}

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:  # ast's naming
        for alias in node.names:
            local = alias.asname or alias.name
            if node.module == "os" and alias.name == "environ":
                self.environ_names.add(local)
            elif node.module == "os" and alias.name == "getenv":
                self.getenv_names.add(local)
            elif node.module == "urllib.request" and alias.name == "urlopen":
                self.urlopen_names.add(local)
        self.generic_visit(node)

    def _is_environ(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Attribute) and node.attr == "environ":
            return isinstance(node.value, ast.Name) and node.value.id == "os"
        return isinstance(node, ast.Name) and node.id in self.environ_names

    def _add(self, key: ast.expr, node: ast.AST, required: bool) -> None:
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            self.reads.append(EnvRead(key.value, self.file, getattr(node, "lineno", 0), required))

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if self._is_environ(node.value) and isinstance(node.ctx, ast.Load):
            self._add(node.slice, node, required=True)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in ("get", "setdefault") and self._is_environ(func.value) \
                and node.args:
            self._add(node.args[0], node, required=False)
        elif node.args and (
                (isinstance(func, ast.Attribute) and func.attr == "getenv" and isinstance(func.value, ast.Name)
                 and func.value.id == "os") or (isinstance(func, ast.Name) and func.id in self.getenv_names)):
            self._add(node.args[0], node, required=False)
        if self._is_urlopen(func) and len(node.args) < 3 and not any(k.arg == "timeout" for k in node.keywords):
            self.calls.append(NoTimeoutCall(self.file, node.lineno, ast.unparse(func)))
        self.generic_visit(node)

    def _is_urlopen(self, func: ast.expr) -> bool:
        if isinstance(func, ast.Name):
            return func.id in self.urlopen_names
        return isinstance(func, ast.Attribute) and func.attr == "urlopen" and \
            ast.unparse(func.value) in ("urllib.request", "request")


@dataclass(frozen=True)
class Scan:
    reads: list[EnvRead]
    calls: list[NoTimeoutCall]
    files: int
    unparsable: list[str]


def scan(root: Path, files: list[str]) -> Scan:
    reads: list[EnvRead] = []
    calls: list[NoTimeoutCall] = []
    unparsable: list[str] = []
    chosen = python_files(files)
    for rel in chosen:
        path = root / rel
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                continue
            tree = ast.parse(path.read_bytes(), filename=rel)
        except (OSError, SyntaxError, ValueError):
            unparsable.append(rel)
            continue
        visitor = _Visitor(rel)
        visitor.visit(tree)
        reads += visitor.reads
        calls += visitor.calls
    return Scan(reads, calls, len(chosen), unparsable)


def _module_map(files: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for rel in python_files(files):
        parts = rel[:-3].split("/")
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            found[".".join(parts)] = rel
    return found


def _imports(tree: ast.AST, rel: str) -> set[str]:
    package = rel.rsplit("/", 1)[0].replace("/", ".") if "/" in rel else ""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)] if package else []
                base = ".".join([*up, base] if base else up)
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names}
    return names


def entry_closure(root: Path, files: list[str], argv: list[str]) -> list[str] | None:
    """The app's Python files a command runs: its entry file and the local modules it imports, transitively.

    None when the entry cannot be told from the command (then callers look at the whole source)."""
    modules = _module_map(files)
    entry: str | None = None
    for i, arg in enumerate(argv):
        clean = arg.removeprefix("./")
        if clean.endswith(".py") and clean in files:
            entry = clean
            break
        if arg == "-m" and i + 1 < len(argv):
            entry = modules.get(argv[i + 1].split(":")[0])
            break
        if ":" in arg and arg.split(":")[0] in modules:  # uvicorn/gunicorn "module:app"
            entry = modules[arg.split(":")[0]]
            break
    if entry is None:
        return None
    seen, todo = {entry}, [entry]
    while todo and len(seen) < 500:
        rel = todo.pop()
        try:
            tree = ast.parse((root / rel).read_bytes(), filename=rel)
        except (OSError, SyntaxError, ValueError):
            continue
        for name in _imports(tree, rel):
            target = modules.get(name)
            if target is not None and target not in seen:
                seen.add(target)
                todo.append(target)
    return sorted(seen)


def env_example_names(root: Path) -> tuple[str | None, list[str]]:
    """The variable names in ``.env.example`` (or ``.env.sample``), and which file it was."""
    for name in (".env.example", ".env.sample", "env.example"):
        path = root / name
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            found = [m.group(1) for line in text.splitlines() if (m := _ENV_LINE.match(line))]
            return name, list(dict.fromkeys(found))
    return None, []
