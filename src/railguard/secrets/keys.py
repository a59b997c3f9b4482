"""The key that encrypts secret values at rest, and where it lives.

The key never lives in the state folder: a copy of ``.railguard/`` (a backup, a
tarball sent for debugging) must not be enough to read the secrets. It comes from,
in order: ``RAILGUARD_SECRET_KEY`` (a Fernet key, for CI and containers), the file
named by ``RAILGUARD_KEY_FILE``, or ``~/.config/railguard/keys/<state id>.key``
(created 0600 on first use). Encryption is Fernet (AES-128-CBC + HMAC-SHA256) from
the ``cryptography`` package. Used by the daemon's secret store.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from railguard.model.diagnostics import RailguardError, error


def key_dir() -> Path:
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "railguard" / "keys"


def state_id(home: Path) -> str:
    return hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:16]


def key_file(home: Path) -> Path:
    named = os.environ.get("RAILGUARD_KEY_FILE")
    return Path(named) if named else key_dir() / f"{state_id(home)}.key"


def load_key(home: Path, create: bool = True) -> Fernet:
    """The Fernet for this state folder; created on first use unless ``create`` is False."""
    inline = os.environ.get("RAILGUARD_SECRET_KEY")
    try:
        if inline:
            return Fernet(inline.encode())
        path = key_file(home)
        if not path.exists():
            if not create:
                raise FileNotFoundError(path)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(Fernet.generate_key())
        return Fernet(path.read_bytes().strip())
    except (OSError, ValueError) as exc:
        raise RailguardError(error(
            "secret.key_unavailable", "The secret key is not available",
            f"Railguard encrypts secrets with a key kept outside the state folder and could not load it: {exc}.",
            "Provide it with RAILGUARD_SECRET_KEY (a Fernet key) or RAILGUARD_KEY_FILE, or restore "
            f"{key_file(home)}. See docs/guardrails.md.")) from exc


def decrypt(fernet: Fernet, ciphertext: bytes) -> str:
    try:
        return fernet.decrypt(ciphertext).decode("utf-8")
    except InvalidToken as exc:
        raise RailguardError(error(
            "secret.key_unavailable", "A secret cannot be decrypted with this key",
            "The stored ciphertext does not match the key in use: the key was replaced or the store was copied "
            "from another machine.",
            "Restore the original key (see docs/guardrails.md), or set the secret again with "
            "`railguard secret set`.")) from exc
