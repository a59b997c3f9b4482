"""Microblog's config reads DATABASE_URL, which a managed database injects: the doctor called it undeclared."""

import os

DATABASE_URL = os.environ["DATABASE_URL"]
HOST = os.environ.get("PGHOST", "localhost")
