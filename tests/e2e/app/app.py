"""Test app for the end-to-end tests: a tiny HTTP service whose failure mode is chosen by MODE."""

import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MODE = os.environ.get("MODE", "")
VERSION = os.environ.get("VERSION", "1")
DATA = Path(os.environ.get("RAILGUARD_DATA_DIR", "."))

if MODE == "crash":
    print("fatal: cannot start, configuration is broken", flush=True)
    sys.exit(3)
if MODE == "keyerror":
    print(os.environ["DATABASE_URL"])
if MODE == "leak":  # an app that prints its own secret: the logs Railguard serves must hide it
    print(f"connecting with token {os.environ.get('API_TOKEN')}", flush=True)
if MODE == "slow":
    time.sleep(float(os.environ.get("SLOW", "2")))
if MODE == "hold":  # starts only once the test removes DATA/hold (at most 60 s): an operation the test controls
    deadline = time.monotonic() + 60
    while (DATA / "hold").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
if MODE == "workers":  # a master with a worker process, as gunicorn and uvicorn --workers run
    import subprocess

    WORKER = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    (DATA / "worker.pid").write_text(str(WORKER.pid))
PORT = int(os.environ["FIXED_PORT"] if MODE == "ignore_port" else os.environ["PORT"])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        if self.path == "/healthz":
            ok = MODE != "unhealthy" and (DATA / "schema").exists()
            body, status = (b"ok", 200) if ok else (b"database missing", 503)
        else:
            body, status = f"v{VERSION} pid {os.getpid()} env {sorted(os.environ)}".encode(), 200
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        print(format % args, flush=True)


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
server.daemon_threads = True
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
print(f"v{VERSION} listening on {PORT}", flush=True)
server.serve_forever()
