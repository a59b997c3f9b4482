"""Static folders the edge serves from a release's artifact: checked after the build, before any replica starts.

A service may declare ``static`` folders (``model/spec.py``); Caddy's ``file_server`` serves them on the
service's route hosts, so those requests never reach the app. The app is untrusted and its build runs its own
code, so the folder it produced is checked here (by the rollout, as the end of its build step): it must
exist, be a folder, resolve inside the artifact, and hold no symlink that resolves outside it (Caddy follows
symlinks, so one link to ``/etc`` would publish the machine). The edge serves each folder through a link of
its own (:func:`railguard.providers.local.edge.CaddyEdge.set_environment` points it at the live release), so a
switch moves the files with the replicas without a Caddy config change.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from railguard.providers.local.replicas import Failure


def folder(artifact_src: Path, entry: dict[str, Any]) -> Path:
    """Where one declared static folder is inside an artifact's source tree."""
    return artifact_src / str(entry["folder"])


def verify(artifact_src: Path, entries: list[dict[str, Any]]) -> None:
    """Raise :class:`Failure` unless every declared folder is a real folder inside the artifact."""
    root = artifact_src.resolve()
    for entry in entries:
        declared = folder(artifact_src, entry)
        where = f"services.<name>.static path {entry['path']!r}, folder {entry['folder']!r}"
        if not declared.exists():
            raise Failure("rollout.static_missing", "A static folder does not exist in the release",
                          f"{where}: {entry['folder']} is not in the artifact after the build",
                          {"folder": str(entry["folder"])})
        resolved = declared.resolve()
        if not resolved.is_relative_to(root) or not resolved.is_dir():
            raise Failure("rollout.static_outside", "A static folder is not a folder inside the release",
                          f"{where}: it resolves to {resolved}, outside the artifact or not a folder",
                          {"folder": str(entry["folder"])})
        for current, dirs, files in os.walk(resolved):
            for name in dirs + files:
                path = Path(current) / name
                if path.is_symlink() and not path.resolve().is_relative_to(resolved):
                    raise Failure("rollout.static_outside", "A static folder links outside itself",
                                  f"{where}: {path.relative_to(resolved)} is a symlink to {path.resolve()}",
                                  {"folder": str(entry["folder"])})
