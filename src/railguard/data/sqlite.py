"""SQLite databases of a data folder: find them, read their shape, copy them consistently.

A database is any file whose header is SQLite's (its ``-wal``/``-shm``/``-journal`` companions are
part of it, never databases of their own). Copies go through the online backup API from a read-only
connection, so a live database is copied as of one moment and the original is never written. Called by
:mod:`railguard.data.snapshots` and :mod:`railguard.data.rehearsal`.

A data folder belongs to the app, which is hostile: between the moment a database is listed and the moment it
is opened, the app can replace it (or a folder above it) by a symbolic link to the state folder's files or to
another environment's database, or hard-link one there. Root must never open such a path with SQLite (which
follows links and writes ``-shm``/``-journal`` files beside what it opens). So every file of a data folder is
opened from a descriptor of the folder, one component at a time with ``O_NOFOLLOW``: a link, a file that is
not a regular one or one with more than one link is refused (:class:`UnsafeDatabase`), and the checksums and
plain copies read through that descriptor. What SQLite itself must open (the backup API, for a consistent
copy of a live database and for a restore through SQLite's locking) runs in a child process as the owner of
the data folder when the daemon is root and the folder is another user's: a link planted after the checks
then reaches only what that user may read or write; so are shapes and schemas read there (:func:`shape_in`,
:func:`schema_in`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from railguard.model.data import DatabaseSchema, TableSchema

SQLITE_MAGIC = b"SQLite format 3\x00"
COMPANIONS = ("-wal", "-shm", "-journal")


@dataclass(frozen=True)
class TableShape:
    columns: tuple[str, ...]
    rows: int
    digest: str  # of the rows, so a second run that rewrites data is seen


class UnsafeDatabase(Exception):
    """A path of a data folder is a link, not a regular file or folder, or hard-linked: refused, never opened."""


_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # O_NONBLOCK: a planted FIFO never blocks
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
CHILD_TIMEOUT_S = 600.0


def _parts(rel: str) -> list[str]:
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or any(p in ("", ".", "..") for p in parts):
        raise UnsafeDatabase(f"{rel!r} is not a path inside the data folder")
    return list(parts)


def _folder_fd(base: Path, parts: list[str], what: str) -> int:
    """A descriptor of ``base/parts...``, each component opened with O_NOFOLLOW from its parent's descriptor."""
    try:
        fd = os.open(base, _DIR)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeDatabase(f"{base} is a symbolic link or not a folder: refused") from None
        raise
    for i, part in enumerate(parts):
        try:
            child = os.open(part, _DIR, dir_fd=fd)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafeDatabase(f"{'/'.join(parts[:i + 1])} (the folder of {what}) is a symbolic link or not a "
                                     "folder: refused (the app may have replaced it)") from None
            raise
        os.close(fd)
        fd = child
    return fd


def _open_file(dir_fd: int, name: str, rel: str) -> int | None:
    """``name`` in the folder ``dir_fd``: a regular file with one link, or None when it does not exist."""
    try:
        fd = os.open(name, _FILE, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeDatabase(f"{rel} is a symbolic link: refused (the app may have replaced the file by a "
                                 "link to a file it may not read or write)") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        kind = "a hard-linked file" if stat.S_ISREG(info.st_mode) else "not a regular file"
        raise UnsafeDatabase(f"{rel} is {kind}: refused (its content may be another file's)")
    return fd


@contextlib.contextmanager
def opened(base: Path, rel: str, companions: bool = False) -> Iterator[tuple[int, int]]:
    """``(folder descriptor, file descriptor)`` of ``base/rel``, every component checked (see the module's
    docstring). ``companions``: its ``-wal``/``-shm``/``-journal`` files must be regular, unlinked files too."""
    parts = _parts(rel)
    dir_fd = _folder_fd(base, parts[:-1], rel)
    try:
        fd = _open_file(dir_fd, parts[-1], rel)
        if fd is None:
            raise FileNotFoundError(errno.ENOENT, "no such database", str(base / rel))
        try:
            for suffix in COMPANIONS if companions else ():
                other = _open_file(dir_fd, parts[-1] + suffix, rel + suffix)
                if other is not None:
                    os.close(other)
            yield dir_fd, fd
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)


