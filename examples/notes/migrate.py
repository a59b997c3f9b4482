"""Release command of the notes service: create or upgrade the schema. Safe to run twice."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

path = Path(os.environ.get("RAILGUARD_DATA_DIR", ".")) / "notes.db"
path.parent.mkdir(parents=True, exist_ok=True)
with sqlite3.connect(path) as db:
    db.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")
print(f"schema ready in {path}")
