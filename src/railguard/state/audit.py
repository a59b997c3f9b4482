"""The audit log: an append-only, hash-chained record of who decided what.

Each entry's hash covers its content and the previous entry's hash, so editing or
deleting an entry breaks the chain (``railguard audit verify``). The newest hash is
also written to an anchor file outside the state folder (beside the secret key), so
cutting entries off the end is detected too. Each entry and the anchor also carry an
HMAC under the signing key (:mod:`railguard.secrets.signing`), so rewriting the whole
chain and its anchor without the key is detected as well. Called by the daemon for every change
request and every refusal.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from railguard.model.api import AuditEntry, AuditVerification
from railguard.model.canonical import canonical_json
from railguard.secrets.signing import sign, valid
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
                   "hash, mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (entry["at"], principal, action, env, plan_id, plan_hash, outcome, canonical_json(entry["detail"]),
                    prev, digest, sign(store.home, "audit", digest)))
        count = db.execute("SELECT count(*) FROM audit").fetchone()[0]
        # Entries written before the chain was keyed (an older Railguard) have no mac; the anchor says where the
        # keyed part starts, under its own mac, so stripping macs off later entries is caught.
        first = db.execute("SELECT min(id) FROM audit WHERE mac IS NOT NULL").fetchone()[0]
    if anchor is not None:
        anchor.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pinned = {"count": count, "hash": digest, "keyed_from": first}
        anchor.write_text(json.dumps({**pinned, "mac": sign(store.home, "audit-anchor", canonical_json(pinned))}))


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
    pinned = json.loads(anchor.read_text()) if anchor is not None and anchor.exists() else None
    if pinned is not None:
        body = {k: pinned.get(k) for k in ("count", "hash", "keyed_from")}
        if "mac" not in pinned:  # an older Railguard's anchor is re-signed by the next audited request
            problems.append("the anchor outside the state folder is not signed: written by an older Railguard "
                            "(the next audited request signs it) or rewritten without the signing key")
        elif not valid(store.home, "audit-anchor", canonical_json(body), pinned["mac"]):
            problems.append("the anchor outside the state folder was rewritten without the signing key")
    keyed_from = pinned.get("keyed_from") if pinned is not None else None
    for row in store.db.execute("SELECT " + ", ".join(KEYS) + ", mac FROM audit ORDER BY id"):
        entry = dict(zip(KEYS, row[:-1], strict=True))
        mac = row[-1]
        entry["detail"] = json.loads(entry["detail"])
        count += 1
        if entry["prev_hash"] != prev:
            problems.append(f"entry {entry['id']}: the entry before it was changed or deleted")
        if _entry_hash(entry["prev_hash"], entry) != entry["hash"]:
            problems.append(f"entry {entry['id']}: its content was edited after it was written")
        if mac is not None or (keyed_from is not None and entry["id"] >= keyed_from):
            if not valid(store.home, "audit", entry["hash"], mac):
                problems.append(f"entry {entry['id']}: its signature does not match: the chain was rewritten "
                                "without the signing key")
        prev = last_hash = entry["hash"]
    if anchor is not None and pinned is None and count:
        problems.append(f"the anchor {anchor} is missing: the log cannot be checked for removed entries")
    if pinned is not None:
        if pinned["count"] > count or (pinned["count"] == count and pinned["hash"] != last_hash):
            problems.append(f"the log ends at entry {count} but {pinned['count']} were written: entries were removed")
    return AuditVerification(ok=not problems, entries=count, problems=problems)


APPROVE_ACTION = "plans/approve"  # the action the daemon records for `railguard approve`


def decision_logged(store: Store, principal: str, plan_id: str, plan_hash: str) -> bool:
    """Whether the audit log holds a signed, successful approve of this plan and hash by ``principal``.

    An approval counts only with its entry: a row that reached the approvals table any other way (even one
    signed, by a key holder bypassing the daemon) has no answer on the record of who decided what.
    """
    rows = store.db.execute("SELECT hash, mac FROM audit WHERE action = ? AND outcome = 'ok' AND principal = ? "
                            "AND plan_id = ? AND plan_hash = ?", (APPROVE_ACTION, principal, plan_id, plan_hash))
    return any(valid(store.home, "audit", digest, mac) for digest, mac in rows)
