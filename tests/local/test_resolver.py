"""The edge's upstream resolver: its DNS answers (pure) and its process (real socket, real file swaps)."""

from __future__ import annotations

import shutil
import socket
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from railguard.model import checks
from railguard.model.specfile import parse_spec
from railguard.providers.local.resolver import ResolverProcess, answer, may_be_cached, srv_name


def query(name: str, qtype: int = 33, ident: int = 4242) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, 1)


def parse(response: bytes) -> tuple[int, int, list[int]]:
    """(rcode, answer count, SRV ports) of a response to one of our queries."""
    ident, flags, _qd, count, _ns, _ar = struct.unpack("!HHHHHH", response[:12])
    assert ident == 4242 and flags & 0x8000
    pos = 12
    while response[pos]:
        pos += 1 + response[pos]
    pos += 5
    ports = []
    for _ in range(count):
        rtype, _cls, _ttl, size = struct.unpack("!HHIH", response[pos + 2:pos + 12])
        if rtype == 33:
            ports.append(struct.unpack("!H", response[pos + 16:pos + 18])[0])
        pos += 12 + size
    return flags & 0xF, count, ports


def test_answers_srv_for_known_names_and_nothing_else() -> None:
    name = srv_name("prod", "rabc")
    table = {name: (8001, 8002)}
    assert parse(answer(query(name), table) or b"") == (0, 2, [8001, 8002])
    assert parse(answer(query(name.upper()), table) or b"") == (0, 2, [8001, 8002])  # names are case-blind
    assert parse(answer(query(srv_name("prod", "other")), table) or b"")[0] == 3  # ours, unknown: NXDOMAIN
    assert parse(answer(query("example.com."), table) or b"")[0] == 5  # not ours: refused, we never recurse
    assert parse(answer(query("localhost.", qtype=1), table) or b"")[:2] == (0, 1)  # the SRV target's A
    assert parse(answer(query("localhost.", qtype=28), table) or b"")[:2] == (0, 0)  # no AAAA: the edge dials tcp4
    assert answer(b"\x00\x01", table) is None  # garbage gets no answer
    # Never a truncated set: one too large to answer whole is a server failure (Caddy keeps its last answer).
    assert parse(answer(query(name), {name: tuple(range(1000, 1100))}) or b"")[0] == 2


@pytest.fixture
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="rg-res-"))  # short: a Unix socket path
    yield path / "edge"
    shutil.rmtree(path, ignore_errors=True)


def ask(sock_path: Path, name: str) -> tuple[int, int, list[int]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(sock_path))
        sock.sendall(query(name))
        return parse(sock.recv(4096))


def test_the_process_answers_from_the_latest_table_and_is_adopted(folder: Path) -> None:
    first = ResolverProcess(folder)
    first.start()
    try:
        name = srv_name("prod", "rabc")
        assert ask(first.path, name)[0] == 3
        first.publish({name: (9001,)})
        assert ask(first.path, name) == (0, 1, [9001])
        first.publish({name: (9002, 9003)})  # a switch: the next query sees the new file
        assert ask(first.path, name) == (0, 2, [9002, 9003])
        pid = first.pid()
        second = ResolverProcess(folder)  # a restarted daemon adopts it instead of starting another
        second.start()
        assert second.pid() == pid
        assert oct(first.path.stat().st_mode & 0o777) == "0o600"
    finally:
        first.stop()
    assert first.pid() is None and not first.path.exists()


def test_ports_below_the_unprivileged_start_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    text = '[app]\nname = "a"\n[environments.prod]\nedge_port = 80\nhttps_port = 443\n[services.web]\nrun = ["x"]\n'
    monkeypatch.setattr(checks, "lowest_unprivileged_port", lambda: 1024)
    _, found = parse_spec(text, file="railguard.toml")
    assert [(d.code, d.address) for d in found if d.is_error] == [
        ("spec.privileged_port", "environments.prod.edge_port"),
        ("spec.privileged_port", "environments.prod.https_port"),
    ]
    monkeypatch.setattr(checks, "lowest_unprivileged_port", lambda: 0)  # root or CAP_NET_BIND_SERVICE
    _, found = parse_spec(text, file="railguard.toml")
    assert not [d for d in found if d.is_error]


