import os
from pathlib import Path

DATA = Path(os.environ.get("DATA_DIR", "."))


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]
