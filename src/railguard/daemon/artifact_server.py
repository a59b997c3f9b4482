"""The daemon's artifact listener: ``GET /v1/artifacts/<sha256>`` over TCP, for pods' init containers.

A Kubernetes pod cannot reach the daemon's Unix socket, and must never hold a token that can do more
than read its own release's code. So this is a separate, opt-in TCP listener (off unless
``RAILGUARD_ARTIFACTS_ADDR=host:port`` is set when the daemon starts, like the metrics listener) with
one route: a bundle by digest (:mod:`railguard.sources.artifact_bundles`), for a bearer that is an
environment's read-only fetch token (never a daemon token: those are not even looked at here), and only
a digest that environment's releases named. A missing token is 401, a wrong one 403, a digest not
listed for that environment 404 (the same answer whether it exists for another environment or not),
a stored bundle whose bytes changed 500 (never served). Errors are the API's JSON envelope of
diagnostics. Pods reach it, and pods run hostile code: at most ``max_connections`` connections are served
at once, at most ``per_address`` from one address (one more is answered 503 and closed at once, never queued
on a thread); a whole request head must arrive within ``head_timeout`` seconds of the connection (or of the
previous answer), and a body must be taken at ``min_rate`` bytes/s at least (a deadline, not a timeout per
read or write, so a client dribbling a byte at a time is cut off too), so slow clients cannot hold the
listener's slots. It speaks plain
HTTP (the token travels in clear): on-cluster or private networks only (docs/kubernetes.md).
Started by :class:`railguard.daemon.service.Daemon` at boot.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from railguard.model.diagnostics import Diagnostic, error
from railguard.secrets.signing import sign
from railguard.sources.artifact_bundles import TOKEN_PURPOSE, BundleError, BundleStore, hex_of

log = logging.getLogger("railguard.daemon.artifacts")
ADDRESS_VARIABLE = "RAILGUARD_ARTIFACTS_ADDR"
_CHUNK = 1 << 20


class ArtifactServer(ThreadingHTTPServer):
    daemon_threads = True
    max_connections = 64
    per_address = 8  # one pod (one address) cannot take the slots other pods' fetches need
    head_timeout = 5.0  # seconds for a whole request head
    body_timeout = 30.0  # seconds for a body, plus its size at min_rate
    min_rate = 64 * 1024  # bytes/s a client must take a body at
    _BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
             b"Retry-After: 1\r\nContent-Length: 0\r\n\r\n")

    def __init__(self, address: tuple[str, int], home: Path) -> None:
        self.store = BundleStore.of(home, signer=functools.partial(sign, home, TOKEN_PURPOSE))
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self._by_address: dict[str, int] = {}
        self._count_lock = threading.Lock()
        super().__init__(address, _Handler)

    def _take(self, client: str) -> bool:
        with self._count_lock:
            if self._by_address.get(client, 0) >= self.per_address:
                return False
            if not self._slots.acquire(blocking=False):
                return False
            self._by_address[client] = self._by_address.get(client, 0) + 1
            return True

    def _give_back(self, client: str) -> None:
        with self._count_lock:
            left = self._by_address.get(client, 1) - 1
            if left > 0:
                self._by_address[client] = left
            else:
                self._by_address.pop(client, None)
            self._slots.release()

    def process_request(self, request: Any, client_address: Any) -> None:
        client = str(client_address[0]) if isinstance(client_address, tuple) else str(client_address)
        if not self._take(client):  # full: answer at once on the accepting thread, never queue
            try:
                request.settimeout(0.5)
                request.sendall(self._BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._give_back(client)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._give_back(str(client_address[0]) if isinstance(client_address, tuple) else str(client_address))


class _Handler(BaseHTTPRequestHandler):
    server: ArtifactServer
    protocol_version = "HTTP/1.1"
    _watchdog: threading.Timer | None = None

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.head_timeout)
        self._arm(self.server.head_timeout)

    def finish(self) -> None:
        self._arm(None)
        super().finish()

    def _arm(self, seconds: float | None) -> None:
        """(Re)start the connection's deadline: when it passes, the socket is shut down, which ends whatever read
        or write the handler is blocked in. None: no deadline (the connection is ending)."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if seconds is None:
            return
        self._watchdog = threading.Timer(seconds, self._cut)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _cut(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _refuse(self, status: int, diag: Diagnostic, send_body: bool) -> None:
        data = json.dumps({"ok": False, "diagnostics": [diag.model_dump(mode="json")]}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="railguard-artifacts"')
        self.end_headers()
        if send_body:
            self.wfile.write(data)

    def _answer(self, send_body: bool) -> None:
        self.connection.settimeout(self.server.body_timeout)
        self._arm(self.server.body_timeout)
        started = time.monotonic()
        try:
            self._serve(send_body, started)
        finally:  # the next request head on this connection gets the short deadline again
            self.connection.settimeout(self.server.head_timeout)
            self._arm(self.server.head_timeout)

    def _serve(self, send_body: bool, started: float) -> None:
        status, diag, path = resolve(self.server.store, self.path, self.headers.get("Authorization"))
        if path is None:
            assert diag is not None
            log.info("artifact request %s refused: %s", self.path[:120], diag.code)
            self._refuse(status, diag, send_body)
            return
        size = path.stat().st_size
        # The whole body by its deadline: a client reading a byte at a time keeps no slot for long.
        self._arm(max(0.0, started + self.server.body_timeout + size / self.server.min_rate - time.monotonic()))
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(size))
        self.send_header("X-Railguard-Digest", "sha256:" + path.name.removesuffix(".tar.gz"))
        self.send_header("Cache-Control", "private, max-age=31536000, immutable")
        self.end_headers()
        if send_body:
            with open(path, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    self.wfile.write(chunk)


def resolve(store: BundleStore, target: str, authorization: str | None) -> tuple[int, Diagnostic | None, Path | None]:
    """(status, refusal, bundle path) for one request: the whole decision, apart from the socket."""
    parts = [p for p in target.split("?", 1)[0].split("/") if p]
    if len(parts) != 3 or parts[:2] != ["v1", "artifacts"]:
        return 404, error("artifact.bad_request", "Not an artifact address",
                          f"This listener serves GET /v1/artifacts/<sha256> only, not {target[:120]!r}.",
                          "Use the URL Railguard put in the pod's init container."), None
    hexd = hex_of(parts[2])
    if hexd is None:
        return 404, error("artifact.bad_request", "Not an artifact digest",
                          f"{parts[2][:80]!r} is not a SHA-256 digest (64 lowercase hex digits, optionally "
                          "prefixed by 'sha256:').", "Use the URL Railguard put in the pod's init container."), None
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return 401, error("artifact.token_required", "This artifact needs the environment's artifact token",
                          "The artifact store answers only a request carrying an environment's read-only "
                          "artifact token as 'Authorization: Bearer <token>'.",
                          "Railguard puts the token in the namespace's Secret 'railguard-artifact-token'; "
                          "check the init container reads it."), None
    env = store.env_of(token.strip())
    if env is None:
        return 403, error("artifact.forbidden", "The artifact token is not valid",
                          "The bearer is not the artifact token of any environment (a daemon token is not "
                          "accepted here, and a rotated token stops working at once).",
                          "Re-apply the environment so its Secret holds the current token."), None
    if not store.allowed(env, hexd):
        return 404, error("artifact.unknown_digest", f"No artifact sha256:{hexd[:12]}… for environment '{env}'",
                          f"No release of environment '{env}' names the artifact sha256:{hexd}; the store serves an "
                          "environment only the artifacts its plans and releases use.",
                          f"Plan and apply the environment again (`railguard plan --env {env}`)."), None
    try:
        path = store.verified(hexd)
    except BundleError as exc:
        log.error("artifact %s refused: %s", hexd, exc)
        return 500, error("artifact.tampered", "The stored artifact changed after it was built",
                          f"{exc}; it is not served.",
                          f"Apply environment '{env}' again so the bundle is rebuilt from its snapshot."), None
    if path is None:
        return 404, error("artifact.unknown_digest", f"The artifact sha256:{hexd[:12]}… is no longer stored",
                          f"Environment '{env}' lists it but the bundle file is gone (garbage-collected or "
                          "deleted).", f"Apply environment '{env}' again so the bundle is rebuilt."), None
    return 200, None, path


def start(home: Path) -> ArtifactServer | None:
    """Serve bundles when ``RAILGUARD_ARTIFACTS_ADDR`` asks for it; None otherwise (or when it cannot)."""
    address = os.environ.get(ADDRESS_VARIABLE, "").strip()
    if not address:
        return None
    host, _, port = address.rpartition(":")
    try:
        server = ArtifactServer((host.strip("[]") or "127.0.0.1", int(port)), home)
    except (OSError, ValueError) as exc:  # a bad or busy address must not stop the daemon itself
        log.error("artifact listener not started on %r: %s", address, exc)
        return None
    threading.Thread(target=server.serve_forever, name="railguard-artifacts", daemon=True).start()
    return server
