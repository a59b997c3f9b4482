"""The audit log: an append-only, hash-chained record of who decided what.

Each entry's hash covers its content and the previous entry's hash, so editing or
deleting an entry breaks the chain (``railguard audit verify``). The newest hash is
also written to an anchor file outside the state folder (beside the secret key), so
cutting entries off the end is detected too. Called by the daemon for every change
request and every refusal.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from railguard.model.api import AuditEntry, AuditVerification
from railguard.model.canonical import canonical_json
from railguard.state.store import Store, now

GENESIS = "0" * 64
KEYS = ("id", "at", "principal", "action", "env", "plan_id", "plan_hash", "outcome", "detail", "prev_hash", "hash")


def _entry_hash(prev: str, entry: dict[str, Any]) -> str:  # the raw row: the hash covers exactly what is stored
    body = {k: entry[k] for k in ("at", "principal", "action", "env", "plan_id", "plan_hash", "outcome", "detail")}
    return hashlib.sha256((prev + canonical_json(body)).encode()).hexdigest()


def append(store: Store, anchor: Path | None, *, principal: str, action: str, outcome: str, env: str | None = None,
           plan_id: str | None = None, plan_hash: str | None = None,
           detail: dict[str, Any] | None = None) -> None:  # detail: the request's AUDITED_FIELDS, shaped by the daemon
    with store.transaction() as db:
        row = db.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
        prev = row[0] if row else GENESIS
        # Free text in a request (a reason) passes the redactor like every other stored text.
        entry = {"at": now(), "principal": principal, "action": action, "env": env, "plan_id": plan_id,
                 "plan_hash": plan_hash, "outcome": outcome,
                 "detail": json.loads(store.redact(canonical_json(detail or {})))}
        digest = _entry_hash(prev, entry)
        db.execute("INSERT INTO audit (at, principal, action, env, plan_id, plan_hash, outcome, detail, prev_hash, "
                   "hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (entry["at"], principal, action, env, plan_id, plan_hash, outcome, canonical_json(entry["detail"]),
                    prev, digest))
        count = db.execute("SELECT count(*) FROM audit").fetchone()[0]
    if anchor is not None:
        anchor.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        anchor.write_text(json.dumps({"count": count, "hash": digest}))


def entries(store: Store, env: str | None = None, limit: int = 200) -> list[AuditEntry]:
    sql = "SELECT " + ", ".join(KEYS) + " FROM audit" + (" WHERE env = ?" if env else "") + " ORDER BY id DESC LIMIT ?"
    rows = store.db.execute(sql, (env, limit) if env else (limit,)).fetchall()
    out = []
    for row in reversed(rows):
        record = dict(zip(KEYS, row, strict=True))
        record["detail"] = json.loads(record["detail"])
        out.append(AuditEntry.model_validate(record))
    return out


def verify(store: Store, anchor: Path | None) -> AuditVerification:
    """Walk the chain: is it intact, how many entries, what is wrong."""
    problems: list[str] = []
    prev = GENESIS
    count = 0
    last_hash = GENESIS
    for row in store.db.execute("SELECT " + ", ".join(KEYS) + " FROM audit ORDER BY id"):
        entry = dict(zip(KEYS, row, strict=True))
        entry["detail"] = json.loads(entry["detail"])
        count += 1
        if entry["prev_hash"] != prev:
            problems.append(f"entry {entry['id']}: the entry before it was changed or deleted")
        if _entry_hash(entry["prev_hash"], entry) != entry["hash"]:
            problems.append(f"entry {entry['id']}: its content was edited after it was written")
        prev = last_hash = entry["hash"]
    if anchor is not None and anchor.exists():
        pinned = json.loads(anchor.read_text())
        if pinned["count"] > count or (pinned["count"] == count and pinned["hash"] != last_hash):
            problems.append(f"the log ends at entry {count} but {pinned['count']} were written: entries were removed")
    return AuditVerification(ok=not problems, entries=count, problems=problems)
