"""Release command that needs settings (like `manage.py migrate`): it fails without SECRET_KEY."""

import os
import sqlite3
from pathlib import Path

import settings

print(f"migrating with key {settings.SECRET_KEY}", flush=True)  # a careless log line: doctor must redact it
data = Path(os.environ["RAILGUARD_DATA_DIR"])
data.mkdir(parents=True, exist_ok=True)
with sqlite3.connect(data / "notes.db") as db:
    db.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")
print("schema ready", flush=True)
