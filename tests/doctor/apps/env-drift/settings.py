"""Settings read from the environment: API_KEY is required but the spec never declares it."""

import os

API_KEY = os.environ["API_KEY"]
SENTRY_DSN = os.getenv("SENTRY_DSN", "")
