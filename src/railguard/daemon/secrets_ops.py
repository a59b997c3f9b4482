"""The daemon's side of secrets: set, list, inject into replicas, and keep the redactor current.

Values are decrypted only inside the daemon, to inject them into the replicas that
declare them and to teach the :class:`Redactor` what to hide. A value is refused when
it is too short to redact safely or when another environment already uses it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cryptography.fernet import Fernet

from railguard.model.api import SecretSet
from railguard.model.diagnostics import RailguardError, error
from railguard.secrets.keys import key_file, load_key
from railguard.secrets.redaction import MIN_SECRET_LENGTH, Redactor
from railguard.state import secretstore
from railguard.state.store import Store

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_VALUE = 64 * 1024


class Secrets:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.redactor = Redactor()
        self._fernet: Fernet | None = None
        self._key: bytes | None = None

    def fernet(self) -> Fernet:
        if self._fernet is None:
            self._fernet = load_key(self.home)
            self._key = self._raw_key()
        return self._fernet

    def _raw_key(self) -> bytes:
        inline = os.environ.get("RAILGUARD_SECRET_KEY")
        return inline.encode() if inline else key_file(self.home).read_bytes().strip()

    def refresh(self, store: Store) -> None:
        """Teach the redactor every value, of every version (called at boot and after each change).

        Replicas run the version their release pinned, and logs keep what older ones printed, so a rotated-out
        value must stay hidden as long as anything may still hold it.
        """
        if not secretstore.has_secrets(store):
            return
        self.redactor.update((name, value) for _, name, value in secretstore.every_value(store, self.fernet()))

    def set(self, store: Store, env: str, name: str, value: str, who: str) -> SecretSet:
        if not NAME.match(name):
            raise _invalid(f"'{name}' is not a variable name (letters, digits, '_', not starting with a digit).")
        if name.startswith("RAILGUARD_DB_") and who != MANAGED_BY:
            raise _invalid(f"{name} is the generated password of a managed database: Railguard sets it when it creates "
                           "the database's server, and a new value here would lock every service out.")
        if len(value) < MIN_SECRET_LENGTH or len(value) > MAX_VALUE:
            raise _invalid(f"A secret value must be {MIN_SECRET_LENGTH} to {MAX_VALUE} characters long; shorter "
                           "values cannot be redacted reliably from output.")
        fernet = self.fernet()
        assert self._key is not None
        mine = secretstore.fingerprint(self._key, value)
        for other_env, other_name, other_value in secretstore.values(store, fernet):
            if other_env != env and secretstore.fingerprint(self._key, other_value) == mine:
                raise RailguardError(error(
                    "secret.shared_value", f"'{env}' would share a secret value with '{other_env}'",
                    f"The value given for {name} is already the value of {other_name} in '{other_env}'. "
                    "Environments must not share credentials: a staging mistake would reach production.",
                    f"Create a separate credential for '{env}' and set that instead.", address=f"{env}/{name}"))
        version = secretstore.put(store, fernet, self._key, env, name, value, who)
        self.refresh(store)
        return SecretSet(env=env, name=name, version=version)

    def values_for(self, store: Store, env: str, versions: dict[str, int]) -> dict[str, str]:
        """The values a release pinned (name -> version), for the processes it starts or restarts."""
        if not versions:
            return {}
        return secretstore.values_at(store, self.fernet(), env, versions)


MANAGED_BY = "railguard:databases"  # who sets the passwords of managed databases (no principal has this id)


def _invalid(detail: str) -> RailguardError:
    return RailguardError(error("secret.invalid", "The secret cannot be stored", detail,
                                "Fix the name or value, then run `railguard secret set NAME --env ENV` again."))
