"""The schema rule of rollbacks: may code of release N run on the schema that is live now?

Equal schemas: yes. A live schema that only adds to the target's (tables, columns, indexes: the
"expand" step of expand/contract) is a strict superset: yes, with a note, unless an added column of a
table the target knew is NOT NULL without a default (the old code's INSERTs would fail). Anything else (a
table, column or index the target expects is gone or changed type): no, the old code would read what is
not there. Pure; called by the engine's rollback pre-check and the doctor's rollback drill.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from railguard.model.data import DatabaseSchema


@dataclass(frozen=True)
class Verdict:
    same: bool
    superset: bool
    missing: list[str] = field(default_factory=list)  # what the target expects and the live data lacks
    added: list[str] = field(default_factory=list)    # what the live data has beyond the target's
    # Added columns NOT NULL without a default: the target's code does not name them, so its INSERTs fail
    # (Django's AddField(default=...) keeps the default in Python only): not a safe "expand".
    blocking: list[str] = field(default_factory=list)

    @property
    def compatible(self) -> bool:
        return self.same or self.superset


def _items(db: str, schema: DatabaseSchema) -> set[str]:
    found: set[str] = set()
    for table, shape in schema.tables.items():
        found.add(f"{db}: table {table}")
        for column, kind in shape.columns:
            found.add(f"{db}: column {table}.{column} {kind}".rstrip())
    for index, table in schema.indexes.items():
        found.add(f"{db}: index {index} on {table}")
    return found


def compare(target: dict[str, DatabaseSchema], live: dict[str, DatabaseSchema]) -> Verdict:
    """Compare the schema a release left (``target``) with the one live now, database by database."""
    want: set[str] = set()
    have: set[str] = set()
    for db, schema in target.items():
        want |= _items(db, schema)
    for db, schema in live.items():
        if db in target:  # a database the target never knew cannot break its code
            have |= _items(db, schema)
    missing = sorted(want - have)
    added = sorted(have - want)
    blocking = []
    for db, schema in live.items():
        known = target.get(db)
        if known is None:
            continue
        for table, shape in schema.tables.items():
            if table not in known.tables:  # a new table: the old code never writes it
                continue
            old_columns = {column for column, _ in known.tables[table].columns}
            blocking += [f"{db}: column {table}.{column}" for column in shape.required if column not in old_columns]
    same = not missing and not added
    return Verdict(same=same, superset=not missing and bool(added) and not blocking, missing=missing, added=added,
                   blocking=sorted(blocking))
