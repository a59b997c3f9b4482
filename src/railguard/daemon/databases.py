"""The daemon's answers about an environment's data: the snapshots recorded on its releases.

Called by :mod:`railguard.daemon.api` for ``GET /v1/backups`` (``railguard backups``).
"""

from __future__ import annotations

from railguard.model.data import Backup
from railguard.state import datarecords
from railguard.state.store import Store


def backups_answer(store: Store, env: str) -> list[Backup]:
    """Every snapshot of ``env``, newest first, each naming the release it was taken for."""
    return [backup if backup.release is not None else backup.model_copy(update={"release": release.number})
            for release, backup in datarecords.backups(store, env)]
