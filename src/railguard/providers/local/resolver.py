"""The edge's upstream directory: a tiny DNS responder that tells Caddy which replicas each service has.

Caddy's ``reverse_proxy`` asks it for the SRV records of each route's name, ``r<hash of host and path>.<env>.
railguard.internal.`` (its ``dynamic_upstreams`` with the ``srv`` source), and caches the answer for the route's
refresh interval. A
switch only publishes a new table here: Caddy's servers, listeners and client connections stay as they are
(a config change would replace the servers and close every idle keep-alive connection). Owned by
:class:`railguard.providers.local.provider.LocalProvider`, which publishes after every change of a live set.

It listens on a Unix socket inside a 0700 folder, not a UDP port, so no other local user (and no app replica,
which runs as its own user) can answer in its place or even ask. Go's resolver, which Caddy uses, treats a
Unix stream connection as a datagram connection (``*net.UnixConn`` is a ``net.PacketConn``): one query per
connection, written in one piece and answered in one piece, without the 2-byte length prefix of DNS over TCP.
SRV targets are ``localhost.``, which this responder also answers (A 127.0.0.1): Caddy's dialer does not read
the hosts file for an absolute name (measured with Caddy 2.11), so the route's transport resolves through here too.

Because dialing depends on it, the responder is its own small process (stdlib only, run from this file), started
and adopted with the environment's Caddy by :class:`railguard.providers.local.edge.CaddyEdge`, not a thread of
the daemon: apps and the edge keep serving while no daemon runs. It reads its table from a JSON file the daemon
replaces atomically (:meth:`ResolverProcess.publish`), checked on every query (one small read).

A switch must not return while Caddy may still route by the answer it cached before (for its refresh interval).
Instead of sleeping a whole interval, the daemon asks the responder over a second socket beside the first
(``.ctl``, same folder, same user): the responder loads the new table and says, per name, how long ago it last
answered that name and whether that answer already came from the new table (:meth:`ResolverProcess.settle`).
A name last answered longer ago than the interval has no fresh answer cached in Caddy; one answered from the new
table is switched; only the rest is waited for, and no longer than its cached answer can live.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the responder's own process runs this file with the standard library only
    from railguard.providers.local.isolation import RunAs

ZONE = "railguard.internal."
TARGET = "localhost."
_MAX_ANSWER = 1232  # what Go's resolver reads from a datagram connection
_QTYPE_A, _QTYPE_SRV, _QTYPE_ANY, _CLASS_IN = 1, 33, 255, 1
_LOOPBACK = bytes([127, 0, 0, 1])
_TTL = 1  # Caddy ignores TTLs (its refresh interval rules); other readers should not cache long either


def srv_name(env: str, label: str) -> str:
    """The name Caddy looks up for one route's live replicas (absolute: no search domains apply)."""
    return f"{label}.{env}.{ZONE}"


def _encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii")
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def _parse_question(query: bytes) -> tuple[int, int, str, int, bytes] | None:
    """(id, flags, lower-cased name, qtype, raw question) of a one-question query, or None if malformed."""
    if len(query) < 12:
        return None
    ident, flags, qdcount = struct.unpack("!HHH", query[:6])
    if qdcount != 1 or flags & 0x8000:
        return None
    labels, pos = [], 12
    while True:
        if pos >= len(query):
            return None
        size = query[pos]
        if size == 0:
            pos += 1
            break
        if size & 0xC0 or pos + 1 + size > len(query):
            return None  # no compression in a question
        labels.append(query[pos + 1:pos + 1 + size].decode("ascii", "replace").lower())
        pos += 1 + size
    if pos + 4 > len(query):
        return None
    qtype, _qclass = struct.unpack("!HH", query[pos:pos + 4])
    return ident, flags, ".".join(labels) + ".", qtype, query[12:pos + 4]


