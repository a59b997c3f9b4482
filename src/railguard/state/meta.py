"""The store's ``meta`` table: small facts about the state folder itself (e.g. the spec the daemon serves).

Called by the daemon's housekeeping; the daemon's governance pins the spec on the first request.
"""

from __future__ import annotations

from railguard.state.store import Store


def get(store: Store, key: str) -> str | None:
    row = store.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])