def test_the_control_socket_says_which_names_caddy_may_still_hold_from_an_older_table(folder: Path) -> None:
    resolver = ResolverProcess(folder)
    resolver.start()
    try:
        name, quiet = srv_name("prod", "rabc"), srv_name("prod", "rdef")
        resolver.publish({name: (9001,), quiet: (9005,)})
        assert ask(resolver.path, name) == (0, 1, [9001])  # what Caddy does on a request after its refresh
        info = resolver._control([name, quiet])
        assert info is not None
        assert info["names"][quiet] is None  # never asked: Caddy caches nothing for it
        assert info["names"][name][1] is True  # answered from the table now published
        resolver.publish({name: (9002,), quiet: (9006,)})  # a switch
        info = resolver._control([name])
        assert info is not None and info["names"][name][1] is False  # Caddy may still route to 9001
        assert ask(resolver.path, name) == (0, 1, [9002])  # Caddy's next lookup gets the new set
        info = resolver._control([name.upper()])
        assert info is not None and info["names"][name.upper()][1] is True
        resolver.publish({name: (9003,), quiet: (9007,)})
        info = resolver._control([name, quiet])
        assert may_be_cached(info, window=30.0) is None  # a responder younger than the window knows too little
        assert may_be_cached(info and {**info, "up": 60.0}, window=30.0) == [name]  # asked 9002: wait for it
        assert may_be_cached(info and {**info, "up": 60.0}, window=0.0) == []  # its answer expired: no wait
        # The wait is bounded by the window it was given (here the responder is too young to know better).
        assert resolver.settle([name], refresh=0.05, margin=0.0) >= 0.05
    finally:
        resolver.stop()
    assert not resolver.path.with_suffix(".ctl").exists()


def test_a_held_control_request_is_answered_when_caddy_asks_again(folder: Path) -> None:
    """A switch's question is held by the responder until the name is asked from the new table (or its wait is
    over), not polled for."""
    import threading
    import time

    resolver = ResolverProcess(folder)
    resolver.start()
    try:
        name = srv_name("prod", "rabc")
        resolver.publish({name: (9001,)})
        time.sleep(0.6)  # the responder must be older than the window to know what Caddy may hold
        assert ask(resolver.path, name) == (0, 1, [9001])
        resolver.publish({name: (9002,)})  # a switch: Caddy may still hold 9001
        replies: list[dict[str, object] | None] = []
        held = threading.Thread(target=lambda: replies.append(resolver._control([name], wait=0.9, window=0.5)))
        held.start()
        time.sleep(0.1)  # lets the request reach the responder before the lookup (order, not a duration)
        assert ask(resolver.path, name) == (0, 1, [9002])  # Caddy's next lookup
        held.join()
        reply = replies[0]
        assert reply is not None and reply["held"] is True
        assert reply["names"][name][1] is True  # released by that lookup: answered from the table now published
        # Nobody asks: the request is answered once its wait is over, saying the name may still be cached.
        resolver.publish({name: (9003,)})
        ask(resolver.path, name)
        resolver.publish({name: (9004,)})
        due = resolver._control([name], wait=0.2, window=0.5)
        assert due is not None and due["held"] is True and due["names"][name][1] is False
        assert may_be_cached(due, 0.5) == [name]
        # Without a wait the answer comes at once, as before (what an older daemon asks).
        assert "held" not in (resolver._control([name]) or {})
    finally:
        resolver.stop()


def test_a_responder_without_a_control_socket_gets_the_whole_interval(folder: Path) -> None:
    resolver = ResolverProcess(folder)
    resolver.start()
    try:
        resolver.path.with_suffix(".ctl").unlink()  # as one started by an older daemon, adopted
        assert resolver.settle([srv_name("prod", "rabc")], refresh=0.05, margin=0.01) >= 0.06
    finally:
        resolver.stop()


def test_a_table_replaced_within_one_timestamp_tick_is_still_seen(folder: Path) -> None:
    """Two publishes in a row can leave the same size, mtime and inode; the second table must still be served."""
    import os

    resolver = ResolverProcess(folder)
    resolver.start()
    try:
        name = srv_name("prod", "rabc")
        resolver.publish({name: (9001,)})
        assert ask(resolver.path, name) == (0, 1, [9001])
        before = resolver.table_path.stat()
        resolver.table_path.write_text(resolver.table_path.read_text().replace("9001", "9002"))  # same inode, size
        os.utime(resolver.table_path, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the same mtime
        assert ask(resolver.path, name) == (0, 1, [9002])
    finally:
        resolver.stop()
