"""Where code may live: no SQL outside ``railguard.state`` (the store owns the database).

Scans the source for SQL statements and calls on a database connection. The only exception is
the doctor's fingerprint of the APP's own SQLite database (it reads the app's data, never
Railguard's state), named in ALLOWED; anything else that talks SQL belongs in a store method.
"""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "railguard"
# Suffixes, so the rule survives the doctor moving out of engine/ into a package of its own.
# the app's databases, not ours: SQLite files and the managed Postgres the app uses
ALLOWED = ("doctor/fingerprint.py", "data/sqlite.py", "data/pgschema.py", "data/postgres.py",
           "providers/local/dbservers.py", "data/pgrehearsal.py", "doctor/pgscratch.py")
SQL = re.compile(r"\.execute(many)?\(|\bSELECT\b[^\"'\n]*\bFROM\b|\bINSERT\s+(OR\s+\w+\s+)?INTO\b|"
                 r"\bUPDATE\s+\w+\s+SET\b|\bDELETE\s+FROM\b")


def _hits(path: Path) -> list[str]:
    return [f"{path.relative_to(SRC)}:{n}: {line.strip()}"
            for n, line in enumerate(path.read_text().splitlines(), 1) if SQL.search(line)]


def test_no_sql_outside_state() -> None:
    found = [hit for path in sorted(SRC.rglob("*.py"))
             if path.relative_to(SRC).parts[0] != "state" and not path.as_posix().endswith(ALLOWED)
             for hit in _hits(path)]
    assert not found, "SQL outside railguard/state (add a store method instead):\n" + "\n".join(found)


def test_the_scan_sees_sql() -> None:
    # The scan would pass vacuously if the pattern matched nothing: it must see the store's SQL and the exemption's.
    assert _hits(SRC / "state" / "operations.py")
    allowed = [p for p in SRC.rglob("*.py") if p.as_posix().endswith(ALLOWED)]
    assert allowed and all(_hits(p) for p in allowed), "the allow-list names a module without SQL: remove it"
    prose = "query (SELECT 1 / count the rows of a core table); INSERT OR IGNORE for seed rows"
    assert not SQL.search(prose)
    for statement in ('db.execute("x")', "SELECT id FROM t", "INSERT INTO t", "UPDATE t SET a = 1",
                      "DELETE FROM t", "INSERT OR IGNORE INTO meta"):
        assert SQL.search(statement), statement
