"""The snapshot store: the source a plan was made from, kept by content so apply never reads the working tree.

``railguard plan`` captures the app source (:func:`capture`) and the spec text (:meth:`SnapshotStore.put_text`)
here, under ``<state>/sources/``: every file's bytes once as a blob named by its SHA-256
(``blobs/ab/abcd…``, read-only), and one manifest per snapshot digest (``manifests/<hex>.json``: path,
blob, size, executable bit of each file). Snapshots share blobs, so a plan made after a one-line edit
stores one new file. Blobs are written from the very bytes that were hashed, so a file edited while it
is captured never lands under another file's digest. The local runtime's artifact build copies a
snapshot out of here (:meth:`materialize`, every blob checked against its name); retention removes
what no applicable plan and no kept release uses (:meth:`prune`).

A lock file orders captures (shared) against pruning (exclusive, never waiting): a blob found present
by a capture cannot be pruned before the plan that needs it is saved.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from railguard.sources.listing import DEFAULT_RULES, Rules, TooLarge
from railguard.sources.snapshot import (
    FileEntry,
    NotRegular,
    SourceSnapshot,
    digest_entries,
    hash_file,
    snapshot,
)

FOLDER = "sources"
# Blobs this process stored or found, per store: a plan after a one-file edit checks one blob, not every file.
# Forgotten when this process prunes the store or finds a blob missing.
_KNOWN: dict[Path, set[str]] = {}


class SnapshotMissing(LookupError):
    """No snapshot with that digest is stored (and none could be captured from a matching tree)."""


class SnapshotChanged(RuntimeError):
    """A file changed between hashing and storing: capture again."""


@dataclass(frozen=True)
class Manifest:
    digest: str
    files: tuple[FileEntry, ...]
    created_at: float
    git_commit: str | None = None
    git_dirty: bool | None = None

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> str:
        return json.dumps({"digest": self.digest, "created_at": self.created_at, "git_commit": self.git_commit,
                           "git_dirty": self.git_dirty,
                           "files": [[f.path, f.sha256, f.size, f.executable] for f in self.files]})

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw = json.loads(text)
        files = tuple(FileEntry(str(p), str(s), int(n), bool(x)) for p, s, n, x in raw["files"])
        return cls(str(raw["digest"]), files, float(raw["created_at"]), raw.get("git_commit"), raw.get("git_dirty"))


def _hex(digest: str) -> str:
    value = digest.removeprefix("sha256:")
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise SnapshotMissing(f"'{digest}' is not a snapshot digest")
    return value


class SnapshotStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def of(cls, home: Path) -> SnapshotStore:
        """The store of the state folder ``home``."""
        return cls(home / FOLDER)

    def _blob(self, sha: str) -> Path:
        return self.root / "blobs" / sha[:2] / sha

    def _manifest(self, digest: str) -> Path:
        return self.root / "manifests" / f"{_hex(digest)}.json"

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Keep pruning away while a capture and the plan that records it are saved."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def has(self, digest: str) -> bool:
        try:
            return self._manifest(digest).is_file()
        except SnapshotMissing:
            return False

    def manifest(self, digest: str) -> Manifest | None:
        try:
            return Manifest.from_json(self._manifest(digest).read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError, SnapshotMissing):
            return None

    def put(self, snap: SourceSnapshot) -> Manifest:
        """Store ``snap``'s files (the blobs not stored yet) and its manifest; raises :class:`SnapshotChanged`."""
        if self.has(snap.digest):  # stored before: the digest says the entries are the same (no need to read it)
            return Manifest(snap.digest, snap.entries, time.time(), snap.git_commit, snap.git_dirty)
        known = _KNOWN.setdefault(self.root, set())
        for entry in snap.entries:
            if entry.sha256 not in known and not self._blob(entry.sha256).is_file():
                self._store_file(snap.root, entry)
            known.add(entry.sha256)
        manifest = Manifest(snap.digest, snap.entries, time.time(), snap.git_commit, snap.git_dirty)
        if digest_entries(manifest.files) != snap.digest:
            raise SnapshotChanged("the snapshot's entries do not match its digest")
        _atomic_write(self._manifest(snap.digest), manifest.to_json().encode())
        return manifest

    def _store_file(self, root: Path, entry: FileEntry) -> None:
        target = self._blob(entry.sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".in.")
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    sha, _, _ = hash_file(_readable(root, entry.path), out.write, limit=entry.size)
                except (TooLarge, NotRegular, FileNotFoundError) as exc:
                    raise SnapshotChanged(f"{entry.path} changed while the snapshot was taken") from exc
            if sha != entry.sha256:
                raise SnapshotChanged(f"{entry.path} changed while the snapshot was taken")
            os.chmod(tmp, 0o444)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def put_text(self, text: str) -> str:
        """Store a text (the spec a plan was made from); return its digest."""
        data = text.encode("utf-8")
        sha = hashlib.sha256(data).hexdigest()
        target = self._blob(sha)
        if not target.is_file():
            _atomic_write(target, data, 0o444)
        return "sha256:" + sha

    def text(self, digest: str) -> str | None:
        try:
            return self._blob(_hex(digest)).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError, SnapshotMissing):
            return None

    def materialize(self, digest: str, dest: Path) -> Manifest:
        """Write the snapshot ``digest`` into ``dest`` (which must not hold anything else); every blob is checked."""
        manifest = self.manifest(digest)
        if manifest is None:
            raise SnapshotMissing(f"no stored snapshot {digest[:19]}")
        for entry in manifest.files:
            target = dest / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                try:
                    sha, _, _ = hash_file(self._blob(entry.sha256), out.write, limit=entry.size)
                except FileNotFoundError as exc:
                    _KNOWN.pop(self.root, None)
                    raise SnapshotMissing(f"the stored snapshot {digest[:19]} lacks {entry.path}") from exc
                except (TooLarge, NotRegular):
                    sha = ""  # grown or replaced: altered
            if sha != entry.sha256:
                # Dropped, so the next plan of a tree holding the true content stores it again.
                self._blob(entry.sha256).unlink(missing_ok=True)
                self._manifest(digest).unlink(missing_ok=True)
                _KNOWN.pop(self.root, None)
                raise SnapshotMissing(f"the stored copy of {entry.path} in {digest[:19]} was altered")
            os.chmod(target, 0o755 if entry.executable else 0o644)
        return manifest

    def digests(self) -> list[str]:
        folder = self.root / "manifests"
        return sorted("sha256:" + p.stem for p in folder.glob("*.json")) if folder.is_dir() else []

    def prune(self, keep: set[str], dry_run: bool = False) -> list[str] | None:
        """Remove the snapshots not in ``keep`` and every blob no remaining snapshot or kept text uses.

        Returns the digests removed, or None when a capture is under way (try again at the next pass).
        """
        if not self.root.is_dir():
            return []
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None
            gone = [d for d in self.digests() if d not in keep]
            if dry_run:
                return gone
            _KNOWN.pop(self.root, None)
            for digest in gone:
                self._manifest(digest).unlink(missing_ok=True)
            used = {d.removeprefix("sha256:") for d in keep}
            for digest in self.digests():
                found = self.manifest(digest)
                if found is not None:
                    used.update(f.sha256 for f in found.files)
            blobs = self.root / "blobs"
            for path in blobs.glob("*/*") if blobs.is_dir() else []:
                if path.name not in used:
                    path.unlink(missing_ok=True)
            return gone
        finally:
            os.close(fd)


