"""How a release's artifact reaches a pod: a bundle by digest, fetched and verified by an init container.

Railguard builds no images. A service without ``image`` runs on the environment's ``base_image``
(default ``python:3.12-slim``); its artifact — the plan's source snapshot plus its third-party wheels
for that image's Python (:mod:`railguard.providers.kubernetes.artifact_deps`) — is a bundle
(:mod:`railguard.sources.artifact_bundles`: deterministic bytes, named by their SHA-256) that the
daemon's artifact listener serves (:mod:`railguard.daemon.artifact_server`). The pod gets an init
container on the same base image running a small embedded script (``python -c``: no extra image) that
downloads the bundle by digest with the environment's read-only artifact token (from a Secret),
checks the SHA-256 before extracting anything (a mismatch is refused with a message and exit status 3),
and extracts into an emptyDir that the app container mounts read-only at ``/app``. A service that
gives ``image = "registry/app@sha256:…"`` gets no init container (:func:`needs_init_container`).

Pure functions (manifest fragments) plus :func:`prepare`, which makes the bundle and lists it for the
environment. Called by the Kubernetes provider when it renders and applies a Deployment.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from railguard.model.diagnostics import RailguardError, error
from railguard.providers.kubernetes import artifact_deps
from railguard.secrets.signing import sign
from railguard.sources.artifact_bundles import TOKEN_PURPOSE, Bundle, BundleError, BundleStore, hex_of
from railguard.sources.store import SnapshotStore, materialize_or_capture

DEFAULT_BASE_IMAGE = "python:3.12-slim"
VOLUME = "railguard-artifact"
MOUNT = "/app"
WORKDIR = f"{MOUNT}/src"
INIT_NAME = "railguard-artifact"
TOKEN_SECRET = "railguard-artifact-token"
TOKEN_KEY = "token"
_PYTHON_TAG = re.compile(r"(?:^|/)python:(\d+)\.(\d+)(?:[.\-@]|$)")
_IMAGE_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")

# The init container's program. Standard library only (it runs on the plain base image), no shell.
# Exit statuses: 2 the store refused or cannot be reached, 3 digest mismatch, 4 unsafe bundle, 5 wrong Python.
INIT_SCRIPT = r'''
import hashlib, json, os, sys, tarfile, time, urllib.error, urllib.request
url = os.environ["RAILGUARD_ARTIFACT_URL"]
want = os.environ["RAILGUARD_ARTIFACT_DIGEST"].removeprefix("sha256:")
dest = os.environ.get("RAILGUARD_ARTIFACT_DEST", "/app")
token = os.environ.get("RAILGUARD_ARTIFACT_TOKEN", "")
tries = max(1, int(os.environ.get("RAILGUARD_ARTIFACT_TRIES", "6")))
def say(text):
    print("railguard-artifact: " + text, file=sys.stderr, flush=True)
def fail(code, text):
    say(text)
    sys.exit(code)
done = os.path.join(dest, ".railguard-digest")
if os.path.isfile(done) and open(done).read().strip() == want:
    say("sha256:" + want + " already extracted")
    sys.exit(0)
part = os.path.join(dest, ".download")
for attempt in range(tries):
    try:
        request = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
        digest = hashlib.sha256()
        with urllib.request.urlopen(request, timeout=60) as answer, open(part, "wb") as out:
            while True:
                chunk = answer.read(1 << 20)
                if not chunk:
                    break
                digest.update(chunk)
                out.write(chunk)
        break
    except urllib.error.HTTPError as exc:
        body = exc.read(8192).decode("utf-8", "replace")
        try:
            first = json.loads(body)["diagnostics"][0]
            body = first["code"] + ": " + first["summary"] + ". " + first["detail"]
        except Exception:
            body = body[:300]
        if exc.code in (502, 503, 504) and attempt < tries - 1:
            time.sleep(2 ** attempt)
            continue
        fail(2, "the artifact store refused " + url + " (HTTP " + str(exc.code) + "): " + body)
    except (urllib.error.URLError, OSError) as exc:
        if attempt == tries - 1:
            fail(2, "cannot fetch " + url + ": " + str(exc))
        say("cannot fetch " + url + " (" + str(exc) + "), trying again")
        time.sleep(2 ** attempt)
got = digest.hexdigest()
if got != want:
    os.unlink(part)
    fail(3, "refused: the artifact from " + url + " has sha256 " + got + ", not " + want +
         " as the release names; nothing was extracted")
with tarfile.open(part, "r:gz") as tar:
    members = tar.getmembers()
    for member in members:
        parts = member.name.split("/")
        if not (member.isfile() or member.isdir()) or member.name.startswith("/") or ".." in parts:
            fail(4, "refused: the artifact holds an unsafe entry " + repr(member.name))
    manifest = json.load(tar.extractfile("railguard-bundle.json"))
    have = "%d.%d" % sys.version_info[:2]
    if manifest.get("python") and manifest["python"] != have:
        fail(5, "refused: the artifact's packages were built for Python " + manifest["python"] +
             ", this image runs Python " + have + "; set base_image to a python:" + manifest["python"] + " image")
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, members=members, filter="data")
    else:
        tar.extractall(dest, members=members)
os.unlink(part)
with open(done, "w") as out:
    out.write(want)
say("sha256:" + want + " verified and extracted into " + dest + " (" + str(len(members)) + " files)")
'''.lstrip()


def needs_init_container(service: Any) -> bool:
    """Whether the service's pods need the artifact: False when it gives an image pinned by digest."""
    return not getattr(service, "image", None)


