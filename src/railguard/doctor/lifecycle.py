"""Checks ``graceful-shutdown`` and ``port-binding``: how the app starts listening and how it stops.

port-binding starts the service in scratch with ``$PORT`` (or its ``port_env``) set to a free port and
watches which TCP ports its process tree listens on: the given one passes; another one (or a crash on
"address already in use") fails; listening on every interface (bypassing the edge) warns.
graceful-shutdown opens a real request, a POST to a routed path whose body is only half sent, sends
SIGTERM to the process group (as a rollout does), then sends the rest: the request must complete and
the process exit within ``stop_timeout``. When the app answers before the body arrived (the path does
not read bodies), no request can be held in flight and only the exit is verified (said in the evidence).
"""

from __future__ import annotations

import os
import select
import signal
import socket
import time

import psutil

from railguard.doctor.apps import Running, launch, prepare, ready_or_stop, release_or_stop
from railguard.doctor.context import STOP_S, CheckStop, Context, seconds
from railguard.doctor.report import Finding, Status

SETTLE_S = 0.5  # listening elsewhere for this long, without the given port, counts as ignoring $PORT
POLL_S = 0.05
BODY = b"railguard doctor: graceful-shutdown probe; this request is in flight while SIGTERM arrives\n"


def _start(ctx: Context, name: str, label: str) -> Running:
    data, _ = ctx.data_copy()
    prepared = prepare(ctx, name, data, serve=True)
    release_or_stop(ctx, prepared, data, label)
    return launch(ctx, prepared, data, label)


def listening(pid: int) -> dict[int, str]:
    """TCP port -> address the process tree of ``pid`` listens on."""
    found: dict[int, str] = {}
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        for proc in procs:
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr:
                    found[conn.laddr.port] = conn.laddr.ip
    except (psutil.Error, OSError):
        pass
    return found


