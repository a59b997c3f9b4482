"""The daemon's mode (token-only, isolation), persisted in the state folder so no restart weakens it.

``railguard daemon start --require-token`` records token-only mode in ``daemon.mode.json``; every
later start of that state folder (``daemon start`` without flags, the client's start on demand after
a crash) reads it back and stays token-only. A daemon that once ran isolated refuses to start
without isolation (the state folder moved, the daemon lost root) unless ``--allow-shared-user`` says
so. Only an explicit ``daemon start --same-user`` goes back to same-user mode. Token-only mode without
isolation is refused too unless ``--allow-shared-user``: app code running as the daemon's user could
otherwise write the state and forge what the tokens protect. Called by :mod:`railguard.daemon.lifecycle`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ValidationError

from railguard.model.diagnostics import RailguardError, error

MODE_FILE = "daemon.mode.json"
ISOLATED = "isolated"


class Mode(BaseModel):
    require_token: bool = False
    allow_shared_user: bool = False
    isolation: str = ""  # the level the daemon last ran with


def load(home: Path) -> Mode:
    try:
        return Mode.model_validate_json((home / MODE_FILE).read_text())
    except FileNotFoundError:
        return Mode()
    except (OSError, ValidationError) as exc:
        raise RailguardError(error(
            "daemon.mode_unreadable", "The daemon's recorded mode cannot be read",
            f"{home / MODE_FILE} is damaged ({exc}); starting in a weaker mode than the one recorded would be a "
            "silent downgrade.",
            "Restore the file, or start the daemon with the mode you want: `railguard daemon start "
            "--require-token` (or `--same-user`).")) from exc


def save(home: Path, mode: Mode) -> None:
    tmp = home / f".{MODE_FILE}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(mode.model_dump()))
    os.replace(tmp, home / MODE_FILE)


def resolve(home: Path, *, require_token: bool, allow_shared_user: bool, same_user: bool,
            isolation: str, reason: str) -> Mode:
    """The mode to run in: the flags, never weaker than what is recorded unless asked; refuses a weak start."""
    stored = load(home)
    if same_user:
        wanted = Mode(require_token=False, allow_shared_user=allow_shared_user)
    else:
        wanted = Mode(require_token=require_token or stored.require_token,
                      allow_shared_user=allow_shared_user or (stored.allow_shared_user and not require_token))
    if isolation != ISOLATED and not wanted.allow_shared_user:
        if wanted.require_token:
            raise _refused("Token-only mode needs workload isolation", reason,
                           "app code would run as the daemon's user and could write the state folder, so tokens "
                           "would not be a boundary")
        if stored.isolation == ISOLATED:
            raise _refused("This daemon ran with workload isolation and cannot have it now", reason,
                           "starting without it would silently weaken what separates the environments")
    wanted.isolation = isolation
    save(home, wanted)
    return wanted


def _refused(summary: str, reason: str, why: str) -> RailguardError:
    return RailguardError(error(
        "daemon.not_isolated", summary,
        f"Isolation is not available: {reason}; {why}.",
        "Run the daemon as root on a state folder other users can traverse (docs/guardrails.md), or accept "
        "the documented limits with `railguard daemon start --allow-shared-user`."))
