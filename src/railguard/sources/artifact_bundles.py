"""Artifact bundles: one file per artifact, named by its SHA-256, for runtimes that fetch an artifact over a network.

The local runtime runs an artifact from a folder on the daemon's machine; a Kubernetes pod cannot, so
the same content (the plan's source snapshot from :mod:`railguard.sources.store`, plus a dependency
folder built for the pod's Python) travels as a *bundle*: a gzip-compressed tar whose bytes depend on
the content only (entries sorted, mtime 0, owner 0/0 with no names, modes 0644/0755, gzip header
without name or time), so the same content always has the same digest and a pod can be told exactly
which bytes to accept.

:class:`BundleStore` keeps bundles under ``<state>/bundles/``: ``blobs/<hex>.tar.gz`` (read-only),
per environment the digests it may fetch (``envs/<env>/<hex>``) and the generation of its read-only
fetch token (``tokens/<env>.generation``). The token itself is never stored: it is derived by the
``signer`` the caller passes (an HMAC under the signing key, which lives outside the state folder), from
the environment and its generation, so a copy of the state folder gives no token; a rotation moves the
generation. The token reads bundles of that environment and nothing else. Written by
the Kubernetes provider (:mod:`railguard.providers.kubernetes.artifacts`), read by the daemon's
artifact listener (:mod:`railguard.daemon.artifact_server`). It lives in ``sources`` so both sides of
the layering can use it without one runtime importing another.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from railguard.sources.store import SnapshotMissing, SnapshotStore

FOLDER = "bundles"
TOKEN_PURPOSE = "artifact-token"  # the signing purpose fetch tokens are derived under
MANIFEST = "railguard-bundle.json"  # first entry of every bundle: what it holds and for which Python
SRC = "src"
DEPS = "deps"
HEX = re.compile(r"^[0-9a-f]{64}$")
_ENV = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_CHUNK = 1 << 20
# Digests of stored bundles already hashed by this process, by file state: a stored bundle is served only
# while its bytes still have its name (a rewritten file gets a new ctime, so it is hashed again).
_verified: dict[str, tuple[int, int, int, int, int]] = {}


class BundleError(RuntimeError):
    """A bundle cannot be made (its snapshot is gone, a dependency file is a link out of the tree...)."""


@dataclass(frozen=True)
class Bundle:
    digest: str  # "sha256:<hex>" of the file's bytes
    path: Path
    size: int

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")


def _info(name: str, size: int, executable: bool) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o755 if executable else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def _files_under(root: Path) -> list[tuple[str, Path]]:
    """Every regular file under ``root`` as (relative path, path), sorted; a link or special file is refused."""
    found: list[tuple[str, Path]] = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in [*dirs, *files]:
            path = Path(folder) / name
            if path.is_symlink():
                raise BundleError(f"{path.relative_to(root)} is a symbolic link; a bundle holds regular files only")
        for name in files:
            path = Path(folder) / name
            if not path.is_file():
                raise BundleError(f"{path.relative_to(root)} is not a regular file")
            found.append((path.relative_to(root).as_posix(), path))
    return sorted(found)


def write_bundle(out: Path, source_digest: str, src: Path, deps: Path | None, python: str | None,
                 extra: dict[str, str] | None = None) -> Bundle:
    """Write the bundle of the tree ``src`` (and ``deps``) to ``out``; the digest is of the bytes written.

    ``python`` ("3.12") is the interpreter ``deps`` was built for: the pod refuses to run on another one.
    """
    entries: list[tuple[str, Path]] = [(f"{SRC}/{rel}", p) for rel, p in _files_under(src)]
    if deps is not None:
        entries += [(f"{DEPS}/{rel}", p) for rel, p in _files_under(deps)]
    manifest = json.dumps({"v": 1, "source": source_digest, "python": python if deps is not None else None,
                           "deps": deps is not None, "files": len(entries), **(extra or {})},
                          sort_keys=True).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                tar.addfile(_info(MANIFEST, len(manifest), False), io.BytesIO(manifest))
                for name, path in entries:
                    with open(path, "rb") as handle:
                        st = os.fstat(handle.fileno())
                        tar.addfile(_info(name, st.st_size, bool(st.st_mode & 0o111)), handle)
    return Bundle("sha256:" + file_sha256(out), out, out.stat().st_size)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def hex_of(digest: str) -> str | None:
    """The 64 hex digits of ``sha256:<hex>`` or ``<hex>``, or None when it is not a SHA-256 digest."""
    value = digest.removeprefix("sha256:")
    return value if HEX.match(value) else None


class BundleStore:
    def __init__(self, root: Path, signer: Callable[[str], str] | None = None) -> None:
        self.root = root
        self._signer = signer

    @classmethod
    def of(cls, home: Path, signer: Callable[[str], str] | None = None) -> BundleStore:
        """The store of state folder ``home``; ``signer`` (message -> hex HMAC) derives the fetch tokens."""
        return cls(home / FOLDER, signer)

    def path(self, hex_digest: str) -> Path:
        return self.root / "blobs" / f"{hex_digest}.tar.gz"

    # -- bundles ---------------------------------------------------------------------------------
    def build(self, snapshots: SnapshotStore, source_digest: str, deps: Path | None, python: str | None,
              extra: dict[str, str] | None = None) -> Bundle:
        """The bundle of the stored snapshot ``source_digest`` (+ ``deps``), stored under its digest."""
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.root, prefix=".build.") as tmp:
            src = Path(tmp) / "src"
            src.mkdir()
            try:
                snapshots.materialize(source_digest, src)
            except SnapshotMissing as exc:
                raise BundleError(f"the source snapshot {source_digest[:19]} is not stored ({exc})") from exc
            made = write_bundle(Path(tmp) / "bundle.tar.gz", source_digest, src, deps, python, extra)
            final = self.path(made.hex)
            try:
                intact = self.verified(made.hex) is not None
            except BundleError:  # altered on disk: replaced by the bytes just made from the snapshot
                intact = False
            if not intact:
                os.chmod(made.path, 0o444)
                os.replace(made.path, final)
        return Bundle(made.digest, final, final.stat().st_size)

    def verified(self, hex_digest: str) -> Path | None:
        """The stored bundle ``hex_digest`` when its bytes still hash to that name; None when it is not stored.

        Raises :class:`BundleError` when the file was altered (it is never served).
        """
        path = self.path(hex_digest)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        sig = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if _verified.get(str(path)) == sig:
            return path
        if file_sha256(path) != hex_digest:
            raise BundleError(f"the stored bundle {hex_digest[:12]} no longer matches its digest")
        _verified[str(path)] = sig
        return path

    # -- which environment may fetch what -------------------------------------------------------
    def allow(self, env: str, digest: str) -> None:
        """Let ``env``'s token fetch ``digest`` (called when a release of ``env`` names it)."""
        hexd = _checked(env, digest)
        folder = self.root / "envs" / env
        folder.mkdir(parents=True, exist_ok=True)
        (folder / hexd).touch()

    def allowed(self, env: str, digest: str) -> bool:
        hexd = hex_of(digest)
        return hexd is not None and bool(_ENV.match(env)) and (self.root / "envs" / env / hexd).is_file()

    def listed(self, env: str) -> list[str]:
        folder = self.root / "envs" / env
        return sorted("sha256:" + p.name for p in folder.iterdir()) if _ENV.match(env) and folder.is_dir() else []

    def forget(self, env: str, keep: Iterable[str]) -> list[str]:
        """Stop ``env`` fetching every digest not in ``keep`` (retention); return what was dropped."""
        wanted = {hex_of(d) for d in keep}
        dropped = [d for d in self.listed(env) if hex_of(d) not in wanted]
        for digest in dropped:
            (self.root / "envs" / env / digest.removeprefix("sha256:")).unlink(missing_ok=True)
        return dropped

    def manifest_of(self, hex_digest: str) -> dict[str, Any] | None:
        """A stored bundle's manifest (its first member); None: unreadable."""
        try:
            with tarfile.open(self.path(hex_digest), mode="r:gz") as tar:
                first = tar.next()
                handle = tar.extractfile(first) if first is not None and first.name == MANIFEST else None
                found = json.loads(handle.read(1 << 16)) if handle is not None else None
        except (OSError, tarfile.TarError, ValueError, EOFError):
            return None
        return found if isinstance(found, dict) else None

    def source_of(self, hex_digest: str) -> str | None:
        """The source digest a stored bundle was made from (its manifest, the first member); None: unreadable."""
        found = self.manifest_of(hex_digest)
        return str(found["source"]) if found is not None and found.get("source") else None

    def prune(self, keep_sources: Iterable[str], dry_run: bool = False) -> list[str]:
        """Remove every bundle made from a source no kept release names, and every environment's leave to fetch
        it (retention; the caller holds the state lock, so no apply makes a bundle meanwhile). Returns what went.
        """
        wanted = set(keep_sources)
        blobs = self.root / "blobs"
        gone = sorted("sha256:" + p.name.removesuffix(".tar.gz") for p in blobs.glob("*.tar.gz")
                      if self.source_of(p.name.removesuffix(".tar.gz")) not in wanted) if blobs.is_dir() else []
        if dry_run:
            return gone
        for digest in gone:
            hexd = digest.removeprefix("sha256:")
            self.path(hexd).unlink(missing_ok=True)
            for env in (self.root / "envs").glob("*"):
                (env / hexd).unlink(missing_ok=True)
        return gone

    # -- the dependency folders (a build cache: every bundle holds its own copy of its packages) ----------
    def record_deps(self, hex_digest: str, deps: Path) -> None:
        """Note that the bundle ``hex_digest`` was made with the dependency folder ``deps`` (``deps/<key>``)."""
        used = self.root / "deps-used"
        used.mkdir(parents=True, exist_ok=True)
        (used / hex_digest).write_text(deps.name)

    def prune_deps(self, dry_run: bool = False, going: Iterable[str] = ()) -> list[str]:
        """Remove the dependency folders no stored bundle was made with (and the notes of bundles gone), the
        work folders of builds a killed daemon left included; ``going``: bundles to count as gone already (a dry
        run's). The caller holds the state lock (no build meanwhile). Returns what went, as ``deps/<key>``."""
        folder, used = self.root / "deps", self.root / "deps-used"
        leaving = {d.removeprefix("sha256:") for d in going}
        kept: set[str] = set()
        stale: list[Path] = []
        for note in sorted(used.iterdir()) if used.is_dir() else []:
            if note.name not in leaving and self.path(note.name).is_file():
                kept.add(note.read_text().strip())
            else:
                stale.append(note)
        gone = sorted(p for p in folder.iterdir() if p.name not in kept) if folder.is_dir() else []
        if not dry_run:
            for path in gone:
                shutil.rmtree(path, ignore_errors=True)
            for note in stale:
                note.unlink(missing_ok=True)
        return [f"deps/{p.name}" for p in gone]

    # -- tokens ----------------------------------------------------------------------------------
    def token(self, env: str) -> str:
        """``env``'s fetch token (the provider puts it in the namespace's Secret); derived, never stored."""
        return self._derive(env, self._generation(env))

    def rotate(self, env: str) -> str:
        """A new fetch token for ``env``; the old one stops working at once."""
        path = self._generation_path(env)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(str(self._generation(env) + 1))
        os.replace(tmp, path)
        return self.token(env)

    def env_of(self, token: str) -> str | None:
        """The environment whose fetch token this is (the HMAC compared in constant time), or None."""
        env, dot, _ = token.removeprefix("rgart_").partition(".")
        if not token.startswith("rgart_") or not dot or not _ENV.match(env) or self._signer is None:
            return None
        return env if hmac.compare_digest(self.token(env).encode(), token.encode()) else None

    def _derive(self, env: str, generation: int) -> str:
        if self._signer is None:
            raise BundleError("artifact tokens need the signing key: open the store with a signer")
        return f"rgart_{env}." + self._signer(f"{env}\n{generation}")

    def _generation(self, env: str) -> int:
        try:
            return int(self._generation_path(env).read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _generation_path(self, env: str) -> Path:
        if not _ENV.match(env):
            raise BundleError(f"'{env}' is not an environment name")
        return self.root / "tokens" / f"{env}.generation"


def _checked(env: str, digest: str) -> str:
    hexd = hex_of(digest)
    if hexd is None or not _ENV.match(env):
        raise BundleError(f"'{digest}' is not a bundle digest or '{env}' is not an environment name")
    return hexd


__all__ = ["Bundle", "BundleError", "BundleStore", "DEPS", "MANIFEST", "SRC", "file_sha256", "hex_of",
           "write_bundle"]
