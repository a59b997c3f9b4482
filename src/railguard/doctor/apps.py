"""Running one service of the app in scratch, the way the local runtime would, with a handle on it.

:func:`prepare` resolves a service's scratch form: its artifact (copied or built in scratch) and its
variables rewritten away from every real environment (:mod:`railguard.doctor.isolation`); a
variable it cannot make safe ends the check as ``skipped``. :func:`run_release` runs the release
command with a deadline (its whole process group is killed on timeout or interruption), and
:func:`launch` starts one replica on a scratch port with exactly the environment a replica gets
(through the runtime's scratch facade, :class:`railguard.providers.base.ScratchRuntime`). Used by the
release, health, shutdown and port checks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from railguard.doctor import pgscratch
from railguard.doctor.context import STOP_S, CheckStop, Context, seconds
from railguard.doctor.deployment import Deployment, failure_evidence, protected, real_secrets, scratch_secrets
from railguard.doctor.isolation import rewrite
from railguard.doctor.report import Finding, Status
from railguard.model.resources import make_resource
from railguard.providers.base import BuildFailed, BuiltArtifact, CheckResult, GateResult, ScratchProcess, StartFailed

POLL_S = 0.1


@dataclass
class Prepared:
    name: str
    config: dict[str, Any]
    artifact: BuiltArtifact
    notes: list[str] = field(default_factory=list)

    def argv(self, key: str = "run") -> str:
        return " ".join(self.config[key] or [])


def prepare(ctx: Context, name: str, data_dir: Path, scratch_edge: int | None = None,
            config: dict[str, Any] | None = None, previous: int | None = None,
            trusted: frozenset[str] = frozenset(), serve: bool = False) -> Prepared:
    """The service ready to run in scratch, or CheckStop (unsafe variable: skipped; build failed: fail).

    ``config`` and ``previous`` (a release number) run an earlier release's frozen config and artifact,
    which is copied from the real state folder, never rebuilt. ``serve``: the service is about to serve,
    so its ``depends_on`` services are started first behind a scratch edge (see :func:`backdrop`)."""
    cfg = dict(config or ctx.configs[name])
    if serve and scratch_edge is None:
        scratch_edge = backdrop(ctx, name)
    fixed = rewrite(dict(cfg["env"]), ctx.data_dirs(), data_dir, ctx.edge_ports(), scratch_edge,
                    ctx.scratch.root, trusted)
    if fixed.unsafe:
        raise CheckStop(Finding(
            status=Status.skipped, subject=name,
            summary=f"not run: {'; '.join(fixed.unsafe.values())}",
            evidence=["A scratch run never touches a real environment's data, so nothing of this service was run."],
            remediation=f"Give environment '{ctx.env}' a database the doctor may copy (a SQLite file under its "
                        "data_dir), or run these checks against a disposable environment's spec."))
    cfg["env"] = fixed.values
    if previous is not None:
        old = ctx.scratch.copy_artifact(ctx.real_home, cfg["source"] or "", cfg["build"])
        if old is None:
            raise CheckStop(Finding(
                status=Status.skipped, subject=name, summary=f"the artifact of release {previous} is gone",
                evidence=[f"no built artifact for source {str(cfg['source'])[:19]} in {ctx.real_home / 'artifacts'}"],
                remediation="Nothing to fix in the app: the previous release cannot be run again from here."))
        return Prepared(name, cfg, old, list(fixed.notes))
    try:
        artifact = ctx.scratch.artifact(ctx.source_root, cfg["source"] or "", cfg["build"], fixed.values,
                                        ctx.real_home)
    except BuildFailed as exc:
        raise CheckStop(Finding(
            status=Status.fail, subject=name, summary=f"the build failed: {exc}",
            evidence=[f"build: {' '.join(cfg['build'] or [])}", *exc.log_tail[-10:]],
            remediation="Fix the build command; a release that does not build cannot ship.")) from exc
    return Prepared(name, cfg, artifact, list(fixed.notes))


def _needs(ctx: Context, name: str) -> list[str]:
    """``depends_on`` of a service, transitively."""
    deps = {r.name: [d.rsplit(".", 1)[-1] for d in r.depends_on] for r in ctx.desired if r.kind == "service"}
    seen: list[str] = []
    todo = list(deps.get(name, []))
    while todo:
        dep = todo.pop()
        if dep not in seen and dep != name:
            seen.append(dep)
            todo += deps.get(dep, [])
    return sorted(seen)


def backdrop(ctx: Context, name: str) -> int | None:
    """The scratch edge port behind which the service's ``depends_on`` run (started once per doctor run).

    A service reaches the services it depends on through the environment's edge; in scratch that is a
    scratch deployment of just those services, and the service's variables naming the real edge are
    rewritten to this one. None when the service depends on nothing."""
    needs = _needs(ctx, name)
    key = f"backdrop:{name}"
    if not needs:
        return None
    if isinstance(ctx.cache.get(key), int):
        return int(ctx.cache[key])
    data, _ = ctx.data_copy()
    deployment = Deployment(ctx, data, f"backdrop-{name}")
    wanted = [r for r in ctx.desired if r.kind == "service" and r.name in needs]
    for r in ctx.desired:
        if r.kind == "edge":
            routes = [route for route in r.config["routes"] if route["service"] in needs]
            deps = [d for d in r.depends_on if d.rsplit(".", 1)[-1] in needs]
            wanted.append(make_resource(r.env, "edge", r.name, {**r.config, "routes": routes}, deps))
    record, problems = deployment.apply(wanted)
    if record["status"] != "succeeded":
        raise CheckStop(Finding(
            status=Status.fail, subject=name,
            summary=f"the services it depends on ({', '.join(needs)}) did not start in scratch",
            evidence=failure_evidence(problems), remediation="Fix those services first (see the evidence)."))
    ctx.cache[key] = deployment.port
    return deployment.port


def environ(ctx: Context, prepared: Prepared, data_dir: Path, port: int | None) -> dict[str, str]:
    """Exactly what a replica (or, without a port, the release command) sees, the environment's declared
    secrets included (read from the real store, held in memory only); marked as this scratch's."""
    values = ctx.scratch.runtime.environ(prepared.config, env=ctx.env, service=prepared.name, port=port,
                                         data_dir=data_dir, artifact=prepared.artifact, home=ctx.scratch.home)
    secrets = ctx.cache.get(f"secrets:{prepared.name}")
    if protected(ctx, ctx.env):  # placeholders, never cached: each check that uses them says so
        secrets = scratch_secrets(ctx, ctx.env, list(prepared.config.get("secrets") or []))
    elif not isinstance(secrets, dict):
        secrets = real_secrets(ctx.ws.home, ctx.env, list(prepared.config.get("secrets") or []))
        ctx.cache[f"secrets:{prepared.name}"] = secrets
    # Railguard's own variables and the port win, as in a real replica (replica_env puts secrets below them).
    reserved = {"PATH", "HOME", "LANG", "VIRTUAL_ENV", prepared.config["port_env"]}
    values.update({k: v for k, v in secrets.items() if k not in reserved and not k.startswith("RAILGUARD_")})
    # The databases it uses, as the runtime injects them: scratch ones on this data folder, never the real ones.
    values.update(pgscratch.environ(ctx, prepared.config, data_dir))
    return values


