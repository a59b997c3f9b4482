"""Built trees that stay as built: sealed read-only with a manifest, verified before anything runs them.

An artifact (and the dependency layer it uses) is what a release runs, now and at every rollback or
promotion, so it must be exactly what was built. :func:`seal` makes every file read-only
(0444, or 0555 when executable; folders 0555; world-readable so replicas running as another
user can run them) and records a manifest of every file's SHA-256, symlink target and executable
bit. :func:`verify` walks the tree again before each start and compares: a changed, added or removed
file is a tampered artifact. Hashing is skipped for a file whose (device, inode, size, mtime, ctime)
is unchanged since it was last hashed in this process; ctime cannot be set by a process (it moves on
every write, chmod or rename, and a new file gets a new one), so a rewrite cannot reuse a cached
answer. The cache lives in the daemon's memory only. Called by artifacts and layers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

MANIFEST = "manifest.json"
_HASH_CHUNK = 1 << 20
_cache: dict[str, tuple[int, int, int, int, int, str]] = {}


def _digest(path: str, st: os.stat_result) -> str:
    sig = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    hit = _cache.get(path)  # plain dict reads and writes: atomic under the GIL, no lock per file
    if hit is not None and hit[:5] == sig:
        return hit[5]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    value = h.hexdigest()
    _cache[path] = (*sig, value)
    return value


def _entries(root: Path, exclude: set[str]) -> dict[str, list[object]]:
    """Every entry under ``root`` (top-level names in ``exclude`` left out): path -> [kind, value, exec].

    Strings and ``os.scandir`` rather than pathlib and ``os.walk``: a layer has thousands of files and this
    runs before every start.
    """
    out: dict[str, list[object]] = {}
    stack = [("", str(root))]
    while stack:
        rel_dir, abs_dir = stack.pop()
        with os.scandir(abs_dir) as found:
            for entry in found:
                if not rel_dir and (entry.name in exclude or entry.name == MANIFEST):
                    continue
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                if entry.is_symlink():
                    out[rel] = ["l", os.readlink(entry.path), False]
                elif entry.is_dir(follow_symlinks=False):
                    stack.append((rel, entry.path))
                else:
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode):
                        out[rel] = ["f", _digest(entry.path, st), bool(st.st_mode & 0o111)]
                    else:
                        out[rel] = ["x", stat.S_IFMT(st.st_mode), False]  # a FIFO or device never belongs here
    return out


def seal(root: Path, exclude: set[str] | frozenset[str] = frozenset()) -> str:
    """Make ``root`` read-only and write its manifest; return the manifest's digest."""
    entries = _entries(root, set(exclude))
    body = json.dumps(entries, sort_keys=True, separators=(",", ":"))
    (root / MANIFEST).write_text(body)
    for folder, dirs, files in os.walk(root, topdown=False):
        here = Path(folder)
        for name in files:
            path = here / name
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                os.chmod(path, 0o555 if st.st_mode & 0o111 else 0o444)
        for name in dirs:
            path = here / name
            if not path.is_symlink():
                os.chmod(path, 0o555)
    # chmod moved every ctime: hash answers cached while sealing would miss; refresh them cheaply.
    _entries(root, set(exclude))
    return hashlib.sha256(body.encode()).hexdigest()


def manifest_digest(root: Path) -> str | None:
    try:
        return hashlib.sha256((root / MANIFEST).read_bytes()).hexdigest()
    except OSError:
        return None


def verify(root: Path, exclude: set[str] | frozenset[str], expected: str | None) -> list[str]:
    """What differs between ``root`` and its manifest (empty when intact), at most 10 paths.

    ``expected`` is the manifest digest recorded when the tree was built; a rewritten manifest is the
    first difference reported.
    """
    try:
        body = (root / MANIFEST).read_bytes()
    except OSError:
        return [f"{MANIFEST} is missing"]
    if expected is not None and hashlib.sha256(body).hexdigest() != expected:
        return [f"{MANIFEST} was rewritten"]
    try:
        want = json.loads(body)
    except ValueError:
        return [f"{MANIFEST} is not valid JSON"]
    try:
        have = _entries(root, set(exclude))
    except OSError as exc:
        return [f"cannot read the tree: {exc}"]
    problems = [f"changed: {p}" for p in sorted(want) if p in have and have[p] != want[p]]
    problems += [f"removed: {p}" for p in sorted(want) if p not in have]
    problems += [f"added: {p}" for p in sorted(have) if p not in want]
    return problems[:10]


def _writable(func: object, path: str, _exc: object) -> None:
    """rmtree's error hook: a sealed folder must be made writable before its entries can go."""
    parent = os.path.dirname(path)
    try:
        os.chmod(parent, 0o755)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, 0o755)
            shutil.rmtree(path, onerror=_writable)
        else:
            os.unlink(path)
    except OSError:
        pass


def remove_tree(root: Path) -> None:
    """Delete a (possibly sealed) tree; missing is fine."""
    if not root.exists() and not root.is_symlink():
        return
    for folder, dirs, _files in os.walk(root):
        for name in dirs:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755)
    if not root.is_symlink():
        os.chmod(root, 0o755)
    shutil.rmtree(root, onerror=_writable)
