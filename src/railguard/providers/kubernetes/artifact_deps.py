"""The dependency folder of a Kubernetes artifact: the app's third-party packages, for the pod's Python.

The local runtime's dependency layer is a virtualenv for the daemon's own interpreter; a pod runs the
base image's interpreter (``python:3.12-slim`` by default) at another path, perhaps another version.
So for a pod the packages are installed with uv into a plain folder (``uv pip install --target``) for
the base image's Python version and Linux platform, wheels only (an sdist would be built with the
daemon's interpreter and be wrong in the pod). The pod puts the folder on ``PYTHONPATH``; console
scripts get ``#!/usr/bin/env python3`` so they run on the pod's interpreter. A ``build`` that is more
than a pip install cannot run here (Railguard builds no images): such a service gives an ``image``.
Called by :mod:`railguard.providers.kubernetes.artifacts`.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import uv

from railguard.model.diagnostics import RailguardError, error

# Runs uv as someone other than the daemon: given the trees it reads and writes, yields the ``subprocess``
# arguments and environment overrides for the build user, and takes the trees back when the block ends. The
# composition root (providers/registry.py) passes the local runtime's build user here; None: as the daemon.
BuildAs = Callable[[list[Path]], AbstractContextManager[tuple[dict[str, Any], dict[str, str]]]]

# Options that make uv read another file, an editable tree or another index: an app's requirements could
# point them at the daemon's files (its key, /etc/shadow), whose lines uv would echo into the diagnostic.
_FORBIDDEN_OPTION = re.compile(
    r"(?:^|\s)(?:-[rcefi](?:\S|\s|$)|--(?:requirement|constraint|editable|index-url|extra-index-url|find-links|"
    r"trusted-host|no-index)\b)")
_URL_CREDENTIALS = re.compile(r"(://)[^/@\s]+@")
_ABSOLUTE = re.compile(r"(?<![\w.:/])/(?:[\w.@+-]+/?)+")

PLATFORM = "x86_64-manylinux_2_28"  # the official python:*-slim images are Debian (glibc) on amd64
_SHEBANG = re.compile(rb"^#![^\n]*python[0-9.]*[^\n]*\n")


def wanted(src: Path) -> list[str]:
    """The ``uv pip install`` arguments for the app in ``src`` (empty: it needs no third-party package)."""
    args: list[str] = []
    if (src / "requirements.txt").is_file():
        args += ["-r", str(src / "requirements.txt")]
    pyproject = src / "pyproject.toml"
    if pyproject.is_file():
        try:
            project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):  # nested past the parser
            project = None
        if isinstance(project, dict) and project.get("dependencies"):
            args += ["-r", str(pyproject)]
    return args


def check_requirements(src: Path, service: str) -> list[Path]:
    """Refuse, before uv runs, requirements that reach outside the snapshot (another file, index or path); return
    the local paths inside the snapshot that the requirements name (their bytes are part of what gets installed)."""
    lines: list[str] = []
    local: list[Path] = []
    for name in ("requirements.txt", "pyproject.toml"):
        path = src / name
        if path.is_symlink() or (path.exists() and not path.resolve().is_relative_to(src.resolve())):
            _refuse_line(service, name, f"{name} is a symbolic link")
    req = src / "requirements.txt"
    if req.is_file():
        text = req.read_text(encoding="utf-8", errors="replace").replace("\\\n", " ")
        lines += [line.split(" #")[0].strip() for line in text.splitlines()]
    pyproject = src / "pyproject.toml"
    if pyproject.is_file():
        try:
            project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):  # nested past the parser
            project = None
        deps = project.get("dependencies") if isinstance(project, dict) else None
        lines += [str(d).strip() for d in deps] if isinstance(deps, list) else []
    for line in lines:
        if not line or line.startswith("#"):
            continue
        if _FORBIDDEN_OPTION.search(line) or "${" in line:
            _refuse_line(service, line, "it names another requirements/constraints file, an editable tree, "
                         "another package index or an environment variable")
        for candidate in _paths_in(line):
            target = (src / candidate).resolve() if not candidate.startswith("/") else Path(candidate).resolve()
            if not target.is_relative_to(src.resolve()):
                _refuse_line(service, line, "it names a path outside the app's source")
            local.append(target)
    return local


def _paths_in(line: str) -> list[str]:
    """The local paths a requirement line names: ``file:`` URLs, ``./x``, ``../x``, ``/x``, ``~/x``."""
    found: list[str] = []
    for token in re.split(r"[\s;]+", line):
        token = token.strip("'\"")
        if token.lower().startswith("file:"):
            rest = token[5:]
            found.append("/" + rest.lstrip("/") if rest.startswith("//") or rest.startswith("/") else rest)
        elif token.startswith(("/", "./", "../", "~", "..")) or "/../" in token:
            found.append(token.replace("~", "/root", 1) if token.startswith("~") else token)
    return found


def _refuse_line(service: str, line: str, why: str) -> None:
    raise RailguardError(error(
        "artifact.deps_failed", f"A dependency line of service '{service}' is refused",
        f"`{line[:200]}`: {why}. A pod's dependencies come from the package index the daemon uses, by name.",
        "Name packages by name and version (or by an https URL); put local wheels inside the app's folder and "
        "name them by a relative path.", address=f"services.{service}"))


def _quiet(text: str, src: Path) -> str:
    """uv's message without credentials in URLs or paths outside the snapshot (they are the daemon's)."""
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    return _ABSOLUTE.sub(lambda m: m.group(0) if m.group(0).startswith(str(src)) else "<path>", text)


def refuse_build(service: str, build: list[str] | None) -> None:
    """A build that is not a plain pip install cannot run for a pod: say what to do instead."""
    if not build:
        return
    text = " ".join(build)
    # "&&" chains commands after the install (Django's collectstatic): those would not run for a pod.
    if re.match(r"^(?:\S*/)?(?:pip3?|python3?(?:\.\d+)? -m pip) install\b", text) and "&&" not in build:
        return
    raise RailguardError(error(
        "artifact.deps_failed", f"Service '{service}' has a build Railguard cannot run for a Kubernetes pod",
        f"Its build `{text[:200]}` is more than a pip install; on Kubernetes Railguard ships the source and its "
        "wheels to a base image and builds no image.",
        "Build an image elsewhere and set `image = \"registry/app@sha256:…\"` on the service, or reduce the build "
        "to requirements.txt / pyproject dependencies.", address=f"services.{service}.build"))


def build(src: Path, out: Path, python: str, service: str, index_env: Mapping[str, str] | None = None,
          build_as: BuildAs | None = None) -> bool:
    """Install the app's dependencies into ``out`` for CPython ``python`` on Linux; False when there are none.

    ``index_env``: uv variables naming the package index (the composition root passes the machine's pip
    configuration translated for uv, as the local runtime's builds use; this runtime imports no other runtime).
    ``build_as``: runs uv as the app's build user with a home of its own (see :data:`BuildAs`).
    """
    args = wanted(src)
    if not args:
        return False
    check_requirements(src, service)
    out.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k.startswith(("UV_", "PIP_", "SSL_", "HTTP", "NO_PROXY", "http",
                                                                   "no_proxy", "HOME", "XDG_CACHE_HOME"))}
    env.update(index_env or {})
    env.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1",
                "NO_COLOR": "1"})
    # --no-config/--no-sources: a uv.toml or [tool.uv.sources] in the app's (the agent's) source must not point uv at
    # another index or at files outside what the requirements name (check_requirements is about those lines only).
    env["UV_NO_CONFIG"] = "1"
    command = [str(uv.find_uv_bin()), "pip", "install", "--quiet", "--no-config", "--no-sources", "--target", str(out),
               "--python-version", python, "--python-platform", PLATFORM, "--only-binary", ":all:", "--no-compile",
               *args]
    session = build_as([src, out.parent]) if build_as is not None else nullcontext(({}, {}))
    try:
        with session as (popen, overrides):
            done = subprocess.run(command, cwd=src, env={**env, **overrides}, capture_output=True, text=True,
                                  timeout=900, check=False, stdin=subprocess.DEVNULL, **popen)
    except (OSError, subprocess.SubprocessError) as exc:
        done = None
        reason = type(exc).__name__
    if done is None or done.returncode != 0:
        tail = ([_quiet(line, src) for line in (done.stderr or done.stdout).strip().splitlines()[-3:]]
                if done is not None else [reason])
        raise RailguardError(error(
            "artifact.deps_failed", f"The dependencies of service '{service}' cannot be installed for the pod",
            f"uv could not install them as wheels for CPython {python} on {PLATFORM}: {' / '.join(tail)[:600]}",
            "Pin versions that publish manylinux wheels for that Python, choose a base_image whose Python they "
            "support, or give the service an image built elsewhere.", address=f"services.{service}"))
    _portable_scripts(out / "bin")
    return True


def _portable_scripts(folder: Path) -> None:
    """Console scripts point at the daemon's interpreter; in the pod they must run on the image's."""
    if not folder.is_dir():
        return
    for script in sorted(folder.iterdir()):
        if script.is_symlink() or not script.is_file():
            continue
        data = script.read_bytes()
        if _SHEBANG.match(data):
            script.write_bytes(_SHEBANG.sub(b"#!/usr/bin/env python3\n", data, count=1))
            os.chmod(script, 0o755)
