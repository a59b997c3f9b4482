"""The app source a release is made of: which files, and their digest.

A release runs a snapshot of the source, never the live working tree, so the set of
files must be well defined: everything under ``[app].source`` except what
``.gitignore`` and ``.railguardignore`` exclude (gitignore syntax, via pathspec) and
Railguard's own folders. The digest covers paths, contents and the executable bit,
so any change that could change behaviour changes the digest. Used by planning
(the digest is part of each service's config) and by the local runtime's artifacts.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
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


def snapshot(root: Path) -> SourceSnapshot:
    counters.bump("source.snapshot")
    counters.bump("source.hash")
    files = list_files(root)
    commit = _git(root, "rev-parse", "HEAD")
    dirty = None if commit is None else bool(_git(root, "status", "--porcelain"))
    return SourceSnapshot(root=root, files=tuple(files), digest=digest_files(root, files),
                          git_commit=commit, git_dirty=dirty)


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