def _readable(root: Path, rel: str) -> Path:
    """The path to read for ``rel``: a symlink inside the tree is read at its target (the listing vetted it)."""
    path = root / rel
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _atomic_write(target: Path, data: bytes, mode: int = 0o644) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".in.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def capture(store: SnapshotStore, root: Path, snap: SourceSnapshot | None = None, rules: Rules = DEFAULT_RULES,
            attempts: int = 3) -> tuple[SourceSnapshot, Manifest]:
    """Snapshot ``root`` into ``store`` (reusing ``snap`` when given); a file edited meanwhile means a new look."""
    for _ in range(attempts - 1):
        snap = snap or snapshot(root, git=False, rules=rules)
        try:
            return snap, store.put(snap)
        except SnapshotChanged:
            snap = None
    snap = snapshot(root, git=False, rules=rules)
    return snap, store.put(snap)


def materialize_or_capture(store: SnapshotStore, digest: str, dest: Path, fallback: Path | None) -> Manifest:
    """:meth:`SnapshotStore.materialize`; a snapshot not stored (a plan from before snapshots were stored) is
    captured from ``fallback`` when that tree has exactly this digest, and refused otherwise."""
    if not store.has(digest) and fallback is not None and fallback.is_dir():
        with store.holding():
            snap = snapshot(fallback)
            if snap.digest == digest:
                capture(store, fallback, snap)
    if dest.exists():
        shutil.rmtree(dest)
    return store.materialize(digest, dest)
