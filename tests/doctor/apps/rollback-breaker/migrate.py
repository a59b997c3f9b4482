"""Release 2's migration renames notes.text to notes.body: release 1, rolled back to, cannot read it
any more (the rollback-drill check catches it). Safe to run twice and keeps every row."""

import os
import sqlite3
from pathlib import Path

data = Path(os.environ["RAILGUARD_DATA_DIR"])
data.mkdir(parents=True, exist_ok=True)
with sqlite3.connect(data / "notes.db") as db:
    db.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    columns = [row[1] for row in db.execute("PRAGMA table_info(notes)")]
    if "text" in columns:
        db.execute("ALTER TABLE notes RENAME COLUMN text TO body")
