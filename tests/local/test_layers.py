"""Real uv builds: the dependency layer is shared, its console scripts run, artifacts are sealed and checked.

Packages come from a tiny wheel made in the test (``--no-index`` + ``--find-links`` in the requirements
file), so nothing here needs a package index; the pip-config translation is tested apart, as pure logic.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from railguard.providers.local import artifacts, layers, pipconfig
from railguard.providers.local.replicas import Failure, replica_env, start_replicas
from railguard.sources.snapshot import snapshot
from tests.wheels import make_wheel

TOOL = '''
import sys


def main():
    print("tool on", sys.executable)
    sys.path.insert(0, ".")  # as gunicorn and uvicorn do: the app's module from the working directory
    import appmod
    print(appmod.VALUE)
'''


def _app(tmp_path: Path, value: str) -> tuple[Path, str]:
    wheels = tmp_path / "wheels"
    if not wheels.exists():
        make_wheel(wheels, "rgtesttool", "1.0", TOOL, {"rgtool": "rgtesttool:main"})
    src = tmp_path / "app"
    src.mkdir(exist_ok=True)
    (src / "requirements.txt").write_text(f"--no-index\n--find-links {wheels}\nrgtesttool==1.0\n")
    (src / "appmod.py").write_text(f"VALUE = {value!r}\n")
    return src, snapshot(src).digest


def test_a_code_only_change_reuses_the_layer_and_its_console_scripts_run_from_the_artifact(tmp_path: Path) -> None:
    root = tmp_path / "state" / "artifacts"
    src, first_digest = _app(tmp_path, "one")
    lines: list[str] = []
    first = artifacts.ensure(root, src, first_digest, None, {}, on_line=lines.append)
    assert first.layer is not None and first.layer.parent == root / layers.LAYERS
    assert any("building layer" in line for line in lines)
    assert any("rgtesttool==1.0" in line for line in lines), lines  # uv's own output, streamed as it came
    assert "rgtesttool" in (first.path / artifacts.BUILD_LOG).read_text()
    # The layer's console script is in the artifact's venv, on the artifact's interpreter, and sees the app.
    done = subprocess.run(["rgtool"], env={"PATH": artifacts.base_path(first.bin_dirs)}, cwd=first.src,
                          capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == [f"tool on {first.path / 'venv' / 'bin' / 'python'}", "one"]

    (src / "appmod.py").write_text("VALUE = 'two'\n")
    lines.clear()
    second = artifacts.ensure(root, src, snapshot(src).digest, None, {}, on_line=lines.append)
    assert second.path != first.path and second.layer == first.layer
    assert any("reusing layer" in line for line in lines) and not any("Installed" in line for line in lines)
    assert len(list((root / layers.LAYERS).iterdir())) == 2  # the layer and its lock file
    done = subprocess.run(["rgtool"], env={"PATH": artifacts.base_path(second.bin_dirs)}, cwd=second.src,
                          capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "two"

    # A changed dependency set is a new layer; GC then keeps only what a kept artifact uses.
    (src / "requirements.txt").write_text((src / "requirements.txt").read_text() + "# pinned again\n")
    third = artifacts.ensure(root, src, snapshot(src).digest, None, {})
    assert third.layer != first.layer
    assert artifacts.prune(root, {third.path.name}) == sorted([first.path.name, second.path.name])
    assert not first.layer.exists() and third.layer is not None and third.layer.is_dir()
    artifacts.verify(third)


def test_a_sealed_artifact_is_read_only_and_a_rewrite_is_refused_at_start(tmp_path: Path) -> None:
    root = tmp_path / "state" / "artifacts"
    src, digest = _app(tmp_path, "one")
    art = artifacts.ensure(root, src, digest, None, {})
    assert oct(os.stat(art.src / "appmod.py").st_mode & 0o777) == "0o444"
    assert oct(os.stat(art.src).st_mode & 0o777) == "0o555"
    assert art.layer is not None and oct(os.stat(art.layer / "venv").st_mode & 0o777) == "0o555"
    artifacts.verify(art)

    # The same uid can chmod its way back in; the manifest check still refuses what it wrote.
    target = art.layer / "venv" / "lib"
    module = next(target.glob("python*/site-packages/rgtesttool.py"))
    os.chmod(module.parent, 0o755)
    os.chmod(module, 0o644)
    module.write_text(module.read_text() + "\nprint('injected')\n")
    with pytest.raises(artifacts.ArtifactTampered) as found:
        artifacts.verify(art)
    assert "rgtesttool.py" in str(found.value) and "dependency layer" in str(found.value)
    # Naming another (pristine) layer does not get past the check: the reference is inside the sealed tree.
    ref = art.path / artifacts.LAYER_REF
    os.chmod(art.path, 0o755)
    os.chmod(ref, 0o644)
    original = ref.read_text()
    ref.write_text(original.replace(art.layer.name, "0" * 24))
    with pytest.raises(artifacts.ArtifactTampered, match=f"changed: {artifacts.LAYER_REF}"):
        artifacts.verify(art)
    ref.write_text(original)
    config = {"env": {}, "port_env": "PORT", "run": ["rgtool"], "listen": False, "stop_timeout_ms": 1000}
    with pytest.raises(Failure) as refused:
        start_replicas(1, 0, config, env="staging", service="web", release=1, data_dir=tmp_path / "data",
                       artifact=art, home=tmp_path / "state", log_dir=tmp_path / "logs")
    assert refused.value.code == "artifact.tampered"
    assert not list((tmp_path / "logs").glob("*.log"))  # nothing was started

    # An added file (a .pth or sitecustomize that would run first) is a change too.
    module.write_text(module.read_text().replace("\nprint('injected')\n", ""))
    artifacts.verify(art)  # restored content: the same bytes are the same artifact
    (module.parent / "zz_evil.pth").write_text("import os\n")
    with pytest.raises(artifacts.ArtifactTampered, match="added: .*zz_evil.pth"):
        artifacts.verify(art)


def test_a_replica_writing_into_its_release_fails_and_says_where_data_belongs(tmp_path: Path) -> None:
    """Root ignores file modes: the release is mounted read-only for the replica then (see sandbox.py)."""
    root = tmp_path / "state" / "artifacts"
    src = tmp_path / "app"
    src.mkdir()
    (src / "app.py").write_text("open('db.sqlite3', 'w').write('x')\n")
    art = artifacts.ensure(root, src, snapshot(src).digest, None, {})
    config = {"env": {}, "port_env": "PORT", "run": ["python", "app.py"], "listen": False, "stop_timeout_ms": 1000,
              "health": None, "start_timeout_ms": 10_000, "release": ["python", "app.py"]}
    environ = replica_env(config, env="staging", service="web", release=1, index=None, port=None,
                          data_dir=tmp_path / "data", artifact=art, home=tmp_path / "state")
    from railguard.providers.local.replicas import run_release_command

    with pytest.raises(Failure) as failed:
        run_release_command(config, environ, art, tmp_path / "release.log")
    assert failed.value.code == "artifact.write_refused", failed.value.cause
    assert "$RAILGUARD_DATA_DIR" in failed.value.cause and "db.sqlite3" in failed.value.cause
    assert not (art.src / "db.sqlite3").exists()
    artifacts.verify(art)


def test_a_failing_install_shows_the_resolvers_own_words(tmp_path: Path) -> None:
    src = tmp_path / "app"
    src.mkdir()
    (src / "requirements.txt").write_text(f"--no-index\n--find-links {tmp_path}\nrg-no-such-package-anywhere\n")
    lines: list[str] = []
    with pytest.raises(artifacts.ArtifactError) as failed:
        artifacts.ensure(tmp_path / "artifacts", src, snapshot(src).digest, None, {}, on_line=lines.append)
    assert "rg-no-such-package-anywhere" in str(failed.value) and "installing dependencies exited" in str(failed.value)
    assert any("rg-no-such-package-anywhere" in line for line in failed.value.log_tail)
    assert any("rg-no-such-package-anywhere" in line for line in lines)
    assert artifacts.find(tmp_path / "artifacts", snapshot(src).digest, None) is None


def test_pip_builds_are_carried_out_by_uv_and_only_dependency_files_key_the_layer(tmp_path: Path) -> None:
    src = tmp_path / "app"
    src.mkdir()
    (src / "requirements.txt").write_text("six\n")
    (src / "prod.txt").write_text("-r requirements.txt\nidna\n")
    deps = layers.plan(src, ["python", "-m", "pip", "install", "--no-input", "-r", "prod.txt", "gunicorn"])
    assert deps.requirements == ("prod.txt",) and deps.packages == ("gunicorn",) and deps.rest is None
    env = {"UV_INDEX_STRATEGY": "unsafe-best-match"}
    key = layers.key(src, deps, "sha256:a", env)
    (src / "app.py").write_text("print(1)\n")
    assert layers.key(src, deps, "sha256:b", env) == key  # code is not part of the key
    (src / "requirements.txt").write_text("six==1.17.0\n")  # an included file is
    assert layers.key(src, deps, "sha256:b", env) != key
    assert layers.plan(src, ["make", "assets"]).rest == ["make", "assets"]
    with pytest.raises(artifacts.ArtifactError, match="--prefix"):
        layers.plan(src, ["pip", "install", "--prefix", "/x", "."])


def test_the_apps_own_uv_settings_make_its_layer_its_own(tmp_path: Path) -> None:
    """uv runs in the source folder and reads its uv.toml and [tool.uv]: a staging source that adds one (pointing at a
    wheel of its own, say) must not shape a layer that production, with the same requirements, would then reuse."""
    src = tmp_path / "app"
    src.mkdir()
    (src / "requirements.txt").write_text("idna\n")
    deps = layers.plan(src, ["pip", "install", "-r", "requirements.txt"])
    env: dict[str, str] = {}
    plain = layers.key(src, deps, "sha256:a", env)
    assert layers.key(src, deps, "sha256:b", env) == plain  # shared while nothing of the app's shapes the install
    (src / "uv.toml").write_text('find-links = ["./wheels"]\n')
    staged = layers.key(src, deps, "sha256:a", env)
    assert staged != plain and layers.key(src, deps, "sha256:b", env) != staged  # this source's alone
    (src / "uv.toml").unlink()
    (src / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1"\n[tool.uv.sources]\n'
                                        'idna = { path = "./idna.whl" }\n')
    assert layers.key(src, deps, "sha256:a", env) not in (plain, staged)
    assert layers.key(src, deps, "sha256:b", env) != layers.key(src, deps, "sha256:a", env)


def test_the_machines_pip_index_settings_reach_uv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = https://mirror.example/simple\n"
                    "extra-index-url = file:///opt/a/simple file:///opt/b/simple\nfind-links = /opt/wheels\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    for name in list(os.environ):
        if name.startswith("UV_") or name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"):
            monkeypatch.delenv(name)
    env = pipconfig.uv_environment()
    assert env["UV_DEFAULT_INDEX"] == "https://mirror.example/simple"
    assert env["UV_INDEX"] == "file:///opt/a/simple file:///opt/b/simple"
    assert env["UV_FIND_LINKS"] == "/opt/wheels" and env["UV_INDEX_STRATEGY"] == "unsafe-best-match"
    monkeypatch.setenv("PIP_INDEX_URL", "https://other.example/simple")
    assert pipconfig.uv_environment()["UV_DEFAULT_INDEX"] == "https://other.example/simple"
    monkeypatch.setenv("UV_DEFAULT_INDEX", "https://uv.example/simple")  # uv's own setting wins: no translation
    assert "UV_DEFAULT_INDEX" not in pipconfig.uv_environment()


LOCKED_PROJECT = '''
[project]
name = "lockapp"
version = "0.1"
requires-python = ">=3.11"
dependencies = ["six"]

[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[tool.setuptools]
py-modules = ["lockapp"]
'''


def test_a_locked_project_installs_its_pins_in_the_layer_and_itself_in_the_artifact(tmp_path: Path) -> None:
    """uv.lock + pyproject: the lock's pins (from the machine's index, as pip would use it), then the project."""
    src = tmp_path / "app"
    src.mkdir()
    (src / "pyproject.toml").write_text(LOCKED_PROJECT)
    (src / "lockapp.py").write_text("import six\nVALUE = 'one ' + six.__name__\n")
    subprocess.run([layers.uv_bin(), "lock", "--quiet"], cwd=src, env=layers.uv_env({}), check=True)
    pins = (src / "uv.lock").read_text()
    assert 'name = "six"' in pins
    root = tmp_path / "state" / "artifacts"
    lines: list[str] = []
    art = artifacts.ensure(root, src, snapshot(src).digest, None, {}, on_line=lines.append)
    assert any("uv.lock" in line for line in lines) and any("+ six==" in line for line in lines)
    python = str(art.path / "venv" / "bin" / "python")
    done = subprocess.run([python, "-c", "import lockapp, six, sys; print(lockapp.VALUE, lockapp.__file__)"],
                          cwd="/", capture_output=True, text=True, check=True)
    assert done.stdout.startswith("one six " + str(art.path / "venv"))  # installed into the artifact itself
    (src / "lockapp.py").write_text("import six\nVALUE = 'two'\n")
    again = artifacts.ensure(root, src, snapshot(src).digest, None, {})
    assert again.layer == art.layer and again.path != art.path
    artifacts.verify(again)


POETRY_PROJECT = '''
[tool.poetry]
name = "poetryapp"
version = "0.1.0"
description = ""
authors = ["A <a@example.com>"]
packages = [{ include = "poetryapp.py" }]

[tool.poetry.dependencies]
python = "^3.11"
six = "*"

[build-system]
requires = ["poetry-core>=1.0"]
build-backend = "poetry.core.masonry.api"
'''


def test_a_poetry_project_without_a_project_table_is_installed_into_its_artifact(tmp_path: Path) -> None:
    """A Poetry project names itself in [tool.poetry], not [project]: `pip install .` still builds (the
    app's own install was given `--reinstall-package .`, which uv refuses, so every Poetry app failed)."""
    src = tmp_path / "app"
    src.mkdir()
    (src / "pyproject.toml").write_text(POETRY_PROJECT)
    (src / "poetryapp.py").write_text("import six\nVALUE = 'poetry ' + six.__name__\n")
    root = tmp_path / "state" / "artifacts"
    art = artifacts.ensure(root, src, snapshot(src).digest, ["python", "-m", "pip", "install", "."], {})
    python = str(art.path / "venv" / "bin" / "python")
    done = subprocess.run([python, "-c", "import poetryapp; print(poetryapp.VALUE)"], cwd="/", capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "poetry six"
    assert artifacts._project_name(src) == "poetryapp"
    (src / "pyproject.toml").write_text("[build-system]\nrequires = [\"setuptools\"]\n")  # setup.cfg names it
    assert artifacts._project_name(src) is None


def test_a_pip_install_chained_with_commands_installs_in_the_layer_then_runs_them_in_order(tmp_path: Path) -> None:
    """Django's build: `pip install -r requirements.txt gunicorn && python manage.py collectstatic`. The pip part
    goes to the shared layer (the chain is no reason to install per artifact); each later command runs in the
    artifact, in order, and a failing one stops the build."""
    root = tmp_path / "state" / "artifacts"
    src, _ = _app(tmp_path, "one")
    (src / "collect.py").write_text("import os, sys\nos.makedirs('out', exist_ok=True)\n"
                                    "open('out/' + sys.argv[1], 'w').write(sys.argv[1])\n")
    build = ["python", "-m", "pip", "install", "-r", "requirements.txt", "&&", "python", "collect.py", "a",
             "&&", "python", "collect.py", "b"]
    deps = layers.plan(src, build)
    assert deps.requirements == ("requirements.txt",) and deps.rest == build[7:], deps
    made = artifacts.ensure(root, src, snapshot(src).digest, build, {})
    assert made.layer is not None and sorted(p.name for p in (made.src / "out").iterdir()) == ["a", "b"]
    with pytest.raises(artifacts.ArtifactError, match="empty command"):
        layers.plan(src, ["pip", "install", "-r", "requirements.txt", "&&"])
    failing = ["pip", "install", "-r", "requirements.txt", "&&", "python", "-c", "raise SystemExit(3)", "&&",
               "python", "collect.py", "never"]
    with pytest.raises(artifacts.ArtifactError):
        artifacts.ensure(root, src, snapshot(src).digest, failing, {})
    assert not list(root.glob("*/src/out/never"))


def test_requirements_whose_markers_exclude_the_artifacts_python_fail_the_build_saying_so(tmp_path: Path) -> None:
    """`poetry export` of a project for Python ^3.12 marks every line `python_version >= "3.12"`: uv installed
    nothing ("Checked 23 packages") and the release failed with "'alembic' is not installed"."""
    src = tmp_path / "app"
    src.mkdir()
    newer = f'python_version >= "{sys.version_info[0]}.{sys.version_info[1] + 1}"'
    (src / "requirements.txt").write_text(f"alembic==1.13.2 ; {newer}\n"
                                          f'colorama==0.4.6 ; {newer} and platform_system == "Windows"\n')
    with pytest.raises(artifacts.ArtifactError, match=r"none of its 2 requirements applies to Python"):
        artifacts.ensure(tmp_path / "artifacts", src, snapshot(src).digest, None, {})
    (src / "requirements.txt").write_text(  # one applies: the Windows-only one is rightly skipped
        'colorama==0.4.6 ; platform_system == "Windows"\n' + f"--no-index\n{(src / 'x').name}\n")
    from railguard.providers.local import dependencies

    dependencies.check_markers(src, layers.plan(src, None))
def test_a_release_command_that_outlives_its_timeout_is_killed_and_explained(tmp_path: Path) -> None:
    """The release command is waited for at most start_timeout; then it is killed (not left running) and the
    failure says so."""
    import psutil

    src = tmp_path / "app"
    src.mkdir()
    (src / "slow.py").write_text("import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)\n")
    art = artifacts.ensure(tmp_path / "state" / "artifacts", src, snapshot(src).digest, None, {})
    config = {"env": {}, "port_env": "PORT", "run": ["python", "slow.py"], "listen": False, "stop_timeout_ms": 1000,
              "health": None, "start_timeout_ms": 2000, "release": ["python", "slow.py"]}
    environ = replica_env(config, env="staging", service="web", release=1, index=None, port=None,
                          data_dir=tmp_path / "data", artifact=art, home=tmp_path / "state")
    from railguard.providers.local.replicas import run_release_command

    log = tmp_path / "release.log"
    with pytest.raises(Failure) as failed:
        run_release_command(config, environ, art, log)
    assert failed.value.code == "rollout.release_failed" and "timed out" in failed.value.summary
    started = log.read_text().split()
    assert started, "the command never ran (a machine too loaded for 2 s?)"
    pid = int(started[0])
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_the_markers_check_reads_only_regular_files_inside_the_source(tmp_path: Path) -> None:
    """The build's `-r NAME` comes from the spec: the check must not read /dev/zero (memory), a FIFO (a hung
    build) or a file outside the source (quoted back in its error), in the daemon, before uv ever runs."""
    import os

    from railguard.providers.local import dependencies

    src = tmp_path / "app"
    src.mkdir()
    newer = f'python_version >= "{sys.version_info[0]}.{sys.version_info[1] + 1}"'
    (tmp_path / "outside.txt").write_text(f"alembic==1.13.2 ; {newer}\n")
    os.mkfifo(src / "pipe.txt")
    (src / "link.txt").symlink_to(tmp_path / "outside.txt")
    names = ("../outside.txt", "/dev/zero", "pipe.txt", "link.txt", str(tmp_path / "outside.txt"))
    dependencies.check_markers(src, dependencies.Dependencies(requirements=names))  # returns: nothing was read
    (src / "inside.txt").write_text(f"alembic==1.13.2 ; {newer}\n")
    with pytest.raises(artifacts.ArtifactError, match="none of its 1 requirements"):
        dependencies.check_markers(src, dependencies.Dependencies(requirements=("inside.txt",)))


def test_a_project_whose_requires_python_excludes_the_artifacts_python_fails_before_installing(tmp_path: Path) -> None:
    """The full-stack FastAPI template says requires-python >=3.14: uv installed its dependencies into the layer,
    then refused the app with a resolver message about `app==0.1.0`; now the build says so before anything."""
    src = tmp_path / "app"
    src.mkdir()
    newer = f"{sys.version_info[0]}.{sys.version_info[1] + 1}"
    (src / "pyproject.toml").write_text(f'[project]\nname = "app"\nversion = "0.1.0"\nrequires-python = ">={newer}"\n'
                                        'dependencies = ["rg-no-such-package-anywhere"]\n')
    lines: list[str] = []
    with pytest.raises(artifacts.ArtifactError, match=rf"requires-python = '>={newer}' excludes Python") as failed:
        artifacts.ensure(tmp_path / "artifacts", src, snapshot(src).digest, None, {}, on_line=lines.append)
    assert "Run Railguard from a Python the project accepts" in str(failed.value)
    assert not any("rg-no-such-package-anywhere" in line for line in lines)  # refused before resolving anything
    older = f"{sys.version_info[0]}.{sys.version_info[1]}"
    (src / "pyproject.toml").write_text(f'[project]\nname = "app"\nversion = "0.1.0"\nrequires-python = ">={older}"\n'
                                        "dependencies = []\n")
    from railguard.providers.local import dependencies

    dependencies.check_python(src, layers.plan(src, None))  # accepted: returns


def test_a_project_its_backend_cannot_package_fails_saying_how_to_install_only_its_dependencies(
        tmp_path: Path) -> None:
    """Litestar's hello-world: one app.py and a [project] built by hatchling, which finds no package to ship.
    The backend here is in the tree (nothing to download) and fails the same way."""
    src = tmp_path / "app"
    src.mkdir()
    (src / "pyproject.toml").write_text(
        '[project]\nname = "hello-world"\nversion = "0.1.0"\ndependencies = []\n\n'
        '[build-system]\nrequires = []\nbuild-backend = "rgbackend"\nbackend-path = ["."]\n')
    (src / "rgbackend.py").write_text(
        "def _refuse(*args, **kwargs):\n"
        "    raise ValueError('Unable to determine which files to ship inside the wheel')\n\n"
        "build_wheel = build_sdist = prepare_metadata_for_build_wheel = _refuse\n")
    with pytest.raises(artifacts.ArtifactError) as failed:
        artifacts.ensure(tmp_path / "artifacts", src, snapshot(src).digest, None, {})
    assert "installing the app's own package" in str(failed.value)
    assert '"-r", "pyproject.toml"' in str(failed.value) and "not the project" in str(failed.value)
    assert any("Unable to determine which files to ship" in line for line in failed.value.log_tail)
