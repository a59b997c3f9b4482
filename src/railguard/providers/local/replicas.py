"""Starting and proving replica sets: the building blocks of a local rollout.

Given a service's normalized config and its artifact, build each replica's exact
environment, spawn the processes on fresh loopback ports, run the release command,
and hold the readiness gate. When something fails, explain it: the exit code, the
last log lines, the failing health answer, a port the app listens on instead of
$PORT, a variable named in a KeyError. Called by :mod:`railguard.providers.local.rollout`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from railguard.providers.base import LATEST
from railguard.providers.listeners import Listener
from railguard.providers.local import sandbox
from railguard.providers.local.artifacts import Artifact, ArtifactTampered, base_path, verify
from railguard.providers.local.health import CheckResult, GateResult, check_exec, check_http, check_tcp, readiness_gate
from railguard.providers.local.isolation import lookup
from railguard.providers.local.ownership import OWNED, verdict
from railguard.providers.local.processes import (
    ReplicaSpec,
    SpawnError,
    allocate_port,
    as_user,
    exit_code,
    is_alive,
    spawn,
    stop,
    tail,
)
from railguard.providers.local.runtime import Replica

READY_POLL_S = 0.05  # the gate's slowest poll (it starts at 10 ms: a ready app is seen within 50 ms, not 100);
# the configured interval paces monitoring


class Failure(Exception):
    """A rollout step failed; ``code`` is a diagnostic code, ``cause`` the facts found."""

    def __init__(self, code: str, summary: str, cause: str, extra: dict[str, Any]) -> None:
        super().__init__(f"{summary}: {cause}")
        self.code, self.summary, self.cause, self.extra = code, summary, cause, extra


def pinned(config: dict[str, Any]) -> dict[str, int]:
    """The secret versions a service's release runs with (a config from before pinning: the latest)."""
    versions = config.get("secret_versions")
    if versions is None:
        return {name: LATEST for name in config.get("secrets", [])}
    return {str(name): int(version) for name, version in versions.items()}


def instance_id(home: Path) -> str:
    """Marks every process Railguard starts for this state folder, so orphans can be found."""
    return hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:16]


def replica_env(config: dict[str, Any], *, env: str, service: str, release: int, index: int | None,
                port: int | None, data_dir: Path, artifact: Artifact, home: Path,
                secrets: dict[str, str] | None = None, user: str | None = None) -> dict[str, str]:
    """Exactly what a replica sees: the spec's variables, its secrets and documented ones, nothing inherited.

    ``$RAILGUARD_DATA_DIR`` (or ``${RAILGUARD_DATA_DIR}``) in a plain value becomes the data folder's path, so
    the spec can point an app's own variables (``DATABASE_URL``, an instance folder) into it; nothing else
    is expanded, and secrets never are. A replica run as its environment's user (``user``) gets its data
    folder as HOME: the daemon's is not its.
    """
    values = {name: expand_data_dir(value, data_dir) for name, value in config["env"].items()}
    values.update(secrets or {})
    values.update({
        "PATH": base_path(artifact.bin_dirs),
        "HOME": str(data_dir) if user else os.path.expanduser("~"),
        "LANG": "C.UTF-8",
        "RAILGUARD_ENV": env,
        "RAILGUARD_SERVICE": service,
        "RAILGUARD_RELEASE": str(release),
        "RAILGUARD_DATA_DIR": str(data_dir),
        "RAILGUARD_INSTANCE": instance_id(home),
    })
    if (artifact.path / "venv").is_dir():
        values["VIRTUAL_ENV"] = str(artifact.path / "venv")
    if index is not None:
        values["RAILGUARD_REPLICA"] = str(index)
    if port is not None:
        values[config["port_env"]] = str(port)
    return values


_DATA_DIR_REF = re.compile(r"\$\{RAILGUARD_DATA_DIR\}|\$RAILGUARD_DATA_DIR(?![A-Za-z0-9_])")


def expand_data_dir(value: str, data_dir: Path) -> str:
    return _DATA_DIR_REF.sub(lambda _: str(data_dir), value)


