"""What a hostile app (or an agent-written fixture) can do through a managed Postgres, and what it must not reach:
root's shell through psql's meta-commands, the daemon's environment through the server's, a socket folder
another user made, a snapshot skipped by tables outside ``public``. The session's real Postgres (conftest.py)
and real processes."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

import pytest

from railguard.data.postgres import Cluster, bin_dir

pytestmark = pytest.mark.skipif(bin_dir() is None, reason="the postgres extra is not installed")


def _db(cluster: Cluster, prefix: str) -> str:
    name = f"{prefix}_{secrets.token_hex(4)}"
    cluster.sql(f'CREATE DATABASE "{name}"')
    return name


def test_a_sql_fixture_runs_psql_meta_commands_as_the_servers_user_never_root(
        cluster: Cluster, session_temp_folder: Path) -> None:
    if os.geteuid() != 0 or cluster.user is None:
        pytest.skip("the server runs as another user only when started by root")
    private = Path(tempfile.mkdtemp(dir=session_temp_folder))  # root's 0700: the fixture file needs no right
    out = Path(tempfile.mkdtemp(dir=session_temp_folder))
    for parent in [out, *out.parents]:
        parent.chmod(parent.stat().st_mode | 0o001)
    out.chmod(0o777)
    fixture = private / "fixture.sql"
    fixture.write_text(f"CREATE TABLE t (a int);\nINSERT INTO t VALUES (7);\n\\! id -u > {out}/who\n")
    name = _db(cluster, "fixt")
    try:
        cluster.sql_file(fixture, name)
        assert cluster.sql("SELECT a FROM t", name).strip() == "7"
        assert (out / "who").read_text().strip() == str(cluster.user.pw_uid) != "0"
        assert (out / "who").stat().st_uid == cluster.user.pw_uid
    finally:
        cluster.sql(f'DROP DATABASE "{name}" WITH (FORCE)')
