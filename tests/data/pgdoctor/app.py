"""A placeholder server: the doctor's release checks never start it."""

import http.server
import os

http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), http.server.SimpleHTTPRequestHandler).serve_forever()
