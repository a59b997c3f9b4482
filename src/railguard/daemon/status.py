"""``railguard status``: the live state of one environment, as data.

Per service: the live release, each replica (pid, port, health, restarts, uptime),
warm replicas kept for rollback; the edge and its routes; any operation in flight;
and drift: whether what runs differs from the last applied spec (and whether the
spec on disk asks for something else). The live units come from the provider's
``describe`` and each service's status from its ``health`` verb, so nothing here knows
how a runtime keeps them. Called by :class:`railguard.daemon.service.Daemon`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from railguard.engine.observe import observed as observe_live
from railguard.engine.plan import desired_for
from railguard.engine.workspace import Workspace
from railguard.model.api import (
    DatabaseStatus,
    Drift,
    EdgeStatus,
    EnvironmentStatus,
    InFlight,
    ReplicaStatus,
    ServiceStatus,
    WarmRelease,
)
from railguard.model.diagnostics import RailguardError
from railguard.model.resources import ObservedResource, desired_digest
from railguard.model.spec import Spec
from railguard.providers.base import DescribeRequest, HealthRequest
from railguard.state import secretstore
from railguard.state.store import Store

if TYPE_CHECKING:
    from railguard.daemon.service import Daemon


def describe(daemon: Daemon, env: str, spec_path: str | None) -> EnvironmentStatus:
    provider, store = daemon.provider, daemon.store()
    # Read-only: a status never writes the store (plans and applies record what they observe, under the lock).
    observed = observe_live(store, provider, env)
    units = provider.describe(DescribeRequest(env=env))
    services: list[ServiceStatus] = []
    for unit in units.services:
        # The service's status is the provider's verdict on it: healthy, progressing, degraded or missing.
        health = provider.health(HealthRequest(env=env, address=unit.address))
        services.append(ServiceStatus(
            name=unit.name, address=unit.address, release=unit.release, status=health.health,
            replicas=[ReplicaStatus.model_validate(r.model_dump()) for r in unit.replicas],
            warm=[WarmRelease.model_validate(w.model_dump()) for w in unit.warm],
            canary=daemon.observer.canaries.view(env, unit),
            **daemon.observer.service_view(env, unit.name, unit.release)))
    # Only the operation in flight, without loading journals (a 200-service deploy journals thousands of steps).
    in_flight: InFlight | None = store.in_flight(env)
    return EnvironmentStatus(
        env=env,
        serial=store.serial(env),
        services=services,
        edge=EdgeStatus.model_validate(units.edge.model_dump()),
        operation=in_flight,
        drift=_drift(store, env, observed, spec_path, daemon.home),
        live_sets=units.live_sets,
        isolation=units.isolation,
        user=units.user,
        databases=[DatabaseStatus(name=o.address.split("/database.", 1)[1], address=o.address,
                                  engine=str(o.config.get("engine", "sqlite")), status=o.status.health,
                                  message=o.message) for o in observed if o.kind == "database"],
    )


_SPECS: dict[str, tuple[tuple[int, int], Spec]] = {}  # parsed specs by path, while the file is unchanged


def _parsed(ws: Workspace) -> Spec:
    """The valid spec at ``ws``; parsing 200 services takes ~12 ms, and status is polled."""
    try:
        stat = ws.spec_path.stat()
    except OSError:
        return ws.load_valid()[0]  # reports spec.not_found
    key = (stat.st_mtime_ns, stat.st_size)
    cached = _SPECS.get(str(ws.spec_path))
    if cached is not None and cached[0] == key:
        return cached[1]
    spec, _ = ws.load_valid()
    _SPECS[str(ws.spec_path)] = (key, spec)
    return spec


def _drift(store: Store, env: str, observed: list[ObservedResource], spec_path: str | None, home: Path) -> Drift:
    applied_digest = store.last_spec_digest(env)
    snapshot = store.last_spec(env)
    details: list[str] = []
    live = {o.address: o for o in observed}
    for resource in snapshot or []:
        found = live.get(resource["address"])
        if found is None:
            details.append(f"{resource['address']} is in the applied spec but not running")
        elif found.fingerprint != resource["fingerprint"]:
            details.append(f"{resource['address']} runs another config than the applied spec")
        elif found.status.value != "running":
            details.append(f"{resource['address']} is {found.status.value}: {found.message}")
    applied = {r["address"] for r in snapshot or []}
    details += [f"{a} runs but is not in the applied spec" for a in live if a not in applied]
    spec_changed = None
    if spec_path:
        try:
            ws = Workspace(Path(spec_path), home)
            spec = _parsed(ws)
            if env in spec.environments:
                # With the secret versions, as a plan has them: otherwise any service with secrets looks changed.
                versions = secretstore.versions(store, env)
                spec_changed = desired_digest(desired_for(ws, spec, env, versions)) != applied_digest
        except RailguardError:
            spec_changed = None
    return Drift(live_differs=bool(details), details=details, spec_changed_since_apply=spec_changed)
