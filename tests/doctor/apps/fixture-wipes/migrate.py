"""Release command that recreates the table: every existing note is lost on each deploy."""

import os
import sqlite3
from pathlib import Path

data = Path(os.environ["RAILGUARD_DATA_DIR"])
data.mkdir(parents=True, exist_ok=True)
with sqlite3.connect(data / "notes.db") as db:
    db.execute("DROP TABLE IF EXISTS notes")
    db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")
