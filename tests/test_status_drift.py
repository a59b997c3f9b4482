"""Status's drift check keeps what it derives between calls, and still sees every edit.

``railguard status`` is polled (agents, the console), so the daemon keeps the applied spec's fingerprints and
the desired digest keyed by what they come from (daemon/status.py). These tests edit the source and the spec
between two reads and require the second read to see the edit: a cache keyed too loosely fails them.
"""

from __future__ import annotations

from pathlib import Path

from railguard.daemon import status
from railguard.engine.workspace import Workspace

SPEC = ('[app]\nname = "a"\n[environments.staging]\nedge_port = 8080\n[services.web]\nrun = ["python", "app.py"]\n'
        'secrets = ["API_KEY"]\n')


def _ws(tmp_path: Path) -> Workspace:
    (tmp_path / "railguard.toml").write_text(SPEC)
    (tmp_path / "app.py").write_text("print('one')\n")
    return Workspace(tmp_path / "railguard.toml", tmp_path / ".railguard")


def test_the_desired_digest_moves_with_the_source_the_spec_and_the_secrets(tmp_path: Path) -> None:
    ws = _ws(tmp_path)
    first = status._desired_digest(ws, status.parsed_spec(ws), "staging", {"API_KEY": 1})
    assert status._desired_digest(ws, status.parsed_spec(ws), "staging", {"API_KEY": 1}) == first  # nothing moved
    (tmp_path / "app.py").write_text("print('two')\n")  # same size, other bytes
    edited = status._desired_digest(ws, status.parsed_spec(ws), "staging", {"API_KEY": 1})
    assert edited != first
    assert status._desired_digest(ws, status.parsed_spec(ws), "staging", {"API_KEY": 2}) != edited
    (tmp_path / "railguard.toml").write_text(SPEC.replace('"app.py"', '"app.py", "--fast"'))
    assert status._desired_digest(ws, status.parsed_spec(ws), "staging", {"API_KEY": 1}) not in (first, edited)