@dataclass(frozen=True)
class Ran:
    argv: list[str]
    code: int | None  # None: timed out (killed)
    seconds: float
    log: list[str]

    @property
    def ok(self) -> bool:
        return self.code == 0

    def describe(self) -> str:
        what = f"exit {self.code}" if self.code is not None else "timed out and was killed"
        return f"`{' '.join(self.argv)}`: {what} in {self.seconds:.2f} s"


def run_release(ctx: Context, prepared: Prepared, data_dir: Path, label: str) -> Ran:
    """Run the release command once on ``data_dir``, bounded by start_timeout (as a rollout does)."""
    argv = list(prepared.config["release"])
    log_path = ctx.scratch.home / "logs" / f"{prepared.name}.{label}.release.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    ctx.scratch.hand_over(data_dir)
    started = time.monotonic()
    with log_path.open("ab") as out:
        try:
            proc = subprocess.Popen(argv, cwd=prepared.artifact.src, env=environ(ctx, prepared, data_dir, None),
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, **ctx.scratch.runtime.popen_user())
        except OSError as exc:
            return Ran(argv, 127, 0.0, [f"cannot run {argv[0]!r}: {exc.strerror or exc}"])
        code: int | None = None
        try:
            code = proc.wait(timeout=seconds(prepared.config["start_timeout_ms"]))
        except subprocess.TimeoutExpired:
            code = None
        finally:
            if proc.poll() is None or code is None:
                _kill_group(proc)
    return Ran(argv, code, time.monotonic() - started, ctx.scratch.runtime.tail(log_path, 15))


