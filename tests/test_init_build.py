"""`railguard init` picks the build that installs what the app declares: requirements, a pyproject project, both."""

from __future__ import annotations

from pathlib import Path

import pytest

from railguard.engine.starter import detect, install_command

PIP = ["python", "-m", "pip", "install", "--no-input"]
PROJECT = '[project]\nname = "shop"\nversion = "1"\ndependencies = ["waitress"]\n'
TOOL_ONLY = "[tool.ruff]\nline-length = 100\n"


@pytest.mark.parametrize(("files", "expected"), [
    ({}, None),
    ({"requirements.txt": "waitress\n"}, [*PIP, "-r", "requirements.txt"]),
    ({"pyproject.toml": PROJECT}, [*PIP, "."]),
    ({"pyproject.toml": TOOL_ONLY}, None),
    ({"pyproject.toml": "not [valid toml"}, None),
    ({"requirements.txt": "waitress\n", "pyproject.toml": PROJECT}, [*PIP, "-r", "requirements.txt", "."]),
    ({"requirements.txt": "waitress\n", "pyproject.toml": TOOL_ONLY}, [*PIP, "-r", "requirements.txt"]),
])
def test_install_command_follows_the_dependency_files(tmp_path: Path, files: dict[str, str],
                                                      expected: list[str] | None) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert install_command(tmp_path) == expected
    (tmp_path / "app.py").write_text("print('serving')\n")  # imports nothing the build would have to add
    found = detect(tmp_path)
    assert found is not None and found.build == expected
