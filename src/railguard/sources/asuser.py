"""Running a command an agent could name without root's authority: whose identity, and the ``setpriv`` line.

Why it exists: a root daemon runs commands whose words, or whose configuration, come from files an agent writes:
the TOML child that parses a large spec (:mod:`railguard.engine.tomlchild`), the ``[alerts]`` command of the
served spec (:mod:`railguard.daemon.alerts`), and ``git`` in the app's repository, whose ``.git/config`` can name
commands (:mod:`railguard.sources.snapshot`). Run as root, the alert command was root's authority for whoever
edits the spec. Here each gets util-linux ``setpriv``'s line for another user with no new privileges (a setuid
program the command execs gains nothing): the TOML child ``nobody``, the others the owner of the folder the file
is in (only a folder only root writes keeps root's authority: root wrote it). Without ``setpriv`` a root caller
gets :class:`NoSetpriv` and runs nothing. It sits with the app's sources because that is what it guards against.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
from pathlib import Path
from typing import NamedTuple


class NoSetpriv(OSError):
    """Root would run a command with its own authority: there is no ``setpriv`` to drop it."""


class Identity(NamedTuple):
    uid: int
    gid: int
    home: str
    own_groups: bool  # a person's account keeps its supplementary groups; ``nobody`` gets none


def nobody() -> Identity:
    """``nobody`` (or the kernel's overflow ids, 65534, where the account is not listed)."""
    try:
        found = pwd.getpwnam("nobody")
    except KeyError:
        return Identity(65534, 65534, "/", False)
    return Identity(found.pw_uid, found.pw_gid, "/", False)


def owner_of(folder: Path) -> Identity:
    """Who a command named by a file in ``folder`` runs as: the folder's owner, whose file it is (root included:
    a folder only root writes holds root's own words); ``nobody`` when others may write the folder too (any of
    them could have written the command) or its owner is unknown."""
    try:
        info = os.stat(folder)
        entry = pwd.getpwuid(info.st_uid)
    except (OSError, KeyError):
        return nobody()
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return nobody()
    return Identity(entry.pw_uid, entry.pw_gid, entry.pw_dir or "/", True)


def argv_as(who: Identity, argv: list[str]) -> list[str]:
    """``argv`` as ``who`` when this process is root (else ``argv`` itself: it has no authority to drop)."""
    if os.geteuid() != 0 or who.uid == 0:
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise NoSetpriv("no setpriv to run the command without root's authority")
    groups = "--init-groups" if who.own_groups else "--clear-groups"
    return [setpriv, f"--reuid={who.uid}", f"--regid={who.gid}", groups, "--no-new-privs", *argv]


def command_as(who: Identity, argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """``argv`` and ``env`` for running as ``who`` (:func:`argv_as`), ``HOME`` made theirs when the authority is
    dropped (root's home is not theirs to read)."""
    wrapped = argv_as(who, argv)
    return wrapped, ({**env, "HOME": who.home} if wrapped is not argv else env)
