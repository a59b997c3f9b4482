"""A tiny notes app on Postgres through DATABASE_URL and psql (no driver): GET / lists, GET /add?x adds a row."""

import os
import subprocess
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = os.environ.get("VERSION", "1")


def sql(statement):
    done = subprocess.run([os.environ["PSQL"], os.environ["DATABASE_URL"], "-X", "-q", "-A", "-t", "-v",
                           "ON_ERROR_STOP=1", "-c", statement], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip())
    return done.stdout.strip()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/healthz":
            return self._send(200, "ok")
        try:
            if self.path.startswith("/add?"):
                body = self.path.split("?", 1)[1].replace("'", "")
                sql(f"INSERT INTO notes (body) VALUES ('{body}')")
            rows = sql("SELECT body FROM notes ORDER BY id")
        except RuntimeError:
            return self._send(500, "database error")  # the driver's message may carry the URL: never echoed
        return self._send(200, f"v{VERSION}\n{rows}")

    def _send(self, code, text):
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


print("starting notes on postgres", flush=True)
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
