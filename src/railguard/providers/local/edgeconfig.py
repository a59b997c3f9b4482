"""The edge's Caddy config, built in one place: pure functions from an environment's routes to Caddy JSON.

:class:`railguard.providers.local.edge.CaddyEdge` posts what these return and publishes
:func:`upstream_table` to the environment's upstream resolver; nothing else writes Caddy config. The seams
for what comes later (access logs, metrics, canary weights) are here: :func:`proxy_handler` (one route's
reverse proxy), :func:`http_server` and :func:`tls_server` (one listener each), :func:`apps_config` (the
whole ``apps`` object of one environment's Caddy).

What the config depends on is deliberate: the routes, their hosts, the ports, whether a route has replicas
at all, never which replicas (those are the resolver's table) and never which release's static folder (a
link the edge flips). So a deploy or a rollback changes no Caddy config, and Caddy keeps its servers,
listeners and client connections.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from railguard.providers.local import accesslog
from railguard.providers.local.resolver import srv_name

# Retry budget for dial failures: long enough to ride over a replica being swapped,
# short enough that a fully dead service fails fast-ish with a 502.
_TRY_DURATION = "5s"
_TRY_INTERVAL = "50ms"
# How long Caddy caches a route's upstream answer: the bound on how long traffic keeps reaching the replicas a
# switch moved away from (the switch waits, at most this long plus a margin, until Caddy asked again). Under
# traffic a switch is seen at the edge after half of it on average. Shorter costs lookups: Caddy asks on the first
# request after the answer expired, inline, under one lock shared by every route of the edge (a lookup here is
# ~0.2 ms), so a busy route makes 1/REFRESH_S lookups a second: 40/s per busy route at 25 ms (was 100, then 50).
# Measured at 250 req/s through one route (bench/resolver_cpu.py): the resolver's CPU goes from ~5 to ~10 ms a
# second, Caddy's by ~10-40 ms a second (noisy); a switch is seen ~10 ms sooner (deploys and rollbacks, median).
REFRESH_S = 0.025
# Keep using the last answer this long when a lookup fails (then ask again). A lookup also fails when the request
# that triggered it is cancelled by its client ("operation was canceled" in caddy.log, frequent under load), and
# the answer kept is then whatever was cached, however old: with 10 s, a switch could be undone for 10 s after it
# reported traffic moved (measured by bench/deploy_timing.py: the previous release answered ~1 s after the next
# switch). One refresh interval keeps that to what a normal cached answer may live.
_GRACE = f"{int(REFRESH_S * 1000)}ms"
# Caddy's log rolls at this size and keeps this many old files (its file writer compresses them).
LOG_ROLL_SIZE_MB = 10
LOG_ROLL_KEEP = 5

HTTP_PREFIX, TLS_PREFIX = "rg-", "rgs-"


@dataclass(frozen=True)
class EdgeRoute:
    host: str | None  # None = any host
    path: str  # prefix like "/" or "/api"
    upstreams: tuple[str, ...]  # "127.0.0.1:PORT"; empty -> 503
    # A static route (served by Caddy's file_server, never proxied): the folder of the live release to serve,
    # "" while no release is live (404). None: a proxy route.
    static: str | None = None
    cache_s: int = 0


def route_key(route: EdgeRoute) -> str:
    """A stable short name for a route (its host and path): its SRV label, its static link's name."""
    kind = "s" if route.static is not None else "r"
    return kind + hashlib.sha256(f"{route.host or '*'} {route.path}".encode()).hexdigest()[:12]


def route_lookup(env: str, route: EdgeRoute) -> str:
    """The SRV name of a route's upstream set: stable for the route's host and path, whatever the replicas."""
    return srv_name(env, route_key(route))


def _static_handlers(route: EdgeRoute, root: str) -> list[dict[str, Any]]:
    prefix = route.path.rstrip("/")
    return [
        # Files of a release never change (artifacts are immutable); the ETag and Last-Modified that
        # file_server adds let a client revalidate once max-age is over.
        {"handler": "headers", "response": {"set": {"Cache-Control": [f"public, max-age={route.cache_s}"]}}},
        *([{"handler": "rewrite", "strip_path_prefix": prefix}] if prefix else []),
        # A missing file is a 404 from here: it never falls through to the app.
        {"handler": "file_server", "root": root},
    ]


