"""What the store knows about an environment's data: snapshots and schemas recorded on releases.

The provider reports what it found around each release command as step details (``data``: the
backup, the rehearsal, the schemas after the run); the engine merges them into the release's record
here, so ``railguard backups`` and ``railguard releases`` show them and a rollback can compare schemas.
The schema live *now* (after the last release command or restore) is kept per environment in the
meta table. Functions over the :class:`~railguard.state.store.Store` facade; called by the engine.
"""

from __future__ import annotations

import json
from typing import Any

from railguard.model.api import Release
from railguard.model.canonical import canonical_json
from railguard.model.data import Backup, DatabaseSchema
from railguard.state.store import Store


def _live_key(env: str) -> str:
    return f"data.schemas.{env}"


def merge_release_data(store: Store, env: str, number: int, found: dict[str, Any]) -> None:
    """Merge one step's ``data`` detail into the release's record (schemas merge per database)."""
    with store.transaction() as db:
        row = db.execute("SELECT body FROM releases WHERE env = ? AND number = ?", (env, number)).fetchone()
        if row is None:
            return
        body = json.loads(row[0])
        data = dict(body.get("data") or {})
        for key, value in found.items():
            if key == "schemas":
                data["schemas"] = {**(data.get("schemas") or {}), **value}
            elif key in ("backup", "rehearsal"):
                data[key] = value
        body["data"] = data
        db.execute("UPDATE releases SET body = ? WHERE env = ? AND number = ?", (canonical_json(body), env, number))


def set_live_schemas(store: Store, env: str, schemas: dict[str, Any]) -> None:
    """Record the schema each database has now (after a release command or a restore)."""
    with store.transaction() as db:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (_live_key(env),)).fetchone()
        merged = {**(json.loads(row[0]) if row else {}), **schemas}
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (_live_key(env), canonical_json(merged)))


def live_schemas(store: Store, env: str) -> dict[str, DatabaseSchema]:
    raw = store.setting(_live_key(env))
    return {k: DatabaseSchema.model_validate(v) for k, v in json.loads(raw).items()} if raw else {}


def backups(store: Store, env: str) -> list[tuple[Release, Backup]]:
    """Every snapshot recorded on a release of ``env``, newest first."""
    return [(r, r.data.backup) for r in store.releases(env, None) if r.data is not None and r.data.backup is not None]
