"""One-off commands of the local provider (``railguard exec``): a release's exact context, one process.

The command sees what the release's replicas see: when a replica set of that release runs (live or warm),
its replicas' own environment (minus the replica's port and index) and working folder in the artifact;
otherwise the release's frozen config rebuilt the way a rollout would (artifact found by digest, current
secret values, the environment's data folder). It runs in its own session, attached to the caller's
terminal descriptors or with its output captured in memory (never written under the state folder, where
secret values printed by the command would land in plaintext). A mixin of
:class:`railguard.providers.local.provider.LocalProvider`; called by the daemon's exec sessions.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from railguard.model.diagnostics import Diagnostic, RailguardError, error
from railguard.model.plans import Change
from railguard.model.resources import ObservedResource
from railguard.providers.base import LATEST, ApplyRequest, ApplyResponse, CommandRequest, Progress
from railguard.providers.local import artifacts, sandbox
from railguard.providers.local.isolation import (
    Level,
    RunAs,
    UserTaken,
    claim_user,
    lookup,
    prepare_data,
    starting,
    user_name,
)
from railguard.providers.local.processes import as_user
from railguard.providers.local.replicas import not_installed, pinned, replica_env
from railguard.providers.local.runtime import ReplicaSet, RuntimeState
from railguard.secrets.redaction import Redactor

OUTPUT_LIMIT = 1_000_000  # bytes of a captured run's output kept (the last ones)
APPROVED_TIMEOUT_S = 3600.0  # an approved command's limit: a migration may be long, not endless
OUTPUT_LINES = 200  # of an approved command's output, kept in the journal


class LocalCommand:
    """A one-off command started by :meth:`Commands.start_command`."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._reader: threading.Thread | None = None
        if proc.stdout is not None:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _read(self) -> None:
        stream = self._proc.stdout
        assert stream is not None
        while chunk := os.read(stream.fileno(), 65536):
            self._chunks.append(chunk)
            self._size += len(chunk)
            while self._size > OUTPUT_LIMIT and len(self._chunks) > 1:
                self._size -= len(self._chunks.popleft())

    def wait(self, timeout: float | None) -> int | None:
        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if self._reader is not None:
            self._reader.join(5.0)  # a grandchild may still hold the pipe; what was read so far is enough
        return code

    def signal(self, signum: int) -> None:
        try:
            os.killpg(self._proc.pid, signum)  # the whole group: a shell's children too
        except (ProcessLookupError, PermissionError):
            pass

    def output(self) -> str:
        return b"".join(self._chunks).decode("utf-8", errors="replace")


