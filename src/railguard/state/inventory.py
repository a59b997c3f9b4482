"""What runs and what was asked for: the observed inventory, the applied spec snapshots, the serials.

The serial of an environment grows whenever its live state or applied spec moves; a plan
binds to it, so a plan made before such a move is stale. Part of the :class:`Store` facade.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from railguard.model.canonical import canonical_json
from railguard.model.resources import ObservedResource, Resource, observed_text
from railguard.state.db import Database, corrupt, now


@dataclass(frozen=True)
class Recorded:
    """What :meth:`InventoryStore.record_live` did: whether the inventory moved (the serial with it), and whether
    the resources recorded are, as given, what :meth:`InventoryStore.inventory` would read back now."""

    moved: bool
    as_read: bool
    serial: int  # the environment's serial as of this record (in its transaction)


class InventoryStore(Database):
    # -- serials ---------------------------------------------------------------------------------
    def serial(self, env: str) -> int:
        row = self._one("SELECT serial FROM environments WHERE name = ?", env)
        return int(row[0]) if row else 0

    def _bump(self, env: str) -> int:
        self._db.execute(
            "INSERT INTO environments (name, serial, updated_at) VALUES (?, 1, ?) "
            "ON CONFLICT(name) DO UPDATE SET serial = serial + 1, updated_at = excluded.updated_at",
            (env, now()),
        )
        return self.serial(env)

    def bump_serial(self, env: str) -> int:
        with self.transaction():
            return self._bump(env)

    # -- inventory -------------------------------------------------------------------------------
    def environment_names(self) -> list[str]:
        """Every environment the store has heard of (planned, observed or applied)."""
        return [str(r[0]) for r in self._db.execute("SELECT name FROM environments ORDER BY name").fetchall()]

    def inventory(self, env: str) -> list[ObservedResource]:
        rows = self._db.execute("SELECT body FROM inventory WHERE env = ? ORDER BY address", (env,)).fetchall()
        try:
            return [ObservedResource.model_validate_json(r[0]) for r in rows]
        except ValidationError as exc:
            raise corrupt(self.path, exc) from exc

    def inventory_at(self, env: str, address: str) -> ObservedResource | None:
        """One resource of the inventory (a status reads the environment's own without parsing every service)."""
        row = self._one("SELECT body FROM inventory WHERE env = ? AND address = ?", env, address)
        try:
            return None if row is None else ObservedResource.model_validate_json(row[0])
        except ValidationError as exc:
            raise corrupt(self.path, exc) from exc

    def record_observed(self, env: str, resources: list[ObservedResource]) -> bool:
        """Replace the env's inventory with a provider's report; bump the serial if it moved (answered)."""
        return self.record_live(env, resources).moved

    def record_live(self, env: str, resources: list[ObservedResource],
                    desired: Mapping[str, Resource] | None = None) -> Recorded:
        """:meth:`record_observed`, also saying whether ``resources`` are exactly what :meth:`inventory` reads back.

        Only the rows that differ are written: one service of 10,000 restarting rewrote all 10,000 before.
        ``desired`` (by address): what a plan asks for, whose configs' texts an unchanged live resource reuses
        (:func:`~railguard.model.resources.observed_text`)."""
        like = desired or {}
        texts = [observed_text(r, like.get(r.address)) for r in resources]
        new = {r.address: text for r, (text, _) in zip(resources, texts, strict=True)}
        # One row per address, each spliced from plain fields (so it parses back equal), in the store's order.
        as_read = (len(new) == len(resources) and all(spliced for _, spliced in texts)
                   and all(a.address < b.address for a, b in zip(resources, resources[1:], strict=False)))
        del texts
        with self.transaction():
            old = dict(self._db.execute("SELECT address, body FROM inventory WHERE env = ?", (env,)).fetchall())
            if old == new:
                return Recorded(moved=False, as_read=as_read, serial=self.serial(env))
            self._db.executemany("DELETE FROM inventory WHERE env = ? AND address = ?",
                                 [(env, address) for address in old if address not in new])
            at = now()
            self._db.executemany(
                "INSERT INTO inventory (env, address, body, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(env, address) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
                [(env, address, body, at) for address, body in new.items() if old.get(address) != body],
            )
            return Recorded(moved=True, as_read=as_read, serial=self._bump(env))

    def set_observed(self, env: str, resource: ObservedResource | None, address: str) -> None:
        """Record one resource's new live state after an applied change (None: it is gone)."""
        with self.transaction():
            self._db.execute("DELETE FROM inventory WHERE env = ? AND address = ?", (env, address))
            if resource is not None:
                self._db.execute(
                    "INSERT INTO inventory (env, address, body, updated_at) VALUES (?, ?, ?, ?)",
                    (env, address, canonical_json(resource.model_dump(mode="json")), now()),
                )
            self._bump(env)

    # -- spec snapshots ----------------------------------------------------------------------------
    def add_spec_snapshot(self, env: str, digest: str, body: Any) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT INTO spec_snapshots (env, digest, body, created_at) VALUES (?, ?, ?, ?)",
                (env, digest, canonical_json(body), now()),
            )

    # The frozen desired resources as applied (Resource dumps); kept as JSON because callers compare
    # their address and fingerprint only, and old snapshots must read back whatever Resource becomes.
    def last_spec(self, env: str) -> list[dict[str, Any]] | None:  # Resource dumps as applied: see above
        """The desired resources of the last applied spec snapshot."""
        row = self._one("SELECT body FROM spec_snapshots WHERE env = ? ORDER BY id DESC LIMIT 1", env)
        return list(json.loads(row[0])) if row else None

    def last_spec_digest(self, env: str) -> str | None:
        row = self._one("SELECT digest FROM spec_snapshots WHERE env = ? ORDER BY id DESC LIMIT 1", env)
        return str(row[0]) if row else None
