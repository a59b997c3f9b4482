"""Reading a kubeconfig without letting the spec make the daemon run a program or send a file.

Why it exists: an environment's ``kubeconfig`` is named in the spec, and the spec is written by the agent the
daemon guards against. A kubeconfig is not only data: a user entry can run a program to get credentials (``exec``,
``auth-provider``) and entries can name files the client reads and sends (``tokenFile``, ``client-key``,
``certificate-authority``...). Pointed at a kubeconfig of its own making, a spec would have the daemon run the
agent's program with the daemon's authority, or send a file only the daemon can read (``tokenFile`` = the signing
key) to a server the spec chose, and at plan time, before anyone reviewed anything.

So a kubeconfig the spec names is used as it is only when its context is *inert*: every credential inline
(``token``, ``*-data``). One that runs a program or reads a file is used only after a person trusted that exact
file (``railguard k8s trust PATH``, on a terminal or with an admin token): the daemon records its real path and
the SHA-256 of its bytes in ``home/kubeconfigs.json`` (0600), and then uses only bytes with that digest, so a
file changed afterwards is untrusted again. The daemon's default kubeconfig (``$KUBECONFIG`` or
``~/.kube/config`` of whoever started the daemon) is the operator's own and is used as it is. Errors never quote
the file (a YAML error's snippet could show a line of any file the daemon can read).

Called by :class:`railguard.providers.kubernetes.cluster.Cluster` (every connection) and by the daemon's trust
route (:mod:`railguard.daemon.governance`).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from railguard.model.diagnostics import RailguardError, error

TRUST_FILE = "kubeconfigs.json"
MAX_BYTES = 1 << 20  # a kubeconfig is a few kB; a larger "kubeconfig" is not read at all

# What a user or cluster entry may hold and still be inert: data only, nothing run, no file read. Anything else
# (``exec``, ``auth-provider``, ``tokenFile``, ``client-certificate``, ``certificate-authority``, a key a newer
# client might act on) needs a person's trust.
INERT_USER = frozenset({"token", "client-certificate-data", "client-key-data", "username", "password"})
INERT_CLUSTER = frozenset({"server", "certificate-authority-data", "insecure-skip-tls-verify", "tls-server-name"})

_lock = threading.Lock()


@dataclass(frozen=True)
class Loaded:
    """A kubeconfig read once: its parsed document, the digest of its bytes, what in its context is not inert."""

    path: Path
    document: dict[str, Any]
    sha256: str
    active: list[str] = field(default_factory=list)  # e.g. "user 'dev': exec (runs /usr/bin/aws)"


def _untrusted(path: Path, detail: str, remediation: str) -> RailguardError:
    return RailguardError(error(
        "cluster.kubeconfig_untrusted", f"The kubeconfig {path} is not trusted", detail, remediation,
        extra={"kubeconfig": str(path)}))


def read(path: Path, context: str | None) -> Loaded:
    """``path`` read and parsed once, with what its ``context`` (or current-context) would run or read."""
    try:
        with open(path, "rb") as f:  # one read: the digest and the parse are of the same bytes
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise RailguardError(error(
            "cluster.config", f"Cannot read the kubeconfig {path}", f"{exc.strerror or type(exc).__name__}.",
            "Check `kubeconfig` in [environments.<name>.kubernetes] (or $KUBECONFIG), then plan again.",
            extra={"kubeconfig": str(path)})) from exc
    if len(raw) > MAX_BYTES:
        raise RailguardError(error(
            "cluster.config", f"The kubeconfig {path} is too large", f"It is over {MAX_BYTES} bytes.",
            "Point `kubeconfig` at a kubeconfig file.", extra={"kubeconfig": str(path)}))
    try:
        document = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise RailguardError(error(  # never the YAML error's text: it quotes the file's line
            "cluster.config", f"The kubeconfig {path} is not valid YAML", f"It does not parse{where}.",
            "Point `kubeconfig` at a kubeconfig file (`kubectl config view --kubeconfig PATH` reads it).",
            extra={"kubeconfig": str(path)})) from None
    if not isinstance(document, dict):
        raise RailguardError(error(
            "cluster.config", f"The kubeconfig {path} is not a kubeconfig", "Its top level is not a mapping.",
            "Point `kubeconfig` at a kubeconfig file.", extra={"kubeconfig": str(path)}))
    return Loaded(path, document, hashlib.sha256(raw).hexdigest(), active_parts(document, context))


def _named(document: dict[str, Any], section: str, name: Any) -> dict[str, Any]:
    for entry in document.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            inner = entry.get(section[:-1])
            return inner if isinstance(inner, dict) else {}
    return {}


def active_parts(document: dict[str, Any], context: str | None, values: bool = False) -> list[str]:
    """What the context's user and cluster entries hold that is not inert data, one line each; with ``values``
    what they run or name too (for the person trusting the file: a refusal tells the spec's author keys only)."""
    name = context or document.get("current-context")
    ctx = _named(document, "contexts", name)
    found: list[str] = []
    for section, inert in (("users", INERT_USER), ("clusters", INERT_CLUSTER)):
        entry_name = ctx.get(section[:-1])
        entry = _named(document, section, entry_name)
        for key in sorted(set(entry) - inert):
            line = f"{section[:-1]} '{entry_name}': {key}"
            value = entry[key]
            if values and key == "exec" and isinstance(value, dict):
                args = value["args"] if isinstance(value.get("args"), list) else []
                line += f" (runs {' '.join(str(a) for a in [value.get('command'), *args])[:300]})"
            elif values and isinstance(value, str):
                line += f" ({value[:300]})"
            found.append(line)
    return found


def every_context(document: dict[str, Any]) -> list[str]:
    """:func:`active_parts` with values, for every context of the file (trust covers the whole file)."""
    names = [c.get("name") for c in document.get("contexts") or [] if isinstance(c, dict)]
    return [f"context '{n}': {part}" for n in names for part in active_parts(document, str(n), values=True)]


def _records(home: Path) -> dict[str, Any]:
    try:
        found = json.loads((home / TRUST_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def checked(path: Path, context: str | None, home: Path) -> Loaded:
    """``path`` read once and allowed: inert, or trusted by a person with these exact bytes. Raises otherwise."""
    loaded = read(path, context)
    if not loaded.active:
        return loaded
    record = _records(home).get(str(path.resolve()))
    if isinstance(record, dict) and record.get("sha256") == loaded.sha256:
        return loaded
    what = "; ".join(loaded.active)
    changed = (f"It changed since it was trusted (SHA-256 now {loaded.sha256[:12]}…, trusted "
               f"{str(record.get('sha256'))[:12]}…). ") if isinstance(record, dict) else ""
    raise _untrusted(
        path,
        changed
        + f"Its context runs a program or reads files when used ({what}); a kubeconfig named by the spec does that "
        "only once a person has trusted the file, so a spec cannot make the daemon run a program or send a file "
        "of its choosing.",
        f"Review the file, then trust it yourself on a terminal: `railguard k8s trust {path}` (or use a "
        "kubeconfig with inline credentials only: token, client-certificate-data, client-key-data).")


def trust(home: Path, path: Path, by: str) -> dict[str, Any]:
    """Record ``path``'s current bytes as trusted by ``by``; the record (what it runs and reads is listed)."""
    loaded = read(path, None)
    record: dict[str, Any] = {"path": str(path.resolve()), "sha256": loaded.sha256, "by": by, "at": time.time(),
                              "active": every_context(loaded.document)}
    with _lock:
        records = _records(home)
        records[record["path"]] = record
        _write(home, records)
    return record


def forget(home: Path, path: Path) -> bool:
    """Trust in ``path`` withdrawn; whether there was any."""
    with _lock:
        records = _records(home)
        gone = records.pop(str(path.resolve()), None) is not None
        if gone:
            _write(home, records)
    return gone


def trusted(home: Path) -> list[dict[str, Any]]:
    return sorted((r for r in _records(home).values() if isinstance(r, dict)), key=lambda r: str(r.get("path")))


def _write(home: Path, records: dict[str, Any]) -> None:
    home.mkdir(parents=True, exist_ok=True)
    partial = home / f"{TRUST_FILE}.tmp"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(records, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, home / TRUST_FILE)
