"""The release command: creates the notes table (MIGRATE=drop recreates it: every row lost). Prints the URL
it was given, so the test can check that logs never show it."""

import os
import subprocess

statement = "CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text NOT NULL)"
if os.environ.get("MIGRATE") == "drop":
    statement = "DROP TABLE IF EXISTS notes; " + statement
print("migrating", os.environ["DATABASE_URL"], flush=True)
subprocess.run([os.environ["PSQL"], os.environ["DATABASE_URL"], "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                statement], check=True)
