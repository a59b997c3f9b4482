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
from collections.abc import Mapping
from pathlib import Path

import uv

from railguard.model.diagnostics import RailguardError, error

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
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            project = None
        if isinstance(project, dict) and project.get("dependencies"):
            args += ["-r", str(pyproject)]
    return args


def refuse_build(service: str, build: list[str] | None) -> None:
    """A build that is not a plain pip install cannot run for a pod: say what to do instead."""
    if not build:
        return
    text = " ".join(build)
    if re.match(r"^(?:\S*/)?(?:pip3?|python3?(?:\.\d+)? -m pip) install\b", text):
        return
    raise RailguardError(error(
        "artifact.deps_failed", f"Service '{service}' has a build Railguard cannot run for a Kubernetes pod",
        f"Its build `{text[:200]}` is more than a pip install; on Kubernetes Railguard ships the source and its "
        "wheels to a base image and builds no image.",
        "Build an image elsewhere and set `image = \"registry/app@sha256:…\"` on the service, or reduce the build "
        "to requirements.txt / pyproject dependencies.", address=f"services.{service}.build"))


def build(src: Path, out: Path, python: str, service: str, index_env: Mapping[str, str] | None = None) -> bool:
    """Install the app's dependencies into ``out`` for CPython ``python`` on Linux; False when there are none.

    ``index_env``: uv variables naming the package index (the composition root passes the machine's pip
    configuration translated for uv, as the local runtime's builds use; this runtime imports no other runtime).
    """
    args = wanted(src)
    if not args:
        return False
    out.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k.startswith(("UV_", "PIP_", "SSL_", "HTTP", "NO_PROXY", "http",
                                                                   "no_proxy", "HOME", "XDG_CACHE_HOME"))}
    env.update(index_env or {})
    env.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1",
                "NO_COLOR": "1"})
    command = [str(uv.find_uv_bin()), "pip", "install", "--quiet", "--target", str(out), "--python-version", python,
               "--python-platform", PLATFORM, "--only-binary", ":all:", "--no-compile", *args]
    try:
        done = subprocess.run(command, cwd=src, env=env, capture_output=True, text=True, timeout=900, check=False,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        done = None
        reason = str(exc)
    if done is None or done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:] if done is not None else [reason]
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