def answer(query: bytes, table: Mapping[str, tuple[int, ...]]) -> bytes | None:
    """The response to ``query`` from ``table`` (name -> ports); None for input not worth an answer (pure)."""
    parsed = _parse_question(query)
    if parsed is None:
        return None
    ident, flags, name, qtype, question = parsed
    ports = table.get(name)
    rd = flags & 0x0100
    if name == TARGET:
        # The SRV targets' address; AAAA and others get an empty answer (the edge dials tcp4).
        records = b""
        if qtype in (_QTYPE_A, _QTYPE_ANY):
            records = struct.pack("!HHHIH", 0xC00C, _QTYPE_A, _CLASS_IN, _TTL, 4) + _LOOPBACK
        header = struct.pack("!HHHHHH", ident, 0x8000 | 0x0400 | rd, 1, 1 if records else 0, 0, 0)
        return header + question + records
    # Names we own but do not know are NXDOMAIN; anything outside our zone is refused (we are no recursor).
    rcode = 0 if ports is not None else (3 if name.endswith(ZONE) else 5)
    records = b""
    if ports and qtype in (_QTYPE_SRV, _QTYPE_ANY):
        target = _encode_name(TARGET)
        for port in ports:
            rdata = struct.pack("!HHH", 0, 1, port) + target
            # 0xC00C: the question's name, by compression pointer.
            records += struct.pack("!HHHIH", 0xC00C, _QTYPE_SRV, _CLASS_IN, _TTL, len(rdata)) + rdata
    count = len(ports) if records and ports else 0
    header = struct.pack("!HHHHHH", ident, 0x8000 | 0x0400 | rd | rcode, 1, count, 0, 0)
    body = header + question + records
    if len(body) > _MAX_ANSWER:
        # Never truncate silently: a partial set would be routed as if it were the whole one.
        return struct.pack("!HHHHHH", ident, 0x8000 | 0x0400 | rd | 2, 1, 0, 0, 0) + question
    return body


def socket_path(folder: Path, run_as: RunAs | None = None) -> Path:
    """Where the responder listens: in ``folder``, or a private short path when ``folder`` is too deep."""
    path = folder / "resolver.sock"
    if len(os.fsencode(path)) <= 100:
        return path
    return short_dir(run_as) / f"dns-{hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]}.sock"


def short_dir(run_as: RunAs | None) -> Path:
    """A private folder for sockets whose path would be too long, owned by whoever listens there (the edge's user
    when given: root makes it and hands it over through the open folder, :mod:`railguard.model.privatedir`)."""
    from railguard.model.privatedir import private_dir  # here: the responder's own process runs on stdlib only

    if run_as is None:
        return private_dir()
    return private_dir(run_as.uid, run_as.gid)


def _as_user(run_as: RunAs | None) -> dict[str, Any]:
    """``subprocess`` arguments that start the responder as the edge's user (nothing: the daemon's own)."""
    return {} if run_as is None else {"user": run_as.uid, "group": run_as.gid, "extra_groups": []}


def hand_to(folder: Path, run_as: RunAs) -> None:
    """Make the edge's folder (and what is in it) the edge user's; the daemon, root, still reads and writes it."""
    for root, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            os.lchown(Path(root) / name, run_as.uid, run_as.gid)
    os.chown(folder, run_as.uid, run_as.gid)


