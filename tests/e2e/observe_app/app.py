"""Test app of the observation tests: healthy on /healthz always; MODE=error500 answers 500 everywhere else."""

import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE = os.environ.get("MODE", "")
VERSION = os.environ.get("VERSION", "1")
if MODE == "crash":
    print("fatal: boom", flush=True)
    sys.exit(3)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # keep-alive answers without the 40 ms delayed-ACK stall (benchmarks)

    def do_GET(self) -> None:
        status = 200 if self.path == "/healthz" or MODE != "error500" else 500
        body = f"v{VERSION}\n".encode()
        if status == 500:
            print(f"error: v{VERSION} cannot serve {self.path}", flush=True)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
server.daemon_threads = True
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
print(f"v{VERSION} listening", flush=True)
server.serve_forever()
