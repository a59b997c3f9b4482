"""The app source a release is made of: which files, and their digest.

A release runs a snapshot of the source, never the live working tree, so the set of
files must be well defined: everything under ``[app].source`` except what
``.gitignore`` and ``.railguardignore`` exclude (gitignore syntax, via pathspec) and
Railguard's own folders. The digest covers paths, contents and the executable bit,
so any change that could change behaviour changes the digest. Used by planning
(the digest is part of each service's config) and by the local runtime's artifacts.

Hashing every file is the expensive part, and ``status``, ``plan`` and ``apply`` ask for the
same digest again and again, so the digest is cached in-process by *tree state*: the path,
mtime, ctime, size, inode and mode of every file the snapshot includes (the listing always
runs; only the hashing is skipped). A tree whose newest timestamp is too recent to trust (a
second write in the same timestamp tick would keep the same mtime, as with git's "racy" index
entries) is hashed again next time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pathspec

from railguard.model import counters

# The spec is not part of the app: changing `replicas` must not look like a code change.
ALWAYS_IGNORED = ["/railguard.toml", ".git/", ".railguard/", ".venv/", "venv/", "__pycache__/", "*.pyc",
                  "node_modules/", ".mypy_cache/", ".pytest_cache/", ".ruff_cache/", ".hypothesis/"]
IGNORE_FILES = (".gitignore", ".railguardignore")
MAX_FILES = 50_000


@dataclass(frozen=True)
class SourceSnapshot:
    root: Path
    files: tuple[str, ...]
    digest: str
    git_commit: str | None
    git_dirty: bool | None


def _spec_for(root: Path) -> pathspec.PathSpec:  # type: ignore[type-arg]
    lines = list(ALWAYS_IGNORED)
    for name in IGNORE_FILES:
        path = root / name
        if path.is_file():
            lines += path.read_text(encoding="utf-8", errors="replace").splitlines()
    return pathspec.PathSpec.from_lines("gitignore", lines)


def list_files(root: Path) -> list[str]:
    """Relative POSIX paths of the files that make up the source, sorted."""
    ignore = _spec_for(root)
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        rel_folder = os.path.relpath(folder, root)
        prefix = "" if rel_folder == "." else rel_folder.replace(os.sep, "/") + "/"
        dirs[:] = sorted(d for d in dirs if not ignore.match_file(prefix + d + "/"))
        for name in sorted(files):
            rel = prefix + name
            if not ignore.match_file(rel) and not os.path.islink(os.path.join(folder, name)):
                found.append(rel)
        if len(found) > MAX_FILES:
            raise ValueError(f"more than {MAX_FILES} files under {root}; add the bulk to .railguardignore")
    return sorted(found)


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def snapshot(root: Path, *, git: bool = True) -> SourceSnapshot:
    """The files and digest of the source at ``root`` (from the tree-state cache when unchanged).

    ``git`` adds the commit and dirty flag (two ``git`` runs, for release records); planning and
    verifying need only the digest.
    """
    files, digest = CACHE.digest(root)
    commit, dirty = git_state(root) if git else (None, None)
    return SourceSnapshot(root=root, files=files, digest=digest, git_commit=commit, git_dirty=dirty)


def git_state(root: Path) -> tuple[str | None, bool | None]:
    """The commit checked out at ``root`` and whether the work tree differs from it (None: not git)."""
    commit = _git(root, "rev-parse", "HEAD")
    return commit, None if commit is None else bool(_git(root, "status", "--porcelain"))


Signature = tuple[tuple[str, int, int, int, int, int], ...]


@dataclass(frozen=True)
class _Entry:
    signature: Signature
    files: tuple[str, ...]
    digest: str
    trusted: bool  # no timestamp was recent enough for a same-tick edit to hide behind it


class SnapshotCache:
    """The last digest per source root, valid while the tree state is the same. Thread-safe, bounded.

    ``clock`` (ns since the epoch, like file timestamps) tells how old the newest timestamp is.
    """

    def __init__(self, roots: int = 8, clock: Callable[[], int] = time.time_ns) -> None:
        self.roots = roots
        self.clock = clock
        self._entries: OrderedDict[Path, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def digest(self, root: Path) -> tuple[tuple[str, ...], str]:
        counters.bump("source-snapshot")
        files = tuple(list_files(root))
        started = self.clock()
        signature = _signature(root, files)  # before hashing: an edit during hashing changes it
        with self._lock:
            entry = self._entries.get(root)
            if entry is not None and entry.trusted and entry.signature == signature:
                self._entries.move_to_end(root)
                return entry.files, entry.digest
        counters.bump("source-hash")
        digest = digest_files(root, list(files))
        with self._lock:
            self._entries[root] = _Entry(signature, files, digest, _trusted(signature, started))
            self._entries.move_to_end(root)
            while len(self._entries) > self.roots:
                self._entries.popitem(last=False)
        return files, digest

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


CACHE = SnapshotCache()  # one per process: the daemon's plan, apply, status and artifact builds share it


def _signature(root: Path, files: tuple[str, ...]) -> Signature:
    found = []
    for rel in files:
        st = os.stat(root / rel)
        found.append((rel, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_mode))
    return tuple(found)


def _trusted(signature: Signature, now_ns: int) -> bool:
    """Whether no file was touched within one timestamp tick of ``now_ns``.

    Linux filesystems stamp files from a clock that moves every few milliseconds; a tree whose
    timestamps are all whole seconds is on a coarse filesystem (FAT, some network mounts), where
    two writes up to 2 s apart can share a timestamp.
    """
    stamps = [t for entry in signature for t in entry[1:3]]
    if not stamps:
        return True
    tick = 2_000_000_000 if all(t % 1_000_000_000 == 0 for t in stamps) else 100_000_000
    return max(stamps) < now_ns - tick


def copy_into(snap: SourceSnapshot, dest: Path) -> str:
    """Copy the snapshot's files into ``dest`` and return the digest of what landed there.

    The caller compares the returned digest with the one it expects: a file edited between
    planning and copying must not slip into an artifact under the reviewed digest.
    """
    for rel in snap.files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(snap.root / rel, target)
    return digest_files(dest, list(snap.files))


def digest_files(root: Path, files: list[str]) -> str:
    h = hashlib.sha256()
    for rel in files:
        path = root / rel
        mode = "x" if os.access(path, os.X_OK) else "-"
        h.update(f"{rel}\0{mode}\0".encode())
        with path.open("rb") as handle:
            h.update(hashlib.file_digest(handle, "sha256").hexdigest().encode() + b"\n")
    return "sha256:" + h.hexdigest()
