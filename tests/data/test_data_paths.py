"""The data folder is the app's, and the app is hostile: links and hard links it plants in its data folder (or in a
rehearsal's copy of it) never make root's snapshot, rehearsal or restore read or write another file.

Real files, a real OS user owning the data folder (as the daemon's isolation gives each environment), root
running the data guard. Each planted path stands for the state folder's ``state.db`` or production's database:
a root-only file the environment's user may neither read nor write."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from railguard.data import rehearsal, snapshots, sqlite
from railguard.providers.local.isolation import RunAs, ensure_user, prepare_data

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("useradd") is None,
                                reason="an environment's own OS user needs root and useradd")


def _db(path: Path, *statements: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()


def _rows(path: Path, table: str = "t") -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
    finally:
        db.close()


def _hand(folder: Path, user: RunAs) -> None:
    for root, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            os.lchown(Path(root) / name, user.uid, user.gid)
    os.chown(folder, user.uid, user.gid)
    folder.chmod(0o700)


@pytest.fixture
def env_user() -> RunAs:
    return ensure_user("rg-sectest-staging")


@pytest.fixture
def layout(reachable_tmp: Path, env_user: RunAs) -> Iterator[tuple[Path, Path, Path]]:
    """(data folder owned by the environment's user, root's backups folder, root's private 'state.db')."""
    for parent in [reachable_tmp, *reachable_tmp.parents]:  # the environment's user reaches its data folder
        parent.chmod(parent.stat().st_mode | 0o001)
    data, root, private = reachable_tmp / "data", reachable_tmp / "backups", reachable_tmp / "state"
    private.mkdir(mode=0o700)
    _db(private / "state.db", "CREATE TABLE t (secret TEXT)", "INSERT INTO t VALUES ('root only')")
    (private / "state.db").chmod(0o600)
    _db(data / "app.db", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t (v) VALUES ('a'), ('b')")
    _hand(data, env_user)
    yield data, root, private / "state.db"


def _plant_link(path: Path, target: Path, user: RunAs) -> None:
    path.unlink()
    path.symlink_to(target)
    os.lchown(path, user.uid, user.gid)


def test_a_restore_refuses_a_database_the_app_replaced_by_a_link_and_never_writes_its_target(
        layout: tuple[Path, Path, Path], env_user: RunAs) -> None:
    data, root, state = layout
    backup = snapshots.take(data, root, "staging", 1)
    assert backup is not None
    before = state.read_bytes()
    _plant_link(data / "app.db", state, env_user)
    with pytest.raises(sqlite.UnsafeDatabase, match="symbolic link"):
        snapshots.restore(root, backup, data)
    assert state.read_bytes() == before and _rows(state) == [("root only",)]


def test_a_restore_refuses_a_folder_on_the_way_replaced_by_a_link(layout: tuple[Path, Path, Path],
                                                                  env_user: RunAs) -> None:
    data, root, state = layout
    _db(data / "sub" / "app.db", "CREATE TABLE t (v TEXT)", "INSERT INTO t VALUES ('mine')")
    _hand(data, env_user)
    backup = snapshots.take(data, root, "staging", 1)
    assert backup is not None and {f.path for f in backup.files} == {"app.db", "sub/app.db"}
    before = state.read_bytes()
    os.rename(state, state.parent / "app.db")  # production's folder holds an app.db too
    shutil.rmtree(data / "sub")
    (data / "sub").symlink_to(state.parent)
    with pytest.raises(sqlite.UnsafeDatabase, match="sub"):
        snapshots.restore(root, backup, data, ["app"])
    assert (state.parent / "app.db").read_bytes() == before


def test_a_link_planted_after_the_checks_reaches_only_what_the_folders_owner_may_write(
        layout: tuple[Path, Path, Path], env_user: RunAs, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race the checks cannot close alone: the app swaps the file between the check and SQLite's open. The
    write runs as the folder's owner, so the kernel refuses it; simulated by skipping the checks."""
    data, root, state = layout
    backup = snapshots.take(data, root, "staging", 1)
    assert backup is not None
    _plant_link(data / "app.db", state, env_user)

    @contextlib.contextmanager
    def unchecked(base: Path, rel: str, companions: bool = False) -> Iterator[tuple[int, int]]:
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
        try:
            yield fd, -1
        finally:
            os.close(fd)

    monkeypatch.setattr(sqlite, "opened", unchecked)
    before = state.read_bytes()
    with pytest.raises(sqlite3.Error, match="unable to open|readonly|denied"):
        snapshots.restore(root, backup, data)
    assert state.read_bytes() == before
    with pytest.raises(sqlite3.Error):  # nor does a snapshot read it
        sqlite.copy(data, "app.db", root / "copy.db")


def test_a_restore_as_the_folders_owner_writes_every_row_back_and_leaves_the_file_its_own(
        layout: tuple[Path, Path, Path], env_user: RunAs) -> None:
    data, root, _state = layout
    backup = snapshots.take(data, root, "staging", 1)
    assert backup is not None and backup.files[0].tables == {"t": 2}
    _db(data / "app.db", "DELETE FROM t")
    snapshots.restore(root, backup, data)
    assert _rows(data / "app.db") == [(1, "a"), (2, "b")]
    assert (data / "app.db").stat().st_uid == env_user.uid


def test_a_snapshot_refuses_a_link_or_a_hard_link_to_a_root_file(layout: tuple[Path, Path, Path],
                                                                 env_user: RunAs) -> None:
    data, root, state = layout
    _plant_link(data / "app.db", state, env_user)
    with pytest.raises(sqlite.UnsafeDatabase, match="symbolic link"):
        sqlite.copy(data, "app.db", root / "copy.db")
    (data / "app.db").unlink()
    os.link(state, data / "app.db")  # root may; protected_hardlinks stops the app, the check does not rely on it
    with pytest.raises(sqlite.UnsafeDatabase, match="hard-linked"):
        snapshots.take(data, root, "staging", 2)
    assert not list(root.glob("bk-*"))  # never a half-written backup


def test_the_rehearsal_copy_leaves_out_hard_linked_files_and_refuses_links_the_run_planted(
        layout: tuple[Path, Path, Path], env_user: RunAs) -> None:
    data, _root, state = layout
    secret = state.parent / "secret.key"
    secret.write_text("root's key")
    secret.chmod(0o600)
    os.link(secret, data / "upload.bin")
    scratch = data.parent / "scratch"
    names = rehearsal.copy_folder(data, scratch)
    assert names == ["app.db"] and not (scratch / "upload.bin").exists()
    assert _rows(scratch / "app.db") == [(1, "a"), (2, "b")]

    def run(folder: Path, label: str) -> None:  # the release command plants a link to a root-only database
        (folder / "app.db").unlink(missing_ok=True)
        (folder / "app.db").symlink_to(state)

    (data / "upload.bin").unlink()
    found = rehearsal.rehearse(data, scratch, run, [])  # root never opened the link: the database is lost
    assert [loss.table for loss in found.losses] == ["t"] and "secret" not in repr(found)
    scratch.mkdir()
    run(scratch, "planted after the listing")  # listed as a database, then replaced: refused, never read
    with pytest.raises(sqlite.UnsafeDatabase, match="symbolic link"):
        rehearsal._shapes(scratch, ["app.db"])
    assert _rows(state) == [("root only",)]


def test_a_planted_fifo_never_blocks_the_listing(layout: tuple[Path, Path, Path]) -> None:
    data, _root, _state = layout
    os.mkfifo(data / "pipe.db")
    assert sqlite.databases(data) == ["app.db"]
    assert not sqlite.is_sqlite(data / "pipe.db")


def test_a_rehearsal_on_the_environments_users_copy_still_finds_the_loss(layout: tuple[Path, Path, Path],
                                                                         env_user: RunAs) -> None:
    """As the rollout does it: the copy is handed to the environment's user, the command runs as that user, and
    the shapes after each run are read as that user (root never opens the copy with SQLite)."""
    if not Path("/usr/bin/python3").exists():
        pytest.skip("needs a Python the environment's user can run")
    data, _root, _state = layout
    scratch = data.parent / "scratch"

    def run(folder: Path, label: str) -> None:
        prepare_data(folder, env_user, adopt=True)  # as the provider hands its scratch copy over
        subprocess.run(["/usr/bin/python3", "-c", "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); "
                        "db.execute('DROP TABLE IF EXISTS t'); db.execute('CREATE TABLE IF NOT EXISTS u (x)'); "
                        "db.commit()", str(folder / "app.db")], check=True, user=env_user.uid, group=env_user.gid,
                       extra_groups=[], timeout=60)

    found = rehearsal.rehearse(data, scratch, run, [])
    assert [(loss.table, loss.rows) for loss in found.losses] == [("t", 2)], found
    assert _rows(data / "app.db") == [(1, "a"), (2, "b")]  # the real data: never run on


def test_the_users_copy_that_a_run_left_unchanged_is_run_once_and_a_planted_link_means_twice(
        layout: tuple[Path, Path, Path], env_user: RunAs) -> None:
    """As the rollout does it: the copy is handed to the environment's user before each run (its owner and the
    folder's own mode change: not a change the command made), then fingerprinted by root after the run without
    following anything the app planted."""
    if not Path("/usr/bin/python3").exists():
        pytest.skip("needs a Python the environment's user can run")
    data, _root, state = layout
    scratch = data.parent / "scratch"
    ran: list[str] = []

    def command(code: str) -> Callable[[Path, str], None]:
        def run(folder: Path, label: str) -> None:
            ran.append(label)
            prepare_data(folder, env_user, adopt=True)
            subprocess.run(["/usr/bin/python3", "-c", "import os, sqlite3, sys; folder = sys.argv[1]; " + code,
                            folder], check=True, user=env_user.uid, group=env_user.gid, extra_groups=[], timeout=60)
        return run

    found = rehearsal.rehearse(data, scratch, command(
        "db = sqlite3.connect(folder + '/app.db'); db.execute('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, "
        "v TEXT)'); db.commit(); db.close()"), [])
    assert ran == ["rehearsal"] and found.second_run_skipped, found
    ran.clear()
    found = rehearsal.rehearse(data, scratch, command(
        f"os.path.lexists(folder + '/private') or os.symlink({str(state.parent)!r}, folder + '/private')"), [])
    assert ran == ["rehearsal", "rehearsal-second-run"] and not found.second_run_skipped, found
    assert _rows(state) == [("root only",)]
