"""Release command that is not idempotent: it inserts its seed row again on every run."""

import os
import sqlite3
from pathlib import Path

data = Path(os.environ["RAILGUARD_DATA_DIR"])
data.mkdir(parents=True, exist_ok=True)
with sqlite3.connect(data / "notes.db") as db:
    db.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")
    db.execute("CREATE TABLE IF NOT EXISTS settings (name TEXT, value TEXT)")
    db.execute("INSERT INTO settings (name, value) VALUES ('theme', 'light')")
