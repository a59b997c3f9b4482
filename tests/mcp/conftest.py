"""Fixtures of the MCP tests: the notes example with a running daemon, secrets set, stopped afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import stop_daemon
from .harness import Notes, make_notes


@pytest.fixture
def notes(tmp_path: Path) -> Iterator[Notes]:
    workspace = make_notes(tmp_path)
    yield workspace
    stop_daemon(tmp_path)
