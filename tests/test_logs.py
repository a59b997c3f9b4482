"""Long-lived processes roll their logs: the daemon's daemon.log (stdlib rotation) and Caddy's (its own writer)."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from railguard.daemon.lifecycle import LOG_BACKUPS, LOG_MAX_BYTES, log_handler
from tests.test_cli import rg


def test_daemon_log_rolls_when_it_reaches_the_limit(tmp_path: Path) -> None:
    handler = log_handler(tmp_path, max_bytes=2000, backups=2)
    logger = logging.getLogger("railguard.test.rotation")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for i in range(200):
            logger.warning("line %04d %s", i, "x" * 40)
    finally:
        logger.removeHandler(handler)
        handler.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["daemon.log", "daemon.log.1", "daemon.log.2"], names  # older ones were dropped
    assert all((tmp_path / n).stat().st_size <= 2000 for n in names)
    assert "line 0199" in (tmp_path / "daemon.log").read_text()  # the newest line is in the current file
    assert "line 0000" not in "".join((tmp_path / n).read_text() for n in names)


def test_the_daemon_logs_through_the_rotating_handler(workspace: Path) -> None:
    default = log_handler(workspace)
    try:
        assert isinstance(default, logging.handlers.RotatingFileHandler)
        assert default.maxBytes == LOG_MAX_BYTES > 0 and default.backupCount == LOG_BACKUPS > 0
    finally:
        default.close()
    done = rg("daemon", "start", cwd=workspace)
    assert done.returncode == 0, done.stderr
    text = (workspace / ".railguard" / "daemon.log").read_text()
    assert "railguard.daemon: serving" in text, text
