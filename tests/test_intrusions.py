"""The recorder of refused attempts: attribution, and the rate limit that keeps a flooding app from the store."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest

from railguard.daemon import intrusions as intrusions_module
from railguard.daemon.api import respond
from railguard.daemon.intrusions import (
    BURST,
    FAIR_SHARE,
    PER_MINUTE,
    PER_USER_MINUTE,
    Attempt,
    Intrusions,
    clean,
    message,
)
from railguard.daemon.service import Daemon
from railguard.model.principals import Role
from railguard.state import tokens


def recorder(users: dict[str, str] | None = None) -> tuple[Intrusions, list[Attempt]]:
    seen: list[Attempt] = []
    return Intrusions(seen.append, lambda: dict(users or {})), seen


def test_a_flood_is_cut_to_a_burst_and_the_rest_is_counted_on_the_next_record() -> None:
    intrusions, seen = recorder()
    for n in range(BURST + 40):
        intrusions.request_refused("token:mallory", f"GET /v1/status?n={n}", "auth.forbidden", "production")
    intrusions.flush()
    assert len(seen) == BURST and all(a.suppressed == 0 for a in seen)
    # Another source still gets through: one app's flood does not hide another's attempts (until the minute's cap).
    intrusions.request_refused("token:eve", "GET /v1/tokens", "auth.forbidden", None)
    intrusions.flush()
    assert seen[-1].principal == "token:eve" and len(seen) == BURST + 1
    # When the source may record again, the record says how many were left out.
    key = "token:mallory"
    level, at = intrusions._tokens[key]
    intrusions._tokens[key] = (1.0, at)
    intrusions.request_refused(key, "GET /v1/status", "auth.forbidden", "production")
    intrusions.flush()
    assert seen[-1].suppressed == 40 and "40 more attempt(s)" in message(seen[-1])


def test_the_minute_cap_holds_across_sources() -> None:
    intrusions, seen = recorder()
    for n in range(PER_MINUTE * 3):
        intrusions.request_refused(f"token:t{n}", "GET /v1/whoami", "auth.unknown_token", None)
    intrusions.flush()
    assert len(seen) == PER_MINUTE


def test_one_app_cannot_spend_the_budget_that_records_another_apps_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hostile app that makes every kernel refusal a new kind (a new file each time) is cut to its own share, and
    another environment's user is still recorded after it: the overall budget is not one app's to spend."""
    monkeypatch.setattr(intrusions_module, "ATTRIBUTION_WAIT_S", 0.0)
    intrusions, seen = recorder()
    for n in range(PER_MINUTE * 3):
        intrusions.kernel_refused(0, 100 + n, "openat", "EACCES", f"/srv/state/{n}.db", "python")
    intrusions.flush()
    assert len(seen) == PER_USER_MINUTE and {a.principal for a in seen} == {"os:root"}
    for n in range(PER_MINUTE * 3):  # callers' token names are not exempt: these fill the overall budget
        intrusions.request_refused(f"token:t{n}", "GET /v1/whoami", "auth.unknown_token", None)
    intrusions.flush()
    assert len(seen) == PER_MINUTE
    intrusions.kernel_refused(65534, 7, "bind", "EADDRINUSE", "127.0.0.1:8080", "node")
    intrusions.kernel_refused(65534, 8, "openat", "EACCES", "/proc/1/environ", "node")
    intrusions.kernel_refused(65534, 9, "openat", "EACCES", "/etc/shadow", "node")
    intrusions.flush()
    other = [a for a in seen if a.detail.get("uid") == 65534]
    assert len(other) == FAIR_SHARE and len(seen) == PER_MINUTE + FAIR_SHARE


def test_attempts_left_out_by_a_forgotten_source_are_still_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intrusions_module, "_SOURCES", 4)
    intrusions, seen = recorder()
    for _ in range(BURST + 3):  # 3 left out of token:old's burst
        intrusions.request_refused("token:old", "GET /v1/status", "auth.forbidden", None)
    for n in range(6):  # other sources push token:old out of the rate limit's memory
        intrusions.request_refused(f"token:new{n}", "GET /v1/x", "auth.forbidden", None)
    intrusions.flush()
    assert "token:old" not in intrusions._tokens
    intrusions.request_refused("token:old", "GET /v1/status", "auth.forbidden", None)
    intrusions.flush()
    assert seen[-1].principal == "token:old" and seen[-1].suppressed == 3


def test_a_peer_is_attributed_by_its_uid_to_the_environment_its_user_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intrusions_module, "ATTRIBUTION_WAIT_S", 0.01)
    me = pwd.getpwuid(os.geteuid()).pw_name
    intrusions, seen = recorder({me: "staging"})
    intrusions.peer_refused(os.geteuid(), 4242, clean("GET /v1/whoami HTTP/1.1\x1b[2J"))
    intrusions.peer_refused(65534 if me != "nobody" else 65533, 4243, "(no request sent)")
    intrusions.flush()
    first, second = seen
    assert (first.env, first.principal, first.detail["pid"]) == ("staging", f"os:{me}", 4242)
    assert first.what == "GET /v1/whoami HTTP/1.1?[2J" and first.code == "auth.foreign_user" and not first.audited
    assert second.env is None  # not an environment's user: recorded without one


