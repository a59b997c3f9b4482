"""Data folders are compared on the paths they resolve to: defaults included, symlinks followed, nesting refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from railguard.engine.workspace import Workspace

SPEC = """
[app]
name = "d"
[environments.staging]
edge_port = 18001
{staging}
[environments.production]
edge_port = 18002
{production}
[services.web]
run = ["python", "app.py"]
"""


def codes(tmp_path: Path, staging: str = "", production: str = "") -> list[tuple[str, str | None]]:
    (tmp_path / "railguard.toml").write_text(SPEC.format(staging=staging, production=production))
    _, diagnostics = Workspace.locate(tmp_path / "railguard.toml").load()
    return [(d.code, d.address) for d in diagnostics if d.severity == "error"]


def test_defaults_and_distinct_folders_pass(tmp_path: Path) -> None:
    assert codes(tmp_path) == []
    assert codes(tmp_path, 'data_dir = "data/staging"', 'data_dir = "data/production"') == []
    # Each environment's own default place, spelled out, is fine too.
    assert codes(tmp_path, 'data_dir = ".railguard/data/staging"') == []
    # A folder of the app's own under the places data usually lives is fine.
    assert codes(tmp_path, 'data_dir = "/var/lib/d-staging"', 'data_dir = "/srv/d/production"') == []


@pytest.mark.parametrize(("staging", "production", "expected"), [
    ('data_dir = "data/prod"', 'data_dir = "./data/prod"', ("spec.shared_resource", "production")),
    ('data_dir = "data/prod/staging"', 'data_dir = "data/prod"', ("spec.shared_resource", "production")),
    ('data_dir = ".railguard/data/production"', "", ("spec.shared_resource", "production")),
    ('data_dir = ".railguard"', "", ("spec.data_dir_unsafe", "staging")),
    ('data_dir = "."', "", ("spec.data_dir_unsafe", "staging")),
    ('data_dir = ".railguard/artifacts/x"', "", ("spec.data_dir_unsafe", "staging")),
    ('data_dir = "/etc"', "", ("spec.data_dir_unsafe", "staging")),
    ('data_dir = "/etc/cron.d/x"', "", ("spec.data_dir_unsafe", "staging")),
    ('data_dir = "/"', "", ("spec.data_dir_unsafe", "staging")),
    ('data_dir = "/var/lib"', "", ("spec.data_dir_unsafe", "staging")),
    ('data_dir = "/usr/local/lib/python3"', "", ("spec.data_dir_unsafe", "staging")),
    ('data_dir = "/root"', "", ("spec.data_dir_unsafe", "staging")),
], ids=["dot-slash", "nested", "default-of-other", "state-folder", "around-state", "artifact", "etc", "in-etc",
        "root-folder", "var-lib", "usr", "root-home"])
def test_unsafe_folders_are_refused(tmp_path: Path, staging: str, production: str,
                                    expected: tuple[str, str]) -> None:
    code, env = expected
    assert (code, f"environments.{env}.data_dir") in codes(tmp_path, staging, production)


def test_a_symlink_into_another_environments_folder_is_followed(tmp_path: Path) -> None:
    (tmp_path / "prod").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "prod")
    found = codes(tmp_path, 'data_dir = "link"', 'data_dir = "prod"')
    assert ("spec.shared_resource", "environments.production.data_dir") in found
