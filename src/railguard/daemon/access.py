"""Who is calling: a token, or (in same-user mode) the OS user on the other end of the socket.

``RAILGUARD_TOKEN`` (sent by the client as a bearer token) always wins over the OS
identity, so an agent's shell configured with its token acts as the agent. Without
a token, the owner of the state folder (or root) is ``admin`` in same-user mode; in
token-only mode (``daemon start --require-token``) the OS identity grants nothing.
Whether the caller has a controlling terminal comes from /proc, not from the client.
"""

from __future__ import annotations

import pwd
from collections.abc import Callable
from pathlib import Path

from railguard.model.diagnostics import RailguardError, error
from railguard.model.principals import Principal, Role
from railguard.state import tokens
from railguard.state.store import Store


def has_terminal(pid: int) -> bool:
    """Whether process ``pid`` has a controlling terminal (field 7, tty_nr, of /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return int(fields[4]) != 0
    except (OSError, IndexError, ValueError):
        return False


def authenticate(store: Callable[[], Store], home: Path, bearer: str | None, uid: int, pid: int,
                 require_token: bool) -> Principal:
    """``store`` is opened only for a token: the owner can still stop a daemon whose store is damaged."""
    tty = has_terminal(pid)
    if bearer:
        return tokens.verify(store(), bearer, tty)
    if require_token:
        raise RailguardError(error(
            "auth.token_required", "This daemon accepts only tokens",
            "It runs in token-only mode (--require-token): the caller's OS identity grants nothing.",
            "Set RAILGUARD_TOKEN to a token made with `railguard token create`."))
    owner = home.stat().st_uid
    if uid not in (owner, 0):
        raise RailguardError(error(
            "auth.forbidden", "Only the owner of the state folder may use this daemon",
            f"uid {uid} does not own {home}.", "Use a token (RAILGUARD_TOKEN), or run as the owner."))
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return Principal(id=f"user:{name}", role=Role.admin, kind="user", tty=tty)


