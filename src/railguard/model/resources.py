"""Resources: the addressable things a spec asks for in one environment.

A resource has a stable address (``staging/service.web``, ``staging/edge``), a
normalized config (durations in milliseconds, lists sorted where order carries no
meaning) and the fingerprint of that config. The planner compares fingerprints of
desired and observed resources; equal fingerprints mean nothing to do. Observed
resources are what a provider reports as live. Pure data: built from a parsed spec
by :func:`desired_resources`, no I/O.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from railguard.model.canonical import canonical_json, digest
from railguard.model.durations import parse_ms
from railguard.model.spec import Environment, Service, Spec

if TYPE_CHECKING:
    from railguard.model.api import Health

ResourceKind = Literal["service", "edge", "environment", "database"]


def service_address(env: str, name: str) -> str:
    return f"{env}/service.{name}"


def edge_address(env: str) -> str:
    return f"{env}/edge"


def database_address(env: str, name: str) -> str:
    return f"{env}/database.{name}"


def environment_address(env: str) -> str:
    return f"{env}/environment"


class Resource(BaseModel):
    """One desired resource."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    address: str
    env: str
    kind: ResourceKind
    name: str
    config: dict[str, Any]
    depends_on: list[str] = Field(default_factory=list, description="Addresses this resource needs first.")
    fingerprint: str


class LiveStatus(StrEnum):
    """Closed set of states a provider may report, ordered from best to worst."""

    running = "running"
    progressing = "progressing"
    degraded = "degraded"
    stopped = "stopped"
    missing = "missing"

    @property
    def health(self) -> Health:
        """The same state in the one ordered vocabulary."""
        from railguard.model.api import Health  # model.api builds on this module: import at call time

        return Health(_LIVE_HEALTH[self])


_LIVE_HEALTH = {LiveStatus.running: "healthy", LiveStatus.progressing: "progressing", LiveStatus.degraded: "degraded",
                LiveStatus.stopped: "missing", LiveStatus.missing: "missing"}


class ObservedResource(BaseModel):
    """What a provider reports as live for one address."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    address: str
    kind: ResourceKind
    fingerprint: str
    config: dict[str, Any]
    depends_on: list[str] = Field(default_factory=list)
    status: LiveStatus = LiveStatus.running
    release: int | None = None
    message: str = ""


def _normalize_service(service: Service, source_digest: str | None, data_dir: str | None,
                       rollback_window_ms: int) -> dict[str, Any]:
    health = None
    if service.health is not None:
        h = service.health
        health = {
            "mode": "http" if h.http is not None else ("tcp" if h.tcp else "exec"),
            "http": h.http, "exec": h.exec,
            "interval_ms": parse_ms(h.interval), "timeout_ms": parse_ms(h.timeout),
            "start_period_ms": parse_ms(h.start_period),
            "healthy_threshold": h.healthy_threshold, "unhealthy_threshold": h.unhealthy_threshold,
        }
    return {
        "build": service.build,
        "run": service.run,
        "release": service.release,
        "replicas": service.replicas,
        "listen": service.listen,
        "port_env": service.port_env,
        "health": health,
        "env": dict(sorted(service.env.items())),
        "secrets": sorted(set(service.secrets)),
        "routes": sorted(({"host": r.host, "path": r.path} for r in service.routes),
                         key=lambda r: (r["host"] or "", r["path"])),
        "start_timeout_ms": parse_ms(service.start_timeout),
        "stop_timeout_ms": parse_ms(service.stop_timeout),
        "drain_timeout_ms": parse_ms(service.drain_timeout),
        "source": source_digest,
        "data_dir": data_dir,
        "rollback_window_ms": rollback_window_ms,
    } | _static_config(service) | _canary_config(service)


def _canary_config(service: Service) -> dict[str, Any]:
    # Only for a canary service, like static: the default strategy changes no existing fingerprint.
    if service.strategy != "canary":
        return {}
    return {"canary": {"steps": list(service.steps),
                       "pause_ms": None if service.pause == "manual" else parse_ms(service.pause)}}


def _static_config(service: Service) -> dict[str, Any]:
    # Only when declared: a key every service carried would change every fingerprint (a replace of everything).
    if not service.static:
        return {}
    return {"static": [{"path": s.path, "folder": s.folder, "cache_s": parse_ms(s.cache) // 1000}
                       for s in sorted(service.static, key=lambda s: s.path)]}


def kubernetes_service_config(service: Service, environment: Environment) -> dict[str, Any]:
    """What a service's manifests depend on beyond the common config: the cluster, namespace and image."""
    assert environment.kubernetes is not None  # checked when the spec was read
    extra: dict[str, Any] = {"kubernetes": environment.kubernetes.as_config()}
    if service.image is not None:
        extra["image"] = service.image
    if service.resources is not None:
        extra["resources"] = service.resources.model_dump(mode="json", exclude_none=True)
    return extra


