"""A private short folder for Unix sockets whose path in the state folder would be too long.

Why it exists: a Unix socket path is limited to 107 bytes, and deep state folders (CI, pytest) exceed it, so the
daemon's API socket (:func:`railguard.engine.workspace.daemon_socket`), Caddy's admin socket and the DNS
responder's (:mod:`railguard.providers.local.edge`, :mod:`railguard.providers.local.resolver`) then live in a
short per-user folder. A folder at a guessable path in a shared place (``/tmp/railguard-0``) can be made first by
any local user, a deployed app's OS user included; the owner of the folder can rename a socket in it and bind its
own, and would then receive every client's requests (bearer tokens included) and answer with made-up plans and
approvals. So:

- root uses ``/run/railguard/<uid>``: ``/run/railguard`` is made 0755 by root, and nobody else can create or
  rename anything in it; everyone else (and root when ``/run`` is missing or not root's alone) uses
  ``/tmp/railguard-<uid>``, in a sticky ``/tmp`` (others cannot rename what is ours there);
- a folder is created 0700; one that exists is opened with ``O_NOFOLLOW | O_DIRECTORY`` and checked on the open
  descriptor (``fstat``): a directory owned by the expected user. Its mode is fixed, and a folder root makes for
  another user (the edge's ``rg-edge``) is handed over, through that descriptor (``fchmod``, ``fchown``), never by
  path after a check, so a symlink swapped in between changes nothing;
- anything else (another user's folder, a symlink, a file) is refused with ``daemon.unsafe_socket_folder``, naming
  the path and how to remove it; it is never used.

Clients (:class:`railguard.client.Client`) look with ``create=False``: nothing is made, and a folder that fails
the check is refused as well. They also check the uid of the process behind the socket (``SO_PEERCRED``) before
sending anything. In ``model`` so that the engine and the local provider, which may not import each other, share
one rule; the diagnostic's models are imported only on the way out (the CLI's fast path loads no pydantic).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

RUN_BASE = Path("/run/railguard")
SHARED_BASE = Path("/tmp")
# Tests only: a stand-in for /tmp (checked as /tmp is, and used by root too), so a test can plant a hostile
# folder without touching the machine's real one. Unset, the defaults above apply.
TEST_BASE_ENV = "RAILGUARD_TEST_SOCKET_BASE"
CODE = "daemon.unsafe_socket_folder"


def private_dir(uid: int | None = None, gid: int | None = None, *, create: bool = True) -> Path:
    """The private short folder of ``uid`` (by default this process's user), checked, made when ``create``.

    ``uid`` other than our own: only root, which makes the folder and hands it to ``uid``:``gid`` (the edge's
    user, which listens there). ``create=False`` (a client): nothing is made; a folder that does not exist yet is
    answered as it would be (nothing listens there), one that exists must pass the same checks.
    """
    me = os.geteuid()
    uid = me if uid is None else uid
    if uid != me and me != 0:
        raise PermissionError(f"uid {me} cannot make a folder for uid {uid}")
    override = os.environ.get(TEST_BASE_ENV)
    if override:
        return ensure(Path(override) / f"railguard-{uid}", uid, gid, create=create, run_base=None)
    if me == 0 and _root_only(RUN_BASE.parent):
        return ensure(RUN_BASE / str(uid), uid, gid, create=create, run_base=RUN_BASE)
    return ensure(SHARED_BASE / f"railguard-{uid}", uid, gid, create=create, run_base=None)


def ensure(path: Path, uid: int, gid: int | None = None, *, create: bool, run_base: Path | None) -> Path:
    """``path``, a folder of ``uid`` and no one else, under ``run_base`` (root's own, made 0755 here) or, without
    one, under a parent where others cannot rename it (sticky, or writable by its owner only)."""
    if run_base is not None:
        if _checked(run_base, 0, None, 0o755, create=create) is None:
            return path  # a client: nothing made yet, so nothing listens below
    else:
        _check_parent(path.parent)
    _checked(path, uid, gid, 0o700, create=create)
    return path


def _checked(path: Path, uid: int, gid: int | None, mode: int, *, create: bool) -> Path | None:
    """Open ``path`` without following a symlink and check it on the descriptor; fix its mode (and hand it to
    ``uid``, when root made it) through that descriptor. None: it does not exist and ``create`` is false."""
    me = os.geteuid()
    if create:
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            pass
        except OSError as exc:
            raise unsafe(path, f"it cannot be created: {exc.strerror or exc}", owner=uid) from exc
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        if create:  # removed between mkdir and open: someone else is at work here
            raise unsafe(path, "it disappeared while it was being created", owner=uid) from None
        return None
    except OSError as exc:  # ELOOP: a symlink; ENOTDIR: a file, a socket
        raise unsafe(path, "it is a symbolic link or not a folder", owner=uid) from exc
    try:
        found = os.fstat(fd)
        if not stat.S_ISDIR(found.st_mode):  # pragma: no cover - O_DIRECTORY refused it already
            raise unsafe(path, "it is not a folder", owner=uid)
        # Root made it (just now, or a start interrupted before handing it over): only root can, so it is ours to
        # hand over. Any other owner is someone else's folder.
        handed = create and me == 0 and found.st_uid == 0 and uid != 0
        if found.st_uid != uid and not handed:
            raise unsafe(path, f"it belongs to uid {found.st_uid}, not uid {uid}", owner=uid)
        if create:
            if handed:
                os.fchown(fd, uid, -1 if gid is None else gid)
            if stat.S_IMODE(found.st_mode) != mode:
                os.fchmod(fd, mode)
        elif found.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise unsafe(path, f"others may write in it (mode {stat.S_IMODE(found.st_mode):o})", owner=uid)
        return path
    finally:
        os.close(fd)


def _check_parent(parent: Path) -> None:
    """A shared parent (``/tmp``) must keep others from renaming what is ours: sticky, or writable by its owner only,
    and that owner root or us."""
    try:
        found = os.stat(parent)
    except OSError as exc:
        raise unsafe(parent, f"it cannot be read: {exc.strerror or exc}", owner=os.geteuid()) from exc
    writable_by_others = found.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    why = ("it is not a folder" if not stat.S_ISDIR(found.st_mode) else
           f"it belongs to uid {found.st_uid}, who could rename what is in it" if found.st_uid not in (0, os.geteuid())
           else f"others may write in it without the sticky bit (mode {stat.S_IMODE(found.st_mode):o}), so they "
                "could rename what is in it" if writable_by_others and not found.st_mode & stat.S_ISVTX else None)
    if why is not None:
        raise unsafe(parent, why, owner=os.geteuid(), parent=True)


def _root_only(folder: Path) -> bool:
    """Whether ``folder`` is a directory that only root can change (``/run`` on a usual Linux)."""
    try:
        found = os.lstat(folder)
    except OSError:
        return False
    return (stat.S_ISDIR(found.st_mode) and found.st_uid == 0
            and not found.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def unsafe(path: Path, why: str, *, owner: int, parent: bool = False) -> Exception:
    """``daemon.unsafe_socket_folder``: ``path`` is not ours to put a socket in (or to trust one in)."""
    from railguard.model.diagnostics import RailguardError, error

    fix = (f"Make {path} a folder that only root can change, or sticky (`chmod 1777 {path}` as root, as /tmp "
           "is), or use a state folder whose path is short enough for its socket (under 100 bytes)."
           if parent else
           f"As root, see who made it (`ls -ld {path}`) and remove it (`rm -rf {path}`), then start again. A "
           "folder made there by another OS user (a deployed app's) means that user tried to take the daemon's "
           "socket: find out how it runs code on this machine.")
    return RailguardError(error(
        CODE, f"Refusing the socket folder {path}",
        f"Railguard keeps its sockets in a private folder of uid {owner} when the state folder's path is too long "
        f"for a socket; {path} is not safe to use: {why}. Whoever controls that folder could replace the daemon's "
        "socket, read the tokens clients send and answer in the daemon's name, so it is not used.",
        fix, address=str(path)))
