"""The API client's own HTTP over the daemon's Unix socket: answers, failures and timeouts become diagnostics.

The client speaks HTTP/1.1 on the socket module (no HTTP library: their import is much of a CLI command's
start-up), so what a library did for it is checked here against real Unix-socket servers that answer as a
daemon would, or misbehave: refused or absent sockets, answers that are not JSON, bodies cut short, silence.
"""

from __future__ import annotations

import json
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from railguard.client import Client
from railguard.engine.workspace import Workspace
from railguard.model.diagnostics import RailguardError
from railguard.model.errors import DeadlineError

Answer = Callable[[bytes], bytes | None]  # the request as received -> the raw answer (None: say nothing)


@pytest.fixture
def home() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="rgc-") as folder:  # short: Unix socket paths are limited
        yield Path(folder)


def _serve(path: Path, answer: Answer, seen: list[bytes]) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)

    def loop() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    request += chunk
                head, _, body = request.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(body) < length:
                    body += conn.recv(65536)
                seen.append(head + b"\r\n\r\n" + body)
                raw = answer(request)
                if raw is None:
                    threading.Event().wait(2.0)  # silent until the client gave up
                    continue
                conn.sendall(raw)

    threading.Thread(target=loop, daemon=True).start()
    return server


def _client(home: Path, answer: Answer, token: str | None = None) -> tuple[Client, list[bytes], socket.socket]:
    ws = Workspace(home / "railguard.toml", home)
    seen: list[bytes] = []
    server = _serve(ws.socket_path, answer, seen)
    return Client(ws, autostart=False, token=token), seen, server


def _http(status: str, body: bytes, length: bool = True) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
    return (head + (f"Content-Length: {len(body)}\r\n" if length else "") + "\r\n").encode() + body


def test_a_call_sends_its_body_token_and_query_and_reads_the_answer(home: Path) -> None:
    answer = json.dumps({"ok": True, "diagnostics": [], "value": "é" * 70_000}).encode()
    client, seen, server = _client(home, lambda _: _http("200 OK", answer), token="t0k")
    with server:
        found = client.call("POST", "things", {"name": "x"}, params={"env": "staging", "skip": None, "n": 3})
        assert found["value"] == "é" * 70_000  # longer than one read
        head, _, body = seen[0].partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        assert lines[0] == "POST /v1/things?env=staging&n=3 HTTP/1.1"
        assert "Authorization: Bearer t0k" in lines and "Connection: close" in lines
        assert json.loads(body) == {"name": "x"}
    # Without a Content-Length the answer runs to the end of the connection.
    (home / "other").mkdir()
    client, _, server = _client(home / "other", lambda _: _http("200 OK", answer, length=False))
    with server:
        assert client.call("GET", "things")["value"] == "é" * 70_000


def test_refusals_carry_the_daemons_diagnostics(home: Path) -> None:
    diag = {"severity": "error", "code": "auth.forbidden", "summary": "no", "detail": "d", "remediation": "r"}
    body = json.dumps({"ok": False, "diagnostics": [diag]}).encode()
    client, _, server = _client(home, lambda _: _http("403 Forbidden", body))
    with server, pytest.raises(RailguardError) as exc:
        client.call("GET", "whoami")
    assert [d.code for d in exc.value.diagnostics] == ["auth.forbidden"]


@pytest.mark.parametrize(("raw", "says"), [
    (_http("200 OK", b"<html>not json</html>"), "not JSON"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n" + b'{"ok": true}', "before its Content-Length"),
    (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP answer"),
    (b"", "Server disconnected"),
])
def test_broken_answers_are_daemon_unavailable(home: Path, raw: bytes, says: str) -> None:
    client, _, server = _client(home, lambda _: raw)
    with server, pytest.raises(RailguardError) as exc:
        client.call("GET", "status")
    found = exc.value.diagnostics[0]
    assert found.code == "daemon.unavailable" and says in found.detail, found.detail


def test_silence_is_a_deadline_and_no_daemon_is_unavailable(home: Path) -> None:
    client, _, server = _client(home, lambda _: None)
    with server, pytest.raises(DeadlineError) as exc:
        client.call("GET", "status", timeout=0.3)
    assert exc.value.diagnostics[0].code == "daemon.unavailable" and "in time" in exc.value.diagnostics[0].detail
    nothing = Client(Workspace(home / "railguard.toml", home / "none"), autostart=False)
    assert not nothing.listening() and not nothing.alive()
    with pytest.raises(RailguardError) as exc:
        nothing.call("GET", "status")
    assert exc.value.diagnostics[0].code == "daemon.unavailable"
    assert not (home / "none").exists()  # a client that may not start a daemon creates nothing
