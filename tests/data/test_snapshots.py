"""Snapshots, rehearsals and the schema rule on real SQLite files (no daemon)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from railguard.data import rehearsal, snapshots, sqlite
from railguard.data.schemarule import compare


def _db(path: Path, *statements: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()


def _run(sql: str):  # type: ignore[no-untyped-def]
    """A release command that applies its migration once (a second run finds it applied: does nothing)."""
    def run(folder: Path, label: str) -> None:
        if label == "rehearsal":
            _db(folder / "app.db", *[s for s in sql.split(";") if s.strip()])
    return run


def test_a_snapshot_restores_every_row_and_refuses_a_tampered_or_missing_copy(tmp_path: Path) -> None:
    data, root = tmp_path / "data", tmp_path / "backups"
    _db(data / "app.db", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",
        "INSERT INTO t (v) VALUES ('a'), ('b'), ('c')")
    backup = snapshots.take(data, root, "staging", 2)
    assert backup is not None and backup.files[0].tables == {"t": 3} and backup.files[0].database == "app"
    _db(data / "app.db", "DELETE FROM t")
    snapshots.restore(root, snapshots.load(root, backup.id), data)
    assert sqlite3.connect(data / "app.db").execute("SELECT v FROM t ORDER BY id").fetchall() == [("a",), ("b",),
                                                                                                   ("c",)]
    copy = root / backup.id / "files" / "app.db"
    _db(copy, "INSERT INTO t (v) VALUES ('planted')")
    with pytest.raises(snapshots.BackupError) as tampered:
        snapshots.restore(root, backup, data)
    assert tampered.value.code == "restore.checksum_mismatch"
    assert snapshots.prune(root, 0) == [backup.id]
    with pytest.raises(snapshots.BackupError) as gone:
        snapshots.load(root, backup.id)
    assert gone.value.code == "restore.backup_missing"
    assert snapshots.take(tmp_path / "empty", root, "staging", 3) is None  # nothing to protect


def test_the_rehearsal_names_dropped_tables_columns_and_rows_and_lets_renames_and_additions_pass(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    _db(data / "app.db", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, w TEXT)", "CREATE TABLE u (id INTEGER)",
        "INSERT INTO t (v, w) VALUES ('a', 'x'), ('b', 'y')", "INSERT INTO u VALUES (1)")
    before = sqlite.checksum(data / "app.db")
    found = rehearsal.rehearse(data, tmp_path / "s", _run("DROP TABLE IF EXISTS u; "
                                                            "ALTER TABLE t DROP COLUMN w"), [])
    assert sorted(loss.what for loss in found.losses) == ["app.db: column t.w dropped (held values in 2 rows)",
                                                          "app.db: table u (1 rows) dropped"]
    found = rehearsal.rehearse(data, tmp_path / "s", _run("DELETE FROM t WHERE id = 1"), ["u"])
    assert [(loss.table, loss.rows) for loss in found.losses] == [("t", 1)]
    assert sqlite.checksum(data / "app.db") == before  # the real data was only read
    found = rehearsal.rehearse(data, tmp_path / "s", _run("ALTER TABLE t RENAME COLUMN w TO w2"), [])
    assert found.losses == []
    ran: list[str] = []

    def adds(folder: Path, label: str) -> None:
        ran.append(label)
        _db(folder / "app.db", "CREATE TABLE IF NOT EXISTS tags (name TEXT)")
    found = rehearsal.rehearse(data, tmp_path / "s", adds, [])
    assert found.losses == [] and ran == ["rehearsal", "rehearsal-second-run"]
    assert any("tags" in note for note in found.notes)


def test_a_column_drop_seen_through_the_dropped_column_and_acknowledged_by_name(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _db(data / "app.db", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, w TEXT)", "INSERT INTO t (v) VALUES ('a')")
    found = rehearsal.rehearse(data, tmp_path / "s", _run("ALTER TABLE t DROP COLUMN w"), [])
    assert [(loss.table, loss.column) for loss in found.losses] == [("t", "w")]
    found = rehearsal.rehearse(data, tmp_path / "s", _run("ALTER TABLE t DROP COLUMN w"), ["t.w"])
    assert found.losses == [] and len(found.acknowledged) == 1


def test_a_second_run_that_fails_is_caught(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _db(data / "app.db", "CREATE TABLE t (id INTEGER)")
    with pytest.raises(rehearsal.SecondRunFailed):
        rehearsal.rehearse(data, tmp_path / "s", lambda folder, label: _db(folder / "app.db",
                                                                           "CREATE TABLE once (id INTEGER)"), [])
    assert not (tmp_path / "s").exists()


def test_the_schema_rule_tells_expand_from_contract(tmp_path: Path) -> None:
    _db(tmp_path / "a.db", "CREATE TABLE t (id INTEGER, v TEXT)")
    _db(tmp_path / "b.db", "CREATE TABLE t (id INTEGER, v TEXT, w TEXT)", "CREATE INDEX t_w ON t (w)")
    _db(tmp_path / "c.db", "CREATE TABLE t (id INTEGER)")
    a, b, c = (sqlite.schema(tmp_path / n) for n in ("a.db", "b.db", "c.db"))
    assert compare({"x.db": a}, {"x.db": a}).same
    expand = compare({"x.db": a}, {"x.db": b})
    assert expand.superset and expand.compatible and "x.db: column t.w TEXT" in expand.added
    contract = compare({"x.db": a}, {"x.db": c})
    assert not contract.compatible and contract.missing == ["x.db: column t.v TEXT"]


def test_django_and_alembic_heads_are_part_of_the_schema(tmp_path: Path) -> None:
    _db(tmp_path / "d.db", "CREATE TABLE django_migrations (id INTEGER PRIMARY KEY, app TEXT, name TEXT)",
        "INSERT INTO django_migrations (app, name) VALUES ('notes', '0001_initial'), ('notes', '0002_tags')")
    assert sqlite.schema(tmp_path / "d.db").head == "django:notes.0002_tags"


def test_the_rehearsal_starts_from_the_shapes_the_snapshot_recorded_and_still_sees_every_loss(tmp_path: Path) -> None:
    """The rehearsal no longer reads its copy before the runs: the snapshot's record of that same file must say
    exactly what a read would (tables, columns in order, rows), or a dropped table would go unseen."""
    data, root = tmp_path / "data", tmp_path / "backups"
    _db(data / "app.db", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, w TEXT)", "CREATE TABLE empty (x INT, y INT)",
        "INSERT INTO t (v) VALUES ('a'), ('b')")
    _db(data / "sub" / "other.db", "CREATE TABLE u (id INT)", "INSERT INTO u VALUES (1)")
    backup = snapshots.take(data, root, "staging", 2)
    assert backup is not None
    copies = snapshots.files(root, backup)
    known = rehearsal.known_shapes(backup)
    assert known == {rel: sqlite.shape(path, rows_digest=False) for rel, path in copies.items()}
    found = rehearsal.rehearse(data, tmp_path / "scratch", _run("DROP TABLE t; ALTER TABLE empty DROP COLUMN x"),
                               [], copies, known)
    assert sorted(loss.what for loss in found.losses) == ["app.db: column empty.x dropped (held values in 0 rows)",
                                                          "app.db: table t (2 rows) dropped"], found.losses


def _command(code: str) -> tuple[Callable[[Path, str], None], list[str]]:
    """A release command that is a real Python process, given the copy's folder as its argument (as the rollout's
    run gives it RAILGUARD_DATA_DIR); a failure raises, as the rollout's run does."""
    ran: list[str] = []

    def run(folder: Path, label: str) -> None:
        ran.append(label)
        subprocess.run([sys.executable, "-c", "import os, sqlite3, sys, pathlib\nfolder = pathlib.Path(sys.argv[1])\n"
                        + code, str(folder)], check=True, timeout=60, capture_output=True)
    return run, ran