class Commands:
    home: Path
    state: RuntimeState
    secret_values: Callable[[str, dict[str, int]], dict[str, str]]
    isolation: Level

    def _database_env(self, env: str, config: dict[str, Any], data_dir: Path | None = None) -> dict[str, str]:
        raise NotImplementedError

    def start_command(self, request: CommandRequest, stdio: tuple[int, int, int] | None) -> LocalCommand:
        run_as = lookup(self._command_user(request))
        starting(run_as, request.env)
        cwd, environ, readonly = self._command_context(request, run_as)
        if (missing := not_installed(request.argv, environ)) is not None:
            raise RailguardError(error(
                "exec.not_found", f"'{request.argv[0]}' is not in release {request.release}", missing,
                "Add the package that provides it to requirements.txt/pyproject and deploy, or run another "
                "command.", address=f"{request.env}/service.{request.service}"))
        out = stdio if stdio is not None else (subprocess.DEVNULL, subprocess.PIPE, subprocess.STDOUT)
        try:  # as the environment's OS user when the runtime isolates: never with the daemon's authority
            # The release read-only for it, as for its replicas (sandbox): a one-off command, even one an agent
            # runs on a failed release, cannot change the artifact the next replica starts from.
            proc = sandbox.popen(request.argv, readonly, cwd=cwd, env=environ, stdin=out[0], stdout=out[1],
                                 stderr=out[2], start_new_session=True, close_fds=True, **as_user(run_as))
        except OSError as exc:
            raise RailguardError(error(
                "exec.not_found", f"'{request.argv[0]}' could not be started",
                f"Starting {request.argv} in release {request.release} failed: {exc.strerror or exc}.",
                "Check the command's name and that the build installs it.",
                address=f"{request.env}/service.{request.service}")) from exc
        return LocalCommand(proc)

    def _approved_command(self, request: ApplyRequest, progress: Progress | None) -> ApplyResponse:
        """Run an approved ``command`` change (a plan applied), its redacted output kept in the journal."""
        argv, release = _command_of(request.change)
        service = request.change.address.split("/service.")[-1]
        command = CommandRequest(env=request.env, service=service, release=release, argv=argv, desired=None,
                                 data_dir=request.data_dir, app=request.app, user=request.user)
        live = [rs for rs in self.state.env(request.env).of(service) if rs.release == release and rs.replicas]
        redact = Redactor()
        if live:
            names = live[0].replicas[0].secret_names
            redact.update(self.secret_values(request.env, {n: LATEST for n in names}).items())
        if progress:
            progress("command", "begin", {"argv": argv, "release": release})
        try:
            process = self.start_command(command, None)
        except RailguardError as exc:
            return self._failed_command(request, live, list(exc.diagnostics))
        code = process.wait(APPROVED_TIMEOUT_S)
        if code is None:
            process.signal(signal.SIGKILL)
            code = process.wait(10.0)
        lines = redact(process.output()).splitlines()[-OUTPUT_LINES:]
        if progress:
            progress("command", "end" if code == 0 else "fail", {"exit_code": code, "output": lines})
        if code != 0:
            return self._failed_command(request, live, [error(
                "exec.failed", f"The command exited with {code}",
                f"{' '.join(argv)} in release {release} exited with status {code}.",
                "Read its output (log_tail), fix the cause, then plan the command again.",
                address=request.change.address, extra={"exit_code": code, "log_tail": lines[-20:]})])
        return ApplyResponse(ok=True, observed=self._observed_service(request.env, live[0]) if live else None)

    def _failed_command(self, request: ApplyRequest, live: list[ReplicaSet],
                        diagnostics: list[Diagnostic]) -> ApplyResponse:
        # What runs is untouched: the observed service stays as it was.
        return ApplyResponse(ok=False, observed=self._observed_service(request.env, live[0]) if live else None,
                             diagnostics=diagnostics)

    def _observed_service(self, env: str, rs: ReplicaSet) -> ObservedResource:
        raise NotImplementedError

    def _command_user(self, request: CommandRequest) -> str | None:
        """The user of the release's running replicas; isolated without one running: the environment's user as a
        rollout names it (the spec's, else ``rg-<app>-<env>``), so the command reads the same data folder."""
        if not self.isolation.isolated:
            return None
        with self.state.lock:
            sets = [rs for rs in self.state.env(request.env).of(request.service) if rs.replicas]
        user = sets[0].replicas[0].spec.user if sets else None
        if user is not None:
            return user
        name = request.user or user_name(request.app, request.env, self.home)
        try:
            claim_user(self.home, request.env, name, named_by_spec=request.user is not None, app=request.app)
        except UserTaken as exc:
            raise RailguardError(error(
                "exec.user_taken", "The environment's OS user is not its to run as", str(exc),
                "Remove `user` from the environment in the spec (Railguard then creates rg-<app>-<env>), or name a "
                "new account.", address=f"{request.env}/service.{request.service}")) from exc
        return name

    def _command_context(self, request: CommandRequest,
                         run_as: RunAs | None = None) -> tuple[Path, dict[str, str], tuple[str, ...]]:
        """The working folder, environment and read-only folders the release's replicas have (or would have)."""
        with self.state.lock:
            sets = [rs for rs in self.state.env(request.env).of(request.service)
                    if rs.release == request.release and rs.replicas]
        if sets:
            return _from_running(sets[0])
        if request.desired is None:
            raise _no_artifact(request, "its record holds no config for this service")
        cfg = request.desired.config
        found = artifacts.find(self.home / "artifacts", cfg["source"] or "", cfg["build"])
        if found is None:
            raise _no_artifact(request, "its artifact is gone (retention keeps the newest releases only)")
        data_dir = Path(request.data_dir) if request.data_dir else self.home / "data" / request.env
        if not data_dir.exists():  # made the environment user's, as a rollout makes it; an existing one is left as is
            try:
                prepare_data(data_dir, run_as)
            except OSError as exc:
                raise RailguardError(error(
                    "exec.data_dir", "The environment's data folder could not be prepared", str(exc),
                    "Point the environment's data_dir at a new or empty folder (or remove it for the default).",
                    address=f"{request.env}/service.{request.service}")) from exc
        # Its databases' URLs too, as a replica of it would get them (a failed first release has no replica).
        environ = replica_env(cfg, env=request.env, service=request.service, release=request.release, index=None,
                              port=None, data_dir=data_dir, artifact=found, home=self.home,
                              secrets={**self.secret_values(request.env, pinned(cfg)),
                                       **self._database_env(request.env, cfg, data_dir)})
        return found.src, environ, found.readonly


def _command_of(change: Change) -> tuple[list[str], int]:
    """The argv and release a ``command`` change carries in its diff (covered by the plan's hash)."""
    found = {d.path: d.after for d in change.diff}
    argv, release = found.get("command"), found.get("release")
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv) and isinstance(release, int)):
        raise ValueError(f"{change.address}: a command change without its command and release")
    return [str(a) for a in argv], release


def _from_running(rs: ReplicaSet) -> tuple[Path, dict[str, str], tuple[str, ...]]:
    spec = rs.replicas[0].spec
    environ = {k: v for k, v in spec.env.items() if k != "RAILGUARD_REPLICA"}
    port_env = rs.config.get("port_env", "PORT")
    if spec.port is not None and environ.get(port_env) == str(spec.port):
        del environ[port_env]  # the replica's port is its own: a command that binds it would collide
    return spec.cwd, environ, tuple(spec.readonly)


def _no_artifact(request: CommandRequest, why: str) -> RailguardError:
    return RailguardError(error(
        "exec.no_release", f"Release {request.release} of {request.service} cannot run commands",
        f"Release {request.release} in '{request.env}': {why}.",
        "Run it against the live release (leave out --release), or deploy again.",
        address=f"{request.env}/service.{request.service}"))

