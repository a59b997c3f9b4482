"""The doctor's data fixture: sample data for the release checks when the environment has none.

CI runs ``railguard doctor`` on a fresh checkout, where the environment's data folder is empty: without
data, idempotent-release and migrations-forward prove nothing about a command that drops tables. ``[doctor]
fixture`` seeds the scratch snapshot those checks copy from: a ``.sql`` file run into ``fixture_database``,
or a command that writes into ``$RAILGUARD_DATA_DIR``. Called by :meth:`railguard.doctor.context.Context.data_copy`.

The fixture is written by whoever writes the spec (an agent, too) and runs while the doctor may be root: a
fixture command runs as the scratch user (``rg-scratch-<app>``, see :mod:`railguard.doctor.scratch`), as the
app's own code does, in the scratch data folder handed to that user; a ``.sql`` fixture runs in a connection
that cannot attach (nor ``VACUUM INTO``) another file, so it writes only its own database.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from railguard.model.diagnostics import RailguardError, error
from railguard.model.spec import Doctor

if TYPE_CHECKING:
    from railguard.doctor.scratch import Scratch

TIMEOUT_S = 120.0


def _fail(detail: str) -> RailguardError:
    return RailguardError(error(
        "doctor.fixture_failed", "The doctor's data fixture could not be loaded", detail,
        "Fix `[doctor] fixture` in the spec: a .sql file beside it, or a command writing into $RAILGUARD_DATA_DIR.",
        address="[doctor] fixture"))


def seed(settings: Doctor, spec_root: Path, folder: Path, urls: dict[str, str] | None = None,
         scratch: Scratch | None = None) -> int:
    """Load the fixture into ``folder``; returns how many files it holds afterwards. ``urls``: the scratch
    Postgres databases' URLs by variable (see :mod:`railguard.doctor.pgscratch`), given to a fixture command.
    ``scratch``: the doctor's scratch, whose user (when it isolates) runs a fixture command."""
    fixture = settings.fixture
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(fixture, str):
        path = (spec_root / fixture).resolve()
        if path.suffix != ".sql" or not path.is_file():
            raise _fail(f"{fixture!r} is not a .sql file beside the spec ({path}).")
        target = (folder / settings.fixture_database).resolve()
        if target.parent != folder.resolve():
            raise _fail(f"fixture_database {settings.fixture_database!r} is not a file name in the data folder.")
        db = sqlite3.connect(target)
        # ATTACH (and VACUUM INTO, which attaches) would let the script create or overwrite any file the doctor
        # may write (root's, when it runs as root): no database but its own.
        db.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        try:
            db.executescript(path.read_text(encoding="utf-8"))
            db.commit()
        except sqlite3.Error as exc:
            raise _fail(f"{fixture}: {exc}") from exc
        finally:
            db.close()
    elif fixture:
        isolated = scratch is not None and scratch.user is not None
        if isolated:
            assert scratch is not None
            scratch.hand_over(folder)  # the scratch user's alone, as every data folder the app's code runs on
        environ = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                   "HOME": str(folder) if isolated else os.path.expanduser("~"), "LANG": "C.UTF-8",
                   "RAILGUARD_DATA_DIR": str(folder), **(urls or {})}
        as_user = scratch.runtime.popen_user() if isolated and scratch is not None else {}
        try:
            done = subprocess.run(list(fixture), cwd=spec_root, env=environ, capture_output=True, text=True,
                                  timeout=TIMEOUT_S, check=False, stdin=subprocess.DEVNULL, **as_user)
        except (OSError, subprocess.TimeoutExpired) as exc:
            who = f" (run as the scratch user {scratch.user}: it must be able to read {spec_root})" if (
                isolated and scratch is not None) else ""
            raise _fail(f"{' '.join(fixture)}: {exc}{who}") from exc
        if done.returncode != 0:
            raise _fail(f"{' '.join(fixture)} exited with {done.returncode}: {(done.stdout + done.stderr)[-400:]}")
    return sum(1 for p in folder.rglob("*") if p.is_file())