def check_image(service_name: str, image: str) -> None:
    """An ``image`` must be pinned by digest: a tag can move under a reviewed plan."""
    if not _IMAGE_DIGEST.search(image):
        raise RailguardError(error(
            "artifact.image_unpinned", f"Service '{service_name}' names an image without a digest",
            f"'{image}' is not pinned by digest; a tag can point at other code after the plan was reviewed.",
            "Write the image as `registry/app@sha256:<64 hex digits>` (e.g. from `docker buildx imagetools "
            "inspect`).", address=f"services.{service_name}.image"))


def python_of(base_image: str) -> str | None:
    """The Python version of an official ``python:X.Y…`` image (``"3.12"``), or None when the name does not say."""
    found = _PYTHON_TAG.search(base_image)
    return f"{found.group(1)}.{found.group(2)}" if found else None


def store_url_or_refuse(env: str, store_url: str | None, service_name: str) -> str:
    """The environment's artifact store URL; a service without ``image`` cannot run without one."""
    if not store_url or not re.match(r"^https?://[^/\s]+", store_url):
        raise RailguardError(error(
            "artifact.store_missing", f"Environment '{env}' has no artifact store for service '{service_name}'",
            f"Service '{service_name}' gives no image, so its pods fetch its artifact from an artifact store, and "
            f"environment '{env}' sets none (or not an http(s) URL: {store_url!r}).",
            "Start the daemon with RAILGUARD_ARTIFACTS_ADDR=HOST:PORT and set "
            f"`[environments.{env}.kubernetes] artifact_store = \"http://HOST:PORT\"` (an address the cluster's "
            "pods reach), or give the service `image = \"registry/app@sha256:…\"`.",
            address=f"environments.{env}.kubernetes.artifact_store"))
    return store_url.rstrip("/")


def artifact_url(store_url: str, bundle_digest: str) -> str:
    hexd = hex_of(bundle_digest)
    if hexd is None:
        raise ValueError(f"{bundle_digest!r} is not a sha256 digest")
    return f"{store_url.rstrip('/')}/v1/artifacts/{hexd}"