def not_installed(argv: list[str], environ: dict[str, str]) -> str | None:
    """Why ``argv[0]`` cannot run in the release, or None when it resolves on the replica's PATH.

    A bare name is looked up the way the process will look it up: the artifact's venv first, so
    ``gunicorn`` or ``python`` mean the release's own, never Railguard's.
    """
    if not argv or "/" in argv[0] or shutil.which(argv[0], path=environ.get("PATH", "")) is not None:
        return None
    return (f"'{argv[0]}' is not installed in the release environment; add it to requirements.txt/pyproject "
            f"(command: {argv})")


def verified(artifact: Artifact) -> None:
    """Refuse to start anything from an artifact that is no longer exactly as built."""
    try:
        verify(artifact)
    except ArtifactTampered as exc:
        raise Failure("artifact.tampered", "The release's artifact was modified after it was built", str(exc),
                      {"artifact": artifact.path.name, "changes": exc.problems}) from exc


_WRITE_REFUSED = re.compile(r"(Read-only file system|Permission denied)[^\n]*?['\"]([^'\"]+)['\"]")
# SQLite names no path: a new file it cannot create in a read-only folder, or an old one it cannot write.
_SQLITE_REFUSED = re.compile(r"(unable to open database file|attempt to write a readonly database)")


def _write_hint(lines: list[str], artifact_paths: tuple[str, ...]) -> str:
    """The cause when the log shows a write into the release (its folders are read-only).

    The path in the message is as the app gave it: absolute inside the artifact or its layer, or relative
    (the working directory is the artifact's source folder).
    """
    for line in reversed(lines):
        match = _WRITE_REFUSED.search(line)
        if not match or not artifact_paths:
            continue
        path = match.group(2)
        inside = not path.startswith("/") or any(path.startswith(p.rstrip("/") + "/") for p in artifact_paths)
        if inside:
            return (f"; it tried to write {path!r} inside its release, which is read-only: data belongs in "
                    f"$RAILGUARD_DATA_DIR (the environment's data folder); point the app's database, uploads "
                    f"and instance folder there")
    for line in reversed(lines):
        if (match := _SQLITE_REFUSED.search(line)) is not None and artifact_paths:
            return (f"; SQLite said {match.group(1)!r}: its database file is most likely inside the release, which "
                    f"is read-only (or in a folder that does not exist): data belongs in $RAILGUARD_DATA_DIR (the "
                    f"environment's data folder); build the file's path from that variable, e.g. "
                    f"os.path.join(os.environ[\"RAILGUARD_DATA_DIR\"], \"app.db\")")
    return ""


def run_release_command(config: dict[str, Any], environ: dict[str, str], artifact: Artifact, log_path: Path,
                        user: str | None = None) -> None:
    verified(artifact)
    argv = config["release"]
    if (missing := not_installed(argv, environ)) is not None:
        raise Failure("rollout.release_failed", "The release command was not found", missing, {"command": argv})
    timeout = config["start_timeout_ms"] / 1000
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with log_path.open("ab") as out, sandbox.popen(
                argv, artifact.readonly, cwd=artifact.src, env=environ, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, **as_user(lookup(user))) as done:
            try:
                done.wait(timeout=timeout)
            except subprocess.TimeoutExpired:  # as subprocess.run: the command itself is killed, then reaped
                done.kill()
                done.wait()
                raise
    except FileNotFoundError as exc:
        raise Failure("rollout.release_failed", "The release command was not found",
                      f"{argv[0]!r} does not exist in the release", {"command": argv}) from exc
    except subprocess.TimeoutExpired as exc:
        raise Failure("rollout.release_failed", "The release command timed out",
                      f"it ran longer than start_timeout ({timeout:.0f} s)",
                      {"command": argv, "log_tail": tail(log_path, 20)}) from exc
    if done.returncode != 0:
        lines = tail(log_path, 20)
        refused = _write_hint(lines, artifact.readonly)
        raise Failure("artifact.write_refused" if refused else "rollout.release_failed",
                      f"The release command exited with {done.returncode}",
                      f"{' '.join(argv)} exited with status {done.returncode}{refused or _hint(lines)}",
                      {"command": argv, "exit_code": done.returncode, "log_tail": lines})


