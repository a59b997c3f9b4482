"""The event timeline: what happened, per environment (or to the daemon itself), oldest first.

Messages and data pass the redactor before they are stored. Part of the :class:`Store` facade.
"""

from __future__ import annotations

import json
from typing import Any

from railguard.model.api import Event
from railguard.model.canonical import canonical_json
from railguard.state.db import Database, now


class EventStore(Database):
    def add_event(self, env: str | None, kind: str, message: str, address: str | None = None,
                  data: dict[str, Any] | None = None) -> None:  # data: keys depend on the kind (Event.data)
        with self.transaction():
            self._db.execute(
                "INSERT INTO events (env, at, kind, address, message, data) VALUES (?, ?, ?, ?, ?, ?)",
                (env, now(), kind, address, self._redact(message), self._redact(canonical_json(data or {}))),
            )

    def events(self, env: str | None = None, limit: int = 100, kind: str | None = None,
               address: str | None = None) -> list[Event]:
        """The newest ``limit`` events, oldest first, optionally of one kind and address."""
        where = [(c, v) for c, v in (("env", env), ("kind", kind), ("address", address)) if v]
        sql = "SELECT id, env, at, kind, address, message, data FROM events"
        if where:
            sql += " WHERE " + " AND ".join(f"{c} = ?" for c, _ in where)
        rows = self._db.execute(sql + " ORDER BY id DESC LIMIT ?", (*(v for _, v in where), limit)).fetchall()
        return [Event(id=i, env=e, at=a, kind=k, address=ad, message=m, data=json.loads(d))
                for i, e, a, k, ad, m, d in reversed(rows)]
