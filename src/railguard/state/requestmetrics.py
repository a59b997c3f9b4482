"""Request metrics in the state database, so a restarted daemon shows the figures it had before.

The daemon keeps its request metrics in memory (:mod:`railguard.daemon.metrics`) and the observation loop
hands this module, every few seconds, what changed since the last time: the per-second buckets touched
and each touched release's cumulative counts ("since the switch"). One transaction per batch, never a
write per request. Bounded: only per-second buckets younger than the in-memory ring are kept (older
ones are deleted at each batch, their requests stay in the cumulative row), and a release's rows go when
the daemon drops its series. Read once, at daemon start. Counts travel as JSON:
``{"c": [other, 2xx, 3xx, 4xx, 5xx], "h": {bucket: n}}`` (bucket: the latency histogram's index).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from railguard.state.store import Store

# The store's columns are NOT NULL: a line the edge could not attribute (no service, no release) is kept as
# service "" and release -1.
NO_SERVICE, NO_RELEASE = "", -1


@dataclass
class StoredSeries:
    env: str
    service: str | None
    release: int | None
    first_at: float | None
    last_at: float | None
    since: dict[str, Any]
    buckets: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (second, counts), oldest first


def _key(env: str, service: str | None, release: int | None) -> tuple[str, str, int]:
    return env, service if service is not None else NO_SERVICE, release if release is not None else NO_RELEASE


def save(store: Store, series: list[StoredSeries], gone: list[tuple[str, str | None, int | None]],
         oldest_second: int) -> None:
    """Write one batch: upsert ``series`` (with the buckets they carry), delete ``gone``, and every bucket
    older than ``oldest_second``."""
    with store.transaction() as db:
        for s in series:
            key = _key(s.env, s.service, s.release)
            db.execute("INSERT OR REPLACE INTO request_series (env, service, release, first_at, last_at, since) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (*key, s.first_at, s.last_at, json.dumps(s.since)))
            db.executemany("INSERT OR REPLACE INTO request_buckets (env, service, release, second, counts) "
                           "VALUES (?, ?, ?, ?, ?)", [(*key, second, json.dumps(c)) for second, c in s.buckets])
        for env, service, release in gone:
            key = _key(env, service, release)
            db.execute("DELETE FROM request_series WHERE env = ? AND service = ? AND release = ?", key)
            db.execute("DELETE FROM request_buckets WHERE env = ? AND service = ? AND release = ?", key)
        db.execute("DELETE FROM request_buckets WHERE second < ?", (oldest_second,))


def load(store: Store, oldest_second: int) -> list[StoredSeries]:
    """Every stored series with its buckets from ``oldest_second`` on."""
    found: dict[tuple[str, str, int], StoredSeries] = {}
    for env, service, release, first_at, last_at, since in store.db.execute(
            "SELECT env, service, release, first_at, last_at, since FROM request_series"):
        found[(env, service, release)] = StoredSeries(
            env=env, service=None if service == NO_SERVICE else service,
            release=None if release == NO_RELEASE else int(release), first_at=first_at, last_at=last_at,
            since=json.loads(since))
    for env, service, release, second, counts in store.db.execute(
            "SELECT env, service, release, second, counts FROM request_buckets WHERE second >= ? "
            "ORDER BY second", (oldest_second,)):
        owner = found.get((env, service, release))
        if owner is not None:
            owner.buckets.append((int(second), json.loads(counts)))
    return list(found.values())