def make_resource(env: str, kind: ResourceKind, name: str, config: dict[str, Any], depends_on: list[str]) -> Resource:
    address = {"service": service_address(env, name), "edge": edge_address(env),
               "environment": environment_address(env), "database": database_address(env, name)}[kind]
    text = _plain_canonical(config)
    fingerprint = digest(config) if text is None else "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
    made = Resource(address=address, env=env, kind=kind, name=name, config=config, depends_on=sorted(depends_on),
                    fingerprint=fingerprint)
    if text is not None:
        # Kept beside the fields (not a field: never dumped, compared or validated) for the plan's content hash,
        # which would otherwise encode every config a second time (canonical_resource). Tied to this very
        # config object: a copy with another config (model_copy) does not use it.
        made.__dict__[_CANONICAL] = (made.config, text)
    return made


_CANONICAL = "_canonical_config"
# The fields canonical_resource writes, in canonical (sorted) order. Checked at import: a field added to Resource
# and missing here would be left out of every plan hash.
_SPLICED = ("address", "config", "depends_on", "env", "fingerprint", "kind", "name")
if tuple(sorted(Resource.model_fields)) != _SPLICED:
    raise RuntimeError("Resource's fields changed: update resources._SPLICED and canonical_resource")


def _not_plain(value: object) -> Any:
    raise TypeError("not a JSON value")


def _plain_canonical(config: dict[str, Any]) -> str | None:
    """``canonical_json(config)`` when the config is plain JSON (str keys; str, finite numbers, bools, None, lists
    and dicts), else None. Only then is it also the canonical text of the config as ``model_dump(mode="json")``
    gives it (which writes a datetime, a non-finite float or a non-str key otherwise than ``default=str`` does)."""
    try:
        return _PLAIN.encode(config)
    except (TypeError, ValueError, RecursionError):  # RecursionError: a container inside itself (see below)
        return None


# canonical_json's encoder, refusing what is not plain JSON instead of writing it with str() (built once). Without
# the circular check (~10% of encoding every config of a plan: it tracks each container's id): a config that
# contains itself, which no spec or provider makes, ends in RecursionError, and canonical_json's check then says so.
_PLAIN = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                          check_circular=False, default=_not_plain)


def canonical_resource(resource: Resource) -> str:
    """``canonical_json(resource.model_dump(mode="json"))``: what a plan's hash covers for each desired resource.

    A resource made by :func:`make_resource` reuses its config's canonical text from the fingerprint instead of
    dumping and encoding the config again (a 10,000-service plan: ~10k configs). The text is spliced field by
    field in sorted key order, exactly as ``canonical_json`` writes the dumped dict (tests/test_plan_format.py).
    """
    config = kept_config_text(resource)
    if config is None or not _str_fields(resource):
        return canonical_json(resource.model_dump(mode="json"))
    text = encode_basestring  # what canonical_json writes for a str, without its per-call set-up
    depends_on = ",".join(map(text, resource.depends_on))
    return (f'{{"address":{text(resource.address)},"config":{config},"depends_on":[{depends_on}],'
            f'"env":{text(resource.env)},"fingerprint":{text(resource.fingerprint)},"kind":{text(resource.kind)},'
            f'"name":{text(resource.name)}}}')


