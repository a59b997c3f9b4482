"""The doctor's data fixture: sample data for the release checks when the environment has none.

CI runs ``railguard doctor`` on a fresh checkout, where the environment's data folder is empty: without
data, idempotent-release and migrations-forward prove nothing about a command that drops tables. ``[doctor]
fixture`` seeds the scratch snapshot those checks copy from: a ``.sql`` file run into ``fixture_database``,
or a command that writes into ``$RAILGUARD_DATA_DIR``. Called by :meth:`railguard.doctor.context.Context.data_copy`.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from railguard.model.diagnostics import RailguardError, error
from railguard.model.spec import Doctor

TIMEOUT_S = 120.0


def _fail(detail: str) -> RailguardError:
    return RailguardError(error(
        "doctor.fixture_failed", "The doctor's data fixture could not be loaded", detail,
        "Fix `[doctor] fixture` in the spec: a .sql file beside it, or a command writing into $RAILGUARD_DATA_DIR.",
        address="[doctor] fixture"))


def seed(settings: Doctor, spec_root: Path, folder: Path, urls: dict[str, str] | None = None) -> int:
    """Load the fixture into ``folder``; returns how many files it holds afterwards. ``urls``: the scratch
    Postgres databases' URLs by variable (see :mod:`railguard.doctor.pgscratch`), given to a fixture command."""
    fixture = settings.fixture
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(fixture, str):
        path = (spec_root / fixture).resolve()
        if path.suffix != ".sql" or not path.is_file():
            raise _fail(f"{fixture!r} is not a .sql file beside the spec ({path}).")
        db = sqlite3.connect(folder / settings.fixture_database)
        try:
            db.executescript(path.read_text(encoding="utf-8"))
            db.commit()
        except sqlite3.Error as exc:
            raise _fail(f"{fixture}: {exc}") from exc
        finally:
            db.close()
    elif fixture:
        environ = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                   "HOME": os.path.expanduser("~"), "LANG": "C.UTF-8", "RAILGUARD_DATA_DIR": str(folder),
                   **(urls or {})}
        try:
            done = subprocess.run(list(fixture), cwd=spec_root, env=environ, capture_output=True, text=True,
                                  timeout=TIMEOUT_S, check=False, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise _fail(f"{' '.join(fixture)}: {exc}") from exc
        if done.returncode != 0:
            raise _fail(f"{' '.join(fixture)} exited with {done.returncode}: {(done.stdout + done.stderr)[-400:]}")
    return sum(1 for p in folder.rglob("*") if p.is_file())
