"""The doctor's data fixture is agent-written and the doctor may run as root: a fixture command runs as the
scratch user, a ``.sql`` fixture writes only its own database. Real processes, a real OS user, real SQLite."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from railguard.doctor.fixture import seed
from railguard.doctor.scratch import Scratch
from railguard.model.diagnostics import RailguardError
from railguard.model.spec import Doctor
from railguard.providers.local.isolation import ensure_user, scratch_user
from railguard.providers.local.scratch import LocalScratch

SYSTEM_PYTHON = "/usr/bin/python3"  # a Python the scratch user may run (ours may sit under root's home)


def _reachable(folder: Path) -> None:
    for parent in [folder, *folder.parents]:
        parent.chmod(parent.stat().st_mode | 0o001)


@pytest.fixture
def isolated_scratch() -> Iterator[Scratch]:
    if os.geteuid() != 0 or shutil.which("useradd") is None or not Path(SYSTEM_PYTHON).exists():
        pytest.skip("the scratch user needs root, useradd and a system Python")
    runtime = LocalScratch()
    scratch = Scratch(runtime=runtime)
    _reachable(scratch.root)
    # What Scratch.isolate does when the runtime can isolate (here the test's own Python may be unreachable).
    runtime.run_as = ensure_user(scratch_user("fixturetest"))
    scratch.user = runtime.run_as.name
    yield scratch
    scratch.close()


def test_a_fixture_command_runs_as_the_scratch_user_and_cannot_write_root_files(
        isolated_scratch: Scratch, session_temp_folder: Path) -> None:
    spec_root = Path(tempfile.mkdtemp(dir=session_temp_folder))
    _reachable(spec_root)
    private = Path(tempfile.mkdtemp(dir=session_temp_folder))  # root's, 0700: the state folder stands here
    (spec_root / "seed.py").write_text(
        "import os, pathlib\n"
        "d = pathlib.Path(os.environ['RAILGUARD_DATA_DIR'])\n"
        "(d / 'who').write_text(str(os.getuid()))\n"
        f"try:\n    pathlib.Path({str(private)!r}, 'planted').write_text('x')\nexcept OSError:\n    pass\n")
    (spec_root / "seed.py").chmod(0o644)
    folder = isolated_scratch.folder("snapshot")
    count = seed(Doctor(fixture=[SYSTEM_PYTHON, "seed.py"]), spec_root, folder, scratch=isolated_scratch)
    assert count == 1
    run_as = ensure_user(scratch_user("fixturetest"))
    assert (folder / "who").read_text() == str(run_as.uid) != "0"
    assert not (private / "planted").exists()
    assert folder.stat().st_uid == run_as.uid


def test_a_sql_fixture_cannot_attach_or_vacuum_into_another_file(tmp_path: Path) -> None:
    spec_root, folder = tmp_path / "spec", tmp_path / "data"
    spec_root.mkdir()
    planted = tmp_path / "planted.db"
    for script in (f"ATTACH '{planted}' AS x; CREATE TABLE x.t (a);",
                   f"CREATE TABLE t (a); VACUUM INTO '{planted}';"):
        (spec_root / "fixture.sql").write_text(script)
        with pytest.raises(RailguardError) as failed:
            seed(Doctor(fixture="fixture.sql"), spec_root, folder)
        assert failed.value.diagnostics[0].code == "doctor.fixture_failed"
        assert not planted.exists()
    (spec_root / "fixture.sql").write_text("CREATE TABLE t2 (a); INSERT INTO t2 VALUES (1);")
    assert seed(Doctor(fixture="fixture.sql"), spec_root, folder) == 1
    assert sqlite3.connect(folder / "app.db").execute("SELECT a FROM t2").fetchall() == [(1,)]