# The fields canonical_observed writes, in canonical (sorted) order; checked at import like _SPLICED.
_OBSERVED = ("address", "config", "depends_on", "fingerprint", "kind", "message", "release", "status")
if tuple(sorted(ObservedResource.model_fields)) != _OBSERVED:
    raise RuntimeError("ObservedResource's fields changed: update resources._OBSERVED and canonical_observed")


def canonical_observed(resource: ObservedResource) -> str:
    """``canonical_json(resource.model_dump(mode="json"))``: the text the store keeps for a live resource.

    Every observation of an environment (each plan of 10,000 services) writes one per live resource; dumping
    each to a dict first took as long as encoding it. For plain fields (str, an int or None release, a plain
    JSON config) the text is spliced field by field in sorted key order, exactly as ``canonical_json`` writes
    the dumped dict (tests/test_store.py); anything else takes the dump."""
    return observed_text(resource)[0]


def observed_text(resource: ObservedResource, like: Resource | None = None) -> tuple[str, bool]:
    """:func:`canonical_observed`'s text, and whether it was spliced from plain fields: then the resource read
    back from that text equals the resource (JSON data has no tuples: the provider contract, tests/providers),
    so a caller holding it need not parse the text again (a plan's inventory, engine/observe.py).

    ``like``: the desired resource at the same address. A live resource deployed from it (the same fingerprint)
    and reporting the same config reuses the config's text kept from its fingerprint instead of encoding it
    again: most services of a large plan are unchanged. Equal fingerprints mean the applied config had that very
    text, and a provider reports the config it applied as JSON data (a bool where the spec had 1 would compare
    equal, and is no config any provider reports for that fingerprint)."""
    release, status = resource.release, resource.status
    config = None
    if like is not None and resource.fingerprint == like.fingerprint and resource.config == like.config:
        config = kept_config_text(like)
    if config is None:
        config = _plain_canonical(resource.config)
    if (config is None or not (release is None or type(release) is int) or not isinstance(status, LiveStatus)
            or not all(type(v) is str for v in (resource.address, resource.fingerprint, resource.kind,
                                                resource.message, *resource.depends_on))):
        return canonical_json(resource.model_dump(mode="json")), False
    text = encode_basestring
    depends_on = ",".join(map(text, resource.depends_on))
    return (f'{{"address":{text(resource.address)},"config":{config},"depends_on":[{depends_on}],'
            f'"fingerprint":{text(resource.fingerprint)},"kind":{text(resource.kind)},'
            f'"message":{text(resource.message)},"release":{"null" if release is None else release},'
            f'"status":{text(status.value)}}}'), True


def kept_config_text(resource: Resource) -> str | None:
    """The canonical text of a desired resource's config as :func:`make_resource` kept it (None: not kept)."""
    cached = resource.__dict__.get(_CANONICAL)
    return cached[1] if cached is not None and cached[0] is resource.config else None


def _str_fields(resource: Resource) -> bool:
    return all(type(v) is str for v in (resource.address, resource.env, resource.kind, resource.name,
                                        resource.fingerprint, *resource.depends_on))


def environment_config(spec: Spec, env: str) -> dict[str, Any]:
    """The environment's own settings, planned like a resource so protection lives in state."""
    environment = spec.environments[env]
    extra = {} if environment.max_scale_factor is None else {"max_scale_factor": environment.max_scale_factor}
    promote_from = environment.promote_from or ("staging" if "staging" in spec.environments and env != "staging"
                                                else None)
    return {
        "protected": environment.protected,
        "promote_from": promote_from,
        "soak_ms": parse_ms(environment.soak),
        "max_disruptive_changes": environment.max_disruptive_changes,
        "freezes": [{"start": f.start.isoformat(), "end": f.end.isoformat(), "reason": f.reason}
                    for f in environment.freezes],
        "policies": [rule.model_dump(mode="json") for rule in spec.policies
                     if rule.environments is None or env in rule.environments],
        **extra,  # only when set, so specs without it keep their fingerprints
        # Only when some are: an environment without databases keeps the fingerprint it always had.
        **({"delete_databases": deleted} if (deleted := sorted(n for n, d in spec.databases.items() if d.delete))
           else {}),
    }


