"""A real Kubernetes v1.20.2 control plane on loopback, for tests and benchmarks (no kubelet, no containers).

Why: the Kubernetes provider (issue 17) must be tested against a real API server — its defaulting, validation,
server-side apply, RBAC and controllers — on machines that cannot run containers. This module starts etcd (Debian's
``etcd-server``), kube-apiserver, kube-controller-manager and kube-scheduler (the binaries of ``shared/k8s/``) with
generated certificates and token users, plus a simulated node (:mod:`tests.k8s.nodeagent`) that moves pods to
Running/Ready. Callers: the ``k8s_cluster`` session fixture (tests/k8s/conftest.py), which other test folders
re-export, and ``bench/k8s_control_plane.py``.

Public API (stable; other branches build on it):

``start_cluster(folder, *, agent=True, timings=None) -> ContextManager[Cluster]``
    Starts everything in ``folder`` (certs, kubeconfigs, etcd data, ``logs/<component>.log``); stops and waits
    for every process on exit. Raises :class:`ClusterError` (with the tail of the failing component's log).
    Call it from the main thread: each component gets a parent-death signal (``setpriv --pdeathsig``) so a
    killed test run leaves nothing behind, and Linux sends it when the *thread* that started it ends.
``Cluster``
    ``server`` (``https://127.0.0.1:PORT``), ``ca_path`` (Path), ``ca_pem`` (str), ``folder``, ``agent``
    (:class:`~tests.k8s.nodeagent.NodeAgent`, or None), ``etcd_url``;
    ``token(user="admin") -> str`` for the users of :data:`USERS`;
    ``client(user="admin", timeout=30.0) -> httpx.Client`` (base URL, CA and bearer token set; caller closes);
    ``ssl_context() -> ssl.SSLContext`` (trusts the cluster's CA only);
    ``write_kubeconfig(path, user="admin", context="test", namespace=None) -> Path``;
    ``create_namespace(name) -> str`` (idempotent; waits out a namesake still terminating, then for the
    ``default`` ServiceAccount and its token, so pods are admitted at once);
    ``delete_namespace(name, wait=True)``;
    ``apply(manifest, user="admin", manager="railguard-tests") -> dict`` (server-side apply, force);
    ``get(path, user="admin") -> dict | None`` (None on 404);
    ``processes`` (component name → Popen), ``rss_bytes() -> int``.
    The agent: ``agent.behave(namespace, labels, mode)`` with mode ``ready``/``crashloop``/``never-ready``/``fail``/
    ``image-pull-backoff``, ``agent.on_init(namespace, check)``, ``agent.clear(namespace=None)``, ``agent.errors``
    (see tests/k8s/nodeagent.py).
``wait_until(check, timeout, what) -> T``
    Polls ``check()`` until it returns something truthy; fails with ``what`` and the last value seen.
``USERS``
    ``admin`` (group ``system:masters``) and the unprivileged ``railguard-staging``, ``railguard-prod``,
    ``nobody`` (no bindings at all: RBAC tests grant what they need).
``binaries() -> Path`` / ``etcd_binary() -> str``
    The verified, decompressed server binaries (``RAILGUARD_K8S_BIN`` or a ``shared/k8s`` folder above the
    repository) cached in ``~/.cache/railguard-tests/k8s-v1.20.2``; and Debian's etcd.

Nothing here dials a pod or node address: the API server never gets a logs/exec/proxy request from us.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import functools
import gzip
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from .nodeagent import NodeAgent

K8S_VERSION = "v1.20.2"
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "railguard-tests" / f"k8s-{K8S_VERSION}"

# Token users. The control plane's own components and the node agent are masters too: the test server runs no
# Node authorizer, and their permissions are not what the tests examine.
USERS: dict[str, list[str]] = {
    "admin": ["system:masters"],
    "railguard-staging": [],
    "railguard-prod": [],
    "nobody": [],
}
_SYSTEM_USERS: dict[str, list[str]] = {
    "system:kube-controller-manager": ["system:masters"],
    "system:kube-scheduler": ["system:masters"],
    "system:node:sim-node-1": ["system:masters", "system:nodes"],
}

T = TypeVar("T")


class ClusterError(RuntimeError):
    """The control plane could not be found or started; the message says which part and why."""


# ---------------------------------------------------------------------------------------------------- binaries

def _shared_folder() -> Path:
    env = os.environ.get("RAILGUARD_K8S_BIN")
    if env:
        folder = Path(env)
        if not (folder / "SHA256SUMS").is_file():
            raise ClusterError(f"RAILGUARD_K8S_BIN={env} has no SHA256SUMS: point it at the folder holding "
                               "kube-apiserver.gz, kube-controller-manager.gz, kube-scheduler.gz and SHA256SUMS")
        return folder
    for parent in REPO.parents:  # CI checks out the repository beside /work/shared
        candidate = parent / "shared" / "k8s"
        if (candidate / "SHA256SUMS").is_file():
            return candidate
    raise ClusterError(f"the Kubernetes {K8S_VERSION} server binaries were not found: no shared/k8s/ folder above "
                       f"{REPO}. Set RAILGUARD_K8S_BIN to the folder holding kube-apiserver.gz, "
                       "kube-controller-manager.gz, kube-scheduler.gz and SHA256SUMS.")


def _sums(folder: Path) -> dict[str, str]:
    sums = {}
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.strip().lstrip("*")] = digest
    return sums


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def binaries() -> Path:
    """The folder of verified, executable kube-* binaries (decompressed once per machine, reused after)."""
    source = _shared_folder()
    sums = _sums(source)
    CACHE.mkdir(parents=True, exist_ok=True)
    # Several test sessions share the cache: one decompresses, the others wait and then reuse.
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamps_path = CACHE / "verified.json"
        try:
            stamps = json.loads(stamps_path.read_text())
        except (OSError, ValueError):
            stamps = {}
        for name in COMPONENTS:
            if name not in sums or f"{name}.gz" not in sums:
                raise ClusterError(f"{source / 'SHA256SUMS'} lists no checksum for {name}")
            target = CACHE / name
            # A verified binary is stamped with its size and mtime so the 100 MB are not hashed on every run.
            if target.exists():
                st = target.stat()
                if stamps.get(name) == [sums[name], st.st_size, st.st_mtime_ns] and os.access(target, os.X_OK):
                    continue
                if _sha256(target) == sums[name]:
                    target.chmod(0o755)
                    st = target.stat()
                    stamps[name] = [sums[name], st.st_size, st.st_mtime_ns]
                    continue
            packed = source / f"{name}.gz"
            if _sha256(packed) != sums[f"{name}.gz"]:
                raise ClusterError(f"{packed} does not match its checksum in SHA256SUMS: the file is damaged")
            partial = CACHE / f".{name}.partial"
            with gzip.open(packed, "rb") as src, partial.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            if _sha256(partial) != sums[name]:
                partial.unlink()
                raise ClusterError(f"{packed} decompresses to a file that does not match SHA256SUMS")
            partial.chmod(0o755)
            os.replace(partial, target)
            st = target.stat()
            stamps[name] = [sums[name], st.st_size, st.st_mtime_ns]
        stamps_path.write_text(json.dumps(stamps))
    return CACHE


def etcd_binary() -> str:
    found = os.environ.get("RAILGUARD_ETCD") or shutil.which("etcd")
    if not found:
        raise ClusterError("etcd was not found: install Debian's etcd-server (`apt-get install etcd-server`; "
                           ".ci/run does it) or set RAILGUARD_ETCD to an etcd 3.4 binary")
    return found


# ------------------------------------------------------------------------------------------------ certificates

def _pem_key(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,  # type: ignore[no-any-return]
                             serialization.NoEncryption())


def _write_pki(folder: Path) -> None:
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=2)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "railguard-test-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName("localhost"), x509.DNSName("kubernetes"), x509.DNSName("kubernetes.default"),
            x509.DNSName("kubernetes.default.svc"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("10.0.0.1"))]
    serving = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
               .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.SubjectAlternativeName(sans), critical=False)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False)
               .sign(ca_key, hashes.SHA256()))
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pki = folder / "pki"
    pki.mkdir(mode=0o700)
    (pki / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (pki / "apiserver.crt").write_bytes(serving.public_bytes(serialization.Encoding.PEM))
    (pki / "apiserver.key").write_bytes(_pem_key(key))
    (pki / "sa.key").write_bytes(sa_key.private_bytes(serialization.Encoding.PEM,
                                                      serialization.PrivateFormat.TraditionalOpenSSL,
                                                      serialization.NoEncryption()))
    (pki / "sa.pub").write_bytes(sa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                  serialization.PublicFormat.SubjectPublicKeyInfo))


# ------------------------------------------------------------------------------------------------------ helpers

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.25) -> T:
    """Poll ``check`` until it returns a truthy value (returned); fail naming ``what`` and the last value seen."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
        except (httpx.HTTPError, OSError) as exc:  # a server still starting, a connection reset under load
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last seen: {last!r}"[:4000])
        time.sleep(interval)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


