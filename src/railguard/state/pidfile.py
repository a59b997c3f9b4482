"""The daemon's pid file: pid plus process start time, so a reused pid is never mistaken for it.

Written by the daemon at start (:mod:`railguard.daemon.lifecycle`), read by the client
to report and stop it.
"""

from __future__ import annotations

import json
from pathlib import Path

import psutil

NAME = "daemon.pid"


def write_pid(home: Path) -> None:
    me = psutil.Process()
    (home / NAME).write_text(json.dumps({"pid": me.pid, "create_time": me.create_time()}))


def read_pid(home: Path) -> int | None:
    """The running daemon's pid, verified against its recorded start time."""
    try:
        data = json.loads((home / NAME).read_text())
        proc = psutil.Process(int(data["pid"]))
        if abs(proc.create_time() - float(data["create_time"])) < 0.5 and proc.status() != psutil.STATUS_ZOMBIE:
            return int(proc.pid)
    except (OSError, ValueError, KeyError, psutil.Error):
        pass
    return None
