"""Reading a file an agent may have put where Railguard reads: only a regular file, only so much of it.

Why it exists: the spec and the files ``railguard init`` reads are named by the app's folder, which the agent
writes. A FIFO under such a name blocks a plain ``read_text`` for good (the daemon's observer reads the served
spec; ``init`` reads ``requirements.txt``), and ``/dev/zero`` behind a symlink never ends. Here the file is opened
without waiting for a writer, refused unless it is a regular file, and read up to a limit. Called by
:func:`railguard.engine.workspace.read_spec_file`, :func:`railguard.engine.appscan.read` (``railguard init``) and
the source listing's ignore files (:mod:`railguard.sources.listing`: a sparse 10 GB ``.gitignore`` is cheap to make).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


def read_regular(path: Path, limit: int, same_owner: bool = True) -> bytes:
    """At most ``limit + 1`` bytes of the regular file at ``path`` (one more than the limit: the caller can tell a
    file over it). Raises ``IsADirectoryError`` for a folder, ``OSError`` (``EINVAL``) for a FIFO, a socket or a
    device, ``PermissionError`` (below), and any ``OSError`` opening or reading it raises.

    As root (and unless ``same_owner`` is off), the file must belong to the owner of the folder that names it: root
    can read any file, and a link (or hard link) an agent put in an app folder it writes could otherwise name one
    only root may read, whose contents would come back in diagnostics (a spec's validation errors quote the values
    they refuse). The source listing turns it off for ignore files, which it has checked are no links and whose
    contents only choose files."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # opening a FIFO does not wait for a writer
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, a socket or a device)", str(path))
        if same_owner and os.geteuid() == 0 and info.st_uid != (folder := os.stat(path.parent).st_uid):
            raise PermissionError(errno.EACCES, f"owned by uid {info.st_uid}, not by the owner of its folder (uid "
                                  f"{folder}); Railguard running as root reads no other user's file through an "
                                  "app's folder", str(path))
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as handle:
        return handle.read(limit + 1)


def text_mode(data: bytes, errors: str = "strict") -> str:
    """``data`` decoded as ``Path.read_text(encoding="utf-8")`` gives it: line ends made ``\\n`` (universal
    newlines), so what is hashed or parsed does not move with the reader."""
    return data.decode("utf-8", errors=errors).replace("\r\n", "\n").replace("\r", "\n")
