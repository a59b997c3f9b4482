"""Dependency layers: the app's third-party packages, installed once per dependency set and shared.

What an app depends on changes far less often than its code. A layer is a virtualenv holding the
packages named by the app's dependency files (``uv.lock``, ``requirements.txt``, a pyproject's
``[project].dependencies``, or the ``pip install`` its ``build`` asks for), keyed by the digest of
those files + the interpreter's version + the platform + the index configuration. Artifacts with the
same key share one layer: an artifact's own venv imports the layer's site-packages (a ``.pth``
file) and carries the layer's console scripts re-pointed at its own interpreter, so ``gunicorn``
run from the artifact runs on the artifact's Python and sees the app's own package too.

Layers are built with uv (the ``uv`` wheel's binary), copied out of uv's cache rather than hard
linked (a read-only layer must not share inodes with a cache that later builds read), precompiled,
made read-only and recorded in a file manifest like artifacts. Called by
:mod:`railguard.providers.local.artifacts`; :func:`prune` is called by the artifact GC.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import sys
import sysconfig
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import uv

from railguard.providers.local import immutable
from railguard.providers.local.buildrun import ArtifactError, OnLine, run_streamed
from railguard.providers.local.pipconfig import uv_environment

MARKER = "layer.json"
LAYERS = ".layers"  # under the artifacts folder; its name starts with '.' so artifact GC leaves it to prune()

# uv settings that change nothing about what is installed; every other UV_* (indexes, strategy) is in the key.
_NOT_KEY = {"UV_NO_PROGRESS", "UV_CACHE_DIR", "UV_PYTHON_DOWNLOADS", "UV_LINK_MODE", "UV_CONCURRENT_DOWNLOADS"}
_PIP = re.compile(r"^(?:.*/)?pip3?(?:\.\d+)?$")
_PYTHON = re.compile(r"^(?:.*/)?python3?(?:\.\d+)?$")
_DROP_FLAGS = {"--no-input", "-q", "--quiet", "-qq", "-U", "--upgrade", "--no-cache-dir", "-v", "--verbose",
               "--disable-pip-version-check", "--no-warn-script-location", "--user", "--compile", "--no-compile",
               "--progress-bar=off", "--root-user-action=ignore"}
_VALUE_FLAGS = {"-i": "--index-url", "--index-url": "--index-url", "--extra-index-url": "--extra-index-url",
                "-f": "--find-links", "--find-links": "--find-links"}


@dataclass(frozen=True)
class Dependencies:
    """What an artifact installs, and how.

    ``requirements``/``constraints``: files for the layer (relative to the source); ``packages``:
    requirement strings for the layer; ``project``: the app's own pyproject dependencies go to the layer
    and the app itself is installed into the artifact (``uv pip install --no-deps .``); ``lock``: a
    ``uv.lock`` exported to exact pins; ``rest``: the spec's build when it is more than a pip install.
    """

    requirements: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    index_args: tuple[str, ...] = ()
    project: bool = False
    lock: bool = False
    rest: list[str] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def layered(self) -> bool:
        return bool(self.requirements or self.packages or self.project or self.lock)


def uv_bin() -> str:
    return str(uv.find_uv_bin())


def base_python() -> str:
    """The real interpreter artifacts are made from (Railguard's own, without its venv)."""
    candidate = getattr(sys, "_base_executable", None) or sys.executable
    return os.path.realpath(candidate)


def _declares_project(pyproject: Path) -> bool:
    try:
        return isinstance(tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project"), dict)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False


def _pip_args(build: list[str]) -> list[str] | None:
    """The arguments of ``pip install ...`` / ``python -m pip install ...``, or None for any other build."""
    if len(build) >= 4 and _PYTHON.match(build[0]) and build[1:4] == ["-m", "pip", "install"]:
        return build[4:]
    if len(build) >= 2 and _PIP.match(build[0]) and build[1] == "install":
        return build[2:]
    return None


def plan(src: Path, build: list[str] | None) -> Dependencies:
    """Decide what to install from the files in ``src`` and the spec's ``build``; runs nothing."""
    args = _pip_args(build) if build else None
    if build and args is None:
        found = _detect(src)
        return Dependencies(found.requirements, (), (), (), found.project, found.lock, list(build), found.notes)
    if args is None:
        return _detect(src)
    reqs: list[str] = []
    cons: list[str] = []
    packages: list[str] = []
    index: list[str] = []
    project = False
    i = 0
    while i < len(args):
        arg = args[i]
        value = args[i + 1] if i + 1 < len(args) else None
        if arg in ("-r", "--requirement", "-c", "--constraint") and value is not None:
            (reqs if arg in ("-r", "--requirement") else cons).append(value)
            i += 2
            continue
        if arg in _VALUE_FLAGS and value is not None:
            index += [_VALUE_FLAGS[arg], value]
            i += 2
            continue
        if arg.startswith("--requirement=") or arg.startswith("-r") and len(arg) > 2:
            reqs.append(arg.split("=", 1)[1] if "=" in arg else arg[2:])
        elif arg in _DROP_FLAGS:
            pass
        elif arg.startswith("-"):
            raise ArtifactError(
                f"build: Railguard installs dependencies with uv and does not know pip's option {arg!r}; "
                f"use plain `pip install -r requirements.txt` / `pip install .` (or a requirements file), "
                f"or a build command that is not pip")
        elif arg in (".", "./") or arg.startswith("./") and (src / arg).is_dir():
            project = project or arg in (".", "./")
            if arg not in (".", "./"):
                packages.append(arg)
        else:
            packages.append(arg)
        i += 1
    return Dependencies(tuple(reqs), tuple(cons), tuple(packages), tuple(index), project, False, None,
                        ["the build's pip install is carried out by uv in a shared dependency layer"])


def _detect(src: Path) -> Dependencies:
    pyproject = src / "pyproject.toml"
    has_project = pyproject.is_file() and _declares_project(pyproject)
    if has_project and (src / "uv.lock").is_file():
        return Dependencies(project=True, lock=True, notes=["uv.lock: installing its exact pins"])
    reqs = ("requirements.txt",) if (src / "requirements.txt").is_file() else ()
    notes = ["requirements.txt"] if reqs else []
    if has_project:
        notes.append("pyproject.toml [project]")
    return Dependencies(requirements=reqs, project=has_project, notes=notes)


def _local_refs(text: str) -> bool:
    """Whether a requirements file installs something from the app's own tree (then the source is the key)."""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#") and (line.startswith((".", "/", "-e", "--editable", "file:"))
                                                 or " @ file:" in line):
            return True
    return False


def _includes(src: Path, rel: str, seen: set[Path]) -> list[tuple[str, str]]:
    """``rel`` and every file it includes with -r/-c, as (path, text), staying inside ``src``."""
    path = (src / rel).resolve()
    if path in seen or not path.is_relative_to(src.resolve()):
        return []
    seen.add(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"build: cannot read the dependency file {rel!r}: {exc}") from exc
    out = [(str(path.relative_to(src.resolve())), text)]
    for raw in text.splitlines():
        parts = raw.strip().split()
        if len(parts) >= 2 and parts[0] in ("-r", "--requirement", "-c", "--constraint"):
            out += _includes(path.parent, parts[1], seen) if path.parent.is_relative_to(src.resolve()) else []
    return out


def key(src: Path, deps: Dependencies, source_digest: str, uv_env: dict[str, str]) -> str:
    """The layer's identity: dependency files, interpreter, platform and index settings, never app code.

    ``uv_env`` is the environment uv runs with; only its ``UV_*`` settings count (the app's own variables,
    a new VERSION for example, must not make a new layer).
    """
    files: list[tuple[str, str]] = []
    seen: set[Path] = set()
    for rel in (*deps.requirements, *deps.constraints):
        files += _includes(src, rel, seen)
    pinned_by_source = any(_local_refs(text) for _, text in files) or any(
        p.startswith((".", "/")) for p in deps.packages)
    project: object = None
    if deps.project:
        data = tomllib.loads((src / "pyproject.toml").read_text(encoding="utf-8"))
        proj = data.get("project", {})
        project = {"dependencies": proj.get("dependencies"), "dynamic": proj.get("dynamic"),
                   "requires-python": proj.get("requires-python")}
        if "dependencies" in (proj.get("dynamic") or []):
            pinned_by_source = True  # only building the project tells what it needs
    if deps.lock:
        files.append(("uv.lock", (src / "uv.lock").read_text(encoding="utf-8")))
    settings = sorted((k, v) for k, v in uv_env.items() if k.startswith("UV_") and k not in _NOT_KEY)
    material = {
        "v": 1, "files": sorted(files), "packages": deps.packages, "index_args": deps.index_args,
        "project": project, "python": sys.version, "implementation": platform.python_implementation(),
        "platform": sysconfig.get_platform(), "libc": platform.libc_ver(), "uv_env": settings,
        "source": source_digest if pinned_by_source else None,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Layer:
    path: Path
    key: str

    @property
    def venv(self) -> Path:
        return self.path / "venv"


def find(root: Path, layer_key: str) -> Layer | None:
    path = root / layer_key
    try:
        marker = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return Layer(path, layer_key) if marker.get("status") == "built" else None


def uv_env(env: dict[str, str]) -> dict[str, str]:
    """The environment of every uv command: the build's variables, pip's index settings, no stray venv."""
    out = {k: v for k, v in os.environ.items() if k.startswith(("UV_", "SSL_", "HTTP_PROXY", "HTTPS_PROXY",
                                                                   "NO_PROXY", "http_proxy", "https_proxy",
                                                                   "no_proxy", "XDG_CACHE_HOME"))}
    out.update(env)
    out.update(uv_environment())
    out.update({"HOME": os.path.expanduser("~"), "LANG": "C.UTF-8", "PATH": "/usr/local/bin:/usr/bin:/bin",
                "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1", "NO_COLOR": "1"})
    out.pop("VIRTUAL_ENV", None)
    return out


def ensure(root: Path, src: Path, deps: Dependencies, layer_key: str, env: dict[str, str], log: Path,
           on_line: OnLine | None) -> Layer:
    """The layer for ``layer_key``, built from ``src``'s dependency files when no artifact made it before."""
    from railguard.providers.local.artifacts import locked  # the same lock discipline as artifacts

    found = find(root, layer_key)
    if found is not None:
        if on_line:
            on_line(f"dependencies: reusing layer {layer_key} (unchanged dependency set)")
        return found
    root.mkdir(parents=True, exist_ok=True)
    with locked(root, layer_key, blocking=True):
        found = find(root, layer_key)
        if found is not None:
            return found
        final = root / layer_key
        immutable.remove_tree(final)
        final.mkdir()
        try:
            environ = uv_env(env)
            if on_line:
                on_line(f"dependencies: building layer {layer_key} with uv ({', '.join(deps.notes) or 'packages'})")
            uvb = uv_bin()
            run_streamed([uvb, "venv", "--quiet", "--python", base_python(), str(final / "venv")], cwd=src,
                         env=environ, log=log, on_line=on_line, what="creating the dependency layer")
            install = [uvb, "pip", "install", "--python", str(final / "venv" / "bin" / "python"), "--link-mode=copy",
                       "--compile-bytecode", *deps.index_args]
            if deps.lock:
                pins = final / "requirements.lock.txt"
                run_streamed([uvb, "export", "--frozen", "--no-emit-project", "--no-hashes", "--no-header",
                              "--quiet", "--output-file", str(pins)], cwd=src, env=environ, log=log, on_line=on_line,
                             what="exporting uv.lock")
                install = [uvb, "pip", "sync", "--python", str(final / "venv" / "bin" / "python"), "--link-mode=copy",
                           "--compile-bytecode", str(pins)]
            else:
                for rel in deps.requirements:
                    install += ["-r", rel]
                for rel in deps.constraints:
                    install += ["-c", rel]
                if deps.project:
                    install += ["-r", "pyproject.toml"]
                install += list(deps.packages)
            run_streamed(install, cwd=src, env=environ, log=log, on_line=on_line, what="installing dependencies")
        except ArtifactError:
            immutable.remove_tree(final)  # its output is in the artifact's build.log; a half layer is never kept
            raise
        immutable.seal(final, exclude={MARKER})
        marker = final / f".{MARKER}.tmp"
        marker.write_text(json.dumps({"status": "built", "key": layer_key, "notes": deps.notes}))
        os.chmod(final, 0o755)
        os.replace(marker, final / MARKER)
        os.chmod(final / MARKER, 0o444)
        os.chmod(final, 0o555)
    return Layer(final, layer_key)


def site_packages(venv: Path) -> Path:
    return venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def link(layer: Layer, artifact_venv: Path) -> int:
    """Make the artifact's venv see the layer: its site-packages, and its console scripts on the artifact's
    own interpreter. Returns the number of scripts carried over."""
    (site_packages(artifact_venv) / "_railguard_layer.pth").write_text(
        f"import site; site.addsitedir({str(site_packages(layer.venv))!r})\n")
    # uv writes "#!<python>" or, for a path too long for a shebang, a /bin/sh trampoline naming it.
    old = str(layer.venv / "bin" / "python").encode()
    new = str(artifact_venv / "bin" / "python").encode()
    count = 0
    for script in sorted((layer.venv / "bin").iterdir()):
        target = artifact_venv / "bin" / script.name
        if script.is_symlink() or not script.is_file() or target.exists():
            continue
        data = script.read_bytes()
        head, body = data[:512], data[512:]
        if not head.startswith(b"#!") or old not in head:
            continue
        target.write_bytes(head.replace(old, new) + body)
        os.chmod(target, 0o755)
        count += 1
    return count


def prune(root: Path, keep: set[str]) -> list[str]:
    """Delete the layers whose key is not in ``keep``; a layer being built (its lock held) stays."""
    from railguard.providers.local.artifacts import locked

    if not root.is_dir():
        return []
    deleted: list[str] = []
    for path in sorted(root.iterdir()):
        if not path.is_dir() or path.name.startswith(".") or path.name in keep:
            continue
        with locked(root, path.name, blocking=False) as held:
            if not held:
                continue
            doomed = root / f".deleting.{path.name}.{os.getpid()}"
            path.rename(doomed)
            immutable.remove_tree(doomed)
            (root / f".{path.name}.lock").unlink(missing_ok=True)
            deleted.append(path.name)
    return deleted
