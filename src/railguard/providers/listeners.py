"""Who listens on a loopback TCP port, by the kernel's word: ``/proc/net/tcp`` and ``/proc/net/tcp6``.

Replicas of the local runtime are reached by the edge on ``127.0.0.1:PORT``; any local process may try to bind
a port that a replica left free (an app can read these same tables: they are world-readable and list every
listener's port and uid). So before a port is routed, and at every health check, the local runtime asks who
holds it (:mod:`railguard.providers.local.ownership`), and the daemon asks who held a port when the kernel
refused a bind on it (:mod:`railguard.daemon.service`, to attribute the refusal). One read of the two tables
answers every port at once: a check pass parses them once, not once per replica.

Only listeners a connection to ``127.0.0.1:PORT`` can reach are kept: bound to 127.0.0.1, to the IPv4 wildcard,
to the IPv6 wildcard (dual-stack) or to the IPv4-mapped forms of those. Linux only; elsewhere the tables are
missing and nothing is found (the checks then rest on the health answer alone).
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
_LISTEN = b"0A"


def _hex4(address: str) -> bytes:
    """An IPv4 address as /proc/net/tcp writes it (one host-order 32-bit word in hex)."""
    return b"%08X" % struct.unpack("=I", socket.inet_aton(address))[0]


def _hex6(address: str) -> bytes:
    """An IPv6 address as /proc/net/tcp6 writes it (four host-order 32-bit words in hex)."""
    raw = socket.inet_pton(socket.AF_INET6, address)
    return b"".join(b"%08X" % struct.unpack("=I", raw[i:i + 4])[0] for i in range(0, 16, 4))


# The local addresses whose listener answers a connection to 127.0.0.1.
_REACHES_LOOPBACK = {_hex4("127.0.0.1"), _hex4("0.0.0.0"), _hex6("::"), _hex6("::ffff:127.0.0.1"),
                     _hex6("::ffff:0.0.0.0")}


@dataclass(frozen=True)
class Listener:
    """One listening socket: its port, the uid that created it and its inode (``socket:[inode]`` in
    ``/proc/<pid>/fd``, which says which processes hold it)."""

    port: int
    uid: int
    inode: int


# NETLINK_SOCK_DIAG: the kernel's socket table asked for listening sockets only (what `ss -lt` does). Reading
# /proc/net/tcp walks the whole established-connection hash, buckets included, whatever the state asked for: on
# a machine with a few thousand sockets that was ~5 ms of kernel CPU per table, ~10 ms for the pair, at every
# check pass (bench/ownership_cost.py); a LISTEN-only dump walks the listening hash alone.
_NETLINK_SOCK_DIAG, _SOCK_DIAG_BY_FAMILY = 4, 20
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_TCP_LISTEN = 10
_REQUEST = struct.Struct("=IHHII BBBxI 48x")  # nlmsghdr + inet_diag_req_v2 (family, protocol, ext, states, id)
_MESSAGE = struct.Struct("=BBBB HH 16s 16s I 8s IIIII")  # inet_diag_msg (ports big-endian: read apart)
_LOOP4 = {socket.inet_aton("127.0.0.1"), socket.inet_aton("0.0.0.0")}
_LOOP6 = {socket.inet_pton(socket.AF_INET6, a) for a in ("::", "::ffff:127.0.0.1", "::ffff:0.0.0.0")}


def _diag(family: int) -> list[Listener]:
    """The listening TCP sockets of ``family`` that answer 127.0.0.1, from one sock_diag dump (OSError: none)."""
    found: list[Listener] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as sock:
        sock.settimeout(2.0)
        sock.sendto(_REQUEST.pack(_REQUEST.size, _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0,
                                  family, socket.IPPROTO_TCP, 0, 1 << _TCP_LISTEN), (0, 0))
        size = 4 if family == socket.AF_INET else 16
        wanted = _LOOP4 if family == socket.AF_INET else _LOOP6
        while True:
            data = sock.recv(1 << 16)
            offset = 0
            while offset + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, offset)
                if kind == _NLMSG_DONE:
                    return found
                if kind == _NLMSG_ERROR or length < 16:
                    raise OSError("sock_diag refused the dump")
                if length >= 16 + _MESSAGE.size:
                    fields = _MESSAGE.unpack_from(data, offset + 16)
                    sport, source, uid, inode = fields[4], fields[6], fields[13], fields[14]
                    if fields[1] == _TCP_LISTEN and source[:size] in wanted:
                        found.append(Listener(socket.ntohs(sport), uid, inode))
                offset += (length + 3) & ~3
            if not data:
                return found


def loopback_listeners(tables: Iterable[str] = TABLES) -> dict[int, list[Listener]]:
    """Port -> the listening sockets a connection to 127.0.0.1 on that port may reach: one sock_diag dump per
    address family, or (where netlink is not available) one read of each /proc table."""
    found: dict[int, list[Listener]] = {}
    if tables is TABLES and hasattr(socket, "AF_NETLINK"):
        try:
            for listener in [*_diag(socket.AF_INET), *_diag(socket.AF_INET6)]:
                found.setdefault(listener.port, []).append(listener)
            return found
        except OSError:
            found = {}
    for path in tables:
        try:
            with open(path, "rb") as table:
                data = table.read()
        except OSError:
            continue
        for line in data.splitlines()[1:]:
            fields = line.split()
            # sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            address, _, port = fields[1].partition(b":")
            if address not in _REACHES_LOOPBACK:
                continue
            try:
                listener = Listener(int(port, 16), int(fields[7]), int(fields[9]))
            except ValueError:
                continue
            found.setdefault(listener.port, []).append(listener)
    return found


def holders(port: int) -> list[Listener]:
    """The listeners a connection to 127.0.0.1:``port`` may reach now."""
    return loopback_listeners().get(port, [])


def socket_inodes(pids: Iterable[int]) -> set[int] | None:
    """The socket inodes the processes ``pids`` hold open; None when one of them cannot be read (not ours to
    look at: the caller then rests on the uid alone). A process that ended meanwhile holds nothing."""
    found: set[int] = set()
    for pid in pids:
        folder = f"/proc/{pid}/fd"
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            continue
        except OSError:
            return None
        for name in names:
            try:
                link = os.readlink(f"{folder}/{name}")
            except OSError:
                continue  # closed meanwhile
            if link.startswith("socket:["):
                found.add(int(link[8:-1]))
    return found
