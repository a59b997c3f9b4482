"""Which variable values name a data location or another environment, and how scratch rewrites them.

A scratch run must never reach a real environment's data or traffic, yet the app's variables were
written for the real one: ``DATABASE_URL = "sqlite:////srv/app/data/staging/app.db"`` or
``API_URL = "http://127.0.0.1:8080/api"`` (the staging edge). Before any process starts in scratch,
:func:`rewrite` points paths under any environment's data folder at the scratch data folder and
loopback URLs on any environment's edge port at the scratch edge, and reports values it cannot make
safe (a network database URL, a data path outside every data folder): checks that would run the app
against them are skipped rather than risk real data. :func:`broken_value` makes the "dependency
unreachable" values of the honest-health check, and env-isolation uses :func:`data_like` to compare
environments. Pure functions; called by the doctor's checks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# Schemes of data stores reached over the network: a scratch run cannot get its own copy of those.
NETWORK_SCHEMES = ("postgres", "postgresql", "mysql", "mariadb", "mongodb", "mongodb+srv", "redis", "rediss",
                   "amqp", "amqps", "mssql", "oracle", "cockroachdb", "clickhouse")
_URL = re.compile(r"^(?P<scheme>[a-z][a-z0-9.-]*)(?P<driver>\+[a-z0-9_]+)?://(?P<rest>.*)$", re.IGNORECASE)
_DATA_NAME = re.compile(r"(DATABASE|(^|_)DB(_|$)|SQLITE|POSTGRES|MYSQL|MONGO|REDIS|DSN|(^|_)DATA(_|$)|STORAGE|"
                        r"UPLOAD|MEDIA)", re.IGNORECASE)
_LOOPBACK = r"(?:127\.0\.0\.1|localhost|0\.0\.0\.0|\[::1\])"


def scheme(value: str) -> str | None:
    """The URL scheme without its driver (``postgresql+psycopg://`` → ``postgresql``)."""
    found = _URL.match(value.strip())
    return found.group("scheme").lower() if found else None


def is_network_store(value: str) -> bool:
    return scheme(value) in NETWORK_SCHEMES


def sqlite_path(value: str) -> str | None:
    """The file path of a ``sqlite:///...`` URL (absolute when it has four slashes)."""
    found = re.match(r"^sqlite(\+[a-z0-9]+)?:///(?P<path>.*)$", value.strip(), re.IGNORECASE)
    return found.group("path") if found else None


def data_like(name: str, value: str) -> bool:
    """Whether a variable names where data lives (a database URL, a data path)."""
    if is_network_store(value) or sqlite_path(value) is not None:
        return True
    return bool(_DATA_NAME.search(name)) and (value.startswith("/") or scheme(value) is not None)


def edge_ports_in(value: str) -> set[int]:
    """Ports of loopback URLs/addresses in a value (``http://127.0.0.1:8080/x`` → {8080})."""
    return {int(p) for p in re.findall(_LOOPBACK + r":(\d{1,5})\b", value)}


@dataclass(frozen=True)
class Rewritten:
    values: dict[str, str]
    unsafe: dict[str, str]  # variable -> why a scratch run must not use it
    notes: list[str]  # what was rewritten, for the evidence


def rewrite(values: dict[str, str], data_dirs: list[Path], scratch_data: Path, edge_ports: set[int],
            scratch_edge: int | None, safe_root: Path | None = None,
            trusted: frozenset[str] = frozenset()) -> Rewritten:
    """Make a service's variables point into scratch instead of at any real environment.

    Paths under ``safe_root`` (the scratch folder) are safe; ``trusted`` names hold values the doctor
    set itself (a database URL pointed at a closed port) and are not second-guessed."""
    safe = str(safe_root or scratch_data)
    out: dict[str, str] = {}
    unsafe: dict[str, str] = {}
    notes: list[str] = []
    for name, value in values.items():
        new = value
        for folder in sorted(data_dirs, key=lambda p: -len(str(p))):
            if str(folder) in new:
                new = new.replace(str(folder), str(scratch_data))
        target = str(scratch_edge) if scratch_edge is not None else "1"
        for port in edge_ports_in(new) & edge_ports:
            new = re.sub(rf"({_LOOPBACK}):{port}\b", rf"\g<1>:{target}", new)
        if new != value:
            notes.append(f"{name} rewritten to point into scratch")
        out[name] = new
        if name in trusted:
            continue
        if is_network_store(new):
            unsafe[name] = f"{name} points at a {scheme(new)} database that a scratch run cannot copy"
            continue
        path = sqlite_path(new)
        if path is not None and path.startswith("/") and not path.startswith(safe):
            unsafe[name] = f"{name} points at the SQLite file {path}, outside every environment's data folder"
        elif path is None and _DATA_NAME.search(name) and new.startswith("/") and \
                not new.startswith(safe):
            unsafe[name] = f"{name} points at {new}, outside every environment's data folder"
    return Rewritten(out, unsafe, notes)


def broken_value(value: str, blocked: Path, closed_port: int) -> str:
    """The same kind of location, unreachable: a path under a regular file, or a closed loopback port."""
    path = sqlite_path(value)
    if path is not None:
        return f"sqlite:///{blocked / 'db.sqlite3'}"
    found = _URL.match(value.strip())
    if found:
        user = "doctor@"
        return f"{found.group('scheme')}{found.group('driver') or ''}://{user}127.0.0.1:{closed_port}/doctor"
    return str(blocked / (Path(value).name or "data"))
