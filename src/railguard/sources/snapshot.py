"""The app source a release is made of: its files (see :mod:`railguard.sources.listing`) and their digest.

A release runs a snapshot of the source, never the live working tree. The digest covers paths,
contents and the executable bit, so any change that could change behaviour changes the digest. Used
by planning (the digest is part of each service's config and the plan stores the snapshot, see
:mod:`railguard.sources.store`), by ``status`` (drift: the tree on disk against what is live) and by
the local runtime's artifacts.

Hashing every file is the expensive part, and ``status`` and ``plan`` ask for the same digest again
and again, so file hashes are cached in-process by *file state*: path, mtime, ctime, size, inode and
mode (the listing always runs; only hashing is skipped, and only the files whose state moved are
hashed again). A file whose timestamp is too recent to trust (a second write in the same timestamp
tick would keep the same mtime, as with git's "racy" index entries) is hashed again next time.
Files are opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked to be regular after opening, so a file
swapped for a FIFO after the listing can neither hang nor mislead a snapshot.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from railguard.model import counters
from railguard.sources import asuser
from railguard.sources.listing import (
    ALWAYS_IGNORED,
    DEFAULT_RULES,
    IGNORE_FILES,
    MAX_FILES,
    Listed,
    Listing,
    Rules,
    TooLarge,
    list_files,
    list_source,
)

__all__ = ["ALWAYS_IGNORED", "CACHE", "FileEntry", "IGNORE_FILES", "MAX_FILES", "NotRegular", "Rules",
           "SnapshotCache", "SourceSnapshot", "digest_entries", "digest_files", "git_state", "hash_file",
           "list_files", "snapshot"]

_CHUNK = 1 << 20


class NotRegular(OSError):
    """The path is no longer a regular file (swapped after the listing): it was not read."""


@dataclass(frozen=True)
class FileEntry:
    path: str
    sha256: str  # hex, of the content
    size: int
    executable: bool


@dataclass(frozen=True)
class SourceSnapshot:
    root: Path
    files: tuple[str, ...]
    digest: str
    git_commit: str | None
    git_dirty: bool | None
    entries: tuple[FileEntry, ...] = ()
    left_out: Listing = field(default_factory=Listing)  # secrets, special files and symlinks not taken

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)


def hash_file(path: str | Path, sink: Callable[[bytes], object] | None = None,
              limit: int = 1 << 62) -> tuple[str, bool, int]:
    """(sha256 hex, executable, size) of a regular file, read without following a symlink or blocking.

    ``sink`` receives every chunk (to store the very bytes that were hashed); more than ``limit`` bytes
    raise :class:`TooLarge` (a file that grows without end is not read forever).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegular(f"{path} is not a regular file")
        h, size = hashlib.sha256(), 0
        while chunk := os.read(fd, _CHUNK):
            size += len(chunk)
            if size > limit:
                raise TooLarge(size, limit, [(str(path), size)])
            h.update(chunk)
            if sink is not None:
                sink(chunk)
    finally:
        os.close(fd)
    # Any execute bit counts (what os.access(X_OK) answers for root), so the digest is the same for every reader.
    return h.hexdigest(), bool(st.st_mode & 0o111), size


def digest_entries(entries: tuple[FileEntry, ...] | list[FileEntry]) -> str:
    h = hashlib.sha256()
    for entry in entries:
        h.update(f"{entry.path}\0{'x' if entry.executable else '-'}\0".encode() + entry.sha256.encode() + b"\n")
    return "sha256:" + h.hexdigest()


def digest_files(root: Path, files: list[str]) -> str:
    """The digest of ``files`` under ``root`` as they are now (no cache)."""
    entries = []
    for rel in files:
        sha, executable, size = hash_file(root / rel)
        entries.append(FileEntry(rel, sha, size, executable))
    return digest_entries(entries)


def _git(root: Path, *args: str) -> str | None:
    # The repository is the app's: its .git/config can make `git status` run commands (core.fsmonitor, a clean
    # filter). As root, git runs as the source folder's owner (sources/asuser.py), never with root's authority for
    # a folder others may write (git itself refuses a repository another user owns from root: "dubious ownership").
    try:
        argv, env = asuser.command_as(asuser.owner_of(root), ["git", *args], dict(os.environ))
        done = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=10, check=False, env=env)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def snapshot(root: Path, *, git: bool = True, rules: Rules = DEFAULT_RULES) -> SourceSnapshot:
    """The files and digest of the source at ``root`` (file hashes from the cache when unchanged).

    ``git`` adds the commit and dirty flag (two ``git`` runs, for release records); planning and
    verifying need only the digest.
    """
    found = CACHE.snapshot(root, rules)
    if git:
        commit, dirty = git_state(root)
        return SourceSnapshot(found.root, found.files, found.digest, commit, dirty, found.entries, found.left_out)
    return found


