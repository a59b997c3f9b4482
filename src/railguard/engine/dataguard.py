"""Recording what a provider found about the data during an operation, and the data facts plans need.

A provider reports, as step details, the snapshot it took before a release command, the rehearsal's
result and the schemas after the run (``detail["data"]``); :func:`record` stores them on the release
and keeps the environment's live schema current. Called by :mod:`railguard.engine.execute`.
"""

from __future__ import annotations

from typing import Any

from railguard.state import datarecords
from railguard.state.store import Store


def record(store: Store, env: str, release: int | None, found: Any) -> None:
    if not isinstance(found, dict):
        return
    if release is not None:
        datarecords.merge_release_data(store, env, release, found)
    if isinstance(found.get("schemas"), dict):
        datarecords.set_live_schemas(store, env, found["schemas"])
