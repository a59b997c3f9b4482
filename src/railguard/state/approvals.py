"""Approvals and rejections of plans, bound to the plan's id and content hash, with an expiry.

An approval counts only for the exact plan it names (id and hash), until it expires;
a later rejection cancels it. Who may approve, and what they must confirm, is decided
by the engine's policy check; this module only records and reads.

A *request* for approval (``railguard`` MCP's ``request_approval``) is only a note that
someone is waiting: an event on the timeline, never a row here, so it can never count
as an approval.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta

from railguard.model.api import ApprovalRecord, ApprovalRequest, Decision
from railguard.secrets.signing import sign, valid
from railguard.state.lifecycles import APPROVAL
from railguard.state.store import Store, now

KEYS = ("id", "plan_id", "plan_hash", "decision", "principal", "reason", "confirmed", "created_at", "expires_at")


def record(store: Store, plan_id: str, plan_hash: str, decision: Decision | str, principal: str, reason: str,
           confirmed: list[str], ttl_s: float) -> ApprovalRecord:
    """Record a decision; the plan's approval lifecycle must allow it (nothing follows a rejection)."""
    approval_id = f"appr-{secrets.token_hex(6)}"
    expires = (datetime.now(UTC) + timedelta(seconds=ttl_s)).isoformat()
    with store.transaction() as db:
        row = db.execute("SELECT decision FROM approvals WHERE plan_id = ? ORDER BY created_at DESC, rowid DESC "
                         "LIMIT 1", (plan_id,)).fetchone()
        APPROVAL.check(None if row is None else str(row[0]), Decision(decision), plan_id)
        # The reason is free text, so it passes the redactor like every other stored text.
        row_values = (approval_id, plan_id, plan_hash, Decision(decision).value, principal, store.redact(reason),
                      json.dumps(confirmed), now(), expires)
        db.execute("INSERT INTO approvals (" + ", ".join(KEYS) + ", signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (*row_values, sign(store.home, "approval", _signed(row_values))))
    return next(a for a in for_plan(store, plan_id) if a.id == approval_id)


def _signed(values: tuple[object, ...]) -> str:
    return json.dumps([str(v) for v in values])


def for_plan(store: Store, plan_id: str) -> list[ApprovalRecord]:
    """The plan's decisions, oldest first; a row not signed with the state folder's key is not one."""
    rows = store.db.execute("SELECT " + ", ".join(KEYS) + ", signature FROM approvals WHERE plan_id = ? "
                            "ORDER BY created_at, rowid", (plan_id,)).fetchall()
    moment = datetime.now(UTC)
    out = []
    for row in rows:
        if not valid(store.home, "approval", _signed(tuple(row[:-1])), row[-1]):
            continue  # written into the database by someone without the key: it decides nothing
        entry = dict(zip(KEYS, row[:-1], strict=True))
        entry["confirmed"] = json.loads(entry["confirmed"])
        entry["expired"] = datetime.fromisoformat(entry["expires_at"]) < moment
        out.append(ApprovalRecord.model_validate(entry))
    return out


def standing(store: Store, plan_id: str, plan_hash: str) -> ApprovalRecord | None:
    """The approval that currently lets this exact plan through, if any (a rejection cancels it)."""
    current = None
    for entry in for_plan(store, plan_id):
        if entry.decision is Decision.rejected:
            return None
        if entry.plan_hash == plan_hash and not entry.expired:
            current = entry
    return current


def rejected(store: Store, plan_id: str) -> ApprovalRecord | None:
    return next((e for e in for_plan(store, plan_id) if e.decision is Decision.rejected), None)


REQUEST_EVENT = "plan.approval_requested"  # the event kind of a request


def requests(store: Store, plan_id: str) -> list[ApprovalRequest]:
    """Who asked for an approval of this plan, oldest first (events whose address is the plan)."""
    rows = store.db.execute("SELECT at, message, data FROM events WHERE kind = ? AND address = ? ORDER BY id",
                            (REQUEST_EVENT, plan_id)).fetchall()
    out = []
    for at, message, data in rows:
        body = json.loads(data)
        out.append(ApprovalRequest(at=at, by=body.get("by"), reason=body.get("reason", ""), message=message))
    return out
