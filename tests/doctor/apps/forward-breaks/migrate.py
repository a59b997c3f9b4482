"""Release command written for an empty database: on the previous release's data the table exists
without the new column, CREATE TABLE IF NOT EXISTS does nothing, and the index fails."""

import os
import sqlite3
from pathlib import Path

data = Path(os.environ["RAILGUARD_DATA_DIR"])
data.mkdir(parents=True, exist_ok=True)
with sqlite3.connect(data / "notes.db") as db:
    db.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL, tags TEXT DEFAULT '')")
    db.execute("CREATE INDEX IF NOT EXISTS notes_by_tags ON notes (tags)")
