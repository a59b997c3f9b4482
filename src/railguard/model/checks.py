"""Cross-field rules of the spec that a schema cannot express.

Runs after the structure is valid: references to services that do not exist,
dependency cycles, two services claiming the same route, reserved or conflicting
variable names, environments sharing an edge port, health timings that cannot
work. Each rule yields diagnostics; all rules always run so a user sees every
problem at once. Called by :func:`railguard.model.specfile.parse_spec`.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator

from railguard.model.dbchecks import database_rules
from railguard.model.diagnostics import Diagnostic, error, warning
from railguard.model.durations import parse_ms
from railguard.model.graph import find_cycle
from railguard.model.sensitivity import looks_secret
from railguard.model.spec import LOCAL_ONLY, RESERVED_USER_PATTERN, Service, Spec
from railguard.model.verifychecks import verification

RESERVED_VARIABLES = {"PORT", "PATH", "HOME"}
RESERVED_PREFIX = "RAILGUARD_"


def check(spec: Spec) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for rule in (_no_environments, _references, _cycles, _variables, _edge_ports, _routes, _health, _policies,
                 _isolation, _environment_settings, _static, verification, database_rules, _targets,
                 _canary_names):
        found.extend(rule(spec))
    return found


def _no_environments(spec: Spec) -> Iterator[Diagnostic]:
    if not spec.environments:
        yield error(
            "spec.no_environments", "No environment is defined",
            "The spec defines no [environments.<name>] table, so there is nowhere to deploy.",
            "Add one, for example:\n[environments.staging]\nedge_port = 8080\nthen run `railguard validate`.",
            address="environments",
        )


def _references(spec: Spec) -> Iterator[Diagnostic]:
    names = sorted(spec.services)
    for name, service in spec.services.items():
        for i, dep in enumerate(service.depends_on):
            if dep not in spec.services:
                yield _unknown_service(dep, f"services.{name}.depends_on[{i}]", names)
            elif dep == name:
                yield error(
                    "spec.dependency_cycle", f"Service '{name}' depends on itself",
                    f"'services.{name}.depends_on' lists '{name}' itself.",
                    f"Remove '{name}' from its own depends_on, then run `railguard validate`.",
                    address=f"services.{name}.depends_on[{i}]",
                )
    for env_name, env in spec.environments.items():
        for name in env.services:
            if name not in spec.services:
                yield _unknown_service(name, f"environments.{env_name}.services.{name}", names)


def _unknown_service(name: str, where: str, names: list[str]) -> Diagnostic:
    import difflib

    guess = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f"Did you mean '{guess[0]}'? " if guess else ""
    return error(
        "spec.unknown_service", f"No service named '{name}'",
        f"'{where}' refers to the service '{name}', but the spec defines only: {', '.join(names) or 'none'}.",
        f"{hint}Fix the name or add [services.{name}], then run `railguard validate`.",
        address=where, extra={"suggestion": guess[0] if guess else None},
    )


def _cycles(spec: Spec) -> Iterator[Diagnostic]:
    graph = {n: [d for d in s.depends_on if d in spec.services and d != n] for n, s in spec.services.items()}
    cycle = find_cycle(graph)
    if cycle:
        chain = " -> ".join([*cycle, cycle[0]])
        yield error(
            "spec.dependency_cycle", "Services depend on each other in a cycle",
            f"The depends_on chain {chain} loops, so no service in it can be rolled out first.",
            "Remove one of the depends_on links in the cycle, then run `railguard validate`.",
            address=f"services.{cycle[0]}.depends_on", extra={"cycle": cycle},
        )


def _variables(spec: Spec) -> Iterator[Diagnostic]:
    # Base services first, then each environment's resolved view; the same finding is reported once.
    seen: set[tuple[str, str | None]] = set()
    views = [("", name, service) for name, service in spec.services.items()]
    views += [(env, name, spec.resolved_service(env, name))
              for env, environment in spec.environments.items() for name in environment.services
              if name in spec.services]
    for env_name, name, service in views:
        for diag in _service_variables(name, env_name, service):
            if (diag.code, diag.address) not in seen:
                seen.add((diag.code, diag.address))
                yield diag


def _service_variables(name: str, env_name: str, service: Service) -> Iterator[Diagnostic]:
    where = f"environments.{env_name}.services.{name}" if env_name else f"services.{name}"
    # Only report on the base service once; per-environment passes report what overrides add.
    for var in [*service.env, *service.secrets]:
        if var.upper() in RESERVED_VARIABLES or var.upper().startswith(RESERVED_PREFIX) or var == service.port_env:
            yield error(
                "spec.reserved_variable", f"'{var}' is reserved",
                f"Railguard sets '{var}' itself for every replica ({', '.join(sorted(RESERVED_VARIABLES))}, "
                f"the port variable '{service.port_env}' and anything starting with {RESERVED_PREFIX}).",
                f"Rename the variable in {where}, then run `railguard validate`.",
                address=f"services.{name}.env.{var}", extra={"environment": env_name or None},
            )
    for var in sorted(set(service.env) & set(service.secrets)) if service.secrets else ():
        yield error(
            "spec.env_secret_conflict", f"'{var}' is both a variable and a secret",
            f"Service '{name}' declares '{var}' in env and in secrets; only one can win.",
            f"Keep it in secrets (and remove it from env) in {where}, then run `railguard validate`.",
            address=f"services.{name}.env.{var}",
        )
    for var, value in service.env.items():
        if looks_secret(var) and value:
            yield warning(
                "spec.secret_in_env", f"'{var}' looks like a secret in plain env",
                f"The variable '{var}' of service '{name}' has a value in the spec, which is stored in plans, "
                "releases and git history. Its value is redacted from plans, but it is not protected.",
                f"Move it to secrets: add \"{var}\" to services.{name}.secrets and remove it from env, "
                "then run `railguard validate`.",
                address=f"services.{name}.env.{var}",
            )


def lowest_unprivileged_port() -> int:
    """The lowest port this user may bind: 0 with root or CAP_NET_BIND_SERVICE, else the kernel's setting.

    Root with workload isolation runs Caddy as ``rg-edge`` and gives it CAP_NET_BIND_SERVICE through util-linux
    ``setpriv`` (providers/local/edge.py); without ``setpriv`` it could not, so low ports are refused here,
    before anything changes."""
    if os.geteuid() == 0:
        isolating = (os.environ.get("RAILGUARD_ISOLATION") or "auto").lower() != "off"
        return 1024 if isolating and shutil.which("setpriv") is None else 0
    try:
        with open("/proc/self/status") as status:
            caps = next((line.split()[1] for line in status if line.startswith("CapEff:")), "0")
        if int(caps, 16) & (1 << 10):  # CAP_NET_BIND_SERVICE
            return 0
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as start:
            return int(start.read().strip())
    except (OSError, ValueError):
        return 1024


def _privileged_ports(spec: Spec) -> Iterator[Diagnostic]:
    lowest: int | None = None
    for env_name, env in spec.environments.items():
        for key, port in (("edge_port", env.edge_port), ("https_port", env.https_port)):
            if port is None or port >= 1024:
                continue
            lowest = lowest_unprivileged_port() if lowest is None else lowest
            if port < lowest:
                yield error(
                    "spec.privileged_port", f"Port {port} of '{env_name}' needs privileges this user lacks",
                    f"environments.{env_name}.{key} = {port}, but ports below {lowest} can only be bound by root "
                    "or a process with CAP_NET_BIND_SERVICE, so the edge could not listen there.",
                    f"Use a port of {lowest} or above (e.g. 8443 for HTTPS, 8080 for HTTP) and forward 443/80 to it, "
                    "or grant the capability to Caddy (`setcap cap_net_bind_service=+ep $(which caddy)`; as root, "
                    "install util-linux's `setpriv`, which starts Caddy with it), then run `railguard validate`.",
                    address=f"environments.{env_name}.{key}")


def _edge_ports(spec: Spec) -> Iterator[Diagnostic]:
    yield from _privileged_ports(spec)
    seen: dict[int, str] = {}
    for env_name, env in spec.environments.items():
        if env.https_port is not None and env.https_port == env.edge_port:
            yield error(
                "spec.edge_port_conflict", f"Environment '{env_name}' uses port {env.edge_port} for HTTP and HTTPS",
                "The edge needs one port for plain HTTP (and redirects) and another for HTTPS.",
                f"Give environments.{env_name}.https_port another port, then run `railguard validate`.",
                address=f"environments.{env_name}.https_port")
        if env.https_port is not None:
            https_other = seen.setdefault(env.https_port, env_name)
            if https_other != env_name:
                yield error(
                    "spec.edge_port_conflict",
                    f"Environments '{https_other}' and '{env_name}' share port {env.https_port}",
                    "Each environment needs its own ports.",
                    f"Give environments.{env_name}.https_port another port, then run `railguard validate`.",
                    address=f"environments.{env_name}.https_port")
        other = env_name if env.edge_port is None else seen.setdefault(env.edge_port, env_name)
        if other != env_name:
            yield error(
                "spec.edge_port_conflict", f"Environments '{other}' and '{env_name}' share edge port {env.edge_port}",
                "Each environment needs its own edge port; sharing one would send one environment's "
                "traffic to the other.",
                f"Give environments.{env_name}.edge_port another port, then run `railguard validate`.",
                address=f"environments.{env_name}.edge_port",
            )


def _routes(spec: Spec) -> Iterator[Diagnostic]:
    reported: set[tuple[str, str | None]] = set()
    for diag in _routes_per_environment(spec):
        if (diag.code, diag.address) not in reported:
            reported.add((diag.code, diag.address))
            yield diag


def _routes_per_environment(spec: Spec) -> Iterator[Diagnostic]:
    for env_name in spec.environments:
        claimed: dict[tuple[str, str], str] = {}
        for name in sorted(spec.services):
            service = spec.resolved_service(env_name, name)
            if service.routes and not service.listen:
                yield error(
                    "spec.route_without_port", f"Service '{name}' has routes but does not listen",
                    f"In environment '{env_name}', '{name}' sets listen = false, so the edge has nowhere to "
                    "send its routes.",
                    f"Remove services.{name}.routes or set listen = true, then run `railguard validate`.",
                    address=f"services.{name}.routes",
                )
            for i, route in enumerate(service.routes):
                key = (route.host or "*", route.path.rstrip("/") or "/")
                owner = claimed.setdefault(key, name)
                if owner != name or (i and _dup_in_service(service, i, key)):
                    yield error(
                        "spec.duplicate_route", f"Route {key[0]}{key[1]} is claimed twice",
                        f"In environment '{env_name}', host '{key[0]}' and path '{key[1]}' are routed to "
                        f"'{owner}' and again by '{name}'; the edge could not tell where a request belongs.",
                        "Give one of them another host or path, then run `railguard validate`.",
                        address=f"services.{name}.routes[{i}]", extra={"environment": env_name},
                    )


def _dup_in_service(service: Service, index: int, key: tuple[str, str]) -> bool:
    return any((r.host or "*", r.path.rstrip("/") or "/") == key for r in service.routes[:index])


def _health(spec: Spec) -> Iterator[Diagnostic]:
    for name, service in spec.services.items():
        health = service.health
        if health is None:
            continue
        if parse_ms(health.timeout) > parse_ms(health.interval):
            yield error(
                "spec.health_timing", f"Health timeout of '{name}' is longer than its interval",
                f"A check may take {health.timeout} but a new one starts every {health.interval}, so checks "
                "would overlap.",
                f"Make services.{name}.health.timeout at most the interval, then run `railguard validate`.",
                address=f"services.{name}.health.timeout",
            )
        if parse_ms(health.start_period) > parse_ms(service.start_timeout):
            yield warning(
                "spec.health_timing", f"Start period of '{name}' exceeds its start timeout",
                f"The health start period ({health.start_period}) is longer than start_timeout "
                f"({service.start_timeout}); the rollout gives up before failures even count.",
                f"Raise services.{name}.start_timeout or shorten health.start_period.",
                address=f"services.{name}.health.start_period",
            )


def _policies(spec: Spec) -> Iterator[Diagnostic]:
    if not spec.policies:
        return
    from railguard.model.celrules import compile_rule  # the CEL engine weighs ~16 MB: load it only for rules

    for i, rule in enumerate(spec.policies):
        try:
            compile_rule(rule.expression)
        except ValueError as exc:
            yield error(
                "spec.invalid_policy", f"Policy rule '{rule.name}' is not valid",
                f"The CEL expression of policies[{i}] ({rule.expression!r}) is refused: {exc}.",
                "Fix the expression (see docs/guardrails.md for the fields a rule may read), then run "
                "`railguard validate`.", address=f"policies[{i}].expression")
        for env in rule.environments or []:
            if env not in spec.environments:
                yield error("spec.unknown_environment", f"Policy '{rule.name}' names environment '{env}'",
                            f"policies[{i}].environments lists '{env}', which the spec does not define.",
                            "Fix the name, then run `railguard validate`.", address=f"policies[{i}].environments")


_DATABASE_VARIABLE = ("DATABASE_URL", "DB_URL", "DB_PATH", "DATABASE_PATH", "DSN", "SQLITE_PATH", "REDIS_URL")


def _isolation(spec: Spec) -> Iterator[Diagnostic]:
    """Two environments must not share anything that identifies a live resource."""
    hosts: dict[str, str] = {}
    data_dirs: dict[str, str] = {}
    databases: dict[str, tuple[str, str]] = {}
    # The OS user each environment runs as where the daemon isolates (the provider's default: rg-<app>-<env>).
    users = {env_name: env.user or f"rg-{spec.app.name}-{env_name}" for env_name, env in spec.environments.items()}
    for env_name, env in spec.environments.items():
        if env.user is not None and re.match(RESERVED_USER_PATTERN, env.user):
            yield error("spec.user_reserved", f"Environment '{env_name}' names a reserved OS user",
                        f"user = {env.user!r} is root or one of Railguard's own accounts (the edge, builds, scratch "
                        "runs, database servers), whose rights an app must never get.",
                        f"Remove `user` from [environments.{env_name}] (Railguard creates rg-<app>-{env_name}), or "
                        "name a new account of its own, then run `railguard validate`.",
                        address=f"environments.{env_name}.user")
        for other, name in users.items():
            if env.user is not None and other != env_name and name == env.user:
                yield _shared("user account", env.user, other, env_name, f"environments.{env_name}.user")
        if env.data_dir is not None:
            normalized = env.data_dir.rstrip("/") or "/"
            other = data_dirs.setdefault(normalized, env_name)
            if other != env_name:
                yield _shared("data folder", env.data_dir, other, env_name, f"environments.{env_name}.data_dir")
        if len(spec.environments) < 2:
            continue  # one environment shares nothing: the walk over every service below could find nothing
        seen_hosts: set[str] = set()
        for name in sorted(spec.services):
            service = spec.resolved_service(env_name, name)
            for route in service.routes:
                if route.host and route.host not in seen_hosts:
                    seen_hosts.add(route.host)
                    other = hosts.setdefault(route.host.lower(), env_name)
                    if other != env_name:
                        yield _shared("host", route.host, other, env_name, f"services.{name}.routes")
            for var, value in service.env.items():
                if "RAILGUARD_DATA_DIR" in value:
                    continue  # expanded to each environment's own data folder (which must differ, checked above)
                if value and (var.upper().endswith(_DATABASE_VARIABLE) or "://" in value and var.upper().endswith(
                        ("_URL", "_URI"))):
                    other_env, other_var = databases.setdefault(value, (env_name, var))
                    if other_env != env_name:
                        yield _shared(f"database location ({var})", "(value hidden)" if looks_secret(var) else value,
                                      other_env, env_name, f"environments.{env_name}.services.{name}.env.{var}")


def _shared(what: str, value: str, first: str, second: str, address: str) -> Diagnostic:
    return error(
        "spec.shared_resource", f"Environments '{first}' and '{second}' share a {what}",
        f"Both use {value!r}. Environments must not share anything that identifies a live resource, or a change "
        f"meant for '{second}' would reach '{first}' (staging touching production).",
        f"Give '{second}' its own {what.split(' (')[0]} (override it under [environments.{second}]), then run "
        "`railguard validate`.", address=address)


def _environment_settings(spec: Spec) -> Iterator[Diagnostic]:
    for env_name, env in spec.environments.items():
        if env.promote_from is not None and env.promote_from not in spec.environments:
            yield error("spec.unknown_environment", f"'{env_name}' promotes from unknown '{env.promote_from}'",
                        f"environments.{env_name}.promote_from names '{env.promote_from}', which is not defined.",
                        "Fix the name, then run `railguard validate`.", address=f"environments.{env_name}.promote_from")
        for i, freeze in enumerate(env.freezes):
            if freeze.end <= freeze.start or freeze.start.tzinfo is None or freeze.end.tzinfo is None:
                yield error("spec.invalid_value", f"Freeze {i} of '{env_name}' is not a window",
                            "A freeze needs a start and a later end, both with a time zone offset (e.g. ...Z).",
                            "Fix start/end, then run `railguard validate`.",
                            address=f"environments.{env_name}.freezes[{i}]")


def _static(spec: Spec) -> Iterator[Diagnostic]:
    """Static folders name a place inside the artifact; whether it exists is known only after the build."""
    for name in sorted(spec.services):
        service = spec.services[name]
        for i, entry in enumerate(service.static):
            address = f"services.{name}.static[{i}]"
            folder = entry.folder.replace("\\", "/")
            if folder.startswith("/") or ".." in folder.split("/") or "\0" in folder:
                yield error(
                    "spec.static_outside", f"Static folder {entry.folder!r} of '{name}' leaves the app source",
                    "A static folder is served from the release's artifact and must stay inside it: no absolute "
                    "path, no '..'.",
                    "Name the folder relative to the app source (e.g. folder = \"staticfiles\"), then run "
                    "`railguard validate`.", address=f"{address}.folder")
            if not service.routes:
                yield error(
                    "spec.static_without_route", f"Service '{name}' serves static files but has no route",
                    "Static files are served on the hosts of the service's routes; without a route no request "
                    "can reach them.",
                    f"Add a route to services.{name} (e.g. routes = [{{ path = \"/\" }}]), then run "
                    "`railguard validate`.", address=address)


def _targets(spec: Spec) -> Iterator[Diagnostic]:
    """A Kubernetes environment names its namespace, owns it alone, and is told which local keys it ignores."""
    owners: dict[tuple[str | None, str | None, str], str] = {}
    if not any(env.target == "kubernetes" for env in spec.environments.values()):
        for name in sorted(spec.services):
            for key in ("image", "resources"):
                if getattr(spec.services[name], key) is not None:
                    yield warning(
                        "spec.not_applicable", f"Service '{name}' sets '{key}', which only Kubernetes uses",
                        f"services.{name}.{key} applies to environments with target = \"kubernetes\"; every "
                        "environment of this spec runs locally, so nothing reads it.",
                        f"Remove services.{name}.{key}, or add a Kubernetes environment, then run `railguard "
                        "validate`.", address=f"services.{name}.{key}")
    for env_name, env in spec.environments.items():
        where = f"environments.{env_name}"
        if env.target != "kubernetes":
            if env.kubernetes is not None:
                yield warning(
                    "spec.not_applicable", f"'{env_name}' runs locally: its [kubernetes] table is not used",
                    f"{where}.kubernetes is set, but {where}.target is 'local', so nothing reads it.",
                    f"Set target = \"kubernetes\" in [{where}] or remove the table, then run `railguard validate`.",
                    address=f"{where}.kubernetes")
            continue
        if env.kubernetes is None:
            yield error(
                "spec.missing_key", f"Missing required key 'kubernetes' of '{env_name}'",
                f"{where} has target = \"kubernetes\" but no [{where}.kubernetes] table naming its namespace.",
                f"Add [{where}.kubernetes] with namespace = \"<namespace>\", then run `railguard validate`.",
                address=f"{where}.kubernetes")
            continue
        for key in LOCAL_ONLY:
            if key in env.model_fields_set and key != "edge_port" or (key == "edge_port" and env.edge_port):
                yield warning(
                    "spec.not_applicable", f"'{env_name}' runs on Kubernetes: '{key}' is not used",
                    f"{where}.{key} configures the local runtime (its edge, data folder or OS user); on a cluster "
                    "the namespace's Ingress, volumes and ServiceAccount take their place.",
                    f"Remove {where}.{key}, then run `railguard validate`.", address=f"{where}.{key}")
        target = env.kubernetes
        on_base = [n for n in sorted(spec.services) if spec.resolved_service(env_name, n).image is None]
        if env.protected and on_base and not re.search(r"@sha256:[0-9a-f]{64}$", target.base_image):
            yield warning(
                "spec.base_image_unpinned", f"Protected '{env_name}' runs {', '.join(on_base[:3])} on an unpinned "
                "base image", f"{where}.kubernetes.base_image is {target.base_image!r}: a tag can point at another "
                "image (another Python, another init container) after a plan was reviewed and approved.",
                f"Pin it by digest, e.g. base_image = \"{target.base_image.split('@')[0]}@sha256:<64 hex digits>\" "
                "(`docker buildx imagetools inspect` prints it), then run `railguard validate`.",
                address=f"{where}.kubernetes.base_image")
        key_of = (target.kubeconfig, target.context, target.namespace)
        other = owners.setdefault(key_of, env_name)
        if other != env_name:
            yield error(
                "spec.namespace_shared", f"Environments '{other}' and '{env_name}' share namespace "
                f"'{target.namespace}'",
                "Each Kubernetes environment owns one namespace: Railguard lists and deletes the objects labelled "
                "ours there, so two environments in one namespace would delete each other's services.",
                f"Give {where}.kubernetes.namespace another namespace, then run `railguard validate`.",
                address=f"{where}.kubernetes.namespace")


CANARY_SUFFIX = "-canary"  # the Kubernetes provider's canary Deployment: <service>-canary (providers/kubernetes/canary)


def _canary_names(spec: Spec) -> Iterator[Diagnostic]:
    """On Kubernetes a service's canary is a Deployment named ``<service>-canary`` in the same namespace, so a
    service of that name would have its Deployment replaced by a canary rollout of the other and deleted by its
    abort. The local runtime keeps canaries as a role of the service's own replica sets: no name, no collision."""
    if not any(env.target == "kubernetes" for env in spec.environments.values()):
        return
    for name in sorted(spec.services):
        base = name.removesuffix(CANARY_SUFFIX)
        if base != name and base in spec.services:
            yield error(
                "spec.name_collision", f"Service '{name}' is named as service '{base}''s canary",
                f"On Kubernetes the canary of service '{base}' runs as a Deployment named '{name}' in the same "
                f"namespace as service '{name}''s own Deployment: a canary rollout of '{base}' would take it over "
                f"and `railguard abort {base}` (or the end of the rollout) would delete it.",
                f"Rename service '{name}' (e.g. '{base}-next') or '{base}', then run `railguard validate`.",
                address=f"services.{name}")
