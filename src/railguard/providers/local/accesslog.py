"""The edge's access log: what Caddy itself saw of every request, read back per replica.

Each environment's Caddy writes one JSON line per request to ``edge/<env>/access.log`` (rolled by
Caddy), with the upstream it picked appended (Caddy's ``log_append`` handler), so a request is
attributed to the replica, hence the service and release, that answered it. Headers, the URI, and
client addresses are filtered out before the line is written: tokens in a query string or cookies
never reach the disk. :func:`logging_config` and :func:`log_handler` are the two pieces of Caddy
config :mod:`railguard.providers.local.edge` adds; :class:`AccessReader` is read by the local
provider's ``traffic`` verb, incrementally (offset + inode, so a roll restarts at the new file).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOGGER = "rgaccess"
FILE_NAME = "access.log"
ROLL_SIZE_MB = 20
ROLL_KEEP = 2
FIRST_LOOK = 4 * 1024 * 1024  # how much of an existing log the first look reads back (lines since the daemon began)
MAX_READ = 8 * 1024 * 1024  # per pass: a burst is read over several passes, never all into memory at once
# Everything of the request but the method, host and protocol: no headers, URI or client address on disk.
_DROPPED = ("request>headers", "request>uri", "request>remote_ip", "request>remote_port", "request>client_ip",
            "request>tls", "resp_headers", "user_id")


def logging_config(path: Path) -> dict[str, dict[str, Any]]:
    """The ``logging.logs`` entries: the access logger to its own rolled file, kept out of caddy.log."""
    return {
        LOGGER: {
            "writer": {"output": "file", "filename": str(path), "roll": True,
                       "roll_size_mb": ROLL_SIZE_MB, "roll_keep": ROLL_KEEP},
            "encoder": {"format": "filter", "wrap": {"format": "json"},
                        "fields": {name: {"filter": "delete"} for name in _DROPPED}},
            "include": [f"http.log.access.{LOGGER}"],
        },
    }


def enabled() -> bool:
    """Off with ``RAILGUARD_ACCESS_LOG=0`` in the daemon's environment (the overhead benchmark's baseline)."""
    return os.environ.get("RAILGUARD_ACCESS_LOG", "1") != "0"


def server_keys() -> dict[str, Any]:
    """The server's ``logs`` key (its access lines go to the access logger); none when access logging is off."""
    return {"logs": {"default_logger_name": LOGGER}} if enabled() else {}


def handlers(proxy: dict[str, Any]) -> list[dict[str, Any]]:
    """A proxying route's handlers: ``log_append`` first, so the access line carries the upstream that answered."""
    if not enabled():
        return [proxy]
    return [{"handler": "log_append", "key": "upstream", "value": "{http.reverse_proxy.upstream.hostport}"}, proxy]


@dataclass(frozen=True)
class AccessLine:
    at: float  # wall-clock seconds
    status: int
    duration_ms: float
    upstream: str  # "" when no upstream answered (no route, no replicas)


def parse(line: bytes) -> AccessLine | None:
    """One access line, or None for anything else (a partial line, another logger's line)."""
    try:
        data = json.loads(line)
        return AccessLine(at=float(data["ts"]), status=int(data["status"]),
                          duration_ms=float(data.get("duration", 0.0)) * 1000.0,
                          upstream=str(data.get("upstream") or ""))
    except (ValueError, KeyError, TypeError):
        return None


class AccessReader:
    """Reads the lines appended since the last call. History from before the reader was made is not news: the
    first look reads the file's tail (at most ``FIRST_LOOK``) and keeps only lines stamped after ``since``, so a
    request answered between a deploy's switch and the first look still counts (the edge's log may be created
    and written to before the daemon's next observation pass), and a restarted daemon does not count again what
    its predecessor already did (its figures come from the store)."""

    def __init__(self, path: Path, since: float | None = None) -> None:
        self.path = path
        self.since = time.time() if since is None else since
        self._inode: int | None = None
        self._offset = 0
        self._partial = b""

    def read(self) -> list[AccessLine]:
        try:
            stat = self.path.stat()
        except OSError:
            if self._inode is None:
                self._inode = -1  # the file comes later: read it from its start then
            return []
        first = self._inode is None
        if first:
            self._inode, self._offset = stat.st_ino, max(0, stat.st_size - FIRST_LOOK)
        mid_line = first and self._offset > 0  # the tail of a longer log starts inside a line
        if stat.st_ino != self._inode or stat.st_size < self._offset:  # rolled or truncated: the new file
            self._inode, self._offset, self._partial = stat.st_ino, 0, b""
        if stat.st_size == self._offset:
            return []
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read(MAX_READ)
        except OSError:
            return []
        self._offset += len(data)
        data, self._partial = self._partial + data, b""
        lines = data.split(b"\n")
        if not data.endswith(b"\n"):
            self._partial = lines.pop()
        if mid_line and lines:
            lines = lines[1:]
        found = [parse(line) for line in lines if line]
        return [line for line in found if line is not None and (not first or line.at >= self.since)]

