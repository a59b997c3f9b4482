"""A small notes service: the app the README quickstart deploys.

Standard library only, so it deploys on any machine with Python. It keeps notes in a
SQLite file under $RAILGUARD_DATA_DIR (set by Railguard per environment), listens on
$PORT, and its /healthz really checks the database: a missing or unreadable database,
or a schema the release command has not created, makes it answer 503. On SIGTERM it
stops accepting connections, lets in-flight requests finish, and exits.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DB_PATH = Path(os.environ.get("RAILGUARD_DATA_DIR", ".")) / "notes.db"
VERSION = os.environ.get("APP_VERSION", "1")


def connect() -> sqlite3.Connection:
    # mode=rw: never create the database here; creating it is the release command's job.
    return sqlite3.connect(f"file:{DB_PATH}?mode=rw", uri=True, timeout=2)


in_flight = 0
in_flight_lock = threading.Lock()
Method = Callable[["Handler"], None]


def counted(method: Method) -> Method:
    """Count a request as in flight while its handler runs (an idle keep-alive connection does not count)."""

    @functools.wraps(method)
    def wrapper(self: Handler) -> None:
        global in_flight
        with in_flight_lock:
            in_flight += 1
        try:
            method(self)
        finally:
            with in_flight_lock:
                in_flight -= 1

    return wrapper


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once: no 40 ms Nagle/delayed-ACK stall
    timeout = 30  # an idle keep-alive connection is closed after this, never held forever

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    @counted
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/healthz":
            try:
                with connect() as db:
                    count = db.execute("SELECT count(*) FROM notes").fetchone()[0]
                self._send(200, {"status": "ok", "notes": count, "version": VERSION})
            except sqlite3.Error as exc:
                self._send(503, {"status": "unhealthy", "error": str(exc)})
            return
        try:
            with connect() as db:
                rows = db.execute("SELECT id, text FROM notes ORDER BY id").fetchall()
            self._send(200, {"version": VERSION, "notes": [{"id": i, "text": t} for i, t in rows]})
        except sqlite3.Error as exc:
            self._send(503, {"error": str(exc)})

    @counted
    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        text = self.rfile.read(min(length, 10_000)).decode("utf-8", errors="replace")
        with connect() as db:
            cursor = db.execute("INSERT INTO notes (text) VALUES (?)", (text,))
        self._send(201, {"id": cursor.lastrowid, "text": text})

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        sys.stderr.write("%s %s\n" % (self.address_string(), format % args))


def main() -> None:
    port = int(os.environ["PORT"])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    # Connection threads are daemons so idle keep-alive connections cannot block exit;
    # requests that are in flight are waited for below.
    server.daemon_threads = True

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    print(f"notes v{VERSION} listening on 127.0.0.1:{port}, database {DB_PATH}", flush=True)
    server.serve_forever()
    server.server_close()
    deadline = time.monotonic() + 5
    while in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    print("stopped cleanly", flush=True)


if __name__ == "__main__":
    main()
