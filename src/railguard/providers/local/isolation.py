"""Workload isolation of the local runtime: which OS user runs what, and who may touch which folder.

The app is untrusted code. When the daemon has the privilege for it (it runs as root), each
environment's replicas, release commands and exec health checks run as that environment's own
unprivileged user (``rg-<app>-<env>``, created on demand with ``useradd --system``, or the spec's
``environments.<env>.user``), with no supplementary groups; the daemon stays root. Different users
give the rest by themselves: a replica cannot read another environment's ``/proc/<pid>/environ``,
cannot join its listening sockets (``SO_REUSEPORT`` needs the same user), cannot write the state
folder (root's, 0711, its files 0600), an artifact (root's, read-only) or another environment's data
folder (owned by its user, 0700). Without the privilege (or with isolation switched off) everything
runs as the daemon's user: ``shared-user``, whose limits docs/guardrails.md lists.

Called by the local provider (level at construction, users and folders before each start) and by
:mod:`railguard.providers.local.processes` (the spawn itself).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from railguard.model.spec import RESERVED_USER_PATTERN

log = logging.getLogger(__name__)

ISOLATED, SHARED = "isolated", "shared-user"
EDGE_USER = "rg-edge"  # Caddy's own user, when the edge launches it as one (see docs/guardrails.md)
# Folders of the state folder that other users must be able to traverse (never list, never write).
_TRAVERSABLE = {"artifacts", "data", "edge",
                "databases"}  # each cluster's own user reaches its folder (0700, its own) through it
_USER_MAX = 32  # useradd's limit
_lock = threading.Lock()
_sealed: set[str] = set()


@dataclass(frozen=True)
class Level:
    """Whether this runtime isolates workloads, and why (not)."""

    level: str  # ISOLATED or SHARED
    reason: str

    @property
    def isolated(self) -> bool:
        return self.level == ISOLATED


@dataclass(frozen=True)
class RunAs:
    """An OS user a process is started as."""

    name: str
    uid: int
    gid: int


def detect(home: Path, wanted: str | None = None) -> Level:
    """The isolation level this state folder can have (``wanted``: auto, off; default $RAILGUARD_ISOLATION)."""
    wanted = (wanted or os.environ.get("RAILGUARD_ISOLATION") or "auto").lower()
    if wanted == "off":
        return Level(SHARED, "isolation is switched off (RAILGUARD_ISOLATION=off)")
    if os.geteuid() != 0:
        return Level(SHARED, "the daemon does not run as root, so every app process runs as its user")
    if shutil.which("useradd") is None:
        return Level(SHARED, "useradd is not installed, so no environment user can be created")
    blocked = unreachable(home)
    if blocked is not None:
        return Level(SHARED, f"{blocked} is not traversable by other users (chmod o+x), so an environment user "
                             "could not reach its artifact")
    base = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    if unreachable(base) is not None or not os.stat(base).st_mode & stat.S_IXOTH:
        return Level(SHARED, f"the Python the artifacts' virtualenvs are made from ({base}) cannot be run by other "
                             "users")
    return Level(ISOLATED, "each environment runs as its own OS user")


def unreachable(home: Path) -> Path | None:
    """The first ancestor of the state folder another user cannot traverse, if any."""
    for folder in reversed(home.resolve().parents):
        try:
            if not os.stat(folder).st_mode & stat.S_IXOTH:
                return folder
        except OSError:
            return folder
    return None


def user_name(app: str | None, env: str, home: Path) -> str:
    """``rg-<app>-<env>``, lower-case and at most 32 characters (a hash keeps long names distinct)."""
    base = f"rg-{app}-{env}" if app else f"rg-{hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:8]}-{env}"
    name = re.sub(r"[^a-z0-9_-]", "-", base.lower())
    if len(name) > _USER_MAX:
        name = name[:_USER_MAX - 9] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return name


def scratch_user(app: str) -> str:
    """``rg-scratch-<app>``: the doctor's scratch runs of the app (never an environment's user, never root)."""
    name = re.sub(r"[^a-z0-9_-]", "-", f"rg-scratch-{app}".lower())
    if len(name) > _USER_MAX:
        name = name[:_USER_MAX - 9] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return name


# Accounts that are Railguard's own for other purposes: never an environment's, whatever its spec says.
RESERVED_USER = re.compile(RESERVED_USER_PATTERN)
LEDGER = "users.json"  # in the state folder: which environment each account was created or claimed for


class UserTaken(OSError):
    """An account the spec names that is not the environment's to run as (see :func:`claim_user`)."""


