"""Rehearsing a release command on a scratch copy of the data before it runs for real.

The copy is made with SQLite's backup API (the live data is only read); the command runs on it
twice, as the real run would and as a retry would. Tables and columns dropped and rows lost on the
way are losses (each naming its database, table, column and row count); a plan may acknowledge
losses by table name. Additive changes are notes. Called by the local provider's rollout right
before the real release command.

The second run is skipped when the first changed nothing at all in the copy (:func:`fingerprint`: every
path, kind, permission, size, modification time and content byte the same, no link, no WAL, for a copy up
to :data:`FINGERPRINT_BYTES`): it would start from exactly what the first saw, with the same artifact and
environment, so its verdict is the first's. Anything the fingerprint cannot vouch for means it runs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path

from railguard.data import sqlite
from railguard.data.loss import Shapes, additions, changed, losses
from railguard.data.sqlite import TableShape
from railguard.model.data import Backup, Loss, Rehearsal

OTHER_FILES_BYTES = 256 * 1024 * 1024  # files that are not databases, copied into the scratch up to this much
# The copy is read in full twice (before the first run and after it) to tell "changed nothing": 8 MiB took ~7 ms
# a read here (page-cached, sha256 ~1 GB/s; ~25 ms at load 5), so both reads stay under one run of a small Python
# command (~40 ms); above it the command always runs twice. Entries bound the walk the same way.
FINGERPRINT_BYTES = 8 * 1024 * 1024
FINGERPRINT_ENTRIES = 2000
FINGERPRINT_DEPTH = 32  # folders deeper than this are not walked (recursion, one descriptor open per level)
SKIPPED = "second run skipped: the first changed nothing"


class SecondRunFailed(Exception):
    """The command succeeded once on the copy and failed the second time: a retry would break."""


def _shapes(folder: Path, names: list[str]) -> Shapes:
    # Columns and row counts only: hashing every row would cost more than the command itself on big data.
    # Through shape_in: after a run the scratch folder is the app's, which may have planted links in it.
    found: Shapes = {}
    for rel in names:
        try:
            found[rel] = sqlite.shape_in(folder, rel)
        except FileNotFoundError:
            continue
    return found


def _stamps(folder: Path, names: list[str]) -> dict[str, tuple[int, ...]]:
    """Whether a run wrote a database: size and modification time of the file and its WAL.

    Only a note depends on it ("written again by a second run"), and losses are judged on the shapes: the
    sha256 of every file it replaced was a second full read of the data after each run (100 MB: ~0.3 s each)."""
    found: dict[str, tuple[int, ...]] = {}
    for rel in names:
        path = folder / rel
        if path.is_file():
            stamps: list[int] = []
            for part in (path, path.with_name(path.name + "-wal")):
                try:
                    info = part.lstat()  # a link the app planted is not followed
                    stamps += [info.st_size, info.st_mtime_ns]
                except FileNotFoundError:
                    stamps += [-1, -1]
            found[rel] = tuple(stamps)
    return found


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a planted FIFO never blocks


class _Unvouched(Exception):
    """Something in the folder the fingerprint cannot vouch for: the second run happens."""


def fingerprint(folder: Path) -> str | None:
    """A digest of everything under ``folder`` (not the folder's own entry, whose mode and owner the isolated
    run sets): each path with its kind, permission bits, size, modification time and content's sha256. None
    when it cannot vouch that equal digests mean equal folders to a command: a link, a FIFO or other special
    file, a hard-linked file, a SQLite WAL/journal/shm file, more than :data:`FINGERPRINT_BYTES` or
    :data:`FINGERPRINT_ENTRIES`, folders nested deeper than :data:`FINGERPRINT_DEPTH`. Owners are left out (the
    isolated run hands the copy to its user first).

    After a run the folder is the app's: every entry is opened from its parent's descriptor with
    ``O_NOFOLLOW`` and checked on the descriptor (as :mod:`railguard.data.sqlite` does), so a link planted
    meanwhile is never followed; the digest is only compared, never shown."""
    digest = hashlib.sha256()
    budget = [FINGERPRINT_BYTES, FINGERPRINT_ENTRIES]

    def walk(dir_fd: int, rel: str, depth: int) -> None:
        if depth > FINGERPRINT_DEPTH:
            raise _Unvouched(rel)
        with os.scandir(dir_fd) as listing:
            names = sorted(entry.name for entry in listing)
        for name in names:
            budget[1] -= 1
            if budget[1] < 0 or name.endswith(sqlite.COMPANIONS):
                raise _Unvouched(name)
            path = f"{rel}/{name}" if rel else name
            try:
                fd = os.open(name, _FILE, dir_fd=dir_fd)
            except OSError as exc:  # ELOOP: a link; anything else (gone, unreadable): not vouched for either
                raise _Unvouched(path) from exc
            try:
                info = os.fstat(fd)
                if stat.S_ISDIR(info.st_mode):
                    digest.update(f"d {path!r} {stat.S_IMODE(info.st_mode):o}\n".encode())
                    walk(fd, path, depth + 1)
                    continue
                if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
                    raise _Unvouched(path)
                budget[0] -= info.st_size
                if budget[0] < 0:
                    raise _Unvouched(path)
                with os.fdopen(os.dup(fd), "rb") as handle:
                    content = hashlib.file_digest(handle, "sha256").hexdigest()
                digest.update(f"f {path!r} {stat.S_IMODE(info.st_mode):o} {info.st_size} {info.st_mtime_ns} "
                              f"{content}\n".encode())
            finally:
                os.close(fd)

    try:
        top = os.open(folder, _DIR)
    except OSError:
        return None
    try:
        walk(top, "", 0)
    except (_Unvouched, OSError):
        return None
    finally:
        os.close(top)
    return digest.hexdigest()


def copy_folder(data_dir: Path, scratch: Path, copies: dict[str, Path] | None = None) -> list[str]:
    """A scratch copy of the data folder: databases from ``copies`` (a snapshot just taken: a plain file copy)
    or through the backup API, other files as they are.

    The data folder is the app's: every file of it is read through a descriptor checked not to be a link (nor
    hard-linked, nor under a linked folder), never by path (see :mod:`railguard.data.sqlite`). A database that
    is not so is refused (:class:`~railguard.data.sqlite.UnsafeDatabase`); another such file is left out."""
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    names = sqlite.databases(data_dir)
    budget = OTHER_FILES_BYTES
    for path in sorted(data_dir.rglob("*")):
        rel = str(path.relative_to(data_dir))
        if path.is_symlink() or not path.is_file() or rel.endswith(sqlite.COMPANIONS):
            continue
        target = scratch / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if copies and rel in copies:
            shutil.copyfile(copies[rel], target)
        elif rel in names:
            sqlite.copy(data_dir, rel, target)
        elif (size := path.lstat().st_size) <= budget:  # uploads and the like: copied while they are small
            if sqlite.copy_file(data_dir, rel, target):
                budget -= size
    return names


def rehearse(data_dir: Path, scratch: Path, run: Callable[[Path, str], None], allow: list[str],
             copies: dict[str, Path] | None = None, known: Shapes | None = None,
             once_if_unchanged: bool = True) -> Rehearsal:
    """Run ``run(folder, label)`` twice on a copy of ``data_dir`` and say what it would lose.

    ``run`` raises when the command fails (its own error goes through: the real run is then not
    attempted). ``allow`` names tables whose loss the plan acknowledged ('*' for any). ``known``: the shapes
    of the ``copies`` (a snapshot records them as it is taken), so the copy is not read again before the runs.
    ``once_if_unchanged``: skip the second run when the first changed nothing in the copy (see the module's
    docstring); the caller says False when the command also works on state outside the copy that no
    fingerprint covers (a Postgres scratch database).
    """
    started = time.monotonic()
    try:
        names = copy_folder(data_dir, scratch, copies)
        given = {rel: known[rel] for rel in names if known and copies and rel in known and rel in copies}
        before = {**given, **_shapes(scratch, [rel for rel in names if rel not in given])}
        print_before = fingerprint(scratch) if once_if_unchanged else None
        run(scratch, "rehearsal")
        if print_before is not None and fingerprint(scratch) == print_before:
            # Byte for byte what the first run started from (so nothing lost either): the second would see exactly
            # that again.
            return Rehearsal(seconds=round(time.monotonic() - started, 3), notes=[SKIPPED], second_run_skipped=True)
        after = sqlite.databases(scratch)
        first, first_sums = _shapes(scratch, after), _stamps(scratch, after)
        found = losses(before, first)
        try:
            run(scratch, "rehearsal-second-run")
        except Exception as exc:
            raise SecondRunFailed(str(exc)) from exc
        again = sqlite.databases(scratch)
        second = _shapes(scratch, again)
        found += [loss for loss in losses(first, second, second_run=True)]
        notes = additions(before, first) + changed(first, second)
        notes += [f"{rel}: written again by a second run" for rel, digest in _stamps(scratch, again).items()
                  if first_sums.get(rel) != digest and not any(n.startswith(f"{rel}:") for n in notes)]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    acknowledged = [loss for loss in found if allowed(loss, allow)]
    return Rehearsal(seconds=round(time.monotonic() - started, 3),
                     losses=[loss for loss in found if loss not in acknowledged],
                     acknowledged=acknowledged, notes=notes)


def known_shapes(backup: Backup) -> Shapes:
    """The SQLite copies' shapes as the snapshot recorded them (columns from its schema, its row counts)."""
    return {f.path: {t: TableShape(tuple(c for c, _ in f.db_schema.tables[t].columns), rows, "")
                     for t, rows in f.tables.items() if t in f.db_schema.tables}
            for f in backup.files if f.engine == "sqlite" and set(f.tables) == set(f.db_schema.tables)}


def allowed(loss: Loss, allow: list[str]) -> bool:
    return "*" in allow or loss.table in allow or f"{loss.table}.{loss.column}" in allow


def describe(found: list[Loss]) -> str:
    return "; ".join(loss.what + (" (on a second run)" if loss.second_run else "") for loss in found)
