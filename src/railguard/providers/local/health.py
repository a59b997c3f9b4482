"""Health checks of local replicas and the readiness gate a rollout waits on.

The local provider runs these against a freshly started replica before routing
traffic to it, and the daemon runs them periodically to report health. Every
check returns a one-line ``detail`` meant for a human (or agent) reading a failed
rollout, so it says what was seen ("HTTP 500: ...", "connection refused") rather
than raising. What the app wrote in it (a response body, a check's output) goes through
:func:`railguard.model.untrusted.one_line`: an app's multi-line 503 body printed lines that looked like
Railguard's own ("Operation succeeded ... APPROVED") in `deploy` and in MCP results.
"""

from __future__ import annotations

import http.client
import os
import re
import selectors
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from railguard.model.untrusted import one_line
from railguard.providers.base import CheckResult, GateResult
from railguard.providers.local import sandbox
from railguard.providers.local.isolation import ensure_user

__all__ = ["CheckResult", "GateResult", "check_exec", "check_http", "check_tcp", "readiness_gate"]

_BODY_CHARS = 200
_TAG = re.compile(r"<!--.*?-->|<[^>]{0,500}>", re.DOTALL)


def _path(location: str) -> str:
    """The path of a redirect's target on this app (``/auth/login`` of ``/auth/login?next=%2F``), else ""."""
    path = location.split("?", 1)[0].split("#", 1)[0]
    return path if path.startswith("/") and not path.startswith("//") else ""


def _readable(body: str) -> str:
    """An error page on one line: an HTML page's text without its tags (Quart's and Flask's 500 page began
    "<!doctype html>\\n<html lang=en>\\n<title>..." in the diagnostic), whitespace runs as one space."""
    if body.lstrip()[:1] == "<":
        body = _TAG.sub(" ", body)
    return " ".join(body.split())
_STDERR_CHARS = 200
# An exec check's output is read into the daemon's memory: only its last bytes are kept. A check is the app's
# command and may write without end (one writing 400 MB each interval took the daemon from 35 MB to 1.2 GB).
_OUTPUT_KEEP = _STDERR_CHARS * 4
FIRST_POLL_S = 0.01  # the readiness gate's first wait between checks; it doubles after each failure
# While a new replica's port still refuses connections (the app is starting: nothing listens yet), the gate checks
# every 5 ms instead of backing off: a refused check costs ~50 us of the daemon's CPU and no request reaches the
# app, and the doubling wait made the gate see an app up at 43 ms only at its check at 70 ms. Only for the first
# REFUSED_FAST_S of the gate (~600 refused checks at most): a slower app is polled as before. 5 ms, not 3: on a
# loaded machine (load 10, bench/gate_lag.py) the app's own start measured slower beside closer polling.
REFUSED_POLL_S = 0.005
REFUSED_FAST_S = 3.0


def _ms(start: float) -> str:
    return f"{round((time.monotonic() - start) * 1000)} ms"


def _as_user(name: str) -> dict[str, Any]:
    who = ensure_user(name)
    return {"user": who.uid, "group": who.gid, "extra_groups": []}


def _secs(seconds: float) -> str:
    return f"{seconds:g} s"


def check_http(port: int, path: str, timeout: float) -> CheckResult:
    """GET the path on the replica's loopback port; any 2xx passes.

    The standard library's http.client, not an HTTP client library: a check runs every
    interval for every replica, and building requests through a full client costs several
    times the CPU (the idle-daemon benchmark). A fresh connection each time proves the
    replica still accepts new ones; no proxy settings apply to loopback.
    """
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/" + path.lstrip("/"), headers={"User-Agent": "railguard-health"})
        response = conn.getresponse()
        body = response.read(_BODY_CHARS * 4).decode("utf-8", errors="replace")
    except ConnectionRefusedError:
        return CheckResult(False, "connection refused", refused=True)
    except TimeoutError:
        return CheckResult(False, f"timed out after {_secs(timeout)}")
    except (OSError, http.client.HTTPException) as e:
        return CheckResult(False, f"{type(e).__name__}: {e}")
    finally:
        conn.close()
    if 200 <= response.status < 300:
        return CheckResult(True, f"HTTP {response.status} in {_ms(start)}", response.status)
    if 300 <= response.status < 400:
        # Microblog's "/" redirects to its login page: the check never follows a redirect, so it would wait out
        # start_timeout. Say where it leads, and what to check instead.
        where = one_line((response.getheader("Location") or "")[:_BODY_CHARS], _BODY_CHARS)
        return CheckResult(False, f"HTTP {response.status} redirect{f' to {where}' if where else ''}: a health check "
                                  f"must answer 2xx itself (a page behind a login redirects); point health.http at a "
                                  f"page that does{f', e.g. {_path(where)}' if _path(where) else ''}, or add a "
                                  f"health route", response.status)
    text = one_line(_readable(body)[:_BODY_CHARS], _BODY_CHARS)
    return CheckResult(False, f"HTTP {response.status}: {text}" if text else f"HTTP {response.status}",
                       response.status)


def check_tcp(port: int, timeout: float) -> CheckResult:
    start = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            pass
    except ConnectionRefusedError:
        return CheckResult(False, "connection refused", refused=True)
    except TimeoutError:
        return CheckResult(False, f"timed out after {_secs(timeout)}")
    except OSError as e:
        return CheckResult(False, f"cannot connect: {e.strerror or e}")
    return CheckResult(True, f"TCP connect in {_ms(start)}")


