"""Running the daemon: one per state folder, in the background, stoppable, restartable.

``run`` holds an exclusive ``flock`` on ``daemon.lock`` for its whole life (the kernel
releases it when the process dies, however it dies, so a crashed daemon never blocks
the next one), writes ``daemon.pid`` (pid + start time), boots the daemon and serves
the API until asked to stop or sent SIGTERM. Called by ``railguard daemon run``, which
the client starts detached on demand.

The daemon's log goes to ``daemon.log`` through a rotating handler (it runs for weeks);
its stdout and stderr, which the client points at ``daemon.out``, only catch what the
logging cannot: a crash of the interpreter or of a thread before logging is set up.
"""

from __future__ import annotations

import fcntl
import logging
import logging.handlers
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from railguard.daemon import mode
from railguard.daemon.api import Server
from railguard.daemon.service import Daemon
from railguard.engine import gcpause
from railguard.engine.workspace import daemon_socket
from railguard.state.pidfile import write_pid

LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5


class AlreadyRunning(Exception):
    pass


def log_handler(home: Path, max_bytes: int = LOG_MAX_BYTES, backups: int = LOG_BACKUPS) -> logging.Handler:
    """``daemon.log``, rolled to ``daemon.log.1`` ... ``.<backups>`` when it reaches ``max_bytes``."""
    handler = logging.handlers.RotatingFileHandler(home / "daemon.log", maxBytes=max_bytes, backupCount=backups,
                                                   encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler


# Something else served from the daemon's process (the web console): started after boot, stopped at the end.
Companion = Callable[[Daemon], Callable[[], None]]


def run(home: Path, require_token: bool = False, allow_shared_user: bool = False, same_user: bool = False,
        companions: Sequence[Companion] = ()) -> None:
    # Everything the daemon creates is its own unless made shareable on purpose (artifacts, data folders).
    os.umask(0o077)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    logging.basicConfig(handlers=[log_handler(home)], level=logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health check would drown the log
    lock = open(home / "daemon.lock", "a+")  # held open for the process lifetime
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        raise AlreadyRunning(f"a daemon already serves {home}") from exc
    # Before boot: a socket folder that is not safely ours (daemon.unsafe_socket_folder) stops the start here,
    # before any replica is adopted.
    sock_path = daemon_socket(home)
    daemon = Daemon(home)
    summary = daemon.provider.summary()
    daemon.mode = mode.resolve(home, require_token=require_token, allow_shared_user=allow_shared_user,
                               same_user=same_user, isolation=summary.isolation, reason=summary.isolation_reason)
    daemon.require_token = daemon.mode.require_token
    write_pid(home)
    daemon.boot()
    server = Server(sock_path, daemon)
    stoppers = [start(daemon) for start in companions]
    # Booted (runtime adopted, spec and state read): what the daemon holds now lives as long as it does. Out of
    # the collector's way, and a request's temporaries die before a young collection sees them (engine/gcpause).
    gcpause.settle()

    daemon.on_stop = server.shutdown

    def on_signal(signum: int, frame: FrameType | None) -> None:
        daemon.request_shutdown(False)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logging.getLogger("railguard.daemon").info("serving %s on %s", home, sock_path)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        for stop in stoppers:
            stop()
        server.server_close()
        try:
            sock_path.unlink()
        except FileNotFoundError:
            pass
        (home / "daemon.pid").unlink(missing_ok=True)
        lock.close()
        sys.stdout.flush()