def desired_resources(spec: Spec, env: str, source_digest: str | None = None,
                      secret_versions: dict[str, int] | None = None,
                      source_overrides: dict[str, str] | None = None) -> list[Resource]:
    """Every resource the spec asks for in ``env`` (services, databases, the edge, the environment), in name order.

    ``source_digest`` identifies the app source the services would run; it is part of
    each service's config so a code change is a change to plan. ``secret_versions`` (name ->
    version) makes a new secret value a change too. ``source_overrides`` pins services to
    an existing artifact (promotion).
    """
    environment = spec.environments[env]
    resources: list[Resource] = []
    edge_routes: list[dict[str, Any]] = []
    static: list[dict[str, Any]] = []
    for name in sorted(spec.services):
        service = spec.resolved_service(env, name)
        source = (source_overrides or {}).get(name, source_digest)
        config = _normalize_service(service, source, environment.data_dir, parse_ms(environment.rollback_window))
        config["secret_versions"] = {s: (secret_versions or {}).get(s, 0) for s in config["secrets"]}
        deps = [service_address(env, d) for d in service.depends_on]
        if environment.target == "kubernetes":  # only there: local services keep the fingerprints they always had
            config |= kubernetes_service_config(service, environment)
        if environment.user is not None:  # only when named: the OS user is part of what a reviewer approves
            config["user"] = environment.user
        if service.databases:  # only then: a service without databases keeps the fingerprint it always had
            config["databases"] = {d: spec.databases[d].env_var for d in sorted(set(service.databases))}
            deps += [database_address(env, d) for d in config["databases"]]
        resources.append(make_resource(env, "service", name, config, deps))
        edge_routes += [{**route, "service": name} for route in config["routes"]]
        hosts = sorted({r["host"] or "" for r in config["routes"]})
        static += [{"host": host or None, "path": s["path"], "service": name, "folder": s["folder"],
                    "cache_s": s["cache_s"]} for s in config.get("static", []) for host in hosts]
    edge_config: dict[str, Any] = {
        "target": environment.target,
        "port": environment.edge_port,
        "bind": str(environment.edge_bind),
        "routes": sorted(edge_routes, key=lambda r: (r["host"] or "", r["path"], r["service"])),
    }
    if environment.kubernetes is not None and environment.target == "kubernetes":
        edge_config["kubernetes"] = environment.kubernetes.as_config()
    if environment.https_port is not None:  # only when declared, like static: old edges keep their fingerprint
        edge_config["https_port"] = environment.https_port
        edge_config["certificates"] = environment.certificates
    if static:  # only when declared, like a service's: an unchanged edge keeps its fingerprint
        edge_config["static"] = sorted(static, key=lambda r: (r["host"] or "", r["path"], r["service"]))
    for name in sorted(spec.databases):
        database = spec.databases[name]
        if not database.delete:
            resources.append(make_resource(env, "database", name, {"engine": database.engine}, []))
    routed = sorted({service_address(env, r["service"]) for r in edge_routes})
    resources.append(make_resource(env, "edge", "edge", edge_config, routed))
    resources.append(make_resource(env, "environment", "environment", environment_config(spec, env), []))
    return resources


def desired_digest(resources: list[Resource]) -> str:
    """Digest of a set of desired resources: what a plan was computed for.

    ``digest`` of ``[address, fingerprint, depends_on]`` per resource in address order, written triple by triple
    (the canonical text ``canonical_json`` gives them, for a plan's 10,000 resources); a field that is not a str
    (``encode_basestring`` refuses it) takes ``digest`` itself."""
    ordered = sorted(resources, key=lambda r: r.address)
    text = encode_basestring
    try:
        items = [f'[{text(r.address)},{text(r.fingerprint)},[{",".join(map(text, r.depends_on))}]]' for r in ordered]
    except TypeError:
        return digest([(r.address, r.fingerprint, r.depends_on) for r in ordered])
    return "sha256:" + hashlib.sha256(f"[{','.join(items)}]".encode()).hexdigest()
