"""The sample app of the doctor tests: notes in SQLite behind a small HTTP server.

The healthy app (``app.py``) runs it as written: it listens on $PORT, keeps its data under
$RAILGUARD_DATA_DIR, its /healthz reads the table it serves from, and on SIGTERM it stops accepting,
lets requests in flight finish, then exits. Each other sample app changes one of these behaviours in
its own ``app.py``.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DB = Path(os.environ["RAILGUARD_DATA_DIR"]) / "notes.db"
VERSION = os.environ.get("APP_VERSION", "1")
in_flight = 0
lock = threading.Lock()


def db() -> sqlite3.Connection:
    return sqlite3.connect(f"file:{DB}?mode=rw", uri=True, timeout=2)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    column = "text"

    def handle_one_request(self) -> None:
        global in_flight
        with lock:
            in_flight += 1
        try:
            super().handle_one_request()
        finally:
            with lock:
                in_flight -= 1

    def health(self) -> str | None:
        """What stops the app from serving, or None."""
        try:
            with db() as conn:
                conn.execute(f"SELECT id, {self.column} FROM notes LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            return f"database: {exc}"
        return None

    def send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            found = self.health()
            self.send(503 if found else 200, {"status": found or "ok", "version": VERSION})
            return
        try:
            with db() as conn:
                rows = conn.execute(f"SELECT id, {self.column} FROM notes ORDER BY id").fetchall()
        except sqlite3.Error as exc:
            self.send(503, {"error": str(exc)})
            return
        self.send(200, {"version": VERSION, "notes": [{"id": i, "text": t} for i, t in rows]})

    def do_POST(self) -> None:
        text = self.rfile.read(min(int(self.headers.get("Content-Length") or 0), 10_000)).decode()
        with db() as conn:
            cursor = conn.execute(f"INSERT INTO notes ({self.column}) VALUES (?)", (text,))
        self.send(201, {"id": cursor.lastrowid})

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(format % args + "\n")


def main(handler: type[Handler] = Handler, port: int | None = None, graceful: bool = True) -> None:
    port = port or int(os.environ["PORT"])
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    if graceful:
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"notes v{VERSION} on port {port}", flush=True)
    server.serve_forever(poll_interval=0.1)
    server.server_close()
    deadline = time.monotonic() + 4
    while in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
