"""Incidents and known-bad sources: the store side of observation.

An incident is one row (its columns are what lists filter on) with its timeline, evidence, next
actions and alert deliveries in a JSON body; its state moves only through
:data:`railguard.state.lifecycles.INCIDENT`. ``dedup`` is the key of what went wrong (kind,
environment, service, release): while an incident with that key is not resolved, the same trouble
seen again adds to its timeline instead of opening another one. Every stored text passes the
redactor. ``known_bad`` records a service config (its fingerprint: the source digest and config)
that was rolled back because of an incident, so plans and next actions never lead back to it.
Called by the daemon's observation (:mod:`railguard.daemon.incidents`) and by planning.
"""

from __future__ import annotations

import json
import secrets as _secrets
from collections.abc import Callable

from railguard.model.api import (
    AlertDelivery,
    Evidence,
    Incident,
    IncidentAction,
    IncidentEntry,
    IncidentKind,
    IncidentState,
)
from railguard.state.lifecycles import INCIDENT
from railguard.state.store import Store, now

_COLUMNS = "id, env, kind, state, service, release, summary, opened_at, updated_at, resolved_at, operation, body"
MAX_TIMELINE = 200  # a flapping replica must not grow one row without bound
MAX_DELIVERIES = 50


def _row(row: tuple[object, ...]) -> Incident:
    body = json.loads(str(row[11]))
    return Incident(id=str(row[0]), env=str(row[1]), kind=IncidentKind(str(row[2])), state=IncidentState(str(row[3])),
                    service=None if row[4] is None else str(row[4]),
                    release=None if row[5] is None else int(str(row[5])), summary=str(row[6]),
                    opened_at=str(row[7]), updated_at=str(row[8]),
                    resolved_at=None if row[9] is None else str(row[9]),
                    operation=None if row[10] is None else str(row[10]), **body)


def _body(incident: Incident) -> str:
    return json.dumps(incident.model_dump(mode="json", include={"evidence", "timeline", "next_actions",
                                                                 "deliveries"}))


def dedup_key(kind: IncidentKind, env: str, service: str | None, release: int | None) -> str:
    return f"{kind.value}:{env}:{service or ''}:{release if release is not None else ''}"


def unresolved(store: Store, dedup: str) -> Incident | None:
    row = store.db.execute(f"SELECT {_COLUMNS} FROM incidents WHERE dedup = ? AND state != 'resolved' "
                           "ORDER BY opened_at DESC LIMIT 1", (dedup,)).fetchone()
    return None if row is None else _row(row)


def get(store: Store, incident_id: str) -> Incident | None:
    row = store.db.execute(f"SELECT {_COLUMNS} FROM incidents WHERE id = ?", (incident_id,)).fetchone()
    return None if row is None else _row(row)


def listed(store: Store, env: str | None = None, limit: int = 100, include_resolved: bool = True) -> list[Incident]:
    """Newest first."""
    where, args = [], []
    if env:
        where.append("env = ?")
        args.append(env)
    if not include_resolved:
        where.append("state != 'resolved'")
    sql = f"SELECT {_COLUMNS} FROM incidents" + (" WHERE " + " AND ".join(where) if where else "")
    rows = store.db.execute(sql + " ORDER BY opened_at DESC, rowid DESC LIMIT ?", (*args, limit)).fetchall()
    return [_row(r) for r in rows]


def _redacted(store: Store, incident: Incident) -> Incident:
    def clean(entries: list[str]) -> list[str]:
        return [store.redact(x) for x in entries]

    return incident.model_copy(update={
        "summary": store.redact(incident.summary),
        "evidence": [e.model_copy(update={"summary": store.redact(e.summary), "lines": clean(e.lines)})
                     for e in incident.evidence],
        "timeline": [t.model_copy(update={"message": store.redact(t.message)}) for t in incident.timeline],
    })


def open_or_add(store: Store, kind: IncidentKind, env: str, summary: str, *, service: str | None = None,
                release: int | None = None, evidence: list[Evidence] | None = None,
                next_actions: list[IncidentAction] | None = None) -> tuple[Incident, bool]:
    """Open an incident, or add to the unresolved one with the same key; return it and whether it is new."""
    key = dedup_key(kind, env, service, release)
    at = now()
    with store.transaction() as db:
        row = db.execute(f"SELECT {_COLUMNS} FROM incidents WHERE dedup = ? AND state != 'resolved' "
                         "ORDER BY opened_at DESC LIMIT 1", (key,)).fetchone()
        if row is not None:
            found = _row(row)
            entry = IncidentEntry(at=at, kind="evidence", message=summary)
            updated = _redacted(store, found.model_copy(update={
                "evidence": (found.evidence + (evidence or []))[-20:],
                "timeline": (found.timeline + [entry])[-MAX_TIMELINE:],
                "next_actions": next_actions if next_actions is not None else found.next_actions}))
            db.execute("UPDATE incidents SET updated_at = ?, body = ? WHERE id = ?", (at, _body(updated), found.id))
            return updated.model_copy(update={"updated_at": at}), False
        INCIDENT.check(None, IncidentState.open, key)
        incident = _redacted(store, Incident(
            id=f"inc-{_secrets.token_hex(5)}", env=env, kind=kind, state=IncidentState.open, summary=summary,
            service=service, release=release, opened_at=at, updated_at=at, evidence=evidence or [],
            timeline=[IncidentEntry(at=at, kind="opened", message=summary)], next_actions=next_actions or []))
        db.execute(f"INSERT INTO incidents ({_COLUMNS}, dedup) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (incident.id, env, kind.value, incident.state.value, service, release, incident.summary, at, at,
                    None, None, _body(incident), key))
    return incident, True