def git_state(root: Path) -> tuple[str | None, bool | None]:
    """The commit checked out at ``root`` and whether the work tree differs from it (None: not git)."""
    commit = _git(root, "rev-parse", "HEAD")
    return commit, None if commit is None else bool(_git(root, "status", "--porcelain"))


Signature = tuple[tuple[str, int, int, int, int, int], ...]


@dataclass(frozen=True)
class _Entry:
    signature: Signature
    snap: SourceSnapshot
    trusted: dict[str, tuple[tuple[str, int, int, int, int, int], FileEntry]]  # hashes old enough to trust
    all_trusted: bool


class SnapshotCache:
    """The last snapshot per source root, valid while the tree state is the same. Thread-safe, bounded.

    ``clock`` (ns since the epoch, like file timestamps) tells how old the newest timestamp is.
    """

    def __init__(self, roots: int = 8, clock: Callable[[], int] = time.time_ns) -> None:
        self.roots = roots
        self.clock = clock
        self._entries: OrderedDict[Path, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def digest(self, root: Path) -> tuple[tuple[str, ...], str]:
        snap = self.snapshot(root)
        return snap.files, snap.digest

    def snapshot(self, root: Path, rules: Rules = DEFAULT_RULES) -> SourceSnapshot:
        counters.bump("source-snapshot")
        listing = list_source(root, rules)
        started = self.clock()
        signature = tuple((f.rel, *f.signature) for f in listing.files)
        with self._lock:
            entry = self._entries.get(root)
            if entry is not None and entry.all_trusted and entry.signature == signature:
                self._entries.move_to_end(root)
                return _with(entry.snap, listing)
        counters.bump("source-hash")
        known = entry.trusted if entry is not None else {}
        tick = _tick(signature)
        entries: list[FileEntry] = []
        trusted: dict[str, tuple[tuple[str, int, int, int, int, int], FileEntry]] = {}
        budget = rules.max_bytes
        for listed, sig in zip(listing.files, signature, strict=True):
            cached = known.get(listed.rel)
            made = cached[1] if cached is not None and cached[0] == sig else _hash(listed, listing, budget)
            if made is None:
                continue
            budget -= made.size
            entries.append(made)
            if max(listed.signature[0], listed.signature[1]) < started - tick:
                trusted[listed.rel] = (sig, made)
        snap = SourceSnapshot(root=root, files=tuple(e.path for e in entries), digest=digest_entries(entries),
                              git_commit=None, git_dirty=None, entries=tuple(entries), left_out=listing_notes(listing))
        with self._lock:
            self._entries[root] = _Entry(signature, snap, trusted, len(trusted) == len(signature))
            self._entries.move_to_end(root)
            while len(self._entries) > self.roots:
                self._entries.popitem(last=False)
        return snap

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _hash(listed: Listed, listing: Listing, budget: int) -> FileEntry | None:
    try:
        sha, executable, size = hash_file(listed.path, limit=max(budget, 0))
    except TooLarge as exc:
        largest = sorted(((f.rel, f.size) for f in listing.files), key=lambda x: -x[1])[:5]
        raise TooLarge(listing.total + exc.total, exc.limit, largest) from exc
    except NotRegular:
        listing.special.append(listed.rel)
        return None
    except FileNotFoundError:
        return None  # removed since the listing: the next look sees the tree without it
    return FileEntry(listed.rel, sha, size, executable)


def listing_notes(listing: Listing) -> Listing:
    """What was left out, without the files (kept in a snapshot for warnings)."""
    return Listing(secrets=list(listing.secrets), special=sorted(set(listing.special)), links=sorted(listing.links),
                   own_output=list(listing.own_output))


def _with(snap: SourceSnapshot, listing: Listing) -> SourceSnapshot:
    return SourceSnapshot(snap.root, snap.files, snap.digest, snap.git_commit, snap.git_dirty, snap.entries,
                          listing_notes(listing))


def _tick(signature: Signature) -> int:
    """One timestamp tick of the filesystem the tree is on.

    Linux filesystems stamp files from a clock that moves every few milliseconds; a tree whose
    timestamps are all whole seconds is on a coarse filesystem (FAT, some network mounts), where
    two writes up to 2 s apart can share a timestamp.
    """
    stamps = [t for entry in signature for t in entry[1:3]]
    if stamps and all(t % 1_000_000_000 == 0 for t in stamps):
        return 2_000_000_000
    return 100_000_000


CACHE = SnapshotCache()  # one per process: the daemon's plan, status and artifact builds share it
