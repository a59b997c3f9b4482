"""The one real Postgres server of a test run (session fixture), shared by every data test that needs one:
each test works in databases of its own inside it. Started lazily, by the first test that asks.

Run as root, the server runs as another user, which must traverse every folder above its data. pytest's own
temp root (/tmp/pytest-of-root) is reset to 0700 by every pytest that starts as root (other sessions on the
machine), so Postgres folders live under the session's temp folder instead (see ``reachable_tmp``)."""

from __future__ import annotations

import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from railguard.data.postgres import Cluster

from ..conftest import shared_processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def cluster(session_temp_folder: Path) -> Iterator[Cluster]:
    folder = Path(tempfile.mkdtemp(prefix="pg-", dir=session_temp_folder)) / "main"
    with shared_processes(str(folder)):  # the server outlives each test on purpose
        server = Cluster(folder, free_port(), secrets.token_urlsafe(16))
        server.init()
        server.start()
        yield server
        server.remove()
    shutil.rmtree(folder.parent, ignore_errors=True)


@pytest.fixture
def reachable_tmp(session_temp_folder: Path) -> Iterator[Path]:
    """A test's folder that a server's own user can reach even while other pytest runs start (see above)."""
    folder = Path(tempfile.mkdtemp(prefix="t-", dir=session_temp_folder))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
