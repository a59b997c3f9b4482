"""Release command of the notes app; MIGRATE picks what it does to the data."""

import os
import sqlite3
from pathlib import Path

data = Path(os.environ["RAILGUARD_DATA_DIR"])
data.mkdir(parents=True, exist_ok=True)
db = sqlite3.connect(data / "notes.db")
mode = os.environ.get("MIGRATE", "v1")
columns = {r[1] for r in db.execute("PRAGMA table_info(notes)")}
if mode == "v1":  # idempotent: create and seed once
    db.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, title TEXT NOT NULL, body TEXT)")
    db.executemany("INSERT OR IGNORE INTO notes (id, title, body) VALUES (?, ?, ?)",
                   [(1, "groceries", "milk, eggs"), (2, "ideas", "a safer deploy"), (3, "todo", "write tests")])
elif mode == "drop":  # the classic init-db: every row goes
    db.execute("DROP TABLE IF EXISTS notes")
    db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT NOT NULL, body TEXT)")
elif mode == "dropcol" and "body" in columns:
    db.execute("ALTER TABLE notes DROP COLUMN body")
elif mode == "add" and "tags" not in columns:
    db.execute("ALTER TABLE notes ADD COLUMN tags TEXT")
elif mode == "hang":
    import time
    time.sleep(600)
db.commit()
db.close()
print(f"migrated ({mode})", flush=True)
