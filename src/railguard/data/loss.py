"""What a release command lost: tables dropped, columns dropped, rows gone, per database and table.

Compares the shapes (:func:`railguard.data.sqlite.shape`) of the same databases before and after a run.
Used by the rehearsal before a real release command and by the doctor's release checks.
"""

from __future__ import annotations

from railguard.data.sqlite import TableShape
from railguard.model.data import Loss

Shapes = dict[str, dict[str, TableShape]]  # database path -> table -> shape


def losses(before: Shapes, after: Shapes, second_run: bool = False) -> list[Loss]:
    found: list[Loss] = []
    for rel, tables in sorted(before.items()):
        now = after.get(rel)
        for name, old in sorted(tables.items()):
            new = None if now is None else now.get(name)
            if new is None:
                if old.rows or now is None:
                    what = (f"{rel}: database removed, table {name} ({old.rows} rows) gone" if now is None
                            else f"{rel}: table {name} ({old.rows} rows) dropped")
                    found.append(Loss(database=rel, table=name, rows=old.rows, what=what, second_run=second_run))
                continue
            gone = [c for c in old.columns if c not in new.columns]
            if gone and len([c for c in new.columns if c not in old.columns]) == len(gone) and new.rows >= old.rows:
                continue  # as many columns came as went, no row lost: a rename (ALTER ... RENAME COLUMN)
            for column in gone:
                if column:
                    found.append(Loss(database=rel, table=name, column=column, rows=old.rows, second_run=second_run,
                                      what=f"{rel}: column {name}.{column} dropped (held values in {old.rows} rows)"))
            if new.rows < old.rows:
                found.append(Loss(database=rel, table=name, rows=old.rows - new.rows, second_run=second_run,
                                  what=f"{rel}: table {name} went from {old.rows} to {new.rows} rows "
                                       f"({old.rows - new.rows} lost)"))
    return found


def additions(before: Shapes, after: Shapes) -> list[str]:
    """Harmless changes, for the journal: new databases, tables, columns and rows."""
    notes: list[str] = []
    for rel, tables in sorted(after.items()):
        old_tables = before.get(rel, {})
        for name, new in sorted(tables.items()):
            old = old_tables.get(name)
            if old is None:
                notes.append(f"{rel}: table {name} created ({new.rows} rows)")
                continue
            added = [c for c in new.columns if c not in old.columns]
            if added:
                notes.append(f"{rel}: table {name}: column(s) {', '.join(added)} added")
            if new.rows > old.rows:
                notes.append(f"{rel}: table {name}: {new.rows - old.rows} row(s) added")
    return notes


def changed(first: Shapes, second: Shapes) -> list[str]:
    """What a second run changed at all (contents included)."""
    notes: list[str] = []
    for rel in sorted(set(first) | set(second)):
        a, b = first.get(rel, {}), second.get(rel, {})
        for name in sorted(set(a) | set(b)):
            if a.get(name) != b.get(name):
                notes.append(f"{rel}: table {name} changed on a second run")
    return notes
