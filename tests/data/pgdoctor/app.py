"""The doctor's Postgres test app: serves on $PORT; with HONEST=1 its /healthz runs `SELECT 1` on
$DATABASE_URL (through psql) and answers 503 when that fails, otherwise it always answers 200 (the health
check that says OK while the database is gone)."""

import http.server
import os
import subprocess


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        ok = True
        if os.environ.get("HONEST") == "1":
            ok = subprocess.run([os.environ["PSQL"], os.environ["DATABASE_URL"], "-X", "-Atq", "-c", "SELECT 1"],
                                capture_output=True, timeout=5).returncode == 0
        body = b"ok" if ok else b"database unreachable"
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
