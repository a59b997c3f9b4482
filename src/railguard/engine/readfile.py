"""Reading a file an agent may have put where Railguard reads: only a regular file, only so much of it.

Why it exists: the spec and the files ``railguard init`` reads are named by the app's folder, which the agent
writes. A FIFO under such a name blocks a plain ``read_text`` for good (the daemon's observer reads the served
spec; ``init`` reads ``requirements.txt``), and ``/dev/zero`` behind a symlink never ends. Here the file is opened
without waiting for a writer, refused unless it is a regular file, and read up to a limit. Called by
:func:`railguard.engine.workspace.read_spec_file` and :func:`railguard.engine.appscan.read`.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


def read_regular(path: Path, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of the regular file at ``path`` (one more than the limit: the caller can tell a
    file over it). Raises ``IsADirectoryError`` for a folder, ``OSError`` (``EINVAL``) for a FIFO, a socket or a
    device, and any ``OSError`` opening or reading it raises."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # opening a FIFO does not wait for a writer
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, a socket or a device)", str(path))
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as handle:
        return handle.read(limit + 1)


def text_mode(data: bytes, errors: str = "strict") -> str:
    """``data`` decoded as ``Path.read_text(encoding="utf-8")`` gives it: line ends made ``\\n`` (universal
    newlines), so what is hashed or parsed does not move with the reader."""
    return data.decode("utf-8", errors=errors).replace("\r\n", "\n").replace("\r", "\n")
