"""The state store: one SQLite database (WAL mode) in the state folder, behind one facade.

It holds what Railguard knows: spec snapshots, the observed inventory, saved plans,
operations and their step journal, releases, events, and a serial per environment
that grows whenever the environment's live state or applied spec moves (plans bind
to it). Each aggregate lives in its own module (db, inventory, plans, operations,
releases, events, locks; tokens, approvals, secrets and audit beside them) and
:class:`Store` puts them together, so callers hold one object. Reads answer the typed
models of :mod:`railguard.model.api`; statuses move only through
:mod:`railguard.state.lifecycles`. All SQL of Railguard's own database lives in
``state/`` (a test checks it). Called by the engine and the daemon.
"""

from __future__ import annotations

from railguard.state.db import DB_NAME, new_id, now
from railguard.state.events import EventStore
from railguard.state.inventory import InventoryStore
from railguard.state.locks import LockStore
from railguard.state.operations import OperationStore
from railguard.state.plans import PlanStore
from railguard.state.releases import ReleaseStore

__all__ = ["DB_NAME", "Store", "new_id", "now"]


class Store(InventoryStore, PlanStore, OperationStore, ReleaseStore, EventStore, LockStore):
    """A connection to one state folder. Not shared across threads."""