def start_replicas(count: int, first_index: int, config: dict[str, Any], *, env: str, service: str, release: int,
                   data_dir: Path, artifact: Artifact, home: Path, log_dir: Path,
                   secrets: dict[str, str] | None = None, user: str | None = None,
                   pinned: dict[str, int] | None = None) -> list[Replica]:
    verified(artifact)
    started: list[Replica] = []
    for index in range(first_index, first_index + count):
        port = allocate_port() if config["listen"] else None
        name = f"{env}.{service}.r{release}.{index}"
        spec = ReplicaSpec(
            name=name, argv=list(config["run"]), cwd=artifact.src,
            env=replica_env(config, env=env, service=service, release=release, index=index, port=port,
                            data_dir=data_dir, artifact=artifact, home=home, secrets=secrets, user=user),
            port=port, log_path=log_dir / f"{name}.log", stop_timeout=config["stop_timeout_ms"] / 1000,
            readonly=artifact.readonly, user=user)
        if (missing := not_installed(spec.argv, spec.env)) is not None:
            stop_all(started)
            raise Failure("rollout.start_failed", "A replica could not be started", missing, {"command": spec.argv})
        try:
            record = spawn(spec)
        except SpawnError as exc:
            stop_all(started)
            raise Failure("rollout.start_failed", "A replica could not be started", str(exc),
                          {"command": spec.argv}) from exc
        started.append(Replica(spec, record, sorted(secrets or {}), dict(pinned or {})))
    return started


def _check_for(config: dict[str, Any], replica: Replica, timeout: float | None = None) -> CheckResult:
    health = config["health"]
    port = replica.spec.port
    limit = timeout if timeout is not None else (health["timeout_ms"] / 1000 if health else 1.0)
    if health and health["mode"] == "http" and port is not None:
        return check_http(port, health["http"], limit)
    if health and health["mode"] == "exec":
        return check_exec(health["exec"], replica.spec.env, replica.spec.cwd, limit, replica.spec.readonly,
                          replica.spec.user)
    if port is not None:
        return check_tcp(port, limit)
    return CheckResult(is_alive(replica.record), "process is running")


def check(config: dict[str, Any], replica: Replica, table: dict[int, list[Listener]] | None = None) -> CheckResult:
    """The replica's health check, failed when the listener on its port is not the replica's own
    (:mod:`railguard.providers.local.ownership`): the ownership is looked at first, from ``table`` (a pass's one
    read of the listeners) when given, so a foreign listener is never even asked."""
    if table is not None:
        found = OWNED.verify(replica.spec, replica.record, table)
        return verdict(found) if found is not None else _check_for(config, replica)
    result = _check_for(config, replica)
    if result.refused or replica.spec.port is None:
        return result  # nothing listens: nothing to own (and the gate polls this case every 5 ms)
    found = OWNED.verify(replica.spec, replica.record)
    return verdict(found) if found is not None else result


