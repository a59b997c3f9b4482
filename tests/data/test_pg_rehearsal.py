"""The Postgres rehearsal counts what the SQLite one counts: a release command that drops a column (or a
table) is stopped before its real run, naming the column; `--allow-data-loss TABLE.COLUMN` lets it run; a
rename passes. Driven through the local provider's data guard (snapshot, rehearse, release command) on the
session's real Postgres, with a real artifact."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from railguard.data import pgrehearsal
from railguard.data.postgres import Cluster, bin_dir
from railguard.model.plans import Action, Change, Risk
from railguard.providers.base import ApplyRequest
from railguard.providers.local import artifacts
from railguard.providers.local.databases import guarded_release
from railguard.providers.local.replicas import Failure
from railguard.sources.snapshot import snapshot

pytestmark = pytest.mark.skipif(bin_dir() is None, reason="the postgres extra is not installed")

MIGRATE = """import os, subprocess
subprocess.run([os.environ["PSQL"], os.environ["DATABASE_URL"], "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                os.environ["MIGRATE_SQL"]], check=True)
"""


@contextmanager
def _step(name: str) -> Iterator[dict[str, Any]]:
    _step.seen.append(name)  # type: ignore[attr-defined]
    detail: dict[str, Any] = {}
    yield detail
    _step.details[name] = detail  # type: ignore[attr-defined]


@pytest.fixture
def artifact(tmp_path: Path) -> artifacts.Artifact:
    src = tmp_path / "src"
    src.mkdir()
    (src / "migrate.py").write_text(MIGRATE)
    return artifacts.ensure(tmp_path / "artifacts", src, snapshot(src).digest, None, {})


def _release(cluster: Cluster, database: str, artifact: artifacts.Artifact, tmp_path: Path, sql: str,
             allow: list[str], release: int) -> dict[str, Any]:
    _step.seen, _step.details = [], {}  # type: ignore[attr-defined]
    config = {"release": ["python", "migrate.py"], "start_timeout_ms": 60_000,
              "databases": {database: "DATABASE_URL"}}
    environ = {"PATH": artifacts.base_path(artifact.bin_dirs), "DATABASE_URL": cluster.url(database),
               "PSQL": str(cluster.bin / "psql"), "MIGRATE_SQL": sql}
    change = Change(address="staging/service.web", kind="service", action=Action.update, risk=Risk.disruptive,
                    reason="test", before_fingerprint="a", after_fingerprint="b")
    request = ApplyRequest(env="staging", change=change, desired=None, operation_id="op-1", release=release,
                           allow_data_loss=allow)
    guarded_release(request, home=tmp_path / "home", service="web", config=config, environ=environ,
                    artifact=artifact, data_dir=tmp_path / "data", log_dir=tmp_path / "logs", step=_step,
                    postgres={database: cluster})
    return dict(_step.details)  # type: ignore[attr-defined]


def _columns(cluster: Cluster, database: str) -> list[str]:
    return cluster.sql("SELECT column_name FROM information_schema.columns WHERE table_name = 'notes' "
                       "ORDER BY ordinal_position", database).split()


@pytest.mark.timeout(300)
def test_a_dropped_column_is_a_loss_in_the_postgres_rehearsal(cluster: Cluster, artifact: artifacts.Artifact,
                                                                tmp_path: Path) -> None:
    db = "rehearse_cols"
    cluster.sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    cluster.sql(f"CREATE DATABASE {db}")
    cluster.sql("CREATE TABLE notes (id serial PRIMARY KEY, body text, tag text); "
                "INSERT INTO notes (body, tag) VALUES ('a', 'x'), ('b', 'y'), ('c', 'z')", db)

    with pytest.raises(Failure) as stopped:
        _release(cluster, db, artifact, tmp_path, "ALTER TABLE notes DROP COLUMN IF EXISTS tag", [], 2)
    assert stopped.value.code == "data.loss_detected"
    assert f"{db}: column notes.tag dropped (held values in 3 rows)" in stopped.value.cause, stopped.value.cause
    assert stopped.value.extra["losses"][0]["column"] == "tag"
    assert _columns(cluster, db) == ["id", "body", "tag"]  # the real run never started
    assert "release-command" not in _step.seen  # type: ignore[attr-defined]
    pgrehearsal.wait_for_drop(cluster, f"{db}__rehearsal")  # dropped after the verdict, on a thread of its own
    names = cluster.sql("SELECT datname FROM pg_database", "postgres").split()
    assert f"{db}__rehearsal" not in names  # the scratch copy never outlives its rehearsal

    # A rename is no loss (as many columns come as go, no row lost): it passes, and runs for real.
    rename = ("DO $$ BEGIN IF EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'notes' AND "
              "column_name = 'tag') THEN ALTER TABLE notes RENAME COLUMN tag TO label; END IF; END $$")
    details = _release(cluster, db, artifact, tmp_path, rename, [], 3)
    assert details["rehearse"]["data"]["rehearsal"]["losses"] == []
    assert _columns(cluster, db) == ["id", "body", "label"]

    # Acknowledged by TABLE.COLUMN (what `--allow-data-loss notes.label` sends): it runs, the loss is recorded.
    details = _release(cluster, db, artifact, tmp_path, "ALTER TABLE notes DROP COLUMN IF EXISTS label",
                       ["notes.label"], 4)
    found = details["rehearse"]["data"]["rehearsal"]
    assert [a["column"] for a in found["acknowledged"]] == ["label"] and found["losses"] == []
    assert _columns(cluster, db) == ["id", "body"]
    assert cluster.sql("SELECT count(*) FROM notes", db).strip() == "3"

    # A dropped table is named the same way; an added column is a note, not a loss.
    with pytest.raises(Failure) as dropped:
        _release(cluster, db, artifact, tmp_path, "DROP TABLE IF EXISTS notes", [], 5)
    assert f"{db}: table notes (3 rows) dropped" in dropped.value.cause, dropped.value.cause
    details = _release(cluster, db, artifact, tmp_path, "ALTER TABLE notes ADD COLUMN IF NOT EXISTS seen bool", [], 6)
    assert any("column(s) seen added" in n for n in details["rehearse"]["data"]["rehearsal"]["notes"])


@pytest.mark.timeout(300)
def test_a_rehearsal_copy_a_killed_daemon_left_is_swept_and_a_copy_that_cannot_be_made_stops_the_release(
        cluster: Cluster, artifact: artifacts.Artifact, tmp_path: Path) -> None:
    db = "rehearse_sweep"
    cluster.sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    cluster.sql(f"CREATE DATABASE {db}")
    cluster.sql("CREATE TABLE notes (id int); INSERT INTO notes VALUES (1)", db)
    cluster.sql(f"CREATE DATABASE {db}__rehearsal")  # what a daemon killed before the drop leaves
    assert f"{db}__rehearsal" in pgrehearsal.sweep(cluster)
    assert f"{db}__rehearsal" not in cluster.sql("SELECT datname FROM pg_database").split()
    # The copy is made from the snapshot's stream; when it cannot be (here a database of its name that no DROP
    # removes: a template), the release stops before its real run instead of rehearsing on nothing.
    cluster.sql(f"CREATE DATABASE {db}__rehearsal IS_TEMPLATE true")
    try:
        with pytest.raises(Failure) as stopped:
            _release(cluster, db, artifact, tmp_path, "DROP TABLE IF EXISTS notes", [], 2)
        assert stopped.value.code == "data.rehearsal_failed", stopped.value
        assert "could not be prepared" in stopped.value.summary and "template" in stopped.value.cause
        assert "release-command" not in _step.seen  # type: ignore[attr-defined]
        assert cluster.sql("SELECT count(*) FROM notes", db).strip() == "1"
    finally:
        cluster.sql(f"ALTER DATABASE {db}__rehearsal IS_TEMPLATE false")
        # IF EXISTS: the release's own background drop of its copy may get there first once it is no template.
        cluster.sql(f"DROP DATABASE IF EXISTS {db}__rehearsal")
