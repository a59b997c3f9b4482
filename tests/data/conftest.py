"""The one real Postgres server of a test run (session fixture), shared by every data test that needs one:
each test works in databases of its own inside it. Started lazily, by the first test that asks."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator

import pytest

from railguard.data.postgres import Cluster

from ..conftest import shared_processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("pg") / "main"
    with shared_processes(str(folder)):  # the server outlives each test on purpose
        server = Cluster(folder, free_port(), secrets.token_urlsafe(16))
        server.init()
        server.start()
        yield server
        server.remove()
