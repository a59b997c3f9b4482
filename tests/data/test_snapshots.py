"""Snapshots, rehearsals and the schema rule on real SQLite files (no daemon)."""

from __future__ import annotations

import sqlite3
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
