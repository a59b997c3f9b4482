"""What a replica's environment says about the data folder: the variable, and values that point into it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from railguard.providers.local.artifacts import Artifact
from railguard.providers.local.replicas import replica_env

CONFIG: dict[str, Any] = {"port_env": "PORT", "env": {
    "DATABASE_URL": "sqlite:///$RAILGUARD_DATA_DIR/app.db", "UPLOADS": "${RAILGUARD_DATA_DIR}/uploads",
    "PLAIN": "$HOME/x", "LITERAL": "no$RAILGUARD_DATA_DIRECTORY"}}


def test_data_dir_is_expanded_in_plain_values_only(tmp_path: Path) -> None:
    data = tmp_path / "data" / "staging"
    environ = replica_env(CONFIG, env="staging", service="web", release=3, index=0, port=8000, data_dir=data,
                          artifact=Artifact(tmp_path / "artifact", "sha256:x"), home=tmp_path,
                          secrets={"TOKEN": "$RAILGUARD_DATA_DIR"})
    assert environ["RAILGUARD_DATA_DIR"] == str(data)
    assert environ["DATABASE_URL"] == f"sqlite:///{data}/app.db" and environ["UPLOADS"] == f"{data}/uploads"
    assert environ["PLAIN"] == "$HOME/x"  # nothing else is expanded
    assert environ["TOKEN"] == "$RAILGUARD_DATA_DIR"  # secrets are passed exactly as set
    assert environ["LITERAL"] == "no$RAILGUARD_DATA_DIRECTORY"  # another name is not the data folder
