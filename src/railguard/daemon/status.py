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

from railguard.engine.facts import Facts
from railguard.engine.observe import observed as observe_live
from railguard.engine.workspace import Workspace
from railguard.model.api import (
    DatabaseStatus,
    Drift,
    EnvironmentStatus,
    InFlight,
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
    services: list[dict[str, Any]] = []
    for unit in units.services:
        # The service's status is the provider's verdict on it: healthy, progressing, degraded or missing (given
        # with the unit when the runtime has it at hand: one health call per service was a fifth of a status).
        health = unit.health or provider.health(HealthRequest(env=env, address=unit.address)).health
        # The provider's replica, warm and ReplicaSet units go in as they are: the one validation of the whole
        # answer below reads them by attribute into the status records (dumping and validating each unit on its
        # own was most of a status of 200 services).
        services.append(dict(
            name=unit.name, address=unit.address, release=unit.release, status=health, replicas=unit.replicas,
            warm=unit.warm, canary=daemon.observer.canaries.view(env, unit), replica_sets=unit.replica_sets,
            **daemon.observer.service_view(env, unit.name, unit.release)))
    # Only the operation in flight, without loading journals (a 200-service deploy journals thousands of steps).
    in_flight: InFlight | None = store.in_flight(env)
    return EnvironmentStatus.model_validate(dict(
        env=env,
        serial=store.serial(env),
        services=services,
        edge=units.edge,
        operation=in_flight,
        drift=_drift(store, env, observed, spec_path, daemon.home),
        live_sets=units.live_sets,
        isolation=units.isolation,
        user=units.user,
        databases=[DatabaseStatus(name=o.address.split("/database.", 1)[1], address=o.address,
                                  engine=str(o.config.get("engine", "sqlite")), status=o.status.health,
                                  message=o.message) for o in observed if o.kind == "database"],
        **_security(daemon, env),
    ), from_attributes=True)


def _security(daemon: Daemon, env: str) -> dict[str, int | str | None]:
    """What this environment's code (or a caller naming it) tried against the control plane, as recorded."""
    count, last = daemon.security_summary(env)
    return {"security_refused": count, "security_last": last}


_SPECS: dict[str, tuple[tuple[int, int], Spec]] = {}  # parsed specs by path, while the file is unchanged
# Status is polled (agents, the console), and drift is most of its cost with many services: what it derives is
# kept, keyed by everything it is derived from, so an unchanged workspace is not worked out again.
_APPLIED: dict[tuple[str, str, str], dict[str, str]] = {}  # (home, env, applied digest) -> address: fingerprint
_DESIRED: dict[tuple[Any, ...], str] = {}  # (spec path and state, env, secret versions, source digest) -> digest
_KEEP = 64  # entries per cache: a few environments and specs, each replaced as it changes


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _KEEP:
        cache.clear()
    cache[key] = value


def _spec_key(ws: Workspace) -> tuple[int, int] | None:
    try:
        stat = ws.spec_path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


def parsed_spec(ws: Workspace) -> Spec:
    """The valid spec at ``ws``; parsing 200 services takes ~12 ms, and status is polled."""
    key = _spec_key(ws)
    if key is None:
        return ws.load_valid()[0]  # reports spec.not_found
    cached = _SPECS.get(str(ws.spec_path))
    if cached is not None and cached[0] == key:
        return cached[1]
    spec, _ = ws.load_valid()
    _SPECS[str(ws.spec_path)] = (key, spec)
    return spec


def _applied(store: Store, env: str, home: Path) -> tuple[str | None, dict[str, str] | None]:
    """The applied spec's digest and its resources' fingerprints by address. The digest covers every address
    and fingerprint, so the snapshot's body (a large JSON text) is parsed once per applied spec."""
    digest = store.last_spec_digest(env)
    if digest is None:
        return None, None
    key = (str(home), env, digest)
    found = _APPLIED.get(key)
    if found is None:
        snapshot = store.last_spec(env) or []
        found = {str(r["address"]): str(r["fingerprint"]) for r in snapshot}
        _remember(_APPLIED, key, found)
    return digest, found


def _desired_digest(ws: Workspace, spec: Spec, env: str, versions: dict[str, int]) -> str:
    """The digest a plan of ``env`` would be computed for now. The source snapshot is still taken (a listing
    and a ``stat`` per file, hashes cached by file state: an edited file is seen); the desired resources are
    worked out again only when the spec file, the secret versions or the source digest moved."""
    facts = Facts(ws, spec)
    key = (str(ws.spec_path), _spec_key(ws), env, tuple(sorted(versions.items())), facts.source().digest)
    found = _DESIRED.get(key)
    if found is None:
        found = desired_digest(facts.desired(env, versions))
        _remember(_DESIRED, key, found)
    return found


def _drift(store: Store, env: str, observed: list[ObservedResource], spec_path: str | None, home: Path) -> Drift:
    applied_digest, snapshot = _applied(store, env, home)
    details: list[str] = []
    live = {o.address: o for o in observed}
    for address, fingerprint in (snapshot or {}).items():
        found = live.get(address)
        if found is None:
            details.append(f"{address} is in the applied spec but not running")
        elif found.fingerprint != fingerprint:
            details.append(f"{address} runs another config than the applied spec")
        elif found.status.value != "running":
            details.append(f"{address} is {found.status.value}: {found.message}")
    details += [f"{a} runs but is not in the applied spec" for a in live if a not in (snapshot or {})]
    spec_changed = None
    if spec_path:
        try:
            ws = Workspace(Path(spec_path), home)
            spec = parsed_spec(ws)
            if env in spec.environments:
                # With the secret versions, as a plan has them: otherwise any service with secrets looks changed.
                versions = secretstore.versions(store, env)
                spec_changed = _desired_digest(ws, spec, env, versions) != applied_digest
        except RailguardError:
            spec_changed = None
    return Drift(live_differs=bool(details), details=details, spec_changed_since_apply=spec_changed)