def port_binding(ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    for name in ctx.service_names():
        cfg = ctx.configs[name]
        if not cfg["listen"]:
            findings.append(Finding(status=Status.skipped, subject=name, summary="listen = false: no port to bind"))
            continue
        try:
            running = _start(ctx, name, "port")
        except CheckStop as stop:
            findings.append(stop.finding)
            continue
        try:
            findings.append(_judge_port(running, name, cfg["port_env"], seconds(cfg["start_timeout_ms"])))
        finally:
            running.stop(STOP_S)
    return findings


def _judge_port(running: Running, name: str, variable: str, limit: float) -> Finding:
    port = running.port
    started = time.monotonic()
    elsewhere_since: float | None = None
    seen: dict[int, str] = {}
    evidence = [f"started `{' '.join(running.argv)}` with {variable}={port}", *running.notes]
    while time.monotonic() - started < limit:
        if not running.alive():
            log = running.log(8)
            in_use = any("already in use" in line.lower() or "eaddrinuse" in line.lower() for line in log)
            return Finding(
                status=Status.fail, subject=name,
                summary="it exited trying to bind a port that is in use: it ignores $" + variable if in_use
                else "it exited before listening on $" + variable,
                evidence=evidence + [f"log: {line}" for line in log],
                remediation=_fix(variable))
        seen = listening(running.pid)
        if port in seen:
            took = time.monotonic() - started
            evidence.append(f"listening on {seen[port]}:{port} after {took:.2f} s")
            if seen[port] in ("0.0.0.0", "::"):
                return Finding(status=Status.warn, subject=name,
                               summary=f"listens on ${variable}, but on every interface ({seen[port]})",
                               evidence=evidence + ["other machines can reach the replica directly, bypassing "
                                                    "the edge's routes"],
                               remediation="Bind 127.0.0.1: the edge is the only way in.")
            return Finding(status=Status.passed, subject=name, summary=f"listens on ${variable} ({seen[port]}:{port})",
                           evidence=evidence)
        if seen:
            elsewhere_since = elsewhere_since or time.monotonic()
            if time.monotonic() - elsewhere_since >= SETTLE_S:
                break
        time.sleep(POLL_S)
    if seen:
        return Finding(status=Status.fail, subject=name,
                       summary=f"listens on {', '.join(map(str, sorted(seen)))} instead of ${variable}={port}",
                       evidence=evidence + [f"listening: {', '.join(f'{a}:{p}' for p, a in sorted(seen.items()))}"],
                       remediation=_fix(variable))
    return Finding(status=Status.fail, subject=name, summary=f"did not listen on ${variable} within start_timeout",
                   evidence=evidence + [f"log: {line}" for line in running.log(8)], remediation=_fix(variable))


def _fix(variable: str) -> str:
    return (f"Read the port from the environment: port = int(os.environ[\"{variable}\"]), or put \"${variable}\" "
            "in `run` (it is substituted), e.g. [\"python\", \"-m\", \"uvicorn\", \"app:app\", \"--port\", \"$PORT\"].")


def graceful_shutdown(ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    for name in ctx.service_names():
        cfg = ctx.configs[name]
        if not cfg["listen"]:
            findings.append(Finding(status=Status.skipped, subject=name, summary="listen = false: no request to "
                                                                                 "finish"))
            continue
        paths = [r["path"] for r in cfg["routes"]] or ([cfg["health"]["http"]] if cfg["health"] and
                                                        cfg["health"]["http"] else ["/"])
        try:
            running = _start(ctx, name, "shutdown")
            try:
                ready_or_stop(running, name, "before the shutdown test")
                findings.append(_in_flight(running, name, paths[0], seconds(cfg["stop_timeout_ms"])))
            finally:
                running.stop(STOP_S)
        except CheckStop as stop:
            findings.append(stop.finding)
    return findings


def _in_flight(running: Running, name: str, path: str, stop_timeout: float) -> Finding:
    port = running.port
    assert port is not None
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(BODY)}\r\nConnection: close\r\n\r\n").encode()
    half = len(BODY) // 2
    evidence = [f"POST {path} with {len(BODY)} bytes of body, only {half} sent before SIGTERM"]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head + BODY[:half])
        early = bool(select.select([sock], [], [], 0.3)[0])
        began = time.monotonic()
        _sigterm(running.pid, running.pid)  # started in its own session: its group is its pid
        if not early:
            time.sleep(0.2)  # let the app act on SIGTERM (stop accepting) while the request is open
            try:
                sock.sendall(BODY[half:])
            except OSError as exc:
                evidence.append(f"sending the rest of the body after SIGTERM failed: {exc}")
        answer = _read_answer(sock, stop_timeout + 1.0)
    exited = _wait_exit(running, began + stop_timeout)
    took = time.monotonic() - began
    status_line = answer.split(b"\r\n", 1)[0].decode("latin-1", errors="replace") if answer else ""
    if not exited:
        running.stop(STOP_S)
        return Finding(status=Status.fail, subject=name,
                       summary=f"did not exit within stop_timeout ({stop_timeout:g} s) after SIGTERM; it was killed",
                       evidence=evidence + [f"answer: {status_line or 'none'}",
                                            *(f"log: {line}" for line in running.log(5))],
                       remediation=_graceful(stop_timeout))
    if early:
        evidence.append(f"{path} answered before its body arrived ({status_line}): no request could be held in "
                        "flight, so only the exit was verified")
        return Finding(status=Status.passed, subject=name, summary=f"exited {took:.1f} s after SIGTERM",
                       evidence=evidence)
    if not status_line.startswith("HTTP/"):
        return Finding(status=Status.fail, subject=name, summary="SIGTERM cut off a request in flight",
                       evidence=evidence + ["the connection closed without an answer",
                                            f"the process exited {took:.1f} s after SIGTERM",
                                            *(f"log: {line}" for line in running.log(5))],
                       remediation=_graceful(stop_timeout))
    return Finding(status=Status.passed, subject=name,
                   summary=f"finished the in-flight request ({status_line.split(' ', 1)[-1]}) and exited "
                           f"{took:.1f} s after SIGTERM",
                   evidence=evidence + [f"answer after SIGTERM: {status_line}",
                                        f"exited within stop_timeout {stop_timeout:g} s"])


def _sigterm(pid: int, pgid: int) -> None:
    try:
        if os.getpgid(pid) == pgid:
            os.killpg(pgid, signal.SIGTERM)
        else:
            os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def _read_answer(sock: socket.socket, limit: float) -> bytes:
    sock.settimeout(0.2)
    deadline = time.monotonic() + limit
    data = b""
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


def _wait_exit(running: Running, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if not running.alive():
            return True
        time.sleep(POLL_S)
    return not running.alive()


def _graceful(stop_timeout: float) -> str:
    return ("On SIGTERM stop accepting new connections, let requests in flight finish, then exit, all within "
            f"stop_timeout ({stop_timeout:g} s): e.g. call server.shutdown() from the signal handler "
            "(http.server), or run under a server that does it (gunicorn, uvicorn).")

