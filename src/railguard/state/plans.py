"""Saved plans: stored with the hash they were reviewed under, listed, and moved through their lifecycle.

The plan body is the frozen :class:`Plan`; its status moves only through
:data:`railguard.state.lifecycles.PLAN`. Part of the :class:`Store` facade.
"""

from __future__ import annotations

import threading

from pydantic import ValidationError

from railguard.model.api import PlanRecord, PlanStatus
from railguard.model.diagnostics import RailguardError, error
from railguard.model.plans import Plan
from railguard.secrets.signing import sign, valid
from railguard.state.db import Database, new_id, now
from railguard.state.lifecycles import PLAN

_COLUMNS = "id, env, created_at, hash, base_serial, status"
# Parsed plans for read-only callers (load_plan(shared=True): show, approval state), by id, with the stored text
# they were parsed from: a saved plan never changes, and parsing a 200-service plan (~300 KB) took most of the time
# of every read of it. The stored text is compared on every read, so a row edited since is parsed (and refused).
_PARSED: dict[str, tuple[str, Plan]] = {}
_PARSED_KEEP = 8
_parsed_lock = threading.Lock()


class PlanStore(Database):
    def save_plan(self, plan: Plan) -> Plan:
        sealed, body = plan.sealed_with_body(plan.id or new_id("plan"), now())
        PLAN.check(None, PlanStatus.saved, sealed.id)
        with self.transaction():
            self._db.execute(
                "INSERT INTO plans (id, env, created_at, hash, base_serial, body, requested_by, status, signature) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (sealed.id, sealed.env, sealed.created_at, sealed.hash, sealed.base_serial,
                 body, sealed.requested_by, PlanStatus.saved.value,
                 sign(self.home, "plan", _signed(sealed.id, sealed.hash))),
            )
        return sealed

    def load_plan(self, plan_id: str, shared: bool = False) -> tuple[Plan, str, PlanStatus]:
        """The stored plan, the hash recorded beside it, and its status.

        ``shared``: the caller only reads the plan, so it may be the parsed copy other readers got for the same
        stored text (checked on every call) rather than a fresh parse."""
        row = self._one("SELECT body, hash, status, signature FROM plans WHERE id = ?", plan_id)
        if row is None:
            raise _not_found(self.home, plan_id)
        if not valid(self.home, "plan", _signed(plan_id, str(row[1])), row[3]):
            # Whoever wrote this row did not hold the signing key: it was forged or edited in the database.
            raise RailguardError(error(
                "plan.hash_mismatch", f"Plan '{plan_id}' is not signed by this Railguard",
                "Its signature (made with the key kept outside the state folder when the plan was saved) does not "
                "match its id and hash: the row was written or edited outside Railguard.",
                "Do not apply it. Make a new plan with `railguard plan --env <env>` and review it; treat the "
                "state folder as compromised.", address=plan_id))
        body = str(row[0])
        if shared:
            with _parsed_lock:
                cached = _PARSED.get(plan_id)
            if cached is not None and cached[0] == body:
                return cached[1], str(row[1]), PlanStatus(row[2])
        try:
            plan = Plan.model_validate_json(body)
        except ValidationError as exc:
            raise RailguardError(error(
                "plan.hash_mismatch", f"Plan '{plan_id}' is damaged",
                f"The stored plan no longer parses ({exc.error_count()} problems); it was modified after it "
                "was saved.",
                "Do not apply it. Make a new plan with `railguard plan --env <env>` and review it.",
                address=plan_id,
            )) from exc
        if shared:
            with _parsed_lock:
                if len(_PARSED) >= _PARSED_KEEP:
                    _PARSED.pop(next(iter(_PARSED)))  # the oldest entry: plans are read while they are new
                _PARSED[plan_id] = (body, plan)
        return plan, str(row[1]), PlanStatus(row[2])

    def plan_body(self, plan_id: str) -> str:
        """The plan's JSON exactly as stored (the one copy there is), for streaming to a client unparsed."""
        row = self._one("SELECT body FROM plans WHERE id = ?", plan_id)
        if row is None:
            raise _not_found(self.home, plan_id)
        return str(row[0])

    def plan_record(self, plan_id: str) -> PlanRecord | None:
        """A plan's identity and status without parsing its body (cheap; for audit and listings)."""
        row = self._one(f"SELECT {_COLUMNS} FROM plans WHERE id = ?", plan_id)
        return None if row is None else _record(row)

    def plans(self, env: str | None = None, limit: int = 50) -> list[PlanRecord]:
        sql = f"SELECT {_COLUMNS} FROM plans"
        args: tuple[str | int, ...] = ()
        if env:
            sql, args = sql + " WHERE env = ?", (env,)
        rows = self._db.execute(sql + " ORDER BY created_at DESC LIMIT ?", (*args, limit)).fetchall()
        return [_record(r) for r in rows]

    def mark_plan(self, plan_id: str, status: PlanStatus) -> None:
        """Move a plan along its lifecycle; an illegal move is refused (state.illegal_transition)."""
        with self.transaction() as db:
            PLAN.move(db, {"id": plan_id}, PlanStatus(status), plan_id)


def _signed(plan_id: str, plan_hash: str) -> str:
    return f"{plan_id}\n{plan_hash}"


def _record(row: tuple[str, str, str, str, int, str]) -> PlanRecord:
    id_, env, created_at, hash_, base_serial, status = row
    return PlanRecord(id=id_, env=env, created_at=created_at, hash=hash_, base_serial=base_serial,
                      status=PlanStatus(status))


def _not_found(home: object, plan_id: str) -> RailguardError:
    return RailguardError(error(
        "plan.not_found", f"No plan '{plan_id}'",
        f"The state folder {home} has no saved plan with the id '{plan_id}'.",
        "List plans with `railguard plans`, or make one with `railguard plan --env <env>`.",
        address=plan_id,
    ))
