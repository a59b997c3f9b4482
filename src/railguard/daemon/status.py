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
from typing import TYPE_CHECKING, Any

from railguard.engine.observe import observe_into
from railguard.engine.plan import desired_for
from railguard.engine.workspace import Workspace
from railguard.model.diagnostics import RailguardError
from railguard.model.resources import desired_digest
from railguard.model.spec import Spec
from railguard.providers.base import DescribeRequest, HealthRequest
from railguard.state import secretstore

if TYPE_CHECKING:
    from railguard.daemon.service import Daemon


def describe(daemon: Daemon, env: str, spec_path: str | None) -> dict[str, Any]:
    provider, store = daemon.provider, daemon.store()
    observed = observe_into(store, provider, env)
    units = provider.describe(DescribeRequest(env=env))
    services: list[dict[str, Any]] = []
    for unit in units.services:
        # The service's status is the provider's verdict on it: healthy, progressing, degraded or missing.
        health = provider.health(HealthRequest(env=env, address=unit.address))
        services.append({"name": unit.name, "address": unit.address, "release": unit.release,
                         "status": health.health.value,
                         "replicas": [r.model_dump(mode="json") for r in unit.replicas],
                         "warm": [w.model_dump(mode="json") for w in unit.warm]})
    # Only the operation in flight, without loading journals (a 200-service deploy journals thousands of steps).
    in_flight = store.in_flight(env)
    return {
        "env": env,
        "serial": store.serial(env),
        "services": services,
        "edge": units.edge.model_dump(mode="json"),
        "operation": in_flight.model_dump(mode="json") if in_flight else None,
        "drift": _drift(store, env, observed, spec_path, daemon.home),
        "live_sets": units.live_sets,
    }


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


def _drift(store: Any, env: str, observed: list[Any], spec_path: str | None, home: Path) -> dict[str, Any]:
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
    return {"live_differs": bool(details), "details": details, "spec_changed_since_apply": spec_changed}