_IDEMPOTENT = """db = sqlite3.connect(folder / "app.db")
db.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
db.executemany("INSERT OR IGNORE INTO t (id, v) VALUES (?, ?)", [(1, "a"), (2, "b")])
db.commit()
db.close()
"""


def _seeded(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    _db(data / "app.db", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t (v) VALUES ('a'), ('b')")
    (data / "uploads").mkdir()
    (data / "uploads" / "a.txt").write_text("kept as it is")
    return data


def test_a_command_that_changes_nothing_runs_once_on_the_copy_and_the_result_says_so(tmp_path: Path) -> None:
    """A migration already applied opens the database, finds nothing to do, and writes nothing: the second run
    would start from exactly what the first saw, so it is skipped, and the result says so."""
    data = _seeded(tmp_path)
    run, ran = _command(_IDEMPOTENT)
    found = rehearsal.rehearse(data, tmp_path / "s", run, [])
    assert ran == ["rehearsal"] and found.second_run_skipped, found
    assert found.notes == [rehearsal.SKIPPED] and found.losses == []
    assert not (tmp_path / "s").exists()
    # The same command where a Postgres database is rehearsed too (no byte-for-byte fingerprint there): twice.
    run, ran = _command(_IDEMPOTENT)
    found = rehearsal.rehearse(data, tmp_path / "s", run, [], once_if_unchanged=False)
    assert ran == ["rehearsal", "rehearsal-second-run"] and not found.second_run_skipped


def test_a_command_that_appends_a_row_each_run_still_runs_twice(tmp_path: Path) -> None:
    data = _seeded(tmp_path)
    run, ran = _command("""db = sqlite3.connect(folder / "app.db")
db.execute("INSERT INTO t (v) VALUES ('audit: migrated')")
db.commit()
""")
    found = rehearsal.rehearse(data, tmp_path / "s", run, [])
    assert ran == ["rehearsal", "rehearsal-second-run"] and not found.second_run_skipped, found
    assert rehearsal.SKIPPED not in found.notes and any("t" in note for note in found.notes), found.notes


def test_a_command_whose_first_run_leaves_a_file_that_breaks_the_second_is_still_caught(tmp_path: Path) -> None:
    """The database is not touched at all: only a lock file the command forgets to remove tells the runs apart."""
    data = _seeded(tmp_path)
    run, ran = _command("""lock = folder / "migrate.lock"
if lock.exists():
    sys.exit("another migration holds migrate.lock")
lock.write_text("1")
""")
    with pytest.raises(rehearsal.SecondRunFailed):
        rehearsal.rehearse(data, tmp_path / "s", run, [])
    assert ran == ["rehearsal", "rehearsal-second-run"]
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("code", [
    # the same bytes written again (a new modification time)
    'p = folder / "uploads" / "a.txt"\np.write_text(p.read_text())',
    # other bytes, with the size and the modification time put back: only the content tells
    'p = folder / "uploads" / "a.txt"\nst = p.stat()\np.write_text("KEPT AS IT IS")\n'
    'os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))',
    'os.chmod(folder / "uploads" / "a.txt", 0o600)',  # only a permission
    '(folder / "cache").mkdir(exist_ok=True)',  # an empty folder
    '(folder / "uploads" / "a.txt").unlink(missing_ok=True)',  # a file removed
    # a link (never followed, never vouched for), a FIFO (never opened for reading), a hard link
    'if not (folder / "link").is_symlink():\n    (folder / "link").symlink_to(folder / "app.db")',
    'if not (folder / "pipe").exists():\n    os.mkfifo(folder / "pipe")',
    'if not (folder / "again.txt").exists():\n    os.link(folder / "uploads" / "a.txt", folder / "again.txt")',
    # a WAL left beside the database (the process ended without closing it)
    'db = sqlite3.connect(folder / "app.db")\ndb.execute("PRAGMA journal_mode=WAL")\n'
    'db.execute("INSERT INTO t (v) VALUES (\'c\')")\ndb.commit()\nos._exit(0)',
], ids=["rewritten", "forged-stat", "chmod", "mkdir", "unlink", "symlink", "fifo", "hardlink", "wal"])
def test_any_change_to_the_copy_means_a_second_run(tmp_path: Path, code: str) -> None:
    data = _seeded(tmp_path)
    """Each command succeeds on both runs; each changes the copy in one way only, which alone means the second
    run happens."""
    run, ran = _command(code)
    found = rehearsal.rehearse(data, tmp_path / "s", run, [])
    assert ran == ["rehearsal", "rehearsal-second-run"] and not found.second_run_skipped, found


def test_a_copy_too_big_to_fingerprint_always_runs_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _seeded(tmp_path)
    copy = tmp_path / "copy"
    rehearsal.copy_folder(data, copy)
    assert rehearsal.fingerprint(copy) is not None
    monkeypatch.setattr(rehearsal, "FINGERPRINT_BYTES", (data / "app.db").stat().st_size)  # the upload is over it
    assert rehearsal.fingerprint(copy) is None
    run, ran = _command(_IDEMPOTENT)
    found = rehearsal.rehearse(data, tmp_path / "s", run, [])
    assert ran == ["rehearsal", "rehearsal-second-run"] and not found.second_run_skipped


def test_a_folder_nested_deeper_than_the_walk_goes_is_not_vouched_for(tmp_path: Path) -> None:
    """A copy the app nested folders deep into (it is the app's after a run): the walk stops at a bound (no
    recursion error, no descriptor per level without end); the second run happens."""
    deep = tmp_path / "copy"
    (deep / "/".join(["d"] * (rehearsal.FINGERPRINT_DEPTH + 2))).mkdir(parents=True)
    assert rehearsal.fingerprint(deep) is None
    assert rehearsal.fingerprint(deep / "d" / "d") is not None
