"""Immutable artifacts: a snapshot of the app source plus its build output.

An artifact is identified by the source digest and the build command, lives in its own
folder under ``<state>/artifacts/``, and is built at most once, in place: every artifact has
its own virtualenv at its final path (made by uv, so installed console scripts such as
``gunicorn`` run and the app never runs on Railguard's interpreter). The source is the snapshot
stored when the plan was made (:mod:`railguard.sources.store`, beside ``artifacts/`` in the state
folder), never the working tree. Third-party packages live in a shared dependency layer
(:mod:`railguard.providers.local.layers`) keyed by the dependency files, so a change to the app's
code alone re-snapshots the source and links the existing layer. The app's own pyproject package is
installed into the artifact; a ``build`` that is more than a pip install runs in the artifact's
folder with its venv on PATH. Output streams to ``on_line`` and to ``build.log``, kept beside the
artifact. Once built, the folder is sealed read-only with a manifest
(:mod:`railguard.providers.local.immutable`) and :func:`verify` checks it (and its layer) before
anything starts from it. Releases and rollbacks run artifacts; nothing is ever rebuilt from the
working tree for a rollback. Called by the local provider's rollout; :func:`prune` deletes the
artifacts retention let go (the local provider decides which must stay) and the layers no
remaining artifact uses.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from railguard.model.resources import Resource
from railguard.providers.local import buildas, dependencies, immutable, layers
from railguard.providers.local.buildrun import ArtifactError, OnLine, run_streamed
from railguard.sources.store import FOLDER as SOURCES
from railguard.sources.store import SnapshotMissing, SnapshotStore, materialize_or_capture

__all__ = ["ArtifactError", "ArtifactTampered", "Artifact", "ensure", "find", "verify", "prune", "referenced"]

MARKER = "artifact.json"
LAYER_REF = "layer.ref.json"  # inside the sealed tree: which layer (and which manifest of it) this artifact runs
BUILD_LOG = "build.log"  # kept in the artifact's folder, also when the build failed
SEALED_EXCLUDE = frozenset({MARKER, BUILD_LOG})
_RESOLVER_LINE = re.compile(r"(No matching distribution|No solution found|Because |not found in the package "
                            r"registry|error:|ERROR:|Could not find|unsatisfiable)", re.IGNORECASE)
# Manifest digests of artifacts this process built or verified: a rewrite of the manifest itself (which
# lives in the folder) is caught for as long as the daemon runs. After a restart the marker is the anchor.
_known: dict[str, str] = {}


class ArtifactTampered(ArtifactError):
    """A built artifact (or its dependency layer) no longer matches its manifest."""

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message, problems)
        self.problems = problems


@dataclass(frozen=True)
class Artifact:
    path: Path
    digest: str
    layer: Path | None = None

    @property
    def src(self) -> Path:
        return self.path / "src"

    @property
    def bin_dirs(self) -> list[str]:
        """Folders put first on a replica's PATH: the artifact's own venv, never Railguard's.

        Only an artifact built before every artifact had a venv falls back to the interpreter
        Railguard runs on, so its releases still roll back.
        """
        if (self.path / "venv" / "bin").is_dir():
            return [str(self.path / "venv" / "bin")]
        return [str(Path(sys.executable).parent)]

    @property
    def readonly(self) -> tuple[str, ...]:
        """What a replica must never write: the artifact and its layer."""
        return tuple(str(p) for p in (self.path, self.layer) if p is not None)


def artifact_id(source_digest: str, build: list[str] | None) -> str:
    return hashlib.sha256(json.dumps([source_digest, build]).encode()).hexdigest()[:20]


def base_path(bin_dirs: list[str]) -> str:
    return os.pathsep.join([*bin_dirs, "/usr/local/bin", "/usr/bin", "/bin"])


def _marker(path: Path) -> dict[str, object] | None:
    try:
        marker = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("status") == "built" else None


def _layer_ref(path: Path) -> dict[str, str] | None:
    try:
        ref = json.loads((path / LAYER_REF).read_text())
    except (OSError, ValueError):
        return None
    return ref if isinstance(ref, dict) and ref.get("key") else None


def _from_marker(root: Path, path: Path, digest: str, marker: dict[str, object]) -> Artifact:
    # The layer is named by a file the artifact's manifest covers, not by the marker (which is not covered):
    # pointing the marker at a pristine layer must not get a tampered one past the check.
    ref = _layer_ref(path)
    return Artifact(path, digest, root / layers.LAYERS / ref["key"] if ref else None)


def find(root: Path, source_digest: str, build: list[str] | None) -> Artifact | None:
    """The artifact if it was built successfully before."""
    path = root / artifact_id(source_digest, build)
    marker = _marker(path)
    return _from_marker(root, path, source_digest, marker) if marker is not None else None


def at(path: Path, digest: str) -> Artifact:
    """The artifact in ``path`` (a replica set's record), with the layer its marker names."""
    marker = _marker(path)
    return _from_marker(path.parent, path, digest, marker) if marker is not None else Artifact(path, digest)


def verify(artifact: Artifact) -> None:
    """Raise :class:`ArtifactTampered` unless the artifact and its layer are exactly as built.

    Artifacts built before manifests existed (no ``manifest.json``) are accepted as they are.
    """
    marker = _marker(artifact.path)
    if marker is None or "manifest" not in marker:
        if marker is None and (artifact.path / "src").is_dir() and not (artifact.path / MARKER).exists():
            raise ArtifactTampered(f"the artifact {artifact.path.name} has no completion marker", ["marker missing"])
        return
    expected = _known.get(str(artifact.path)) or str(marker["manifest"])
    problems = immutable.verify(artifact.path, SEALED_EXCLUDE, expected)
    where = f"artifact {artifact.path.name}"
    ref = _layer_ref(artifact.path) if not problems else None
    if ref is not None:
        layer = artifact.path.parent / layers.LAYERS / ref["key"]
        problems = (immutable.verify(layer, frozenset({layers.MARKER}), ref.get("manifest"))
                    if (layer / layers.MARKER).is_file() else ["its dependency layer is gone"])
        where = f"dependency layer {layer.name} of artifact {artifact.path.name}"
    if problems:
        raise ArtifactTampered(f"the {where} changed after it was built ({'; '.join(problems[:5])})", problems)
    _known[str(artifact.path)] = expected


def ensure(root: Path, source_dir: Path, source_digest: str, build: list[str] | None,
           env: dict[str, str], on_line: OnLine | None = None) -> Artifact:
    """Return the built artifact for this source digest and build command, making it if needed.

    The artifact is built in its final folder, because a virtualenv records its own path (console
    scripts' shebangs, ``pyvenv.cfg``) and moving it would break every installed command. What says
    "complete" is the marker, written atomically last: a crashed build has no marker and is wiped by
    the next attempt. Builds of one artifact are serialized by a lock file, so two concurrent
    builds never write into the same folder.
    """
    found = find(root, source_digest, build)
    if found is not None:
        if on_line:
            on_line(f"artifact {found.path.name} already built: reusing it")
        return found
    final = root / artifact_id(source_digest, build)
    root.mkdir(parents=True, exist_ok=True)
    with locked(root, final.name, blocking=True):
        found = find(root, source_digest, build)
        if found is not None:  # another build finished while this one waited for the lock
            return found
        immutable.remove_tree(final)  # a crashed or failed build: no marker, so never used
        final.mkdir()
        try:  # the plan's stored snapshot, never the working tree (only a tree with this very digest stands in)
            snap = materialize_or_capture(SnapshotStore(root.parent / SOURCES), source_digest, final / "src",
                                          source_dir)
        except SnapshotMissing as exc:
            raise ArtifactError(
                f"the artifact for source {source_digest[:19]} does not exist and its snapshot is not stored "
                f"({exc}); Railguard never builds a release from a working tree with other content", missing=True,
            ) from exc
        try:
            buildas.hand_over(final)  # isolated: the app's build user writes it during the build only
            layer = _build(root, final, build, env, source_digest, on_line)
        except ArtifactError as exc:
            _reclaim(final)
            raise ArtifactError(_with_cause(str(exc), exc.log_tail), exc.log_tail, exc.missing) from exc
        _reclaim(final)
        if layer is not None:
            (final / LAYER_REF).write_text(json.dumps({"key": layer.key,
                                                       "manifest": immutable.manifest_digest(layer.path)}))
        manifest = immutable.seal(final, SEALED_EXCLUDE)
        os.chmod(final, 0o755)
        marker = final / f".{MARKER}.tmp"
        marker.write_text(json.dumps({
            "status": "built", "digest": source_digest, "build": build, "built_at": time.time(),
            "git_commit": snap.git_commit, "git_dirty": snap.git_dirty, "files": len(snap.files),
            "layer": layer.key if layer else None, "manifest": manifest}))
        os.replace(marker, final / MARKER)
        os.chmod(final / MARKER, 0o444)
        os.chmod(final / BUILD_LOG, 0o444)
        os.chmod(final, 0o555)
        _known[str(final)] = manifest
    if on_line:
        on_line(f"artifact {final.name} built and sealed read-only")
    return Artifact(final, source_digest, layer.path if layer else None)


def _reclaim(final: Path) -> None:
    """The built folder back to the daemon's user before it writes its marker and seals it."""
    try:
        buildas.reclaim(final, planted=(LAYER_REF, immutable.MANIFEST, MARKER, f".{MARKER}.tmp", BUILD_LOG))
    except buildas.ReclaimError as exc:
        raise ArtifactError(f"the build of {final.name} is refused: {exc}") from exc


def _with_cause(message: str, lines: list[str]) -> str:
    """The build's failure message with the resolver's (or compiler's) own words, which say what to fix."""
    cause = [line.strip(" ×╰─▶│") for line in lines if _RESOLVER_LINE.search(line)]
    cause = [c for c in cause if c][:3]
    return f"{message}: {' / '.join(cause)}" if cause else message


@contextmanager
def locked(root: Path, name: str, *, blocking: bool) -> Iterator[bool]:
    """Hold the artifact's build lock; yields False when ``blocking`` is off and someone else holds it.

    :func:`prune` removes the lock file of an artifact it deletes, so a lock taken on a file that is
    no longer the one at the path is taken again on the current one.
    """
    path = root / f".{name}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                current = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                yield True
                return
        finally:
            os.close(fd)  # closing releases the lock


_locked = locked


def _build(root: Path, folder: Path, build: list[str] | None, env: dict[str, str], source_digest: str,
           on_line: OnLine | None) -> layers.Layer | None:
    """Create the artifact's own interpreter (always, so an app never runs on Railguard's), link or build its
    dependency layer, install the app's own package, run the rest of the build, precompile."""
    log = folder / BUILD_LOG
    src = folder / "src"
    deps = layers.plan(src, build)
    dependencies.check_python(src, deps)
    environ = layers.uv_env(env)
    uvb = layers.uv_bin()
    venv = folder / "venv"
    # pip only when a custom build calls it (uv's venvs have none): a plain pip install is uv's job already.
    seed = ["--seed"] if deps.rest and re.search(r"\bpip3?\b", " ".join(deps.rest)) else []
    run_streamed([uvb, "venv", "--quiet", *seed, "--python", layers.base_python(), str(venv)], cwd=src,
                 env=environ, log=log, on_line=on_line, what="creating the artifact's virtualenv")
    layer = None
    dependencies.check_markers(src, deps)
    if deps.layered and (deps.requirements or deps.packages or deps.lock or deps.project):
        key = layers.key(src, deps, source_digest, environ)
        layer = layers.ensure(root / layers.LAYERS, src, deps, key, env, log, on_line)
        linked = layers.link(layer, venv)
        if on_line:
            on_line(f"dependencies: layer {key} linked ({linked} console scripts)")
    python = str(venv / "bin" / "python")
    if deps.project:
        name = _project_name(src)
        try:
            run_streamed([uvb, "pip", "install", "--python", python, "--no-deps", "--link-mode=copy",
                          "--compile-bytecode", *(["--reinstall-package", name] if name else []), "."],
                         cwd=src, env=environ, log=log, on_line=on_line, what="installing the app's own package")
        except ArtifactError as exc:
            # Litestar's hello-world is one app.py beside a [project] table: hatchling finds no package to ship.
            # Such an app runs from its folder and needs only its dependencies installed.
            raise ArtifactError(
                f"{exc}; the project's build backend could not make a package of it (its log says why). An app "
                f"that runs from its folder needs only its dependencies: build = [\"python\", \"-m\", \"pip\", "
                f"\"install\", \"-r\", \"pyproject.toml\"] installs [project].dependencies and not the project",
                exc.log_tail) from exc
    if deps.rest:
        bin_dirs = [str(venv / "bin")]
        build_env = {**env, "PATH": base_path(bin_dirs), "VIRTUAL_ENV": str(venv),
                     "HOME": os.path.expanduser("~"), "LANG": "C.UTF-8", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        for command in dependencies.commands(deps.rest):  # chained with "&&": each runs after the last succeeded
            run_streamed(command, cwd=src, env=build_env, log=log, on_line=on_line, what=f"build {command}")
    # Bytecode now, so a replica never needs to write next to the sources (it cannot: they are read-only).
    builder = buildas.current()
    subprocess.run([python, "-m", "compileall", "-q", "-j", "0", str(src)], cwd=src,
                   env={**environ, **(builder.env() if builder else {})}, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, timeout=300,
                   **buildas.popen_user())
    return layer


def _project_name(src: Path) -> str | None:
    """The project's distribution name: ``[project].name``, else Poetry's ``[tool.poetry].name``; None when
    neither says (a setup.py/setup.cfg project): uv refuses a ``--reinstall-package`` that is not a name."""
    import tomllib

    try:
        data = tomllib.loads((src / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    for table in (data.get("project"), (data.get("tool") or {}).get("poetry")):
        if isinstance(table, dict) and isinstance(table.get("name"), str) and table["name"].strip():
            return str(table["name"]).strip()
    return None


def _building(root: Path, name: str) -> bool:
    """Whether a build of this artifact holds its lock right now (a failed build's folder holds none)."""
    with locked(root, name, blocking=False) as held:
        return not held


def referenced(resources: list[Resource]) -> set[str]:
    """Artifact ids the service resources (as stored in a release) run."""
    return {artifact_id(r.config.get("source") or "", r.config.get("build"))
            for r in resources if r.kind == "service" and r.config.get("source")}


def prune(root: Path, keep: set[str], dry_run: bool = False) -> list[str]:
    """Delete every artifact folder under ``root`` whose id is not in ``keep``; return the ids deleted.

    Folders starting with '.' are left alone, and so is an artifact whose build holds its lock. Then
    the dependency layers no remaining artifact names go too.
    """
    if not root.is_dir():
        return []
    gone = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in keep)
    if dry_run:
        return gone
    deleted: list[str] = []
    for name in gone:
        with _locked(root, name, blocking=False) as held:
            if not held:
                continue  # being built right now: it is about to be referenced
            # Renamed first, so a half-deleted folder is never taken for a built artifact.
            doomed = root / f".deleting.{name}.{os.getpid()}"
            (root / name).rename(doomed)
            immutable.remove_tree(doomed)
            _known.pop(str(root / name), None)
            (root / f".{name}.lock").unlink(missing_ok=True)
            deleted.append(name)
    used = {str(m.get("layer")) for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
            and (m := _marker(p)) is not None and m.get("layer")}
    if not any(_building(root, p.name) for p in root.iterdir()
               if p.is_dir() and not p.name.startswith(".") and _marker(p) is None):
        layers.prune(root / layers.LAYERS, used)  # not while a build may be about to link a layer nobody uses yet
    return deleted