def _update(store: Store, incident_id: str, change: Callable[[Incident], Incident],
            state: IncidentState | None = None) -> Incident:
    at = now()
    with store.transaction() as db:
        row = db.execute(f"SELECT {_COLUMNS} FROM incidents WHERE id = ?", (incident_id,)).fetchone()
        if row is None:
            raise KeyError(incident_id)
        found = _row(row)
        changed = _redacted(store, change(found))
        also: dict[str, object] = {"updated_at": at, "body": _body(changed), "operation": changed.operation}
        if state is not None and state is not found.state:
            if state is IncidentState.resolved:
                also["resolved_at"] = at
            INCIDENT.move(db, {"id": incident_id}, state.value, incident_id, also)
        else:
            db.execute("UPDATE incidents SET updated_at = ?, body = ?, operation = ? WHERE id = ?",
                       (at, also["body"], changed.operation, incident_id))
    got = get(store, incident_id)
    assert got is not None
    return got


def note(store: Store, incident_id: str, kind: str, message: str, *, state: IncidentState | None = None,
         operation: str | None = None, evidence: list[Evidence] | None = None,
         next_actions: list[IncidentAction] | None = None) -> Incident:
    """Add a timeline entry (and evidence), optionally moving the state; the lifecycle must allow the move."""
    def change(found: Incident) -> Incident:
        update: dict[str, object] = {
            "timeline": (found.timeline + [IncidentEntry(at=now(), kind=kind, message=message)])[-MAX_TIMELINE:],
            "evidence": (found.evidence + (evidence or []))[-20:]}
        if operation is not None:
            update["operation"] = operation
        if next_actions is not None:
            update["next_actions"] = next_actions
        return found.model_copy(update=update)

    return _update(store, incident_id, change, state)


def record_delivery(store: Store, incident_id: str, delivery: AlertDelivery) -> Incident:
    def change(found: Incident) -> Incident:
        clean = delivery.model_copy(update={"error": None if delivery.error is None else store.redact(delivery.error)})
        return found.model_copy(update={"deliveries": (found.deliveries + [clean])[-MAX_DELIVERIES:]})

    return _update(store, incident_id, change)


# -- known-bad sources --------------------------------------------------------------------------------------


def mark_bad(store: Store, env: str, service: str, fingerprint: str, release: int, incident_id: str) -> None:
    with store.transaction() as db:
        db.execute("INSERT OR REPLACE INTO known_bad (env, service, fingerprint, release, incident, marked_at, "
                   "acknowledged_by) VALUES (?, ?, ?, ?, ?, ?, NULL)",
                   (env, service, fingerprint, release, incident_id, now()))


def known_bad(store: Store, env: str) -> dict[tuple[str, str], tuple[int, str]]:
    """(service, fingerprint) -> (release, incident) for every unacknowledged known-bad config of ``env``."""
    rows = store.db.execute("SELECT service, fingerprint, release, incident FROM known_bad WHERE env = ? AND "
                            "acknowledged_by IS NULL", (env,)).fetchall()
    return {(str(s), str(f)): (int(r), str(i)) for s, f, r, i in rows}


def acknowledge_bad(store: Store, env: str, incident_id: str, principal: str) -> int:
    """Someone decided to deploy it anyway: the marks of ``incident_id`` stop blocking; return how many."""
    with store.transaction() as db:
        return int(db.execute("UPDATE known_bad SET acknowledged_by = ? WHERE env = ? AND incident = ? AND "
                              "acknowledged_by IS NULL", (principal, env, incident_id)).rowcount)


# -- retention ----------------------------------------------------------------------------------------------


def sweep_resolved(store: Store, days: int, keep: int, *, dry_run: bool = False,
                   cutoff: str | None = None) -> list[str]:
    """Remove resolved incidents resolved more than ``days`` ago and not among the newest ``keep`` resolved
    ones; return their ids. Never an open or mitigated one, nor one whose known-bad mark still blocks a plan
    (its id is what the plan's refusal names). ``cutoff`` (ISO text, as :func:`now`) replaces ``days``."""
    if cutoff is None:
        from datetime import UTC, datetime, timedelta

        cutoff = (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    with store.transaction() as db:
        ids = [str(r[0]) for r in db.execute(
            "SELECT id FROM incidents WHERE state = 'resolved' AND resolved_at < ? "
            "AND id NOT IN (SELECT id FROM incidents WHERE state = 'resolved' "
            "ORDER BY resolved_at DESC, rowid DESC LIMIT ?) "
            "AND id NOT IN (SELECT incident FROM known_bad WHERE acknowledged_by IS NULL) ORDER BY resolved_at",
            (cutoff, keep))]
        if not dry_run:
            for i in range(0, len(ids), 500):  # SQLite caps the bound parameters of one statement
                chunk = ids[i:i + 500]
                db.execute(f"DELETE FROM incidents WHERE id IN ({', '.join('?' * len(chunk))})", chunk)
    return ids