_KINDS_CLUSTER_SCOPED = {"Namespace", "Node", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
                         "StorageClass", "CustomResourceDefinition", "PriorityClass"}


def resource_path(manifest: dict[str, Any]) -> str:
    """The REST path of one object (for apply/get/delete): ``/api/v1/namespaces/ns/services/web`` and so on."""
    api = manifest["apiVersion"]
    kind = manifest["kind"]
    base = f"/api/{api}" if "/" not in api else f"/apis/{api}"
    lower = kind.lower()
    plural = {"endpoints": "endpoints"}.get(lower) or (
        lower[:-1] + "ies" if lower.endswith("y") else lower + "es" if lower.endswith("s") else lower + "s")
    meta = manifest.get("metadata", {})
    if kind in _KINDS_CLUSTER_SCOPED:
        return f"{base}/{plural}/{meta['name']}"
    return f"{base}/namespaces/{meta.get('namespace', 'default')}/{plural}/{meta['name']}"


# ------------------------------------------------------------------------------------------------------ cluster

@dataclass
class Cluster:
    folder: Path
    server: str
    etcd_url: str
    ca_path: Path
    tokens: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    agent: NodeAgent | None = None

    @property
    def ca_pem(self) -> str:
        return self.ca_path.read_text()

    def token(self, user: str = "admin") -> str:
        if user not in self.tokens:
            raise KeyError(f"no token user {user!r}; the cluster has {sorted(USERS)}")
        return self.tokens[user]

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts the cluster's CA only."""
        return ssl.create_default_context(cafile=str(self.ca_path))

    def client(self, user: str = "admin", timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.server, verify=self.ssl_context(), timeout=timeout,
                            headers={"Authorization": f"Bearer {self.token(user)}"})

    def write_kubeconfig(self, path: Path | str, user: str = "admin", context: str = "test",
                         namespace: str | None = None) -> Path:
        """A real kubeconfig (JSON, which every YAML reader takes) with the CA inline and the user's token."""
        import base64

        ctx: dict[str, str] = {"cluster": "railguard-test", "user": user}
        if namespace:
            ctx["namespace"] = namespace
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {}, "current-context": context,
            "clusters": [{"name": "railguard-test", "cluster": {
                "server": self.server,
                "certificate-authority-data": base64.b64encode(self.ca_path.read_bytes()).decode()}}],
            "users": [{"name": user, "user": {"token": self.token(user)}}],
            "contexts": [{"name": context, "context": ctx}],
        }
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(config, indent=2))
        target.chmod(0o600)
        return target

    def get(self, path: str, user: str = "admin") -> dict[str, Any] | None:
        with self.client(user) as c:
            r = c.get(path)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def apply(self, manifest: dict[str, Any], user: str = "admin", manager: str = "railguard-tests") -> dict[str, Any]:
        """Server-side apply of one object (force: a test's writes win conflicts); the server's object back."""
        with self.client(user) as c:
            r = c.patch(resource_path(manifest), params={"fieldManager": manager, "force": "true"},
                        content=json.dumps(manifest), headers={"Content-Type": "application/apply-patch+yaml"})
        if r.status_code >= 400:
            raise AssertionError(f"apply of {manifest.get('kind')} {manifest['metadata'].get('name')} failed: "
                                 f"{r.status_code} {r.text[:2000]}")
        return r.json()  # type: ignore[no-any-return]

    def create_namespace(self, name: str) -> str:
        """Create a namespace (or reuse one) and wait until pods can be admitted in it (default SA + token)."""
        with self.client() as c:
            def created() -> bool:
                r = c.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace",
                                                       "metadata": {"name": name}})
                if r.status_code not in (201, 409):
                    raise AssertionError(f"creating namespace {name} failed: {r.status_code} {r.text[:500]}")
                # A namespace of the same name still being deleted (an earlier test's, deleted without waiting)
                # refuses new objects: wait for it to go, then create it afresh.
                got = c.get(f"/api/v1/namespaces/{name}")
                return got.status_code == 200 and got.json().get("status", {}).get("phase") == "Active"

            wait_until(created, 120, f"namespace {name} to be Active")

            def sa_ready() -> bool:
                got = c.get(f"/api/v1/namespaces/{name}/serviceaccounts/default")
                return got.status_code == 200 and bool(got.json().get("secrets"))

            wait_until(sa_ready, 60, f"the default ServiceAccount (with its token) of namespace {name}")
        return name

    def delete_namespace(self, name: str, wait: bool = True) -> None:
        with self.client() as c:
            r = c.delete(f"/api/v1/namespaces/{name}")
            if r.status_code not in (200, 202, 404, 409):
                raise AssertionError(f"deleting namespace {name} failed: {r.status_code} {r.text[:500]}")
            if wait:
                wait_until(lambda: c.get(f"/api/v1/namespaces/{name}").status_code == 404, 120,
                           f"namespace {name} to be gone")

    def rss_bytes(self) -> int:
        total = 0
        for proc in self.processes.values():
            with contextlib.suppress(psutil.Error):
                total += psutil.Process(proc.pid).memory_info().rss
        return total