def _drop_to(dir_fd: int) -> tuple[int, int] | None:
    """The (uid, gid) to run SQLite as on this folder: its owner when we are root and it is another user's."""
    if os.geteuid() != 0:
        return None
    info = os.fstat(dir_fd)
    return None if info.st_uid == 0 else (info.st_uid, info.st_gid)


def _runnable(path: Path) -> bool:
    """Another user can run ``path``: every folder above it traversable, the file executable by others."""
    try:
        return all(os.stat(p).st_mode & stat.S_IXOTH for p in [path, *path.parents])
    except OSError:
        return False


def _python() -> str:
    """An interpreter the folder's owner can run (only the stdlib's sqlite3 is used): ours, else the system's."""
    found = [Path(getattr(sys, "_base_executable", sys.executable)).resolve(),
             *(Path(p).resolve() for p in (shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin"),) if p)]
    for path in found:
        if _runnable(path):
            return str(path)
    raise UnsafeDatabase("no Python the data folder's owner may run is installed, so its databases cannot be "
                         "opened as that user; root does not open them itself")


_BACKUP_OUT = """import sqlite3, sys
src = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=10)
mem = sqlite3.connect(":memory:")
src.backup(mem)
sys.stdout.buffer.write(mem.serialize())
"""

_BACKUP_IN = """import os, sqlite3, sys
mem = sqlite3.connect(":memory:")
mem.deserialize(sys.stdin.buffer.read())
os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)
dest = sqlite3.connect(sys.argv[1], timeout=30)
mem.backup(dest)
dest.close()
"""


def _as_owner(owner: tuple[int, int], code: str, path: Path, feed: int | None, out: int | None) -> None:
    """Run ``code`` on ``path`` as ``owner`` (no supplementary groups, a bare environment), stdin from ``feed``
    and stdout to ``out`` (descriptors)."""
    done = subprocess.run([_python(), "-I", "-c", code, str(path)], stdin=feed if feed is not None else
                          subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE, env={"LANG": "C.UTF-8"},
                          cwd="/", user=owner[0], group=owner[1], extra_groups=[], timeout=CHILD_TIMEOUT_S,
                          check=False)
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise sqlite3.OperationalError(f"{path}: {said[-1] if said else f'exited with {done.returncode}'}")


def is_sqlite(path: Path) -> bool:
    try:
        fd = os.open(path, _FILE)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as handle:
        return stat.S_ISREG(os.fstat(fd).st_mode) and handle.read(16) == SQLITE_MAGIC


def databases(folder: Path) -> list[str]:
    """Paths (relative to ``folder``, sorted) of the SQLite databases in it."""
    found: list[str] = []
    if not folder.is_dir():
        return found
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            if name.endswith(COMPANIONS) or path.is_symlink() or not path.is_file():
                continue
            if is_sqlite(path):
                found.append(str(path.relative_to(folder)))
    return found


def database_name(rel: str) -> str:
    """The database's address name: the file's stem, lowercased, in the spec's name alphabet."""
    stem = Path(rel).name.split(".", 1)[0].lower()
    name = re.sub(r"[^a-z0-9-]+", "-", stem).strip("-") or "db"
    return name if name[0].isalpha() else f"db-{name}"


def _connect(path: Path) -> sqlite3.Connection:
    try:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error:
        return sqlite3.connect(path, timeout=10)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def shape(path: Path, rows_digest: bool = True) -> dict[str, TableShape]:
    """Every table with its columns, row count and (optionally) a digest of its rows."""
    db = _connect(path)
    try:
        tables: dict[str, TableShape] = {}
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                          "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        for name in names:
            columns = tuple(r[1] for r in db.execute(f"PRAGMA table_info({_quote(name)})"))
            if rows_digest:
                h = hashlib.sha256()
                count = 0
                for row in db.execute(f"SELECT * FROM {_quote(name)}"):
                    h.update(repr(row).encode())
                    count += 1
                tables[name] = TableShape(columns, count, h.hexdigest()[:16])
            else:
                count = int(db.execute(f"SELECT count(*) FROM {_quote(name)}").fetchone()[0])
                tables[name] = TableShape(columns, count, "")
        return tables
    finally:
        db.close()


def schema(path: Path) -> DatabaseSchema:
    """The ordered tables, columns, declared types and indexes, plus a framework's migration head."""
    db = _connect(path)
    try:
        tables: dict[str, TableSchema] = {}
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                                  "ORDER BY name").fetchall():
            info = db.execute(f"PRAGMA table_info({_quote(name)})").fetchall()
            cols = [(str(r[1]), str(r[2] or "").upper()) for r in info]
            # (cid, name, type, notnull, dflt_value, pk): NOT NULL, no default, not the key
            required = [str(r[1]) for r in info if r[3] and r[4] is None and not r[5]]
            tables[name] = TableSchema(columns=cols, required=required)
        indexes = {str(n): str(t) for n, t in db.execute(
            "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name")}
        return DatabaseSchema(tables=tables, indexes=indexes, head=_head(db, tables))
    finally:
        db.close()


def _head(db: sqlite3.Connection, tables: dict[str, TableSchema]) -> str | None:
    try:
        if "django_migrations" in tables:
            row = db.execute("SELECT app || '.' || name FROM django_migrations ORDER BY id DESC LIMIT 1").fetchone()
            return f"django:{row[0]}" if row else None
        if "alembic_version" in tables:
            row = db.execute("SELECT version_num FROM alembic_version LIMIT 1").fetchone()
            return f"alembic:{row[0]}" if row else None
    except sqlite3.Error:
        return None
    return None


def copy(base: Path, rel: str, target: Path, durable: bool = False) -> None:
    """A consistent copy of the live database ``base/rel`` (backup API; the source is opened read-only) into
    ``target``, a path of the caller's own (a backup, a scratch folder still root's). Refuses a link, a
    non-regular or hard-linked file anywhere from ``base`` down (:class:`UnsafeDatabase`).

    ``target`` is a new file: a copy interrupted half-way is never used (a backup without its manifest), so it
    is written without a rollback journal. ``durable`` (a snapshot): the file and its folder are then synced once,
    where SQLite's own journalled commit synced four to eight times (journal, file, folder)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    with opened(base, rel, companions=True) as (dir_fd, _fd):
        owner = _drop_to(dir_fd)
        if owner is not None:  # SQLite opens the path as the folder's owner: a link planted now reaches nothing
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                _as_owner(owner, _BACKUP_OUT, base / rel, None, fd)
            finally:
                os.close(fd)
            if durable:
                _sync(target)
            return
    src = _connect(base / rel)  # the folder is ours (or we are not root): nothing to reach beyond our own rights
    try:
        dest = sqlite3.connect(target)
        try:
            dest.execute("PRAGMA journal_mode = OFF")
            dest.execute("PRAGMA synchronous = OFF")
            src.backup(dest)
        finally:
            dest.close()
    finally:
        src.close()
    if durable:
        _sync(target)


def _sync(path: Path) -> None:
    """``path``'s content and its entry in its folder on disk."""
    for name, flags in ((path, os.O_RDONLY), (path.parent, os.O_RDONLY | os.O_DIRECTORY)):
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def private_copy(base: Path, rel: str) -> Iterator[Path]:
    """A copy of ``base/rel`` in a private temporary folder (root's, 0700): what root reads shapes and schemas
    from, never the data folder's own file."""
    folder = Path(tempfile.mkdtemp(prefix="rg-db-"))
    try:
        target = folder / "copy.db"
        copy(base, rel, target)
        yield target
    finally:
        shutil.rmtree(folder, ignore_errors=True)


_SHAPE_OUT = """import json, sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=10)
q = lambda n: '"' + n.replace('"', '""') + '"'
out = {}
for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                          "ORDER BY name").fetchall():
    out[name] = [[r[1] for r in db.execute(f"PRAGMA table_info({q(name)})")],
                 db.execute(f"SELECT count(*) FROM {q(name)}").fetchone()[0]]
json.dump(out, sys.stdout)
"""


def shape_in(base: Path, rel: str) -> dict[str, TableShape]:
    """:func:`shape` (columns and row counts) of the data folder's database ``base/rel``, the path checked first;
    as root on another user's folder, read by a child running as that user (never opened by root)."""
    with opened(base, rel, companions=True) as (dir_fd, _fd):
        owner = _drop_to(dir_fd)
        if owner is not None:
            with tempfile.TemporaryFile() as out:
                _as_owner(owner, _SHAPE_OUT, base / rel, None, out.fileno())
                out.seek(0)
                try:
                    found = json.load(out)
                    return {str(n): TableShape(tuple(str(c) for c in cols), int(rows), "")
                            for n, (cols, rows) in found.items()}
                except (ValueError, TypeError, AttributeError) as exc:
                    raise sqlite3.DatabaseError(f"{base / rel}: unreadable shape ({exc})") from exc
    return shape(base / rel, rows_digest=False)


def schema_in(base: Path, rel: str) -> DatabaseSchema:
    """:func:`schema` of the data folder's database ``base/rel``, the path checked first; as root on another
    user's folder, read from a private copy (made as that user)."""
    with opened(base, rel, companions=True) as (dir_fd, _fd):
        owner = _drop_to(dir_fd)
    if owner is None:
        return schema(base / rel)
    with private_copy(base, rel) as copy:
        return schema(copy)


def copy_file(base: Path, rel: str, target: Path) -> bool:
    """A plain copy of the data folder's file ``base/rel`` read through its checked descriptor; False (nothing
    copied) when it is a link, not a regular file or hard-linked."""
    try:
        with opened(base, rel) as (_dir_fd, fd), open(target, "wb") as out:
            with os.fdopen(os.dup(fd), "rb") as source:
                shutil.copyfileobj(source, out, 1024 * 1024)
    except (UnsafeDatabase, FileNotFoundError):
        return False
    return True


def restore_into(snapshot: Path, base: Path, rel: str) -> None:
    """Replace the live database ``base/rel``'s content with the snapshot's, through SQLite's own locking.

    The backup API writes the whole snapshot into the live file as one transaction, so replicas that
    hold it open see either the old or the restored database, never a torn one. The live path is checked
    (never a link, nothing hard-linked, no linked folder); as root on a folder another user owns, the write
    runs as that user, so a link planted after the check can only reach what the app could write anyway.
    """
    parts = _parts(rel)
    dir_fd = _folder_fd(base, [], rel)
    try:
        owner = _drop_to(dir_fd)
    finally:
        os.close(dir_fd)
    try:  # the folders on the way, then the file, when they exist: a link among them is refused
        with opened(base, rel, companions=True):
            pass
    except FileNotFoundError:
        folders = parts[:-1]
        while folders:
            try:
                os.close(_folder_fd(base, folders, rel))
                break
            except FileNotFoundError:
                folders = folders[:-1]
    if owner is not None:
        with open(snapshot, "rb") as feed:
            _as_owner(owner, _BACKUP_IN, base / rel, feed.fileno(), subprocess.DEVNULL)
        return
    live = base / rel
    live.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)
    try:
        dest = sqlite3.connect(live, timeout=30)
        try:
            src.backup(dest)
        finally:
            dest.close()
    finally:
        src.close()


def checksum(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def checksum_in(base: Path, rel: str) -> str:
    """The sha256 of the data folder's file ``base/rel``, read through its checked descriptor."""
    with opened(base, rel) as (_dir_fd, fd), os.fdopen(os.dup(fd), "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
