"""The web service reaches the api through the edge (API_URL), but its health check ignores the api."""

import os

import notes

API_URL = os.environ["API_URL"]  # used by the pages, never by /healthz

notes.main()
