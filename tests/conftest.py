"""Shared fixtures: a spec builder and a tmp workspace."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

BASE_SPEC = """
[app]
name = "shop"

[environments.staging]
edge_port = 18080

[environments.production]
edge_port = 18443
protected = true

[services.web]
run = ["python", "app.py"]
depends_on = ["api"]
[services.web.health]
http = "/healthz"
interval = "2s"
timeout = "1s"
[[services.web.routes]]
path = "/"

[services.api]
run = ["python", "api.py"]
[[services.api.routes]]
path = "/api"
"""


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder holding an app and a valid spec; the current directory for the test."""
    (tmp_path / "app.py").write_text("print('hi')\n")
    (tmp_path / "api.py").write_text("print('api')\n")
    (tmp_path / "railguard.toml").write_text(BASE_SPEC)
    monkeypatch.chdir(tmp_path)
    for var in ("RAILGUARD_HOME", "RAILGUARD_SPEC"):
        monkeypatch.delenv(var, raising=False)
    yield tmp_path
    os.chdir("/")
