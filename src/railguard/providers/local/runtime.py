"""What the local runtime has running, persisted so a restarted daemon can re-adopt it.

One JSON file (``<state>/runtime.json``) lists, per environment, the replica sets of
each service (role ``pending`` while a rollout proves them, ``live`` once routed,
``warm`` while kept for an instant rollback) with every replica's spawn spec and
process record (pid + start time), and the edge config applied for the environment.
It is written atomically (temp file + rename) at each transition, so after a crash
it describes either the state before a step or the state after it, never half of one.
Owned by :class:`railguard.providers.local.provider.LocalProvider`.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from railguard.providers.local.processes import ReplicaRecord, ReplicaSpec

PENDING, LIVE, WARM = "pending", "live", "warm"
CANARY = "canary"  # routed beside the live set, for its `weight` percent of the requests (providers/local/canary.py)


def spec_to_dict(spec: ReplicaSpec) -> dict[str, Any]:
    data = asdict(spec)
    data["cwd"], data["log_path"] = str(spec.cwd), str(spec.log_path)
    data["readonly"] = list(spec.readonly)
    return data


def spec_from_dict(data: dict[str, Any]) -> ReplicaSpec:
    return ReplicaSpec(name=data["name"], argv=list(data["argv"]), cwd=Path(data["cwd"]), env=dict(data["env"]),
                       port=data["port"], log_path=Path(data["log_path"]), stop_timeout=data["stop_timeout"],
                       readonly=tuple(data.get("readonly") or ()), user=data.get("user"))


@dataclass
class Replica:
    spec: ReplicaSpec
    record: ReplicaRecord
    secret_names: list[str] = field(default_factory=list)  # their values are never written to disk
    secret_versions: dict[str, int] = field(default_factory=dict)  # the versions its release pinned
    # Whether the edge may send it traffic: False from the moment its process ended (its port may be anyone's
    # now) until its restart, on a fresh port, passed the readiness gate with the port proven its own.
    routed: bool = True

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.spec.port}"

    def to_dict(self) -> dict[str, Any]:
        spec = spec_to_dict(self.spec)
        spec["env"] = {k: v for k, v in spec["env"].items() if k not in self.secret_names}
        return {"spec": spec, "record": self.record.to_dict(), "secret_names": self.secret_names,
                "secret_versions": self.secret_versions, "routed": self.routed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Replica:
        return cls(spec_from_dict(data["spec"]), ReplicaRecord.from_dict(data["record"]),
                   list(data.get("secret_names", [])), dict(data.get("secret_versions", {})),
                   bool(data.get("routed", True)))


@dataclass
class ReplicaSet:
    service: str
    release: int
    fingerprint: str
    config: dict[str, Any]
    depends_on: list[str]
    artifact: str
    role: str
    replicas: list[Replica] = field(default_factory=list)
    warm_until: float | None = None
    weight: int | None = None  # a canary set's share of the requests, percent
    operation: str | None = None  # the operation that started the canary (its journal records each step)

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "replicas"}
        data["replicas"] = [r.to_dict() for r in self.replicas]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReplicaSet:
        fields = {k: v for k, v in data.items() if k != "replicas"}
        return cls(**fields, replicas=[Replica.from_dict(r) for r in data["replicas"]])


@dataclass
class EnvRuntime:
    sets: list[ReplicaSet] = field(default_factory=list)
    edge: dict[str, Any] | None = None  # {"fingerprint", "config", "depends_on"}

    def live(self, service: str) -> ReplicaSet | None:
        return next((s for s in self.sets if s.service == service and s.role == LIVE), None)

    def of(self, service: str, role: str | None = None) -> list[ReplicaSet]:
        return [s for s in self.sets if s.service == service and (role is None or s.role == role)]


class RuntimeState:
    """The runtime file, loaded once and saved after every change. Guarded by ``lock``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.RLock()
        self.envs: dict[str, EnvRuntime] = {}
        if path.exists():
            raw = json.loads(path.read_text())
            for name, env in raw.get("envs", {}).items():
                self.envs[name] = EnvRuntime(sets=[ReplicaSet.from_dict(s) for s in env["sets"]], edge=env["edge"])

    def env(self, name: str) -> EnvRuntime:
        return self.envs.setdefault(name, EnvRuntime())

    def save(self) -> None:
        with self.lock:
            body = {"envs": {n: {"sets": [s.to_dict() for s in e.sets], "edge": e.edge} for n, e in self.envs.items()}}
            tmp = self.path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(body, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