def refresh_in(config: Any) -> float:
    """The longest upstream refresh interval (seconds) any route of a Caddy config names (0.0: none): how long a
    Caddy configured by an earlier Railguard, with a longer interval, may still cache an answer (pure)."""
    longest = 0.0
    if isinstance(config, list):
        return max((refresh_in(v) for v in config), default=0.0)
    if not isinstance(config, dict):
        return 0.0
    upstreams = config.get("dynamic_upstreams")
    if isinstance(upstreams, dict):
        value = upstreams.get("refresh")
        if isinstance(value, int):  # Caddy's JSON durations may be nanoseconds
            longest = value / 1e9
        elif isinstance(value, str) and value.endswith("ms") and value[:-2].isdigit():
            longest = int(value[:-2]) / 1000
        elif isinstance(value, str) and value.endswith("s") and value[:-1].isdigit():
            longest = float(value[:-1])
    return max([longest, *(refresh_in(v) for v in config.values())])


def proxy_handler(lookup: str, resolver: str) -> dict[str, Any]:
    """One route's reverse proxy: its upstreams are whatever the resolver answers for ``lookup``."""
    return {
        "handler": "reverse_proxy",
        "dynamic_upstreams": {
            "source": "srv", "name": lookup, "refresh": f"{int(REFRESH_S * 1000)}ms", "grace_period": _GRACE,
            "resolver": {"addresses": [resolver]}, "dial_network": "tcp4",
        },
        # The SRV targets ("localhost.") are resolved by the same responder, not the hosts file.
        "transport": {"protocol": "http", "resolver": {"addresses": [resolver]}},
        "load_balancing": {
            "selection_policy": {"policy": "round_robin"},
            "try_duration": _TRY_DURATION,
            "try_interval": _TRY_INTERVAL,
        },
        # Skip a replica for a moment after it refuses a dial, so traffic to a
        # stopped replica does not pay try_interval on every other request.
        "health_checks": {"passive": {"fail_duration": "1s", "max_fails": 1}},
    }


def _match(route: EdgeRoute) -> list[dict[str, Any]]:
    match: dict[str, Any] = {}
    if route.host is not None:
        match["host"] = [route.host]
    prefix = route.path.rstrip("/")
    if prefix:
        # Both entries so "/api" matches "/api" and "/api/x" but never "/apix".
        match["path"] = [prefix, prefix + "/*"]
    return [match] if match else []


def _route_config(env: str, route: EdgeRoute, resolver: str, static_dir: str) -> dict[str, Any]:
    handle: list[dict[str, Any]]
    if route.static is not None:
        handle = _static_handlers(route, f"{static_dir}/{route_key(route)}")
    elif route.upstreams:
        # The access line names the replica that answered (providers/local/accesslog.py).
        handle = accesslog.handlers(proxy_handler(route_lookup(env, route), resolver))
    else:
        handle = [{
            "handler": "static_response",
            "status_code": 503,
            "headers": {"Content-Type": ["text/plain; charset=utf-8"]},
            "body": "no replicas available\n",
        }]
    config: dict[str, Any] = {"handle": handle, "terminal": True}
    if match := _match(route):
        config["match"] = match
    return config


def _ordered(routes: list[EdgeRoute]) -> list[EdgeRoute]:
    # Most specific first: longer path prefixes, then host-specific before any-host, static before proxy.
    return sorted(routes, key=lambda r: (-len(r.path.rstrip("/")), r.host is None, r.host or "", r.path,
                                         r.static is None))


_NOT_FOUND = {
    "handle": [{"handler": "static_response", "status_code": 404, "body": "no route\n"}],
    "terminal": True,
}


def _listen(bind: str, port: int) -> list[str]:
    host = f"[{bind}]" if ":" in bind else bind
    return [f"{host}:{port}"]


def hosts(routes: list[EdgeRoute]) -> list[str]:
    """The host names the routes name (those get certificates when the environment has HTTPS)."""
    return sorted({r.host for r in routes if r.host is not None})


def _redirect(host: str, https_port: int) -> dict[str, Any]:
    port = "" if https_port == 443 else f":{https_port}"
    return {
        "match": [{"host": [host]}],
        "handle": [{"handler": "static_response", "status_code": 308,
                    "headers": {"Location": [f"https://{{http.request.host}}{port}{{http.request.uri}}"]}}],
        "terminal": True,
    }


def server_config(env: str, port: int, routes: list[EdgeRoute], resolver: str,
                  bind: str = "127.0.0.1", static_dir: str = "", https_port: int | None = None) -> dict[str, Any]:
    """The Caddy JSON for one environment's plain-HTTP server (pure; exposed for tests).

    It depends on the routes and on which of them have replicas, never on which replicas: those are the
    resolver's table (:func:`upstream_table`), so a switch leaves this config, and Caddy's servers, as they are.
    With ``https_port``, requests for a route's host are redirected there instead (308, method kept).
    """
    redirects = [_redirect(h, https_port) for h in hosts(routes)] if https_port is not None else []
    return {
        "listen": _listen(bind, port),
        "routes": redirects + [_route_config(env, r, resolver, static_dir) for r in _ordered(routes)] + [_NOT_FOUND],
        # Plain HTTP: Caddy's automatic HTTPS stays off here; the TLS server is :func:`tls_server`.
        "automatic_https": {"disable": True},
        **accesslog.server_keys(),
    }


