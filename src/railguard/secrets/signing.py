"""The key that signs decisions (plans, approvals, the audit chain), kept outside the state folder.

Anyone who can write ``state.db`` could otherwise insert an approval row, edit a plan and recompute its hash,
or rewrite the audit chain and its anchor. Each of those is signed with HMAC-SHA256 under a key that lives
beside the secret key (``~/.config/railguard/keys/<state id>.sign``, 0600, or ``RAILGUARD_SIGNING_KEY``,
hex), never in the state folder, and checked where it matters (apply, ``audit verify``). What remains
trusted is the key's holder: the daemon's OS user (root when workloads are isolated). Used by
:mod:`railguard.state.plans`, :mod:`railguard.state.approvals` and :mod:`railguard.state.audit`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from pathlib import Path

from railguard.model.diagnostics import RailguardError, error
from railguard.secrets.keys import key_dir, state_id

_cache: dict[str, bytes] = {}
_lock = threading.Lock()


def key_path(home: Path) -> Path:
    return key_dir() / f"{state_id(home)}.sign"


def signing_key(home: Path) -> bytes:
    """The state folder's signing key, created (0600, in a 0700 folder) on first use."""
    inline = os.environ.get("RAILGUARD_SIGNING_KEY")
    if inline:
        return bytes.fromhex(inline)
    path = key_path(home)
    with _lock:
        found = _cache.get(str(path))
        if found is not None:
            return found
        try:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except FileExistsError:
                    pass  # another process made it first
                else:
                    with os.fdopen(fd, "w") as handle:
                        handle.write(secrets.token_hex(32))
            key = bytes.fromhex(path.read_text().strip())
        except (OSError, ValueError) as exc:
            raise RailguardError(error(
                "secret.key_unavailable", "The signing key is not available",
                f"Railguard signs plans, approvals and the audit log with a key kept outside the state folder and "
                f"could not load it: {exc}.",
                f"Restore {path} (or set RAILGUARD_SIGNING_KEY). See docs/guardrails.md.")) from exc
        _cache[str(path)] = key
        return key


def sign(home: Path, purpose: str, message: str) -> str:
    """HMAC-SHA256 of ``message`` for ``purpose`` (so a plan's signature never passes as an approval's)."""
    return hmac.new(signing_key(home), f"{purpose}\n{message}".encode(), hashlib.sha256).hexdigest()


def valid(home: Path, purpose: str, message: str, signature: str | None) -> bool:
    return bool(signature) and hmac.compare_digest(sign(home, purpose, message), str(signature))