def init_container(service: str, bundle_digest: str, store_url: str,
                   base_image: str = DEFAULT_BASE_IMAGE) -> tuple[dict[str, Any], list[dict[str, Any]],
                                                                  list[dict[str, Any]]]:
    """(the init container, the pod's volumes, the app container's volumeMounts) that put the artifact at /app.

    ``service`` names the service (for the container's labels in messages only); the token comes from the
    Secret :data:`TOKEN_SECRET` (see :func:`token_secret`), never inline.
    """
    hexd = hex_of(bundle_digest)
    if hexd is None:
        raise ValueError(f"{bundle_digest!r} is not a sha256 digest")
    container: dict[str, Any] = {
        "name": INIT_NAME,
        "image": base_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-c", INIT_SCRIPT],
        "env": [
            {"name": "RAILGUARD_ARTIFACT_URL", "value": artifact_url(store_url, hexd)},
            {"name": "RAILGUARD_ARTIFACT_DIGEST", "value": f"sha256:{hexd}"},
            {"name": "RAILGUARD_ARTIFACT_DEST", "value": MOUNT},
            {"name": "RAILGUARD_SERVICE", "value": service},
            {"name": "RAILGUARD_ARTIFACT_TOKEN",
             "valueFrom": {"secretKeyRef": {"name": TOKEN_SECRET, "key": TOKEN_KEY}}},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
        ],
        "volumeMounts": [{"name": VOLUME, "mountPath": MOUNT}],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    volumes = [{"name": VOLUME, "emptyDir": {}}]
    mounts = [{"name": VOLUME, "mountPath": MOUNT, "readOnly": True}]
    return container, volumes, mounts


def pod_parts(service: str, bundle_digest: str, store_url: str, base_image: str = DEFAULT_BASE_IMAGE
              ) -> dict[str, Any]:
    """Everything a pod needs for the artifact, keyed as the provider's ``ArtifactMount`` fields
    (``ArtifactMount(**pod_parts(...))``): init containers, volumes, the app's mounts, variables, working dir."""
    container, volumes, mounts = init_container(service, bundle_digest, store_url, base_image)
    return {"init_containers": [container], "volumes": volumes, "mounts": mounts, "env": app_env(),
            "workdir": WORKDIR}


def app_env() -> list[dict[str, str]]:
    """Variables of the app container that make it run the extracted artifact (with workingDir :data:`WORKDIR`)."""
    return [{"name": "PYTHONPATH", "value": f"{MOUNT}/src:{MOUNT}/deps"},
            {"name": "PATH", "value": f"{MOUNT}/deps/bin:/usr/local/bin:/usr/bin:/bin"},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}]


