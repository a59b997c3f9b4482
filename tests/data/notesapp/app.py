"""A tiny notes app on SQLite: VERSION 3 reads only titles; the others read titles and bodies."""

import os
import sqlite3
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DB = Path(os.environ["RAILGUARD_DATA_DIR"]) / "notes.db"
VERSION = os.environ.get("VERSION", "1")


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/healthz":
            return self._send(200, "ok")
        try:
            db = sqlite3.connect(DB)
            columns = "title" if VERSION == "3" else "title, body"
            rows = db.execute(f"SELECT {columns} FROM notes ORDER BY id").fetchall()
            db.close()
        except sqlite3.Error as exc:
            return self._send(500, f"error: {exc}")
        return self._send(200, f"v{VERSION}\n" + "\n".join("|".join(map(str, r)) for r in rows))

    def _send(self, code, text):
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