def tls_server(env: str, https_port: int, routes: list[EdgeRoute], resolver: str, bind: str = "127.0.0.1",
               static_dir: str = "") -> dict[str, Any]:
    """The environment's HTTPS server: the same routes, with certificates for their hosts (Caddy's automatic
    HTTPS manages them; :func:`apps_config` picks the issuer). Its redirects are ours (to the right port)."""
    return {
        "listen": _listen(bind, https_port),
        "routes": [_route_config(env, r, resolver, static_dir) for r in _ordered(routes)] + [_NOT_FOUND],
        "tls_connection_policies": [{}],
        "automatic_https": {"disable_redirects": True},
        **accesslog.server_keys(),
    }


def _policy_hosts(policy: dict[str, Any]) -> set[str]:
    return set(policy.get("subjects", []))


def apps_config(current: dict[str, Any], env: str, http: dict[str, Any], tls: dict[str, Any] | None,
                internal_hosts: list[str], old_hosts: set[str]) -> dict[str, Any]:
    """The whole ``apps`` object with ``env``'s servers and certificate policy replaced (pure).

    One admin request then changes everything an edge change needs, so Caddy reloads once. Other
    environments' servers and policies (a Caddy may serve several in tests) are kept as they are;
    ``old_hosts`` are the hosts ``env``'s TLS server named before, whose policy is replaced.
    """
    apps = copy.deepcopy(current) if current else {}
    servers = apps.setdefault("http", {}).setdefault("servers", {})
    servers[HTTP_PREFIX + env] = http
    if tls is not None:
        servers[TLS_PREFIX + env] = tls
    else:
        servers.pop(TLS_PREFIX + env, None)
    if tls is None and not old_hosts:
        return apps
    automation = apps.setdefault("tls", {}).setdefault("automation", {})
    policies = [p for p in automation.get("policies", []) if not _policy_hosts(p) & (old_hosts | set(internal_hosts))]
    if internal_hosts:
        policies.append({"subjects": sorted(internal_hosts), "issuers": [{"module": "internal"}]})
    if policies:
        automation["policies"] = policies
    else:
        apps["tls"].pop("automation", None)
        if not apps["tls"]:
            apps.pop("tls")
    if tls is not None:
        # Never touch the machine's trust store (Caddy would try, and succeed as root): people opt in.
        apps.setdefault("pki", {}).setdefault("certificate_authorities", {}).setdefault("local", {})[
            "install_trust"] = False
    return apps


def tls_hosts(server: dict[str, Any] | None) -> set[str]:
    """The hosts a TLS server's routes match (what its certificates were for)."""
    found: set[str] = set()
    for route in (server or {}).get("routes", []):
        for match in route.get("match", []):
            found.update(match.get("host", []))
    return found


def upstream_table(env: str, routes: list[EdgeRoute]) -> dict[str, tuple[int, ...]]:
    """The resolver's answers for one environment: each route's SRV name -> its replicas' ports (pure)."""
    table: dict[str, tuple[int, ...]] = {}
    for route in routes:
        if route.upstreams and route.static is None:
            table[route_lookup(env, route)] = tuple(_loopback_port(u) for u in route.upstreams)
    return table


def _loopback_port(dial: str) -> int:
    host, _, port = dial.rpartition(":")
    if host != "127.0.0.1" or not port.isdigit():
        raise ValueError(f"upstream {dial!r} is not a loopback replica address (127.0.0.1:PORT)")
    return int(port)


def bootstrap_config(admin_socket: Path, log_path: Path) -> dict[str, Any]:
    """The config Caddy starts with (pure; exposed for tests): admin socket, rolled log, an empty http app."""
    return {
        "admin": {
            "listen": f"unix/{admin_socket}",
            # The daemon re-applies every environment; a stale autosave would only confuse.
            "config": {"persist": False},
        },
        # Caddy's own rotation: a long-lived edge must not fill the disk with its log.
        "logging": {"logs": {"default": {"writer": {
            "output": "file", "filename": str(log_path), "roll": True,
            "roll_size_mb": LOG_ROLL_SIZE_MB, "roll_keep": LOG_ROLL_KEEP,
        }, "exclude": [f"http.log.access.{accesslog.LOGGER}"]},
            **accesslog.logging_config(log_path.with_name(accesslog.FILE_NAME))}},
        # An (empty) http app must exist so servers can be POSTed under it. No grace_period
        # needed: a replaced server drains in the background without delaying the change.
        # The internal CA never installs its root into the machine's trust store (`railguard edge ca`).
        "apps": {"http": {"servers": {}}, "pki": {"certificate_authorities": {"local": {"install_trust": False}}}},
    }