def release_or_stop(ctx: Context, prepared: Prepared, data_dir: Path, label: str) -> None:
    """Run the release command (when there is one) before starting the app; when it fails the app cannot
    be judged: the check ends as skipped, pointing at migrations-forward, which reports the failure."""
    if not prepared.config["release"]:
        return
    ran = run_release(ctx, prepared, data_dir, label)
    if not ran.ok:
        raise CheckStop(Finding(
            status=Status.skipped, subject=prepared.name,
            summary="not run: the release command failed in scratch (see migrations-forward)",
            evidence=[ran.describe(), *(f"log: {line}" for line in ran.log[-5:])]))


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


@dataclass
class Running:
    process: ScratchProcess
    config: dict[str, Any]
    notes: list[str]
    ctx: Context

    @property
    def port(self) -> int | None:
        return self.process.port

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def argv(self) -> list[str]:
        return self.process.argv

    def alive(self) -> bool:
        return self.process.alive()

    def check(self) -> CheckResult:
        return self.process.check()

    def log(self, lines: int = 10) -> list[str]:
        return self.process.log(lines)

    def stop(self, timeout: float = 5.0) -> str:
        return self.process.stop(timeout)


def launch(ctx: Context, prepared: Prepared, data_dir: Path, label: str) -> Running:
    """Start one replica in scratch (its own session, scratch port, replica environment). Raises CheckStop."""
    port, notes = ctx.scratch.port() if prepared.config["listen"] else (None, [])
    cfg = prepared.config
    ctx.scratch.hand_over(data_dir)
    try:
        process = ctx.scratch.runtime.start(
            f"doctor.{prepared.name}.{label}", cfg, environ=environ(ctx, prepared, data_dir, port),
            artifact=prepared.artifact, port=port, log_path=ctx.scratch.home / "logs" / f"{prepared.name}.{label}.log",
            stop_timeout=seconds(cfg["stop_timeout_ms"]))
    except StartFailed as exc:
        raise CheckStop(Finding(status=Status.fail, subject=prepared.name, summary=f"could not start: {exc}",
                                evidence=[f"run: {prepared.argv()}"],
                                remediation="Fix `run` in the spec (argv, no shell).")) from exc
    running = Running(process, cfg, notes, ctx)
    ctx.scratch.closers.append(lambda: None if running.stop(STOP_S) else None)
    return running


def wait_ready(running: Running, threshold: int | None = None) -> GateResult:
    """The readiness gate, as a rollout holds it: ``healthy_threshold`` passing checks within start_timeout."""
    health = running.config["health"]
    need = threshold or (health["healthy_threshold"] if health else 1)
    deadline = time.monotonic() + seconds(running.config["start_timeout_ms"])
    return running.ctx.scratch.runtime.wait_ready(running.process, interval=POLL_S, healthy_threshold=need,
                                                  deadline=deadline)


def ready_or_stop(running: Running, name: str, what: str) -> GateResult:
    """Wait for the gate; when it does not pass, end the check with a failure that shows why."""
    gate = wait_ready(running)
    if not gate.passed:
        raise CheckStop(Finding(
            status=Status.fail, subject=name,
            summary=f"never became healthy {what}: {gate.reason}",
            evidence=[f"run: {' '.join(running.argv)} on port {running.port}",
                      *(f"log: {line}" for line in running.log())],
            remediation="Make the app start and pass its health check within start_timeout "
                        "(see `railguard logs` for a real environment)."))
    return gate
