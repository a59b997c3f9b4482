"""The release command of the doctor's Postgres tests: creates the notes table; MIGRATE=dropcol then drops its
`tag` column (a loss), MIGRATE=keep only creates what is missing. Appends the URL it was given to $URL_LOG, so
the test can check that a scratch run never gets the real database's, and who it is there to $URL_LOG.who (the
role and whether it is a superuser: the doctor's scratch must give an app-like role, never the admin)."""

import os
import subprocess

with open(os.environ["URL_LOG"], "a") as log:
    log.write(os.environ["DATABASE_URL"] + "\n")
statement = "CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text NOT NULL, tag text)"
if os.environ.get("MIGRATE") == "dropcol":
    statement += "; ALTER TABLE notes DROP COLUMN IF EXISTS tag"
subprocess.run([os.environ["PSQL"], os.environ["DATABASE_URL"], "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                statement], check=True)
who = subprocess.run([os.environ["PSQL"], os.environ["DATABASE_URL"], "-X", "-Atq", "-c",
                      "SELECT current_user || ':' || rolsuper FROM pg_roles WHERE rolname = current_user"],
                     check=True, capture_output=True, text=True).stdout.strip()
with open(os.environ["URL_LOG"] + ".who", "a") as log:
    log.write(who + "\n")
