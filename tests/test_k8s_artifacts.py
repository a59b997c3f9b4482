"""Artifacts for Kubernetes pods: deterministic bundles, the init container's fragment (golden), and the daemon's
artifact listener tested for real: a daemon started with RAILGUARD_ARTIFACTS_ADDR serves a bundle to its
environment's token, and the init container's embedded script, run here as a process against that listener,
extracts it — or refuses (wrong digest, wrong Python, no token, a wrong token, an unknown digest, a tampered file).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from railguard.providers.kubernetes import artifacts
from railguard.providers.local.pipconfig import uv_environment
from railguard.sources.artifact_bundles import BundleStore, write_bundle
from railguard.sources.store import SnapshotStore, capture
from tests.test_cli import rg

GOLDEN = Path(__file__).parent / "golden" / "k8s"
DIGEST = "sha256:" + "ab" * 32
HERE_PYTHON = f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"


def _golden(name: str, value: object) -> None:
    path = GOLDEN / name
    text = json.dumps(value, indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; review, then UPDATE_GOLDEN=1"


def test_the_init_container_fragment_is_as_reviewed() -> None:
    container, volumes, mounts = artifacts.init_container("web", DIGEST, "http://10.0.0.5:8791/", "python:3.12-slim")
    script = container["command"][2]
    assert script == artifacts.INIT_SCRIPT
    container["command"][2] = f"<INIT_SCRIPT sha256:{hashlib.sha256(script.encode()).hexdigest()}>"
    _golden("init_container.json", {"initContainer": container, "volumes": volumes, "appVolumeMounts": mounts,
                                    "appEnv": artifacts.app_env(), "workingDir": artifacts.WORKDIR,
                                    "secret": artifacts.token_secret("shop-staging", "t0ken", {"a": "b"})})
    # The token is referenced, never inline; the app sees the artifact read-only.
    assert all("t0ken" not in json.dumps(e) for e in container["env"])
    assert mounts == [{"name": "railguard-artifact", "mountPath": "/app", "readOnly": True}]
    parts = artifacts.pod_parts("web", DIGEST, "http://10.0.0.5:8791/", "python:3.12-slim")
    assert parts["init_containers"] == [artifacts.init_container("web", DIGEST, "http://10.0.0.5:8791/",
                                                                 "python:3.12-slim")[0]]
    assert parts["workdir"] == "/app/src" and parts["mounts"] == mounts and parts["volumes"] == volumes


def test_only_a_service_without_an_image_needs_the_init_container() -> None:
    assert artifacts.needs_init_container(SimpleNamespace(image=None))
    assert artifacts.needs_init_container(SimpleNamespace())
    assert not artifacts.needs_init_container(SimpleNamespace(image="r.example/app@sha256:" + "0" * 64))
    artifacts.check_image("web", "r.example/app@sha256:" + "0" * 64)
    with pytest.raises(Exception) as refused:
        artifacts.check_image("web", "r.example/app:latest")
    assert "artifact.image_unpinned" in str(getattr(refused.value, "diagnostics", refused.value))


def test_python_version_is_read_from_official_image_names_only() -> None:
    assert artifacts.python_of("python:3.12-slim") == "3.12"
    assert artifacts.python_of("docker.io/library/python:3.11.9-bookworm") == "3.11"
    assert artifacts.python_of("python:3.13@sha256:" + "1" * 64) == "3.13"
    assert artifacts.python_of("gcr.io/distroless/python3") is None


def test_a_missing_store_is_a_diagnostic() -> None:
    with pytest.raises(Exception) as refused:
        artifacts.store_url_or_refuse("staging", None, "web")
    assert refused.value.diagnostics[0].code == "artifact.store_missing"  # type: ignore[attr-defined]
    assert artifacts.store_url_or_refuse("staging", "http://h:1/", "web") == "http://h:1"


def _tree(root: Path, mode: int, text: str = "print('hi')\n") -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "app.py").write_text(text)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "run.sh", mode)
    return root


def test_the_same_content_makes_the_same_bundle_bytes(tmp_path: Path) -> None:
    one = _tree(tmp_path / "one", 0o755)
    two = _tree(tmp_path / "two", 0o700)  # other permission bits, other mtimes, same content and exec bit
    os.utime(two / "app.py", (1, 1))
    a = write_bundle(tmp_path / "a.tar.gz", "sha256:x", one, None, None)
    b = write_bundle(tmp_path / "b.tar.gz", "sha256:x", two, None, None)
    assert a.digest == b.digest and (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    changed = write_bundle(tmp_path / "c.tar.gz", "sha256:x", _tree(tmp_path / "three", 0o755, "print(1)\n"), None,
                           None)
    assert changed.digest != a.digest
    os.symlink("/etc/passwd", one / "leak")
    with pytest.raises(Exception, match="symbolic link"):
        write_bundle(tmp_path / "d.tar.gz", "sha256:x", one, None, None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _init(url: str, digest: str, token: str | None, dest: Path, tries: int = 6) -> subprocess.CompletedProcess[str]:
    """The init container's program, as the pod runs it (python -c), against the real listener."""
    dest.mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ["PATH"], "RAILGUARD_ARTIFACT_URL": url, "RAILGUARD_ARTIFACT_DIGEST": digest,
           "RAILGUARD_ARTIFACT_DEST": str(dest), "PYTHONDONTWRITEBYTECODE": "1", "RAILGUARD_ARTIFACT_TRIES": str(tries)}
    if token is not None:
        env["RAILGUARD_ARTIFACT_TOKEN"] = token
    return subprocess.run([sys.executable, "-c", artifacts.INIT_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def _listening(port: int) -> None:
    for _ in range(200):  # bounded: the daemon started before `daemon start` returned, its listener with it
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def _code(answer: httpx.Response) -> str:
    return str(answer.json()["diagnostics"][0]["code"])


def test_the_daemon_serves_a_bundle_to_its_environment_token_only(workspace: Path, tmp_path: Path) -> None:
    home = workspace / ".railguard"
    out = Path(tempfile.mkdtemp(prefix="pods-"))  # where the "pods" extract: outside the app's tree (tmp_path)
    # Bundled before the daemon starts: its first housekeeping pass prunes snapshots no plan refers to.
    snap, _ = capture(SnapshotStore.of(home), workspace)
    bundle = artifacts.prepare(home, "staging", "web", snap.digest, HERE_PYTHON)
    (workspace / "app.py").write_text("print('v2')\n")
    snap2, _ = capture(SnapshotStore.of(home), workspace)
    second = artifacts.prepare(home, "staging", "web", snap2.digest, HERE_PYTHON)
    port = _free_port()
    started = rg("daemon", "start", cwd=workspace, env={"RAILGUARD_ARTIFACTS_ADDR": f"127.0.0.1:{port}"})
    assert started.returncode == 0, started.stdout + started.stderr
    _listening(port)
    store = BundleStore.of(home)
    token = artifacts.environment_token(home, "staging")
    base = f"http://127.0.0.1:{port}"
    url = artifacts.artifact_url(base, bundle.digest)

    fetched = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
    assert fetched.status_code == 200
    assert "sha256:" + hashlib.sha256(fetched.content).hexdigest() == bundle.digest
    assert fetched.content == bundle.path.read_bytes()
    head = httpx.head(url, headers={"Authorization": f"Bearer {token}"})
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == bundle.size and not head.content
    assert httpx.head(url).status_code == 401

    # The init container's script: verified, extracted, the app's files as in the snapshot.
    dest = out / "app"
    ran = _init(url, bundle.digest, token, dest)
    assert ran.returncode == 0, ran.stderr
    assert "verified and extracted" in ran.stderr
    assert (dest / "src" / "app.py").read_text() == "print('hi')\n"
    assert (dest / "src" / "api.py").read_text() == (workspace / "api.py").read_text()
    assert json.loads((dest / "railguard-bundle.json").read_text())["source"] == snap.digest
    assert not (dest / ".download").exists()

    # Refusals, each a diagnostic with its status.
    assert (no := httpx.get(url)).status_code == 401 and _code(no) == "artifact.token_required"
    assert (wrong := httpx.get(url, headers={"Authorization": "Bearer rgart_nope"})).status_code == 403
    assert _code(wrong) == "artifact.forbidden"
    # Another environment's token: its releases never named this bundle.
    other = artifacts.environment_token(home, "production")
    assert (cross := httpx.get(url, headers={"Authorization": f"Bearer {other}"})).status_code == 404
    assert _code(cross) == "artifact.unknown_digest"
    unknown = httpx.get(artifacts.artifact_url(base, "sha256:" + "0" * 64),
                        headers={"Authorization": f"Bearer {token}"})
    assert unknown.status_code == 404 and _code(unknown) == "artifact.unknown_digest"
    assert "staging" in unknown.json()["diagnostics"][0]["summary"]
    assert httpx.get(f"{base}/v1/plans", headers={"Authorization": f"Bearer {token}"}).status_code == 404

    # The store unreachable (nothing listens there): named, after the bounded retries.
    dead = artifacts.artifact_url(f"http://127.0.0.1:{_free_port()}", bundle.digest)
    ran = _init(dead, bundle.digest, token, out / "dead", tries=2)
    assert ran.returncode == 2 and "cannot fetch" in ran.stderr and "trying again" in ran.stderr, ran.stderr

    ran = _init(url, bundle.digest, None, out / "none")
    assert ran.returncode == 2 and "artifact.token_required" in ran.stderr and "HTTP 401" in ran.stderr
    ran = _init(url, bundle.digest, "rgart_nope", out / "wrong")
    assert ran.returncode == 2 and "artifact.forbidden" in ran.stderr and "HTTP 403" in ran.stderr

    # A second bundle of the same environment fetched under the first one's digest: refused before extraction.
    assert second.digest != bundle.digest
    ran = _init(artifacts.artifact_url(base, second.digest), bundle.digest, token, out / "mismatch")
    assert ran.returncode == 3 and "refused" in ran.stderr and "nothing was extracted" in ran.stderr
    assert list((out / "mismatch").iterdir()) == []

    # A bundle with an entry escaping the folder (stored under its true digest, listed): refused, nothing written.
    evil = out / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        payload = b"pwned\n"
        info = tarfile.TarInfo("../escaped.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    evil_hex = hashlib.sha256(evil.read_bytes()).hexdigest()
    evil.rename(store.path(evil_hex))
    store.allow("staging", evil_hex)
    ran = _init(artifacts.artifact_url(base, evil_hex), evil_hex, token, out / "evil" / "app")
    assert ran.returncode == 4 and "unsafe entry" in ran.stderr, ran.stderr
    assert not (out / "evil" / "escaped.txt").exists()

    # A stored bundle altered on disk is never served.
    os.chmod(second.path, 0o644)
    with open(second.path, "ab") as handle:
        handle.write(b"\0")
    tampered = httpx.get(artifacts.artifact_url(base, second.digest), headers={"Authorization": f"Bearer {token}"})
    assert tampered.status_code == 500 and _code(tampered) == "artifact.tampered"

    # A rotated token stops working at once.
    artifacts.rotate_token(home, "staging")
    assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 403


def test_dependencies_are_wheels_for_the_image_python_and_the_pod_checks_it(workspace: Path, tmp_path: Path) -> None:
    (workspace / "requirements.txt").write_text("idna==3.20\n")
    home = workspace / ".railguard"
    snap, _ = capture(SnapshotStore.of(home), workspace)
    other = "3.12" if sys.version_info[:2] != (3, 12) else "3.13"
    # The machine's pip index, as the registry passes it (this machine's CI has a local mirror only).
    bundle = artifacts.prepare(home, "staging", "web", snap.digest, f"python:{other}-slim", index_env=uv_environment())
    again = artifacts.prepare(home, "staging", "web", snap.digest, f"python:{other}-slim", index_env=uv_environment())
    assert again.digest == bundle.digest  # deterministic, and the dependency folder is reused
    assert (home / "bundles" / "deps").is_dir() and len(list((home / "bundles" / "deps").iterdir())) == 1
    with pytest.raises(Exception) as refused:
        artifacts.prepare(home, "staging", "web", snap.digest, "gcr.io/distroless/python3")
    assert refused.value.diagnostics[0].code == "artifact.deps_failed"  # type: ignore[attr-defined]
    port = _free_port()
    started = rg("daemon", "start", cwd=workspace, env={"RAILGUARD_ARTIFACTS_ADDR": f"127.0.0.1:{port}"})
    assert started.returncode == 0, started.stdout + started.stderr
    _listening(port)
    url = artifacts.artifact_url(f"http://127.0.0.1:{port}", bundle.digest)
    ran = _init(url, bundle.digest, artifacts.environment_token(home, "staging"), tmp_path / "app")
    # This interpreter is not the image's: the script refuses to lay out packages built for another Python.
    assert ran.returncode == 5 and f"built for Python {other}" in ran.stderr, ran.stderr


def test_a_tampered_stored_bundle_is_rebuilt_by_the_next_apply(workspace: Path) -> None:
    home = workspace / ".railguard"
    snap, _ = capture(SnapshotStore.of(home), workspace)
    made = artifacts.prepare(home, "staging", "web", snap.digest, HERE_PYTHON)
    os.chmod(made.path, 0o644)
    made.path.write_bytes(made.path.read_bytes()[:-1] + b"!")
    with pytest.raises(Exception, match="no longer matches"):
        BundleStore.of(home).verified(made.hex)
    again = artifacts.prepare(home, "staging", "web", snap.digest, HERE_PYTHON)
    assert again.digest == made.digest and BundleStore.of(home).verified(made.hex) == made.path


def test_a_build_that_is_not_a_pip_install_is_refused_for_pods(workspace: Path) -> None:
    home = workspace / ".railguard"
    snap, _ = capture(SnapshotStore.of(home), workspace)
    with pytest.raises(Exception) as refused:
        artifacts.prepare(home, "staging", "web", snap.digest, build=["npm", "run", "build"])
    assert refused.value.diagnostics[0].code == "artifact.deps_failed"  # type: ignore[attr-defined]
    made = artifacts.prepare(home, "staging", "web", snap.digest, build=["pip", "install", "-r", "requirements.txt"])
    assert BundleStore.of(home).allowed("staging", made.digest)


def test_fetch_tokens_are_derived_never_stored(tmp_path: Path) -> None:
    """A copy of the state folder holds no fetch token: it is an HMAC under the signing key (outside it)."""
    home = tmp_path / ".railguard"
    token = artifacts.environment_token(home, "staging")
    assert token.startswith("rgart_") and token == artifacts.environment_token(home, "staging")
    assert token != artifacts.environment_token(home, "production")
    for path in home.rglob("*"):
        assert not path.is_file() or token.encode() not in path.read_bytes(), path
    assert artifacts.bundle_store(home).env_of(token) == "staging"
    assert BundleStore.of(home).env_of(token) is None  # without the key nothing matches
    rotated = artifacts.rotate_token(home, "staging")
    assert rotated != token and artifacts.bundle_store(home).env_of(token) is None
    assert artifacts.bundle_store(home).env_of(rotated) == "staging"


@pytest.mark.parametrize("line", ["-r {secret}", "--requirement={secret}", "-c {secret}", "-e /srv", "idna\n-r{secret}",
                                  "--index-url http://10.0.0.1/simple", "--extra-index-url=http://x/simple",
                                  "-f /root", "--find-links /root", "--trusted-host evil", "pkg @ file://{secret}",
                                  "file:///etc/passwd", "../outside.whl", "{secret}", "pkg @ file:{secret}"])
def test_requirements_reaching_outside_the_snapshot_are_refused_before_uv_runs(workspace: Path, tmp_path: Path,
                                                                               line: str) -> None:
    secret = tmp_path / "signing.key"
    secret.write_text("TOP-SECRET-LINE\n")
    os.chmod(secret, 0o600)
    (workspace / "requirements.txt").write_text(line.format(secret=secret) + "\n")
    home = workspace / ".railguard"
    snap, _ = capture(SnapshotStore.of(home), workspace)
    with pytest.raises(Exception) as refused:
        artifacts.prepare(home, "staging", "web", snap.digest, "python:3.12-slim")
    found = refused.value.diagnostics[0]  # type: ignore[attr-defined]
    assert found.code == "artifact.deps_failed" and "refused" in found.summary
    assert "TOP-SECRET" not in found.summary + found.detail
    assert not (home / "bundles" / "deps").exists() or not list((home / "bundles" / "deps").iterdir())


@pytest.mark.skipif(os.geteuid() != 0, reason="the build user exists only when the daemon is root")
def test_pod_dependencies_install_as_the_build_user_never_as_root(workspace: Path) -> None:
    from railguard.providers.registry import _kubernetes_build_as

    (workspace / "requirements.txt").write_text("idna==3.20\n")
    # A state folder other users can traverse (pytest's tmp_path is 0700), as an isolating daemon's is.
    home = Path(tempfile.mkdtemp(prefix="rg-k8s-build-", dir="/tmp"))
    os.chmod(home, 0o711)
    try:
        _build_as_the_build_user(home, workspace, _kubernetes_build_as(home, "web"))
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _build_as_the_build_user(home: Path, workspace: Path, build_as: Any) -> None:
    snap, _ = capture(SnapshotStore.of(home), workspace)
    if build_as is None:
        pytest.skip("this machine's runtime does not isolate (no build user)")
    seen: list[tuple[int, str]] = []

    def spy(trees: list[Path]):  # type: ignore[no-untyped-def]
        from contextlib import contextmanager

        @contextmanager
        def wrapped():  # type: ignore[no-untyped-def]
            with build_as(trees) as (popen, env):
                seen.append((popen.get("user", 0), env.get("HOME", "")))
                yield popen, env
        return wrapped()

    bundle = artifacts.prepare(home, "staging", "web", snap.digest, "python:3.12-slim", index_env=uv_environment(),
                               build_as=spy)
    assert bundle.path.is_file()
    assert seen and seen[0][0] != 0 and seen[0][1] and seen[0][1] != os.path.expanduser("~")
    deps = next((home / "bundles" / "deps").iterdir())
    assert all(p.lstat().st_uid == 0 for p in deps.rglob("*"))  # taken back from the build user


def test_slow_connections_beyond_the_cap_are_refused_and_cannot_starve_a_fetch(workspace: Path) -> None:
    from railguard.daemon.artifact_server import ArtifactServer

    home = workspace / ".railguard"
    snap, _ = capture(SnapshotStore.of(home), workspace)
    bundle = artifacts.prepare(home, "staging", "web", snap.digest, HERE_PYTHON)
    token = artifacts.environment_token(home, "staging")

    class Small(ArtifactServer):
        max_connections = 3
        head_timeout = 2.0

    server = Small(("127.0.0.1", 0), home)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    slow: list[socket.socket] = []
    try:
        url = artifacts.artifact_url(f"http://127.0.0.1:{server.server_address[1]}", bundle.digest)
        for _ in range(10):  # more slow clients than the cap: each connects and sends nothing
            slow.append(socket.create_connection(server.server_address[:2], timeout=10))
        answers: dict[socket.socket, bytes] = {}
        for _ in range(600):  # bounded: each is answered 503 at once, or closed at its head timeout
            ready, _w, _x = select.select([s for s in slow if s not in answers], [], [], 0.1)
            for sock in ready:
                answers[sock] = sock.recv(64)
            if len(answers) == len(slow):
                break
        assert len(answers) == len(slow)
        busy = sum(a.startswith(b"HTTP/1.1 503") for a in answers.values())
        dropped = sum(a == b"" for a in answers.values())
        assert busy + dropped == len(slow) and busy >= 1 and dropped >= Small.max_connections
        # The slow ones holding a slot lose it at the head timeout: a normal fetch gets through while all stay open.
        got = None
        for _ in range(200):
            got = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
            if got.status_code != 503:
                break
            time.sleep(0.05)
        assert got is not None and got.status_code == 200
        assert hashlib.sha256(got.content).hexdigest() == bundle.digest.removeprefix("sha256:")
    finally:
        for sock in slow:
            sock.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_a_client_dribbling_its_head_loses_its_slot_at_the_deadline_and_one_address_has_few(workspace: Path) -> None:
    """A byte every 0.2 s never trips a timeout per read: the head's deadline is for the whole head. And one pod (one
    address) cannot hold every slot: beyond ``per_address`` it is answered 503 at once."""
    from railguard.daemon.artifact_server import ArtifactServer

    class Small(ArtifactServer):
        max_connections = 10
        per_address = 2
        head_timeout = 1.0

    server = Small(("127.0.0.1", 0), workspace / ".railguard")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    held: list[socket.socket] = []
    try:
        dribbler = socket.create_connection(server.server_address[:2], timeout=10)
        held.append(dribbler)
        dribbler.sendall(b"GET /v1/artifacts/x HTTP/1.1\r\nX-Slow: ")
        start, cut_at = time.monotonic(), None
        for _ in range(40):  # up to 8 s of dribbling; the deadline is 1 s
            try:
                dribbler.sendall(b"A")
                ready, _w, _x = select.select([dribbler], [], [], 0.2)
                if ready and dribbler.recv(64) == b"":
                    cut_at = time.monotonic() - start
                    break
            except OSError:
                cut_at = time.monotonic() - start
                break
        assert cut_at is not None and cut_at < 4.0, cut_at
        for _ in range(100):  # bounded: the cut connection's handler gives its slot back
            if not server._by_address:
                break
            time.sleep(0.05)
        assert not server._by_address
        second = socket.create_connection(server.server_address[:2], timeout=10)
        third = socket.create_connection(server.server_address[:2], timeout=10)
        held += [second, third]
        time.sleep(0.2)  # both accepted and holding a slot of this address
        fourth = socket.create_connection(server.server_address[:2], timeout=10)
        held.append(fourth)
        assert fourth.recv(64).startswith(b"HTTP/1.1 503")
    finally:
        for sock in held:
            sock.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_bundles_go_when_neither_a_kept_release_nor_a_stored_snapshot_names_their_source(workspace: Path) -> None:
    from railguard.model.api import KeptRelease
    from railguard.model.resources import Resource
    from railguard.providers.kubernetes.provider import KubernetesProvider

    home = workspace / ".railguard"
    snapshots = SnapshotStore.of(home)
    old, _ = capture(snapshots, workspace)
    first = artifacts.prepare(home, "staging", "web", old.digest, HERE_PYTHON)
    (workspace / "app.py").write_text("print('v2')\n")
    new, _ = capture(snapshots, workspace)
    second = artifacts.prepare(home, "staging", "web", new.digest, HERE_PYTHON)
    provider = KubernetesProvider(home, None, targets=lambda env: None)
    release = KeptRelease(env="staging", number=2, desired=[Resource(
        address="staging/service.web", kind="service", name="web", env="staging", fingerprint="f",
        config={"source": new.digest})])
    assert provider.prune_artifacts([release]) == []  # both snapshots still stored: nothing goes yet
    assert snapshots.prune({new.digest}) == [old.digest]  # retention drops the old snapshot ...
    assert provider.prune_artifacts([release], dry_run=True) == [first.digest]
    assert first.path.is_file()  # a dry run removes nothing
    assert provider.prune_artifacts([release]) == [first.digest]  # ... and the next pass its bundle
    store = artifacts.bundle_store(home)
    assert not first.path.exists() and not store.allowed("staging", first.digest)
    assert second.path.is_file() and store.allowed("staging", second.digest)



def test_uv_config_in_the_source_cannot_point_the_install_elsewhere(workspace: Path, tmp_path: Path) -> None:
    """The agent writes the source: a uv.toml (or [tool.uv.sources]) naming a wheel outside the snapshot is ignored,
    so what gets installed, and shared with other environments under the same key, is what the lines name."""
    from tests.wheels import make_wheel

    outside = make_wheel(tmp_path / "outside", "idna", "99.0", "TROJAN = True\n")
    (workspace / "uv.toml").write_text(f'no-index = true\nfind-links = ["{outside.parent}"]\n')
    (workspace / "requirements.txt").write_text("idna\n")
    home = workspace / ".railguard"
    snap, _ = capture(SnapshotStore.of(home), workspace)
    other = "3.12" if sys.version_info[:2] != (3, 12) else "3.13"
    artifacts.prepare(home, "staging", "web", snap.digest, f"python:{other}-slim", index_env=uv_environment())
    installed = {p.name for p in (home / "bundles" / "deps").rglob("idna-*.dist-info")}
    assert installed and not any(name.startswith("idna-99.0") for name in installed), installed


def test_local_wheels_the_requirements_name_are_part_of_the_dependency_key(workspace: Path) -> None:
    """Two snapshots with the same requirements.txt but other bytes in the wheel it names never share a folder."""
    from tests.wheels import make_wheel

    home = workspace / ".railguard"
    (workspace / "requirements.txt").write_text("./wheels/tinypkg-1.0-py3-none-any.whl\n")
    other = "3.12" if sys.version_info[:2] != (3, 12) else "3.13"
    for text in ("GOOD = True\n", "GOOD = False  # another environment's trojan\n"):
        shutil.rmtree(workspace / "wheels", ignore_errors=True)
        make_wheel(workspace / "wheels", "tinypkg", "1.0", text)
        snap, _ = capture(SnapshotStore.of(home), workspace)
        artifacts.prepare(home, "staging", "web", snap.digest, f"python:{other}-slim", index_env=uv_environment())
    assert len(list((home / "bundles" / "deps").iterdir())) == 2


def test_dependency_folders_go_with_the_last_bundle_made_with_them(workspace: Path) -> None:
    from railguard.model.api import KeptRelease
    from railguard.model.resources import Resource
    from railguard.providers.kubernetes.provider import KubernetesProvider

    home = workspace / ".railguard"
    snapshots = SnapshotStore.of(home)
    (workspace / "requirements.txt").write_text("idna==3.20\n")
    old, _ = capture(snapshots, workspace)
    first = artifacts.prepare(home, "staging", "web", old.digest, HERE_PYTHON, index_env=uv_environment())
    deps = home / "bundles" / "deps"
    [first_deps] = list(deps.iterdir())
    (workspace / "requirements.txt").write_text("idna==3.20\n# another dependency set: another folder\n")
    new, _ = capture(snapshots, workspace)
    second = artifacts.prepare(home, "staging", "web", new.digest, HERE_PYTHON, index_env=uv_environment())
    [second_deps] = [p for p in deps.iterdir() if p != first_deps]
    (deps / ".deps.left-by-a-killed-build").mkdir()
    provider = KubernetesProvider(home, None, targets=lambda env: None)
    release = KeptRelease(env="staging", number=2, desired=[Resource(
        address="staging/service.web", kind="service", name="web", env="staging", fingerprint="f",
        config={"source": new.digest})])
    assert snapshots.prune({new.digest}) == [old.digest]
    going = [first.digest, "deps/.deps.left-by-a-killed-build", f"deps/{first_deps.name}"]
    assert sorted(provider.prune_artifacts([release], dry_run=True)) == sorted(going)
    assert first_deps.is_dir() and first.path.is_file()  # a dry run removes nothing
    assert sorted(provider.prune_artifacts([release])) == sorted(going)
    assert not first_deps.exists() and not (deps / ".deps.left-by-a-killed-build").exists()
    assert second_deps.is_dir() and second.path.is_file()  # what a kept bundle was made with stays
    assert provider.prune_artifacts([release]) == []
