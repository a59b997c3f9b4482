"""The lifecycles of operations, plans, releases, approvals and incidents: one transition table each.

Each :class:`Lifecycle` lists, in ONE table, which status may follow which; it is the only
code that writes its status column (the aggregate modules insert a row in an initial
status and then move it only through :meth:`Lifecycle.move`). A move the table does not list
is refused with ``state.illegal_transition``, so a bug (an operation finished twice, a plan
applied after it was rejected) stops instead of rewriting history. The tables are rendered
to golden files (tests/golden/lifecycles/) so a change to them is a visible diff in review.

Approvals have no status column: a plan's decisions are rows, and the latest one is the
state the next decision moves from (``none`` before any decision).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from railguard.model.api import Decision, IncidentState, OperationStatus, PlanStatus, ReleaseStatus
from railguard.model.diagnostics import RailguardError, error


@dataclass(frozen=True)
class Lifecycle:
    name: str
    table: str  # the SQL table whose status column this machine owns
    column: str
    initial: frozenset[str]  # states a new row may start in
    transitions: Mapping[str, frozenset[str]]  # state -> the states that may follow it
    notes: Mapping[tuple[str, str], str]  # why a transition exists, for the golden file

    @property
    def states(self) -> list[str]:
        return list(self.transitions)

    def allows(self, old: str | None, new: str) -> bool:
        if old is None:
            return new in self.initial
        return new in self.transitions.get(old, frozenset())

    def check(self, old: str | None, new: str, what: str) -> None:
        if not self.allows(old, new):
            raise illegal(self, old, new, what)

    def move(self, db: sqlite3.Connection, key: Mapping[str, Any], new: str, what: str,
             also: Mapping[str, Any] | None = None) -> str:
        """Move the row ``key`` to ``new`` (setting ``also`` columns too); return the old state.

        Runs inside the caller's transaction, so the read and the write cannot be split by another writer.
        """
        where = " AND ".join(f"{k} = ?" for k in key)
        row = db.execute(f"SELECT {self.column} FROM {self.table} WHERE {where}", tuple(key.values())).fetchone()
        if row is None:
            raise RailguardError(error(
                "state.illegal_transition", f"No {self.name} {what} to move to '{new}'",
                f"The state has no {self.name} {what}, so it cannot become '{new}'.",
                "This is a bug in Railguard: report it with the daemon log.", address=what))
        old = str(row[0])
        self.check(old, new, what)
        sets = {self.column: new, **(also or {})}
        db.execute(f"UPDATE {self.table} SET " + ", ".join(f"{k} = ?" for k in sets) + f" WHERE {where}",
                   (*sets.values(), *key.values()))
        return old

    def render(self) -> str:
        """The table as text: the golden file's content."""
        lines = [f"# lifecycle: {self.name} ({self.table}.{self.column})",
                 f"initial: {', '.join(sorted(self.initial))}"]
        for state, following in self.transitions.items():
            if not following:
                lines.append(f"{state} -> (final)")
            for new in sorted(following):
                note = self.notes.get((state, new))
                lines.append(f"{state} -> {new}" + (f"  # {note}" if note else ""))
        return "\n".join(lines) + "\n"


def illegal(lifecycle: Lifecycle, old: str | None, new: str, what: str) -> RailguardError:
    allowed = sorted(lifecycle.initial if old is None else lifecycle.transitions.get(old, frozenset()))
    return RailguardError(error(
        "state.illegal_transition", f"The {lifecycle.name} {what} cannot go from '{old or '(new)'}' to '{new}'",
        f"The {lifecycle.name} lifecycle allows from '{old or '(new)'}' only: "
        f"{', '.join(allowed) or 'nothing (it is final)'}. The change was refused and nothing was written.",
        "This is a bug in Railguard (or the state was edited by hand): report it with the daemon log.",
        address=what, extra={"lifecycle": lifecycle.name, "from": old, "to": new}))


def _table(states: type[StrEnum], pairs: dict[str, list[str]],
           extra: tuple[str, ...] = ()) -> dict[str, frozenset[str]]:
    """A transition table in plain words, checked against the status enum when the module loads."""
    known = {s.value for s in states} | set(extra)
    named = set(pairs) | {n for following in pairs.values() for n in following}
    if not named <= known or not known <= set(pairs):
        raise ValueError(f"the {states.__name__} table and enum differ: {sorted(named ^ known)}")
    return {state: frozenset(following) for state, following in pairs.items()}


OPERATION = Lifecycle(
    name="operation", table="operations", column="status",
    initial=frozenset({"queued", "running"}),
    transitions=_table(OperationStatus, {
        "queued": ["running", "failed", "succeeded"],
        "running": ["succeeded", "failed"],
        "succeeded": [],
        "failed": [],
    }),
    notes={("queued", "running"): "its first journal entry",
           ("queued", "failed"): "refused before its first step, or the daemon died before it started",
           ("queued", "succeeded"): "recovery: the daemon died, but every change it asked for is live"},
)

PLAN = Lifecycle(
    name="plan", table="plans", column="status",
    initial=frozenset({"saved"}),
    transitions=_table(PlanStatus, {
        "saved": ["applying", "rejected", "failed"],
        "applying": ["applied", "failed"],
        "applied": [],
        "failed": [],
        "rejected": [],
    }),
    notes={("saved", "failed"): "recovery: the operation that was to apply it died before it started"},
)

RELEASE = Lifecycle(
    name="release", table="releases", column="status",
    initial=frozenset({"pending"}),
    transitions=_table(ReleaseStatus, {
        "pending": ["live", "failed"],
        "live": ["superseded", "aborted"],
        "superseded": ["live"],
        "failed": [],
        "aborted": [],
    }),
    notes={("live", "superseded"): "the next release of the environment went live",
           ("live", "aborted"): "its canary was aborted: the previous release serves every request",
           ("superseded", "live"): "the canary of the next release was aborted: this release serves again"},
)

APPROVAL = Lifecycle(
    # Approval rows are never updated: a plan's latest decision is the state the next one moves from.
    name="approval", table="approvals", column="decision",
    initial=frozenset({"approved", "rejected"}),
    transitions=_table(Decision, {
        "none": ["approved", "rejected"],  # no decision yet
        "approved": ["approved", "rejected"],
        "rejected": [],
    }, extra=("none",)),
    notes={("approved", "approved"): "another approver, a renewed expiry, or more confirmed addresses",
           ("approved", "rejected"): "a rejection cancels a standing approval"},
)

INCIDENT = Lifecycle(
    name="incident", table="incidents", column="state",
    initial=frozenset({"open"}),
    transitions=_table(IncidentState, {
        "open": ["mitigated", "resolved"],
        "mitigated": ["open", "resolved"],
        "resolved": [],
    }),
    notes={("open", "mitigated"): "traffic is safe again (rolled back, restarted); the cause is still there",
           ("mitigated", "open"): "it happened again, or the mitigation failed",
           ("open", "resolved"): "gone on its own (the release was replaced), or acknowledged",
           ("mitigated", "resolved"): "the code was changed, or someone acknowledged it"},
)

ALL = (OPERATION, PLAN, RELEASE, APPROVAL, INCIDENT)
