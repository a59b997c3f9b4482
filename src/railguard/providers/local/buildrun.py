"""One build command run with its output streamed: to the build log and, line by line, to the caller.

A build can take minutes; the person (or agent) waiting must see it move, and a failure must show
the tool's own words (pip's or uv's "No matching distribution found for ..."). Each line goes to
``build.log`` as it comes and to ``on_line`` (the operation's journal, the doctor's output).
Called by :mod:`railguard.providers.local.artifacts` and :mod:`railguard.providers.local.layers`.
"""

from __future__ import annotations

import os
import selectors
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from railguard.providers.base import BuildFailed
from railguard.providers.local import buildas
from railguard.providers.local.processes import tail

OnLine = Callable[[str], None]
BUILD_TIMEOUT_S = 900.0
MAX_LINE = 2000  # a progress bar without newlines must not become one huge event


class ArtifactError(BuildFailed):
    """The artifact could not be made; ``log_tail`` holds the build's last output lines."""


def run_streamed(argv: list[str], *, cwd: Path, env: dict[str, str], log: Path, on_line: OnLine | None,
                 what: str, timeout: float = BUILD_TIMEOUT_S) -> None:
    """Run ``argv``; raise :class:`ArtifactError` with the log's last lines when it fails or overruns.

    In a build session (:mod:`~railguard.providers.local.buildas`) it runs as the build user, with that
    build's own home and caches; the log is still written by the daemon, never through a symlink the build
    may have put in its place.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    builder = buildas.current()
    if builder is not None:
        env = {**env, **builder.env()}
    try:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise ArtifactError(f"{what}: cannot write the build log {log}: {exc.strerror}") from exc
    if os.fstat(fd).st_nlink != 1 or not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ArtifactError(f"{what}: the build log {log} was replaced by a link; the build is refused")
    with os.fdopen(fd, "ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True, **buildas.popen_user())
        except FileNotFoundError as exc:
            raise ArtifactError(f"{what}: command not found: {argv[0]!r} (it is neither in the artifact's "
                                f"virtualenv nor on the system PATH)") from exc
        except OSError as exc:
            raise ArtifactError(f"{what}: cannot run {argv[0]!r}: {exc.strerror}") from exc
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        pending = b""
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    _kill(proc)
                    raise ArtifactError(f"{what} did not finish within {timeout:.0f} s (full log: {log})",
                                        tail(log, 20))
                if not sel.select(min(left, 1.0)):
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                out.write(chunk)
                out.flush()
                pending += chunk
                *lines, pending = pending.replace(b"\r", b"\n").split(b"\n")
                for line in lines:
                    if line.strip() and on_line is not None:
                        on_line(line.decode("utf-8", "replace")[:MAX_LINE])
                if len(pending) > MAX_LINE and on_line is not None:
                    on_line(pending.decode("utf-8", "replace")[:MAX_LINE])
                    pending = b""
        if pending.strip() and on_line is not None:
            on_line(pending.decode("utf-8", "replace")[:MAX_LINE])
        proc.stdout.close()
        code = proc.wait()
    if code != 0:
        raise ArtifactError(f"{what} exited with {code} (full log: {log})", tail(log, 20))


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
