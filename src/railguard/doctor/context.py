"""What every doctor check gets: the spec, the environment, the real folders (read-only) and the scratch.

Built once per run by the runner. ``configs`` are the services' normalized configs as a deployment of
the working tree would run them (the same :func:`railguard.model.resources.desired_resources` a plan
uses), so the doctor checks exactly what would ship. The real state folder and the environments' data
folders are only read. :class:`CheckStop` lets a helper end a check early with one finding (the
artifact did not build, a variable points at a real database...).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from railguard.doctor import pgscratch
from railguard.doctor.fingerprint import copy_data
from railguard.doctor.fixture import seed
from railguard.doctor.report import Finding
from railguard.doctor.scratch import Scratch
from railguard.engine.workspace import Workspace
from railguard.model.resources import Resource
from railguard.model.spec import Spec

MAX_WAIT_S = 120.0  # no single wait of a check exceeds this, whatever the spec says
STOP_S = 0.5  # scratch processes are stopped fast (SIGKILL after this): graceful-shutdown has its own check


class CheckStop(Exception):  # a control-flow signal carrying the check's finding
    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.summary)
        self.finding = finding


@dataclass
class Context:
    ws: Workspace
    spec: Spec
    env: str
    source_root: Path
    files: list[str]
    source_digest: str
    desired: list[Resource]
    scratch: Scratch
    notes: list[str] = field(default_factory=list)
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def real_home(self) -> Path:
        return self.ws.home

    def data_dir(self, env: str | None = None) -> Path:
        """Where an environment's data lives (resolved as a deployment resolves it)."""
        name = env or self.env
        configured = self.spec.environments[name].data_dir
        return (self.ws.root / configured).resolve() if configured else (self.ws.home / "data" / name).resolve()

    def data_copy(self, name: str = "data") -> tuple[Path, int]:
        """A fresh scratch copy of the environment's data folder, and how many files it holds.

        The real folder is read once, at the first call (see :func:`copy_data`); every copy after that
        comes from that snapshot, so all checks see the same data and the real folder is read once."""
        snapshot = self.cache.get("data-snapshot")
        if not isinstance(snapshot, tuple):
            folder = self.scratch.folder("snapshot")
            copied = copy_data(self.data_dir(), folder)
            # Managed Postgres databases: scratch seeds restored from the environment's newest snapshot.
            copied += pgscratch.seed(self)
            if not copied and self.spec.doctor is not None and self.spec.doctor.fixture is not None:
                # CI: a fresh checkout has only the fixture
                copied = (pgscratch.fixture(self, folder) if pgscratch.postgres_databases(self)
                          else seed(self.spec.doctor, self.ws.root, folder, scratch=self.scratch))
                self.cache["data-origin"] = "fixture"
            snapshot = (folder, copied)
            self.cache["data-snapshot"] = snapshot
        target = self.scratch.folder(name)
        shutil.copytree(snapshot[0], target, symlinks=True, dirs_exist_ok=True)
        pgscratch.mark_copy(self, target)
        return target, int(snapshot[1])

    def data_dirs(self) -> list[Path]:
        return [self.data_dir(e) for e in self.spec.environments]

    def edge_ports(self) -> set[int]:
        return {e.edge_port for e in self.spec.environments.values() if e.edge_port is not None}

    @property
    def configs(self) -> dict[str, dict[str, Any]]:
        return {r.name: r.config for r in self.desired if r.kind == "service"}

    def service_names(self) -> list[str]:
        return sorted(self.configs)


def seconds(ms: int | float) -> float:
    return min(float(ms) / 1000, MAX_WAIT_S)