def test_a_peer_not_yet_in_the_books_is_attributed_once_its_environment_knows_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A replica that connects the moment it starts: its environment learns its user a moment later."""
    monkeypatch.setattr(intrusions_module, "ATTRIBUTION_WAIT_S", 0.01)
    me = pwd.getpwuid(os.geteuid()).pw_name
    asked: list[int] = []

    def users() -> dict[str, str]:
        asked.append(1)
        return {me: "staging"} if len(asked) >= 3 else {}

    seen: list[Attempt] = []
    intrusions = Intrusions(seen.append, users)
    intrusions.peer_refused(os.geteuid(), 4242, "GET /v1/whoami HTTP/1.1")
    intrusions.flush()
    assert [a.env for a in seen] == ["staging"] and len(asked) == 3


def test_a_refused_peer_that_sends_slowly_is_read_only_for_a_bounded_time() -> None:
    import socket
    import threading

    from railguard.daemon.api import _read_head

    ours, theirs = socket.socketpair()
    stop = threading.Event()

    def dribble() -> None:
        theirs.sendall(b"GET /v1/whoami HTTP/1.1\r\nAuthorization: Bearer rg_x\r\nX-Slow: ")
        for _ in range(40):  # 8 s of one byte every 0.2 s, never ending the headers
            if stop.wait(0.2):
                return
            theirs.sendall(b"A")

    thread = threading.Thread(target=dribble)
    thread.start()
    try:
        head = _read_head(ours, 0.5)
    finally:
        stop.set()
        thread.join()
        ours.close()
        theirs.close()
    assert head.startswith(b"GET /v1/whoami HTTP/1.1\r\nAuthorization:") and head.count(b"A") < 40
    a, b = socket.socketpair()
    with a, b:
        b.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nBODY")
        assert _read_head(a, 5.0) == b"GET / HTTP/1.1\r\nHost: x"  # the head only, as soon as it is complete


def test_kernel_refusals_are_one_record_per_kind_attributed_to_the_environment_that_runs_the_uid(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Scanning every /proc/<pid>/environ is one attempt, not hundreds; the environment is the daemon's word."""
    monkeypatch.setattr(intrusions_module, "ATTRIBUTION_WAIT_S", 0.01)
    me = pwd.getpwuid(os.geteuid()).pw_name
    intrusions, seen = recorder({me: "staging"})
    for pid in range(2, 300):
        intrusions.kernel_refused(os.geteuid(), 4242, "openat", "EACCES", f"/proc/{pid}/environ", "python")
    intrusions.kernel_refused(os.geteuid(), 4242, "bind", "EADDRINUSE", "127.0.0.1:8080", "python\x1b[2J")
    intrusions.kernel_refused(os.geteuid(), 4242, "openat", "EACCES", "/srv/state/state.db", "python")
    other = 65534 if me != "nobody" else 65533
    intrusions.kernel_refused(other, 99, "openat", "EACCES", "/srv/data/production/x", "sh", "qa")  # started for qa
    intrusions.flush()
    assert [a.detail["target"] for a in seen] == ["/proc/2/environ", "127.0.0.1:8080", "/srv/state/state.db",
                                                  "/srv/data/production/x"]
    first, bind, _, given = seen
    assert given.env == "qa"  # the daemon started that uid's processes for qa: no lookup needed
    assert first.env == "staging" and first.code == "kernel.refused" and first.principal == f"os:{me}"
    assert first.what == "openat /proc/2/environ: EACCES" and first.detail["uid"] == os.geteuid()
    assert bind.detail["comm"] == "python?[2J" and bind.detail["errno"] == "EADDRINUSE"
    # The next record of the scan's kind, once allowed, counts what was left out.
    key = next(k for k in intrusions._tokens if k.endswith("/proc/<pid>/environ"))
    intrusions._tokens[key] = (1.0, intrusions._tokens[key][1])
    intrusions.kernel_refused(os.geteuid(), 4242, "openat", "EACCES", "/proc/1/environ", "python")
    intrusions.flush()
    assert seen[-1].suppressed == 297 and "297 more attempt(s)" in message(seen[-1])


def _daemon_recording(tmp_path: Path) -> tuple[Daemon, list[Attempt]]:
    daemon = Daemon(tmp_path / "state")
    daemon.store()  # the state folder exists (a local user is authenticated by owning it)
    daemon.intrusions, seen = recorder()
    return daemon, seen


def test_a_refused_request_is_on_an_environments_timeline_only_for_a_token_limited_to_it(tmp_path: Path) -> None:
    daemon, seen = _daemon_recording(tmp_path)
    try:
        scoped, _ = tokens.create(daemon.store(), "ci-staging", Role.agent, ["staging"], "user:test", None)
        wide, _ = tokens.create(daemon.store(), "ci-all", Role.agent, None, "user:test", None)
        for bearer, env in [(scoped, "staging"), (scoped, "production"), (wide, "production")]:
            status, _ = respond(daemon, "GET", f"/v1/tokens?env={env}", bearer, b"", None)
            assert status == 403
        respond(daemon, "GET", "/v1/tokens?env=production", "rg_not-a-token", b"", None)
        daemon.intrusions.flush()
        # Only the token limited to exactly staging puts its refusal on staging's timeline; a body or query
        # naming another environment (any token can write one) lands on the daemon's, as an unknown one does.
        assert [a.env for a in seen] == ["staging", None, None, None]
    finally:
        daemon.store().close()


def test_a_local_users_missing_terminal_is_a_mistake_not_an_intrusion(tmp_path: Path) -> None:
    daemon, seen = _daemon_recording(tmp_path)
    try:
        body = json.dumps({"name": "boss", "role": "approver"}).encode()
        status, answer = respond(daemon, "POST", "/v1/tokens", None, body, lambda: (os.getpid(), os.geteuid()))
        assert status == 403 and json.loads(answer)["diagnostics"][0]["code"] == "auth.needs_terminal"
        daemon.intrusions.flush()
        assert seen == []
    finally:
        daemon.store().close()