def token_secret(namespace: str, token: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """The Secret holding the environment's read-only artifact token, referenced by the init container."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": TOKEN_SECRET, "namespace": namespace, "labels": dict(labels or {})},
        "type": "Opaque",
        "data": {TOKEN_KEY: base64.b64encode(token.encode()).decode()},
    }


def bundle_store(home: Path) -> BundleStore:
    """The bundle store of ``home``, its fetch tokens derived under the signing key (outside the state folder)."""
    return BundleStore.of(home, signer=functools.partial(sign, home, TOKEN_PURPOSE))


def environment_token(home: Path, env: str) -> str:
    """``env``'s read-only artifact token, for :func:`token_secret`."""
    return bundle_store(home).token(env)


def rotate_token(home: Path, env: str) -> str:
    """A new artifact token for ``env``: the old one is refused at once (the next apply writes the new Secret)."""
    return bundle_store(home).rotate(env)


def prepare(home: Path, env: str, service: str, source_digest: str, base_image: str = DEFAULT_BASE_IMAGE,
            build: list[str] | None = None, index_env: Mapping[str, str] | None = None,
            source_root: str | None = None, build_as: artifact_deps.BuildAs | None = None) -> Bundle:
    """Make (or find) the bundle of ``source_digest`` for ``base_image`` and let ``env``'s token fetch it.

    The snapshot is the one the plan stored; dependencies are installed as wheels for the image's Python
    and cached by what decides them. ``index_env``: uv's index variables (the registry passes
    ``railguard.providers.local.pipconfig.uv_environment()``, so pods' wheels come from the index local builds use).
    ``source_root``: the working tree, used only when the snapshot is not stored and the tree has exactly that
    digest (a plan from before snapshots were stored), as the local runtime does.
    ``build_as``: who runs uv (the registry passes the app's build user when the daemon is root).
    """
    artifact_deps.refuse_build(service, build)
    snapshots = SnapshotStore.of(home)
    bundles = bundle_store(home)
    python = python_of(base_image)
    try:
        with tempfile.TemporaryDirectory(prefix=".src.", dir=_mkdir(bundles.root)) as tmp:
            os.chmod(tmp, 0o711)  # the build user reaches the snapshot handed to it, lists nothing else
            src = Path(tmp) / "src"
            src.mkdir()
            materialize_or_capture(snapshots, source_digest, src, Path(source_root) if source_root else None)
            deps = (_deps(bundles.root, src, python, service, base_image, index_env, build_as)
                    if artifact_deps.wanted(src) else None)
        made = bundles.build(snapshots, source_digest, deps, python)
        if deps is not None:  # so retention knows which dependency folders kept bundles were made with
            bundles.record_deps(made.digest.removeprefix("sha256:"), deps)
    except BundleError as exc:
        raise RailguardError(error(
            "artifact.bundle_failed", f"The artifact of service '{service}' cannot be bundled",
            str(exc), f"Plan environment '{env}' again so the source snapshot is stored, then apply that plan.",
            address=f"{env}/service.{service}")) from exc
    except LookupError as exc:  # SnapshotMissing
        raise RailguardError(error(
            "artifact.bundle_failed", f"The artifact of service '{service}' cannot be bundled",
            f"{exc}", f"Plan environment '{env}' again so the source snapshot is stored, then apply that plan.",
            address=f"{env}/service.{service}")) from exc
    bundles.allow(env, made.digest)
    return made


PLACEHOLDER_DIGEST = "sha256:" + "0" * 64  # a plan's stand-in for a bundle not made yet (apply makes it)


def bundle_index(home: Path) -> dict[tuple[str, str | None], str]:
    """The stored bundles by (source digest, Python their packages were built for, None without packages)."""
    bundles = bundle_store(home)
    found: dict[tuple[str, str | None], str] = {}
    blobs = bundles.root / "blobs"
    for path in sorted(blobs.glob("*.tar.gz")) if blobs.is_dir() else []:
        hexd = path.name.removesuffix(".tar.gz")
        manifest = bundles.manifest_of(hexd)
        if manifest is not None and manifest.get("source"):
            python = manifest.get("python")
            found[(str(manifest["source"]), str(python) if python else None)] = f"sha256:{hexd}"
    return found


def planned_digest(index: dict[tuple[str, str | None], str], source_digest: str, base_image: str) -> str:
    """The bundle an apply of ``source_digest`` on ``base_image`` would use, when it exists already."""
    return (index.get((source_digest, python_of(base_image))) or index.get((source_digest, None))
            or PLACEHOLDER_DIGEST)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _deps(root: Path, src: Path, python: str | None, service: str, base_image: str,
          index_env: Mapping[str, str] | None, build_as: artifact_deps.BuildAs | None = None) -> Path:
    """The dependency folder for this dependency set and Python, built once and kept under ``deps/<key>``."""
    if python is None:
        raise RailguardError(error(
            "artifact.deps_failed", f"Railguard cannot tell the Python version of base image '{base_image}'",
            f"Service '{service}' has third-party dependencies, which are installed as wheels for the image's "
            "Python; the image name does not say which (only official `python:X.Y…` images do).",
            "Use an official python image (e.g. `python:3.12-slim`) as base_image, or give the service an image.",
            address=f"services.{service}"))
    # The key is everything the install reads: the requirement files, the local wheels/trees they name, and the index
    # (another index can serve other bytes under the same names). A folder is shared by every environment whose
    # dependencies have this key, so nothing of one environment's snapshot that is not in the key may reach it.
    material = hashlib.sha256(python.encode() + artifact_deps.PLATFORM.encode())
    for name, value in sorted((index_env or {}).items()):
        material.update(b"index\0" + name.encode() + b"=" + value.encode() + b"\0")
    for name in ("requirements.txt", "pyproject.toml"):
        if (src / name).is_file():
            material.update(name.encode() + b"\0" + (src / name).read_bytes())
    for named in sorted(set(artifact_deps.check_requirements(src, service))):
        for path in sorted([named, *named.rglob("*")]) if named.is_dir() else [named]:
            if path.is_file() and not path.is_symlink():
                material.update(b"file\0" + str(path.relative_to(src.resolve())).encode() + b"\0"
                                + hashlib.sha256(path.read_bytes()).digest())
    final = root / "deps" / ("v2-" + material.hexdigest()[:24])
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".deps.", dir=final.parent))
    try:
        artifact_deps.build(src, work / "out", python, service, index_env, build_as)
        try:
            os.replace(work / "out", final)
        except OSError:  # another build finished first: its folder is as good
            pass
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final