def gate(replicas: list[Replica], config: dict[str, Any]) -> None:
    """Hold until every replica passes its readiness gate; raise a Failure explaining the first that does not."""
    health = config["health"]
    threshold = health["healthy_threshold"] if health else 1
    deadline = time.monotonic() + config["start_timeout_ms"] / 1000
    poll = max(0.01, min(READY_POLL_S, health["interval_ms"] / 1000)) if health else READY_POLL_S
    # The same 5xx answered unhealthy_threshold times in a row after start_period is conclusive: fail now.
    start_period = health["start_period_ms"] / 1000 if health else None
    conclusive = health["unhealthy_threshold"] if health else 0
    results: dict[str, GateResult] = {}

    def one(replica: Replica) -> None:
        results[replica.spec.name] = readiness_gate(
            lambda: check(config, replica), interval=poll, healthy_threshold=threshold,
            deadline=deadline, still_running=lambda: is_alive(replica.record), start_period=start_period,
            conclusive=conclusive)

    threads = [threading.Thread(target=one, args=(r,), daemon=True) for r in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for replica in replicas:
        result = results[replica.spec.name]
        if not result.passed:
            raise _explain(replica, result)


def _explain(replica: Replica, result: GateResult) -> Failure:
    lines = tail(replica.spec.log_path, 20)
    extra: dict[str, Any] = {"replica": replica.spec.name, "log_tail": lines,
                             "last_check": result.last.detail if result.last else None}
    if result.last is not None and result.last.conclusive:  # another process or user holds its port
        extra["holder_uid"] = result.last.holder
        extra["port"] = replica.spec.port
        return Failure("rollout.port_taken", f"Replica {replica.spec.name}'s port is held by another process",
                       f"{result.last.detail}; the edge was not pointed at it", extra)
    code = exit_code(replica.record)
    if code is not None or not is_alive(replica.record):
        extra["exit_code"] = code
        hint = _write_hint(lines, replica.spec.readonly)
        return Failure("artifact.write_refused" if hint else "rollout.crashed",
                       f"Replica {replica.spec.name} exited during startup",
                       f"the process exited{f' with status {code}' if code is not None else ''} before it became "
                       f"healthy{hint or _hint(lines)}", extra)
    elsewhere = _listening_ports(replica.record.pid)
    if replica.spec.port is not None and elsewhere and replica.spec.port not in elsewhere:
        extra["listening_on"] = sorted(elsewhere)
        return Failure("rollout.ignores_port", f"Replica {replica.spec.name} ignores $PORT",
                       f"it listens on {', '.join(map(str, sorted(elsewhere)))} instead of the allocated port "
                       f"{replica.spec.port}; read the port from the environment variable", extra)
    # A replica that answers but fails its checks often says why in its log (a database it cannot open).
    hint = _write_hint(lines, replica.spec.readonly)
    return Failure("artifact.write_refused" if hint else "rollout.unhealthy",
                   f"Replica {replica.spec.name} never became healthy", f"{result.reason}{hint or _hint(lines)}", extra)


def _listening_ports(pid: int) -> set[int]:
    ports: set[int] = set()
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        for proc in procs:
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr:
                    ports.add(conn.laddr.port)
    except (psutil.Error, OSError):
        pass
    return ports


_KEY_ERROR = re.compile(r"KeyError: '([A-Za-z_][A-Za-z0-9_]*)'")
_ADDR_IN_USE = re.compile(r"(Address already in use|EADDRINUSE)")
# pydantic's report of a model built from variables (pydantic-settings' BaseSettings): each missing field's
# name on its own line, then "Field required [type=missing".
_PYDANTIC = re.compile(r"validation errors? for ([A-Za-z_][A-Za-z0-9_]*)")
_PYDANTIC_MISSING = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\n\s+Field required \[type=missing", re.MULTILINE)
_PG_EXTENSION = re.compile(r'extension "([^"]+)" is not available')


def _hint(lines: list[str]) -> str:
    text = "\n".join(lines)
    missing = _KEY_ERROR.findall(text)
    if missing:
        return f"; the log shows KeyError: '{missing[-1]}': a variable the spec does not declare"
    model, fields = _PYDANTIC.search(text), _PYDANTIC_MISSING.findall(text)
    if model and fields:
        names = ", ".join(dict.fromkeys(fields))
        return (f"; the log shows {model.group(1)} missing {names}: pydantic-settings reads each field from the "
                f"variable of its name, which the spec does not give: add them to the service's env (names that "
                f"are secret to `secrets`, set with `railguard secret set NAME --env ENV`)")
    if (extension := _PG_EXTENSION.search(text)) is not None:
        return (f"; the Postgres server has no extension {extension.group(1)!r} (Railguard's managed Postgres lacks "
                f"uuid-ossp and pgcrypto: use the built-in gen_random_uuid() and drop the CREATE EXTENSION, or "
                f"give the app a server of your own; docs/data.md, Extensions)")
    if _ADDR_IN_USE.search(text):
        return "; the log shows a port already in use: the app may ignore $PORT"
    return ""


def stop_all(replicas: list[Replica], timeout: float | None = None) -> None:
    """Stop them in parallel, each within its own stop_timeout (or ``timeout``)."""
    threads = [threading.Thread(target=stop, args=(r.record, r.spec.stop_timeout if timeout is None else timeout),
                                daemon=True) for r in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
