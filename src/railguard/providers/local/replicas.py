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

from railguard.providers.local.artifacts import Artifact, base_path
from railguard.providers.local.health import CheckResult, GateResult, check_exec, check_http, check_tcp, readiness_gate
from railguard.providers.local.isolation import lookup
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

READY_POLL_S = 0.1  # readiness polls fast; the configured interval paces monitoring after the switch


class Failure(Exception):
    """A rollout step failed; ``code`` is a diagnostic code, ``cause`` the facts found."""

    def __init__(self, code: str, summary: str, cause: str, extra: dict[str, Any]) -> None:
        super().__init__(f"{summary}: {cause}")
        self.code, self.summary, self.cause, self.extra = code, summary, cause, extra


def instance_id(home: Path) -> str:
    """Marks every process Railguard starts for this state folder, so orphans can be found."""
    return hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:16]


def replica_env(config: dict[str, Any], *, env: str, service: str, release: int, index: int | None,
                port: int | None, data_dir: Path, artifact: Artifact, home: Path,
                secrets: dict[str, str] | None = None, user: str | None = None) -> dict[str, str]:
    """Exactly what a replica sees: the spec's variables, its secrets and documented ones, nothing inherited.

    A replica run as its environment's user (``user``) gets its data folder as HOME: the daemon's is not its.
    """
    values = dict(config["env"])
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


def not_installed(argv: list[str], environ: dict[str, str]) -> str | None:
    """Why ``argv[0]`` cannot run in the release, or None when it resolves on the replica's PATH.

    A bare name is looked up the way the process will look it up: the artifact's venv first, so
    ``gunicorn`` or ``python`` mean the release's own, never Railguard's.
    """
    if not argv or "/" in argv[0] or shutil.which(argv[0], path=environ.get("PATH", "")) is not None:
        return None
    return (f"'{argv[0]}' is not installed in the release environment; add it to requirements.txt/pyproject "
            f"(command: {argv})")


def run_release_command(config: dict[str, Any], environ: dict[str, str], artifact: Artifact, log_path: Path,
                        user: str | None = None) -> None:
    argv = config["release"]
    if (missing := not_installed(argv, environ)) is not None:
        raise Failure("rollout.release_failed", "The release command was not found", missing, {"command": argv})
    timeout = config["start_timeout_ms"] / 1000
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with log_path.open("ab") as out:
            done = subprocess.run(argv, cwd=artifact.src, env=environ, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=timeout, check=False, start_new_session=True,
                                  **as_user(lookup(user)))
    except FileNotFoundError as exc:
        raise Failure("rollout.release_failed", "The release command was not found",
                      f"{argv[0]!r} does not exist in the release", {"command": argv}) from exc
    except subprocess.TimeoutExpired as exc:
        raise Failure("rollout.release_failed", "The release command timed out",
                      f"it ran longer than start_timeout ({timeout:.0f} s)",
                      {"command": argv, "log_tail": tail(log_path, 20)}) from exc
    if done.returncode != 0:
        lines = tail(log_path, 20)
        raise Failure("rollout.release_failed", f"The release command exited with {done.returncode}",
                      f"{' '.join(argv)} exited with status {done.returncode}{_hint(lines)}",
                      {"command": argv, "exit_code": done.returncode, "log_tail": lines})


def start_replicas(count: int, first_index: int, config: dict[str, Any], *, env: str, service: str, release: int,
                   data_dir: Path, artifact: Artifact, home: Path, log_dir: Path,
                   secrets: dict[str, str] | None = None, user: str | None = None,
                   pinned: dict[str, int] | None = None) -> list[Replica]:
    started: list[Replica] = []
    for index in range(first_index, first_index + count):
        port = allocate_port() if config["listen"] else None
        name = f"{env}.{service}.r{release}.{index}"
        spec = ReplicaSpec(
            name=name, argv=list(config["run"]), cwd=artifact.src,
            env=replica_env(config, env=env, service=service, release=release, index=index, port=port,
                            data_dir=data_dir, artifact=artifact, home=home, secrets=secrets, user=user),
            port=port, log_path=log_dir / f"{name}.log", stop_timeout=config["stop_timeout_ms"] / 1000, user=user)
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
        return check_exec(health["exec"], replica.spec.env, replica.spec.cwd, limit, replica.spec.user)
    if port is not None:
        return check_tcp(port, limit)
    return CheckResult(is_alive(replica.record), "process is running")


def check(config: dict[str, Any], replica: Replica) -> CheckResult:
    return _check_for(config, replica)


def gate(replicas: list[Replica], config: dict[str, Any]) -> None:
    """Hold until every replica passes its readiness gate; raise a Failure explaining the first that does not."""
    health = config["health"]
    threshold = health["healthy_threshold"] if health else 1
    deadline = time.monotonic() + config["start_timeout_ms"] / 1000
    results: dict[str, GateResult] = {}

    def one(replica: Replica) -> None:
        results[replica.spec.name] = readiness_gate(
            lambda: _check_for(config, replica), interval=READY_POLL_S, healthy_threshold=threshold,
            deadline=deadline, still_running=lambda: is_alive(replica.record))

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
    code = exit_code(replica.record)
    if code is not None or not is_alive(replica.record):
        extra["exit_code"] = code
        return Failure("rollout.crashed", f"Replica {replica.spec.name} exited during startup",
                       f"the process exited{f' with status {code}' if code is not None else ''} before it became "
                       f"healthy{_hint(lines)}", extra)
    elsewhere = _listening_ports(replica.record.pid)
    if replica.spec.port is not None and elsewhere and replica.spec.port not in elsewhere:
        extra["listening_on"] = sorted(elsewhere)
        return Failure("rollout.ignores_port", f"Replica {replica.spec.name} ignores $PORT",
                       f"it listens on {', '.join(map(str, sorted(elsewhere)))} instead of the allocated port "
                       f"{replica.spec.port}; read the port from the environment variable", extra)
    return Failure("rollout.unhealthy", f"Replica {replica.spec.name} never became healthy", result.reason, extra)


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


def _hint(lines: list[str]) -> str:
    text = "\n".join(lines)
    missing = _KEY_ERROR.findall(text)
    if missing:
        return f"; the log shows KeyError: '{missing[-1]}': a variable the spec does not declare"
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