def check_exec(argv: list[str], env: dict[str, str], cwd: Path, timeout: float,
               readonly: tuple[str, ...] = (), user: str | None = None) -> CheckResult:
    """Run an exec health check; ``readonly``: the release folders, read-only for it as for the replica;
    ``user``: the environment's OS user, as for the replica."""
    start = time.monotonic()
    try:
        # The check is the app's command: it runs as the environment's user, like the replica it checks.
        run_as = {} if user is None else _as_user(user)
        # Own session so a timeout can kill everything the check started, not just its shell.
        proc = sandbox.popen(
            argv, readonly, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True, **run_as,
        )
    except FileNotFoundError:
        return CheckResult(False, f"command not found: '{argv[0]}' (command: {argv})")
    except OSError as e:
        return CheckResult(False, f"cannot run '{argv[0]}': {e.strerror or e}")
    output, finished = _tail_until_exit(proc, start + timeout)
    if not finished:
        _kill_group(proc)
        return CheckResult(False, f"timed out after {_secs(timeout)}")
    if proc.returncode == 0:
        return CheckResult(True, f"exit 0 in {_ms(start)}")
    text = one_line(output.decode("utf-8", errors="replace"), _STDERR_CHARS)
    return CheckResult(False, f"exit {proc.returncode}: {text}" if text else f"exit {proc.returncode}")


def _tail_until_exit(proc: subprocess.Popen[bytes], deadline: float) -> tuple[bytes, bool]:
    """The last ``_OUTPUT_KEEP`` bytes of the check's output (stdout and stderr in one pipe), read until it ends
    and exits, and whether that happened before ``deadline`` (``communicate`` would keep all of it)."""
    assert proc.stdout is not None
    kept = bytearray()
    fd = proc.stdout.fileno()
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return bytes(kept), False
            if not selector.select(left):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            kept += chunk
            if len(kept) > _OUTPUT_KEEP:
                del kept[:-_OUTPUT_KEEP]
    proc.stdout.close()
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return bytes(kept), False
    return bytes(kept), True


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the leader is unreaped, so its pgid cannot be reused yet
    except ProcessLookupError:
        pass
    # Nothing more is read: a process outside the group may still hold the pipe and write without end.
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    try:
        proc.wait(timeout=2.0)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def readiness_gate(
    check: Callable[[], CheckResult], *, interval: float, healthy_threshold: int, deadline: float,
    still_running: Callable[[], bool], first_interval: float = FIRST_POLL_S, start_period: float | None = None,
    conclusive: int = 0, sleep: Callable[[float], None] = time.sleep, refused_interval: float = REFUSED_POLL_S,
    refused_window: float = REFUSED_FAST_S,
) -> GateResult:
    """Wait until ``healthy_threshold`` consecutive checks pass, the process exits or ``deadline`` passes.

    Polling is adaptive: the first check runs at once, the next ones after ``first_interval`` (10 ms), the
    wait doubling after each failing check up to ``interval``, so a slow app is not hammered. While the
    port refuses connections (nothing listens yet) during the gate's first ``refused_window`` (3 s), the next
    check follows after ``refused_interval`` (5 ms): an app that is up in 40 ms is seen at about 40 ms.
    After a passing check the next one follows after ``first_interval`` again: a healthy app does not wait
    a whole interval per confirming check.

    Fails fast when the answer is conclusive: the process exited, or (with ``conclusive`` > 0) the same
    HTTP 5xx or 3xx status came back ``conclusive`` times in a row once ``start_period`` had passed. An app that
    answers 500 on every check will not answer otherwise by waiting for the rest of its start_timeout. A check
    that says so itself (``CheckResult.conclusive``: the port is held by another process) fails it at once.
    """
    began = time.monotonic()
    checks = passing = same = 0
    last: CheckResult | None = None
    first = min(first_interval, interval)
    delay = first
    while True:
        if not still_running():
            return GateResult(False, checks, last, "process exited" + _last(last))
        previous, last = last, check()
        checks += 1
        if last.conclusive:  # another process holds the port: never routed, and waiting will not change whose it is
            return GateResult(False, checks, last, last.detail)
        passing = passing + 1 if last.ok else 0
        if passing >= healthy_threshold:
            return GateResult(True, checks, last, f"healthy after {checks} check(s)")
        now = time.monotonic()
        same = _same_5xx(last, previous, same) if start_period is not None and now - began >= start_period else 0
        if conclusive and same >= conclusive:
            if not still_running():
                return GateResult(False, checks, last, "process exited" + _last(last))
            return GateResult(False, checks, last, f"answered HTTP {last.status} to {same} checks in a row after "
                                                   f"start_period ({_window(start_period or 0.0)})" + _last(last))
        if now >= deadline:
            # The process may have died during the check; that is the better explanation.
            if not still_running():
                return GateResult(False, checks, last, "process exited" + _last(last))
            return GateResult(False, checks, last, f"not healthy within {_window(deadline - began)}" + _last(last))
        if last.refused and now - began < refused_window:
            sleep(max(0.0, min(refused_interval, deadline - now)))
            continue  # the backoff starts once something answers (or the fast window is over)
        sleep(max(0.0, min(first if last.ok else delay, deadline - now)))
        delay = first if last.ok else min(max(delay * 2, first), interval)


def _same_5xx(last: CheckResult, previous: CheckResult | None, count: int) -> int:
    """How many checks in a row (this one included) answered the same 5xx status, or the same redirect (an app
    that sends its health check to a login page will keep doing so)."""
    if last.ok or last.status is None or not (last.status >= 500 or 300 <= last.status < 400):
        return 0
    if previous is not None and previous.status == last.status and count:
        return count + 1
    return 1


def _last(last: CheckResult | None) -> str:
    return f": last check: {last.detail}" if last is not None else ""


def _window(seconds: float) -> str:
    return f"{round(seconds)}s" if seconds >= 10 else f"{seconds:.1f}s".replace(".0s", "s")