class _Table:
    """The published table, re-read whenever the file's bytes changed.

    Not by ``stat``: two publishes within one timestamp tick can leave the same size, mtime and even inode (the
    one freed by the first replace is reused by the second), and the second table would go unseen. The file is
    a few hundred bytes; reading it per query costs microseconds.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.raw: bytes | None = None
        self.table: dict[str, tuple[int, ...]] = {}
        self.generation = 0  # counts the tables loaded, so an answer can say which table it came from

    def current(self) -> dict[str, tuple[int, ...]]:
        try:
            raw = self.path.read_bytes()
            if raw != self.raw:
                loaded = json.loads(raw)
                self.table = {str(k).lower(): tuple(int(p) for p in v) for k, v in loaded.items()}
                self.raw = raw
                self.generation += 1
        except (OSError, ValueError, TypeError, AttributeError):
            pass  # keep answering from the last good table rather than forget every replica
        return self.table


def control_path(sock_path: Path) -> Path:
    """The control socket beside the DNS socket (same private folder and owner)."""
    return sock_path.with_suffix(".ctl")


def _listen(path: Path) -> socket.socket:
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        server.bind(str(path))
    finally:
        os.umask(old)
    server.listen(128)
    return server


def report(names: list[str], table: _Table, answered: Mapping[str, tuple[float, int]], now: float,
           started: float) -> dict[str, Any]:
    """The control answer: per name, seconds since its last answer and whether that came from the current
    table (``table`` is re-read first, so a table published before the request counts as current) (pure but the
    re-read)."""
    table.current()
    out: dict[str, Any] = {"up": now - started, "names": {}}
    for name in names:
        last = answered.get(name.lower())
        out["names"][name] = None if last is None else [now - last[0], last[1] == table.generation]
    return out


def may_be_cached(info: Mapping[str, Any] | None, window: float) -> list[str] | None:
    """The names Caddy may still route by an answer from an older table (pure): those answered from one within
    ``window`` seconds. None when unknown: no control answer, or a responder younger than ``window`` (the answers
    of the one before it may still be cached)."""
    if info is None or float(info.get("up", 0.0)) < window:
        return None
    return [name for name, last in info["names"].items()
            if last is not None and not last[1] and float(last[0]) < window]


def _wake_at(names: list[str], answered: Mapping[str, tuple[float, int]], window: float, deadline: float) -> float:
    """When a held control request must be looked at again without a query: its deadline, or the moment the
    oldest answer it waits on ages past ``window`` (pure)."""
    ages = [answered[n.lower()][0] + window for n in names if n.lower() in answered]
    return min([deadline, *ages])


def serve(sock_path: Path, table_path: Path) -> None:
    """The responder's loop (its own process): one query per connection, answered inline; control requests on
    the ``.ctl`` socket (one JSON line in, one out) interleave with them.

    A control request with ``wait`` (seconds, at most 1) and ``window`` is held until none of its names may still
    be cached from an older table (see :func:`may_be_cached`) or the wait is over, and answered then: a switch
    hears the moment Caddy asked again instead of polling for it."""
    table = _Table(table_path)
    started = time.monotonic()
    answered: dict[str, tuple[float, int]] = {}  # name -> (when last answered, the table generation it came from)
    held: list[tuple[socket.socket, list[str], float, float]] = []  # (connection, names, deadline, window)
    server = _listen(sock_path)
    control = _listen(control_path(sock_path))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        now = time.monotonic()
        timeout = max(0.0, min(_wake_at(n, answered, w, d) for _, n, d, w in held) - now) if held else None
        ready, _, _ = select.select([server, control], [], [], timeout)
        for listener in ready:
            conn, _ = listener.accept()
            keep = False
            try:
                conn.settimeout(1.0)
                with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
                    request = conn.recv(65536)
                    if listener is control:
                        asked = json.loads(request or b"{}")
                        names = [str(n) for n in asked.get("names", [])]
                        if asked.get("wait"):
                            held.append((conn, names, time.monotonic() + min(float(asked["wait"]), 1.0),
                                         float(asked.get("window", 0.0))))
                            keep = True
                            continue
                        body = report(names, table, answered, time.monotonic(), started)
                        conn.sendall(json.dumps(body).encode() + b"\n")
                        continue
                    current = table.current()
                    response = answer(request, current) if request else None
                    if response is not None:
                        conn.sendall(response)
                        parsed = _parse_question(request)
                        if parsed is not None and parsed[2] in current:
                            answered[parsed[2]] = (time.monotonic(), table.generation)
            finally:
                if not keep:
                    conn.close()
        if held:
            held = _release(held, table, answered, started)


def _release(held: list[tuple[socket.socket, list[str], float, float]], table: _Table,
             answered: Mapping[str, tuple[float, int]], started: float) -> list[tuple[socket.socket, list[str],
                                                                                      float, float]]:
    """Answer the held control requests that are settled or due; return the others."""
    still = []
    for conn, names, deadline, window in held:
        now = time.monotonic()
        body = report(names, table, answered, now, started)
        if may_be_cached(body, window) and now < deadline:
            still.append((conn, names, deadline, window))
            continue
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps({**body, "held": True}).encode() + b"\n")
        conn.close()
    return still


class ResolverProcess:
    """Start, adopt, feed and stop the responder of one edge folder (the pattern of the edge's Caddy)."""

    def __init__(self, run_dir: Path, run_as: RunAs | None = None) -> None:
        self.run_dir = run_dir
        self.run_as = run_as  # the edge's user when isolated (see CaddyEdge)
        self.path = socket_path(run_dir, run_as)
        self.table_path = run_dir / "upstreams.json"
        self.pid_path = run_dir / "resolver.pid"
        self.log_path = run_dir / "resolver.out"
        self._child: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """The address Caddy's config names (its network-address syntax)."""
        return f"unix/{self.path}"

    def _argv(self) -> list[str]:
        # -I: nothing of the environment or the user's site-packages; the file needs only the standard library.
        return [sys.executable, "-I", str(Path(__file__).absolute()), "--socket", str(self.path),
                "--table", str(self.table_path)]

    def pid(self) -> int | None:
        if self._child is not None:
            self._child.poll()
        try:
            record = json.loads(self.pid_path.read_text())
            pid, started = int(record["pid"]), float(record["create_time"])
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmd = handle.read().split(b"\0")
            with open(f"/proc/{pid}/stat") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None
        import psutil  # only here: the responder's own process never needs it

        try:
            same = abs(psutil.Process(pid).create_time() - started) < 0.5
        except psutil.Error:
            return None
        return pid if same and state != "Z" and os.fsencode(str(self.table_path)) in cmd else None

    def start(self, timeout: float = 10.0) -> None:
        """Run the responder unless it already runs (a previous daemon's is adopted as it is, unless it listens
        elsewhere: an earlier version's, whose short folder was ``/tmp/railguard-<uid>``, is replaced)."""
        pid = self.pid()
        if pid is not None and not self._listens_here(pid):
            self.stop(timeout)
        if self.pid() is None:
            if not self.table_path.exists():
                self.publish({})
            with open(self.log_path, "ab") as log:
                self._child = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                               env={"PATH": os.environ.get("PATH", "")}, cwd=self.run_dir,
                                               start_new_session=True, **_as_user(self.run_as))
            import psutil

            created = psutil.Process(self._child.pid).create_time()
            tmp = self.pid_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"pid": self._child.pid, "create_time": created}))
            os.replace(tmp, self.pid_path)
        deadline = time.monotonic() + timeout
        while not self._answers():
            if time.monotonic() > deadline or (self._child is not None and self._child.poll() is not None):
                tail = self.log_path.read_text(errors="replace")[-1000:] if self.log_path.exists() else ""
                raise OSError(f"the edge's upstream resolver did not start; its output:\n{tail}")
            time.sleep(0.01)

    def _listens_here(self, pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmd = handle.read().split(b"\0")
        except OSError:
            return True  # gone meanwhile: nothing to replace
        return b"--socket" in cmd and os.fsencode(str(self.path)) in cmd

    def _answers(self) -> bool:
        probe = struct.pack("!HHHHHH", 7, 0, 1, 0, 0, 0) + _encode_name(TARGET) + struct.pack("!HH", 1, 1)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(1.0)
                sock.connect(str(self.path))
                sock.sendall(probe)
                return sock.recv(512)[:2] == probe[:2]
        except OSError:
            return False

    def publish(self, table: dict[str, tuple[int, ...]]) -> None:
        """Answer from ``table`` from now on: one atomic file replace, read by the responder's next query."""
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.table_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: list(v) for k, v in sorted(table.items())}))
        if self.run_as is not None:  # the responder, the edge's user, reads it (the daemon's umask is 077)
            os.chown(tmp, self.run_as.uid, self.run_as.gid)
        os.replace(tmp, self.table_path)

    def settle(self, names: list[str], refresh: float, margin: float, poll: float = 0.002) -> float:
        """Return once Caddy can no longer route ``names`` by an answer from before the last :meth:`publish`.

        A cached answer lives ``refresh`` seconds from when Caddy got it (plus ``margin`` for the time between
        our reply and Caddy's clock reading). Asks the responder (see the module docstring) and waits only for
        names answered from an older table within that time, until each is answered anew or its old answer
        expires; a responder without a control socket (one started by an older daemon, adopted) gets the
        whole interval. Returns the seconds waited.
        """
        begin = time.monotonic()
        limit = begin + refresh + margin  # never longer than the old fixed wait
        while True:
            # Held by the responder until settled or the limit (one request); one older than that answers at once
            # (no "held" in its answer), and is asked again every ``poll``.
            info = self._control(names, wait=max(0.0, limit - time.monotonic()), window=refresh + margin)
            now = time.monotonic()
            waiting = may_be_cached(info, refresh + margin)
            if waiting is None:
                time.sleep(max(0.0, limit - now))
                return time.monotonic() - begin
            if not waiting or now >= limit:
                return now - begin
            if info is None or not info.get("held"):  # an older responder: it answered at once
                time.sleep(min(poll, max(0.0, limit - now)))

    def _control(self, names: list[str], wait: float = 0.0, window: float = 0.0) -> dict[str, Any] | None:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(1.0 + wait)
                sock.connect(str(control_path(self.path)))
                asked: dict[str, Any] = {"names": names}
                if wait > 0:
                    asked |= {"wait": wait, "window": window}
                sock.sendall(json.dumps(asked).encode())
                raw = b""
                while not raw.endswith(b"\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    raw += chunk
            info = json.loads(raw)
            return info if isinstance(info, dict) and isinstance(info.get("names"), dict) else None
        except (OSError, ValueError):
            return None

    def table(self) -> dict[str, tuple[int, ...]]:
        try:
            return {k: tuple(v) for k, v in json.loads(self.table_path.read_text()).items()}
        except (OSError, ValueError):
            return {}

    def stop(self, timeout: float = 5.0) -> None:
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.pid() is not None and time.monotonic() < deadline:
                if self._child is not None:
                    self._child.poll()
                time.sleep(0.01)
            if (still := self.pid()) is not None:
                with contextlib.suppress(OSError):
                    os.kill(still, signal.SIGKILL)
        if self._child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._child.wait(timeout=1.0)
            self._child = None
        self.pid_path.unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)
        control_path(self.path).unlink(missing_ok=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Railguard's edge upstream resolver (started by the daemon)")
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--table", type=Path, required=True)
    args = parser.parse_args()
    serve(args.socket, args.table)