def claim_user(home: Path, env: str, name: str, named_by_spec: bool, app: str | None = None) -> RunAs:
    """The account ``env``'s processes run as, created on first use and bound to ``env`` for good.

    The spec (the agent's text) can name the account: it must then be one Railguard creates (it does not exist
    yet) or one already bound to this environment in the state folder's ledger; never an existing login, another
    environment's user, a database server's (``*_pg``), the edge's or a build's. A default ``rg-<app>-<env>``
    created before the ledger existed is bound on first sight.
    """
    # The doctor's scratch deployment runs as its own rg-scratch-<app> (its app named scratch-<app>); a spec can
    # never name that user (validation refuses reserved names), so only the doctor reaches this.
    doctors = app is not None and app.startswith("scratch-") and name == scratch_user(app.removeprefix("scratch-"))
    named_by_spec = named_by_spec and not doctors  # the doctor made that user itself (doctor/scratch.py)
    if RESERVED_USER.match(name) and not doctors:
        raise UserTaken(f"{name} is one of Railguard's own accounts (edge, builds, scratch runs, database servers)")
    with _lock:
        ledger = _read_ledger(home)
        owner = ledger.get(name)
        if owner is not None and owner != env:
            raise UserTaken(f"{name} is environment {owner}'s user")
        if owner is None and named_by_spec:
            try:
                pwd.getpwnam(name)
            except KeyError:
                pass
            else:
                raise UserTaken(f"{name} is an existing account that Railguard did not create for {env}")
    run_as = ensure_user(name)
    if owner is None:
        with _lock:
            ledger = _read_ledger(home)
            if ledger.setdefault(name, env) != env:
                raise UserTaken(f"{name} is environment {ledger[name]}'s user")
            _write_ledger(home, ledger)
    return run_as