def _launch(folder: Path, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    log = (folder / "logs" / f"{name}.log").open("ab")
    # The parent-death signal stops the component if the test process dies without its teardown (a killed run).
    prefix = ["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else []
    try:
        return subprocess.Popen(prefix + argv, cwd=folder, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log.close()


def _stop(procs: list[tuple[str, subprocess.Popen[bytes]]], grace: float = 20.0) -> None:
    for _, proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    for _, proc in procs:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=30)


def _failed(folder: Path, name: str, why: str) -> ClusterError:
    log = folder / "logs" / f"{name}.log"
    return ClusterError(f"{name} {why}. Last lines of {log}:\n{_tail(log)}")


def _wait_ready(folder: Path, name: str, proc: subprocess.Popen[bytes], check: Callable[[], bool],
                timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise _failed(folder, name, f"exited with status {proc.returncode} while starting")
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        if time.monotonic() > deadline:
            raise _failed(folder, name, f"was not ready after {timeout:.0f} s")
        time.sleep(0.2)


def _etcd_healthy(url: str) -> bool:
    return bool(httpx.get(f"{url}/health", timeout=2).json().get("health") == "true")


def _port_clash(folder: Path, name: str) -> bool:
    return "address already in use" in _tail(folder / "logs" / f"{name}.log", 200)


def _ctx(pki: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki / "ca.crt"))


def _kubeconfig(folder: Path, server: str, user: str, token: str) -> Path:
    path = folder / f"{user.replace(':', '-')}.kubeconfig"
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
              "clusters": [{"name": "c", "cluster": {"server": server,
                                                     "certificate-authority": str(folder / "pki" / "ca.crt")}}],
              "users": [{"name": "u", "user": {"token": token}}],
              "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


@contextlib.contextmanager
def start_cluster(folder: Path, *, agent: bool = True, timings: dict[str, float] | None = None) -> Iterator[Cluster]:
    """Start etcd, the API server, the controller manager, the scheduler and (``agent``) the simulated node.

    ``timings`` (optional) receives seconds from the start: ``etcd``, ``apiserver`` (``/readyz``), ``controllers``
    (the default ServiceAccount exists), ``node`` (the simulated node is Ready).
    """
    import secrets

    started = time.monotonic()
    timings = timings if timings is not None else {}
    bins = binaries()
    etcd = etcd_binary()
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "logs").mkdir(exist_ok=True)
    _write_pki(folder)
    tokens = {user: secrets.token_hex(16) for user in [*USERS, *_SYSTEM_USERS]}
    groups = {**USERS, **_SYSTEM_USERS}
    # token,user,uid[,"group,group"]: an empty group column would make a group named "" for that user.
    lines = [f'{tokens[u]},{u},uid-{u.replace(":", "-")}' + (f',"{",".join(groups[u])}"' if groups[u] else "")
             for u in tokens]
    (folder / "tokens.csv").write_text("\n".join(lines) + "\n")
    (folder / "tokens.csv").chmod(0o600)
    pki = folder / "pki"
    running: list[tuple[str, subprocess.Popen[bytes]]] = []
    cluster: Cluster | None = None
    try:
        # etcd: loopback client and peer ports; a port taken between our probe and its bind is retried.
        for attempt in range(3):
            client_port, peer_port = free_port(), free_port()
            etcd_url = f"http://127.0.0.1:{client_port}"
            proc = _launch(folder, "etcd", [
                etcd, "--name", "railguard-test", "--data-dir", str(folder / "etcd"),
                "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-cluster", f"railguard-test=http://127.0.0.1:{peer_port}",
                "--logger", "zap", "--log-outputs", "stderr", "--quota-backend-bytes", str(2 << 30)])
            try:
                _wait_ready(folder, "etcd", proc, functools.partial(_etcd_healthy, etcd_url), 60)
            except ClusterError:
                _stop([("etcd", proc)])
                if attempt < 2 and _port_clash(folder, "etcd"):
                    shutil.rmtree(folder / "etcd", ignore_errors=True)
                    continue
                raise
            running.append(("etcd", proc))
            break
        timings["etcd"] = time.monotonic() - started

        for attempt in range(3):
            port = free_port()
            server = f"https://127.0.0.1:{port}"
            proc = _launch(folder, "kube-apiserver", [
                str(bins / "kube-apiserver"), "--bind-address=127.0.0.1", f"--secure-port={port}",
                "--insecure-port=0", "--advertise-address=127.0.0.1",
                f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}", f"--token-auth-file={folder / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--service-cluster-ip-range=10.0.0.0/24", "--endpoint-reconciler-type=none",
                f"--etcd-servers={etcd_url}", "--allow-privileged=true", "--profiling=false",
                f"--cert-dir={folder / 'apiserver-certs'}",
                # The provider's plan of 100 services sends its dry-runs in parallel.
                "--max-requests-inflight=800", "--max-mutating-requests-inflight=400"])

            def readyz(server: str = server) -> bool:
                r = httpx.get(f"{server}/readyz", verify=_ctx(pki), timeout=3,
                              headers={"Authorization": f"Bearer {tokens['admin']}"})
                return r.status_code == 200

            try:
                _wait_ready(folder, "kube-apiserver", proc, readyz, 120)
            except ClusterError:
                _stop([("kube-apiserver", proc)])
                if attempt < 2 and _port_clash(folder, "kube-apiserver"):
                    continue
                raise
            running.append(("kube-apiserver", proc))
            break
        timings["apiserver"] = time.monotonic() - started

        cm_config = _kubeconfig(folder, server, "system:kube-controller-manager",
                                tokens["system:kube-controller-manager"])
        proc = _launch(folder, "kube-controller-manager", [
            str(bins / "kube-controller-manager"), f"--kubeconfig={cm_config}",
            f"--authentication-kubeconfig={cm_config}", f"--authorization-kubeconfig={cm_config}",
            "--leader-elect=false", "--port=0", "--secure-port=0",
            f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
            "--controllers=*,-bootstrapsigner,-tokencleaner,-csrsigning",
            "--use-service-account-credentials=false",
            # The simulated node renews its Lease, but a test process busy elsewhere may stall it: the node
            # must never be marked NotReady and its pods never evicted during a long session.
            "--node-monitor-grace-period=1h", "--node-startup-grace-period=1h", "--pod-eviction-timeout=1h",
            "--enable-taint-manager=false",
            "--kube-api-qps=200", "--kube-api-burst=400",
            "--concurrent-deployment-syncs=10", "--concurrent-replicaset-syncs=10",
            "--concurrent-service-syncs=2", "--concurrent-gc-syncs=20",
            "--profiling=false"])
        running.append(("kube-controller-manager", proc))
        sched_config = _kubeconfig(folder, server, "system:kube-scheduler", tokens["system:kube-scheduler"])
        proc = _launch(folder, "kube-scheduler", [
            str(bins / "kube-scheduler"), f"--kubeconfig={sched_config}",
            f"--authentication-kubeconfig={sched_config}", f"--authorization-kubeconfig={sched_config}",
            "--leader-elect=false", "--port=0", "--secure-port=0", "--profiling=false",
            "--kube-api-qps=200", "--kube-api-burst=400"])
        running.append(("kube-scheduler", proc))

        cluster = Cluster(folder=folder, server=server, etcd_url=etcd_url, ca_path=pki / "ca.crt", tokens=tokens,
                          processes=dict(running))

        def controllers_up() -> bool:
            r = httpx.get(f"{server}/api/v1/namespaces/default/serviceaccounts/default", verify=_ctx(pki),
                          timeout=3, headers={"Authorization": f"Bearer {tokens['admin']}"})
            return r.status_code == 200 and bool(r.json().get("secrets"))

        _wait_ready(folder, "kube-controller-manager", cluster.processes["kube-controller-manager"],
                    controllers_up, 120)
        scheduler = cluster.processes["kube-scheduler"]
        if scheduler.poll() is not None:
            raise _failed(folder, "kube-scheduler", f"exited with status {scheduler.returncode}")
        timings["controllers"] = time.monotonic() - started
        if agent:
            cluster.agent = NodeAgent(server, str(pki / "ca.crt"), tokens["system:node:sim-node-1"],
                                      log_path=folder / "logs" / "nodeagent.log")
            cluster.agent.start()
            timings["node"] = time.monotonic() - started
        yield cluster
        for name, proc in running:
            if proc.poll() is not None:
                raise _failed(folder, name, f"exited during the session with status {proc.returncode}")
    finally:
        if cluster is not None and cluster.agent is not None:
            cluster.agent.stop()
        _stop(list(reversed(running)))
