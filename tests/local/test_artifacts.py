"""Artifacts are built where they stay: their venv's commands run, a crash is never taken for a build."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import pytest

from railguard.providers.local import artifacts
from railguard.providers.local.replicas import not_installed, replica_env
from railguard.sources.snapshot import snapshot

# A build that installs a console script the way pip does: a file in venv/bin whose shebang is the
# venv's interpreter, as it is at build time. It runs only if the venv is still where it was built.
INSTALL_SCRIPT = (
    "import os, sys, pathlib; b = pathlib.Path(sys.executable).parent; s = b / 'hello-cli'; "
    "s.write_text('#!' + sys.executable + '\\nimport sys; print(\"hello from\", sys.executable)\\n'); "
    "s.chmod(0o755); print('built with', sys.executable)"
)


def _source(tmp_path: Path) -> tuple[Path, str]:
    src = tmp_path / "app"
    src.mkdir()
    (src / "app.py").write_text("print('hi')\n")
    return src, snapshot(src).digest


def test_console_scripts_installed_by_the_build_run_from_the_artifact(tmp_path: Path) -> None:
    src, digest = _source(tmp_path)
    root = tmp_path / "artifacts"
    art = artifacts.ensure(root, src, digest, ["python", "-c", INSTALL_SCRIPT], {})
    assert art.path == root / artifacts.artifact_id(digest, ["python", "-c", INSTALL_SCRIPT])
    assert art.bin_dirs == [str(art.path / "venv" / "bin")]  # never Railguard's interpreter
    log = (art.path / artifacts.BUILD_LOG).read_text()
    assert f"built with {art.path / 'venv' / 'bin'}" in log  # the build ran on the artifact's own python
    environ = {"PATH": artifacts.base_path(art.bin_dirs)}
    assert not_installed(["hello-cli"], environ) is None
    done = subprocess.run(["hello-cli"], env=environ, capture_output=True, text=True, check=True)
    assert done.stdout.startswith(f"hello from {art.path / 'venv' / 'bin'}")
    missing = not_installed(["gunicorn", "app:app"], environ)
    assert missing is not None and "'gunicorn' is not installed in the release environment" in missing
    assert "requirements.txt/pyproject" in missing


def test_an_app_without_a_build_still_runs_on_its_own_interpreter(tmp_path: Path) -> None:
    src, digest = _source(tmp_path)
    art = artifacts.ensure(tmp_path / "artifacts", src, digest, None, {})
    config = {"env": {}, "port_env": "PORT"}
    environ = replica_env(config, env="staging", service="web", release=1, index=0, port=None,
                          data_dir=tmp_path / "data", artifact=art, home=tmp_path)
    done = subprocess.run(["python", "-c", "import sys; print(sys.prefix)"], env=environ, capture_output=True,
                          text=True, check=True, cwd=art.src)
    assert done.stdout.strip() == str(art.path / "venv")


def test_a_crashed_build_is_never_taken_for_complete_and_is_rebuilt(tmp_path: Path) -> None:
    src, digest = _source(tmp_path)
    root = tmp_path / "artifacts"
    build = ["python", "-c", "print('building')"]
    half = root / artifacts.artifact_id(digest, build)
    (half / "src").mkdir(parents=True)  # what a build killed half-way leaves: no marker
    (half / "src" / "stray.txt").write_text("left by the crash")
    assert artifacts.find(root, digest, build) is None
    art = artifacts.ensure(root, src, digest, build, {})
    assert not (art.src / "stray.txt").exists() and (art.src / "app.py").is_file()
    assert json.loads((art.path / artifacts.MARKER).read_text())["status"] == "built"


def test_concurrent_builds_of_one_artifact_build_it_once(tmp_path: Path) -> None:
    src, digest = _source(tmp_path)
    root = tmp_path / "artifacts"
    build = ["python", "-c", "print('one build')"]
    results: list[artifacts.Artifact] = []
    threads = [threading.Thread(target=lambda: results.append(artifacts.ensure(root, src, digest, build, {})))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3 and len({r.path for r in results}) == 1
    assert (results[0].path / artifacts.BUILD_LOG).read_text().splitlines().count("one build") == 1


def test_a_failed_build_keeps_its_log_and_is_not_used(tmp_path: Path) -> None:
    src, digest = _source(tmp_path)
    root = tmp_path / "artifacts"
    build = ["python", "-c", "print('No matching distribution found for nope'); raise SystemExit(1)"]
    with pytest.raises(artifacts.ArtifactError) as err:
        artifacts.ensure(root, src, digest, build, {})
    assert "No matching distribution found for nope" in err.value.log_tail
    log = root / artifacts.artifact_id(digest, build) / artifacts.BUILD_LOG
    assert str(log) in str(err.value) and "No matching distribution" in log.read_text()
    assert artifacts.find(root, digest, build) is None
