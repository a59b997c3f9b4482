"""API tokens: created once, stored only as a hash, scoped to a role and environments.

A token reads ``rg_<id>_<secret>``; the store keeps the id and the SHA-256 of the
secret, never the secret, so a copy of the state folder grants nothing. Verification
is constant-time. Expired, revoked and unknown tokens are distinct diagnostics.
Called by the daemon's auth layer and ``railguard token``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime, timedelta

from railguard.model.api import TokenInfo
from railguard.model.diagnostics import RailguardError, error
from railguard.model.principals import Principal, Role
from railguard.state.store import Store, now

PREFIX = "rg_"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _refused(code: str, summary: str, detail: str) -> RailguardError:
    return RailguardError(error(code, summary, detail,
                                "Ask an admin for a valid token (`railguard token create`), or unset RAILGUARD_TOKEN "
                                "to act as the local user (same-user mode only)."))


def create(store: Store, name: str, role: Role, envs: list[str] | None, created_by: str,
           expires_in_s: float | None) -> tuple[str, TokenInfo]:
    """Create a token; return the token text (shown once) and its record."""
    if store.db.execute("SELECT 1 FROM tokens WHERE name = ?", (name,)).fetchone():
        raise RailguardError(error("auth.token_exists", f"A token named '{name}' exists",
                                   "Token names are unique so the audit log can name who did what.",
                                   "Pick another --name, or revoke the old token first."))
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    expires = (datetime.now(UTC) + timedelta(seconds=expires_in_s)).isoformat() if expires_in_s else None
    with store.transaction() as db:
        db.execute("INSERT INTO tokens (id, name, role, envs, secret_hash, created_at, created_by, expires_at) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (token_id, name, role.value, json.dumps(envs) if envs else None, _hash(secret), now(),
                    created_by, expires))
    return f"{PREFIX}{token_id}_{secret}", describe(store, token_id)


_COLUMNS = "id, name, role, envs, created_at, created_by, expires_at, revoked_at, last_used_at"


def _info(row: tuple[object, ...]) -> TokenInfo:
    record = dict(zip(_COLUMNS.split(", "), row, strict=True))
    record["envs"] = json.loads(str(record["envs"])) if record["envs"] else None
    return TokenInfo.model_validate(record)


def describe(store: Store, token_id: str) -> TokenInfo:
    return _info(store.db.execute(f"SELECT {_COLUMNS} FROM tokens WHERE id = ?", (token_id,)).fetchone())


def listing(store: Store) -> list[TokenInfo]:
    return [_info(row) for row in store.db.execute(f"SELECT {_COLUMNS} FROM tokens ORDER BY created_at")]


def revoke(store: Store, name_or_id: str) -> TokenInfo:
    row = store.db.execute("SELECT id FROM tokens WHERE id = ? OR name = ?", (name_or_id, name_or_id)).fetchone()
    if row is None:
        raise RailguardError(error("auth.unknown_token", f"No token '{name_or_id}'",
                                   "No token has that name or id.", "List tokens with `railguard token list`."))
    with store.transaction() as db:
        db.execute("UPDATE tokens SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?", (now(), row[0]))
    return describe(store, row[0])


def verify(store: Store, token: str, tty: bool) -> Principal:
    """The principal a presented token stands for, or a diagnostic saying why it is refused."""
    body = token.strip()
    if not body.startswith(PREFIX) or body.count("_") < 2:
        raise _refused("auth.unknown_token", "The token is not a Railguard token",
                       "The presented token does not have the rg_<id>_<secret> shape.")
    token_id, _, secret = body[len(PREFIX):].partition("_")
    row = store.db.execute("SELECT name, role, envs, secret_hash, expires_at, revoked_at FROM tokens WHERE id = ?",
                           (token_id,)).fetchone()
    if row is None or not hmac.compare_digest(row[3], _hash(secret)):
        raise _refused("auth.unknown_token", "Unknown token", "No token matches; it may have been mistyped.")
    name, role, envs, _, expires_at, revoked_at = row
    if revoked_at:
        raise _refused("auth.token_revoked", f"Token '{name}' was revoked", f"It was revoked at {revoked_at}.")
    if expires_at and datetime.fromisoformat(expires_at) < datetime.now(UTC):
        raise _refused("auth.token_expired", f"Token '{name}' expired", f"It expired at {expires_at}.")
    with store.transaction() as db:
        db.execute("UPDATE tokens SET last_used_at = ? WHERE id = ?", (now(), token_id))
    return Principal(id=f"token:{name}", role=Role(role), envs=json.loads(envs) if envs else None, kind="token",
                     tty=tty)


def any_admin(store: Store) -> bool:
    return store.db.execute("SELECT 1 FROM tokens WHERE role = 'admin' AND revoked_at IS NULL").fetchone() is not None
