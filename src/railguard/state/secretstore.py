"""Secret values at rest: versioned, encrypted, never returned by listing.

Each ``secret set`` adds a version; the ciphertext (Fernet, key outside the state
folder) and a keyed fingerprint of the value are stored, never the value. The
fingerprint (HMAC of the value under the secret key) lets the isolation check find
the same value in two environments without decrypting anything. Called by the daemon.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.fernet import Fernet

from railguard.model.api import SecretInfo
from railguard.secrets.keys import decrypt
from railguard.state.store import Store, now


def fingerprint(fernet_key: bytes, value: str) -> str:
    return hmac.new(fernet_key, value.encode(), hashlib.sha256).hexdigest()


def put(store: Store, fernet: Fernet, key_bytes: bytes, env: str, name: str, value: str, who: str) -> int:
    with store.transaction() as db:
        row = db.execute("SELECT coalesce(max(version), 0) + 1 FROM secrets WHERE env = ? AND name = ?",
                         (env, name)).fetchone()
        version = int(row[0])
        db.execute("INSERT INTO secrets (env, name, version, ciphertext, fingerprint, created_at, created_by) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (env, name, version, fernet.encrypt(value.encode()), fingerprint(key_bytes, value), now(), who))
    return version


_LATEST = ("SELECT s.env, s.name, s.version, s.created_at, s.created_by, s.ciphertext, s.fingerprint FROM secrets s "
           "JOIN (SELECT env, name, max(version) v FROM secrets GROUP BY env, name) m "
           "ON s.env = m.env AND s.name = m.name AND s.version = m.v")


def _latest(store: Store, env: str | None) -> list[tuple[str, str, int, str, str, bytes, str]]:
    """The latest version of every secret (of ``env``), ordered by env and name, in one query."""
    sql = _LATEST + (" WHERE s.env = ?" if env else "") + " ORDER BY s.env, s.name"
    return store.db.execute(sql, (env,) if env else ()).fetchall()


def listing(store: Store, env: str | None = None) -> list[SecretInfo]:
    return [SecretInfo(env=e, name=name, version=version, set_at=at, set_by=by)
            for e, name, version, at, by, _, _ in _latest(store, env)]


def has_secrets(store: Store, env: str | None = None) -> bool:
    sql = "SELECT 1 FROM secrets" + (" WHERE env = ?" if env else "") + " LIMIT 1"
    return store.db.execute(sql, (env,) if env else ()).fetchone() is not None


def versions(store: Store, env: str) -> dict[str, int]:
    return {row.name: row.version for row in listing(store, env)}


def values(store: Store, fernet: Fernet, env: str | None = None) -> list[tuple[str, str, str]]:
    """(env, name, value) of the latest version of every secret (for injection and redaction)."""
    return [(e, name, decrypt(fernet, cipher)) for e, name, _, _, _, cipher, _ in _latest(store, env)]


def values_at(store: Store, fernet: Fernet, env: str, wanted: dict[str, int]) -> dict[str, str]:
    """The value of each named secret at the pinned version (-1: the latest; 0 or unknown: not injected)."""
    latest = {name: cipher for _, name, _, _, _, cipher, _ in _latest(store, env)}
    out: dict[str, str] = {}
    for name, version in wanted.items():
        if version < 0:
            cipher = latest.get(name)
        else:
            row = store.db.execute("SELECT ciphertext FROM secrets WHERE env = ? AND name = ? AND version = ?",
                                   (env, name, version)).fetchone()
            cipher = row[0] if row else None
        if cipher is not None:
            out[name] = decrypt(fernet, cipher)
    return out


def every_value(store: Store, fernet: Fernet) -> list[tuple[str, str, str]]:
    """(env, name, value) of every version ever set: what any kept release or log line may hold."""
    rows = store.db.execute("SELECT env, name, ciphertext FROM secrets ORDER BY env, name, version").fetchall()
    return [(e, name, decrypt(fernet, cipher)) for e, name, cipher in rows]


def shared_values(store: Store) -> list[tuple[str, str, str, str]]:
    """Pairs (env, name, other env, other name) whose latest values are equal: environments must not share."""
    latest = [(e, name, fp) for e, name, _, _, _, _, fp in _latest(store, None)]
    found = []
    for i, (env, name, fp) in enumerate(latest):
        for other_env, other_name, other_fp in latest[i + 1:]:
            if other_env != env and hmac.compare_digest(fp, other_fp):
                found.append((env, name, other_env, other_name))
    return found