def _read_ledger(home: Path) -> dict[str, str]:
    try:
        data = json.loads((home / LEDGER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:  # refuse rather than forget who owns which account
        raise UserTaken(f"the account ledger {home / LEDGER} cannot be read: {exc}") from exc
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write_ledger(home: Path, ledger: dict[str, str]) -> None:
    tmp = home / f".{LEDGER}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(ledger, out, indent=1, sort_keys=True)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, home / LEDGER)


def ensure_user(name: str) -> RunAs:
    """The user, created (system user, own group, no login, no home) when it does not exist yet."""
    with _lock:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            done = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
                                   "/nonexistent", "--shell", "/usr/sbin/nologin", name],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise OSError(f"useradd {name} failed: {done.stderr.strip() or done.returncode}") from None
            entry = pwd.getpwnam(name)
    if entry.pw_uid == 0:
        raise OSError(f"the user {name} is root; an environment must run as an unprivileged user")
    return RunAs(name, entry.pw_uid, entry.pw_gid)


_starting: list[Callable[[RunAs, str | None], None]] = []  # called before a process of an environment's user starts


def on_start(callback: Callable[[RunAs, str | None], None]) -> Callable[[], None]:
    """Call ``callback`` before any replica or command starts as an OS user other than the daemon's (the daemon's
    kernel audit covers that user's uid before its first syscall); returns the function that stops it."""
    _starting.append(callback)
    return lambda: _starting.remove(callback) if callback in _starting else None


def starting(run_as: RunAs | None, env: str | None) -> None:
    """A process of environment ``env`` is about to start as ``run_as`` (None: the daemon's own user, nothing to
    tell)."""
    if run_as is None:
        return
    for callback in list(_starting):
        try:
            callback(run_as, env)
        except Exception:  # a watcher's failure must never stop a replica from starting
            logging.getLogger("railguard.daemon").exception("start watcher failed for %s", run_as.name)


def lookup(name: str | None) -> RunAs | None:
    """The user a stored replica spec names (None: the daemon's own)."""
    return None if name is None else ensure_user(name)


def protect_home(home: Path) -> None:
    """State folder 0711 owned by the daemon's user; everything in it private except the traversable folders.

    Run at boot with the daemon's umask at 077, so files made later (the database's WAL) are private too.
    """
    home.chmod(0o711)
    for entry in home.iterdir():
        try:
            mode = entry.lstat().st_mode
            if stat.S_ISLNK(mode):
                continue
            if entry.name in _TRAVERSABLE and stat.S_ISDIR(mode):
                entry.chmod(0o711)
            else:
                entry.chmod(stat.S_IMODE(mode) & 0o700)
        except OSError as exc:  # a file that vanished meanwhile
            log.debug("cannot protect %s: %s", entry, exc)
    for folder in _TRAVERSABLE:
        (home / folder).mkdir(mode=0o711, exist_ok=True)
        (home / folder).chmod(0o711)


def seal_artifact(path: Path) -> None:
    """Make a built artifact the daemon user's and read-only for everyone else (once per artifact and run).

    Replicas of every environment that runs it read it; none may change it, so a promotion ships exactly
    the code that was reviewed and soaked.
    """
    key = str(path)
    if key in _sealed:
        return
    owner = os.geteuid()
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            _seal(Path(root) / name, owner)
    _seal(path, owner)
    _sealed.add(key)


def _seal(path: Path, owner: int) -> None:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        if info.st_uid != owner:
            os.lchown(path, owner, -1)
        return
    if info.st_uid != owner:
        os.chown(path, owner, -1)
    mode = stat.S_IMODE(info.st_mode) & ~0o022 & ~stat.S_ISUID & ~stat.S_ISGID
    mode |= 0o044 | (0o011 if stat.S_ISDIR(info.st_mode) or mode & 0o100 else 0)
    if mode != stat.S_IMODE(info.st_mode):
        path.chmod(mode)


class FolderTaken(OSError):
    """An existing folder that is not Railguard's to hand over (see :func:`prepare_data`)."""


def prepare_data(path: Path, run_as: RunAs | None, adopt: bool = False) -> None:
    """The environment's data folder: its user's alone (0700), created when missing.

    The folder's path comes from the spec, which the agent writes, and this runs as root: so an existing folder is
    handed over only when it is empty, already the user's, or ``adopt`` (the default folder inside the state
    folder, whose files only Railguard's environments wrote: a first isolated run after shared-user ones).
    Anything else (``/etc``, a home folder, Railguard's own keys) is refused with :class:`FolderTaken`, never
    chowned. A handed-over folder's files are changed one by one without following links, and a file with
    another hard link is left alone (the same file is elsewhere too, and may be anyone's).
    """
    try:
        path.mkdir(parents=True)
        created = True
    except FileExistsError:
        created = False
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise FolderTaken(f"{path} is not a folder (a link or a file): a data folder must be a real folder")
    if run_as is None:
        return
    if (info.st_uid, info.st_gid) != (run_as.uid, run_as.gid):
        if not (created or adopt or _empty(path)):
            owner = _owner_name(info.st_uid)
            raise FolderTaken(f"{path} already exists, is not empty and belongs to {owner}: Railguard hands an "
                              f"environment only a new or empty folder, never someone else's files (to give this "
                              f"one to the environment on purpose: chown -R {run_as.name} {path})")
        for root, dirs, files in os.walk(path):
            for name in [*dirs, *files]:
                entry = Path(root) / name
                found = os.lstat(entry)
                if not stat.S_ISDIR(found.st_mode) and found.st_nlink > 1:
                    continue
                os.lchown(entry, run_as.uid, run_as.gid)
        os.chown(path, run_as.uid, run_as.gid)
    path.chmod(0o700)


def _empty(path: Path) -> bool:
    with os.scandir(path) as entries:
        return next(entries, None) is None


def _owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
