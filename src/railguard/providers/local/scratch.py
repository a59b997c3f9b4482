"""The local runtime's scratch facade: one service built and run the way a rollout would, for the doctor.

The doctor (:mod:`railguard.doctor`) knows only :class:`railguard.providers.base.ScratchRuntime`;
this is the local implementation, over the same pieces a rollout uses (artifacts, replica
environment, spawn, health checks, the readiness gate), so what the doctor proves in scratch is
what a deployment would do. Handed out by :func:`railguard.providers.registry.scratch_runtime`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from railguard.providers.base import BuiltArtifact, CheckResult, GateResult, ScratchProcess
from railguard.providers.local import artifacts, buildas, isolation
from railguard.providers.local.health import readiness_gate
from railguard.providers.local.processes import (
    ReplicaSpec,
    SpawnError,
    allocate_port,
    as_user,
    is_alive,
    port_in_use,
    spawn,
    stop,
    tail,
)
from railguard.providers.local.replicas import check, instance_id, not_installed, replica_env
from railguard.providers.local.runtime import Replica


def _local(artifact: BuiltArtifact) -> artifacts.Artifact:
    return artifact if isinstance(artifact, artifacts.Artifact) else artifacts.Artifact(artifact.path, artifact.digest)


@dataclass
class LocalProcess:
    replica: Replica
    config: dict[str, Any]

    @property
    def pid(self) -> int:
        return self.replica.record.pid

    @property
    def port(self) -> int | None:
        return self.replica.spec.port

    @property
    def argv(self) -> list[str]:
        return list(self.replica.record.argv)

    def alive(self) -> bool:
        return is_alive(self.replica.record)

    def check(self) -> CheckResult:
        return check(self.config, self.replica)

    def log(self, lines: int = 10) -> list[str]:
        return tail(self.replica.spec.log_path, lines)

    def stop(self, timeout: float) -> str:
        return stop(self.replica.record, timeout)


class LocalScratch:
    def __init__(self) -> None:
        # Set by isolate(): the app's code in scratch then runs as rg-scratch-<app>, builds as
        # rg-build-scratch-<app> (never the real build user, whose builds a scratch build's cleanup would kill).
        self.run_as: isolation.RunAs | None = None
        self.build_as: str | None = None

    def isolate(self, app: str, root: Path) -> str | None:
        if not isolation.detect(root).isolated:
            return None
        self.run_as = isolation.ensure_user(isolation.scratch_user(app))
        self.build_as = buildas.build_user(f"scratch-{app}", root)
        return self.run_as.name

    def hand_over(self, path: Path) -> None:
        isolation.prepare_data(path, self.run_as, adopt=True)  # the doctor's own scratch copy

    def popen_user(self) -> dict[str, Any]:
        return as_user(self.run_as)

    def instance(self, home: Path) -> str:
        return instance_id(home)

    def free_port(self) -> int:
        return allocate_port()

    def port_in_use(self, port: int) -> bool:
        return port_in_use(port)

    def artifact_key(self, digest: str, build: list[str] | None) -> str:
        return artifacts.artifact_id(digest, build)

    def find_artifact(self, folder: Path, digest: str, build: list[str] | None) -> BuiltArtifact | None:
        return artifacts.find(folder, digest, build)

    def artifact_at(self, path: Path, digest: str) -> BuiltArtifact:
        return artifacts.at(path, digest)

    def build_artifact(self, folder: Path, source_root: Path, digest: str, build: list[str] | None,
                       env: dict[str, str]) -> BuiltArtifact:
        with buildas.session(folder, self.build_as):
            return artifacts.ensure(folder, source_root, digest, build, env)

    def environ(self, config: dict[str, Any], *, env: str, service: str, port: int | None, data_dir: Path,
                artifact: BuiltArtifact, home: Path) -> dict[str, str]:
        return replica_env(config, env=env, service=service, release=0, index=0 if port else None, port=port,
                           data_dir=data_dir, artifact=_local(artifact), home=home)

    def start(self, name: str, config: dict[str, Any], *, environ: dict[str, str], artifact: BuiltArtifact,
              port: int | None, log_path: Path, stop_timeout: float) -> ScratchProcess:
        spec = ReplicaSpec(name=name, argv=list(config["run"]), cwd=artifact.src, env=environ, port=port,
                           log_path=log_path, stop_timeout=stop_timeout,
                           user=self.run_as.name if self.run_as else None)
        if (missing := not_installed(spec.argv, environ)) is not None:
            raise SpawnError(missing)
        return LocalProcess(Replica(spec, spawn(spec)), config)  # SpawnError is a StartFailed

    def wait_ready(self, process: ScratchProcess, *, interval: float, healthy_threshold: int,
                   deadline: float) -> GateResult:
        return readiness_gate(process.check, interval=interval, healthy_threshold=healthy_threshold,
                              deadline=deadline, still_running=process.alive)

    def tail(self, path: Path, lines: int) -> list[str]:
        return tail(path, lines)
