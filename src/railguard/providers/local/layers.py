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

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import uv

from railguard.providers.local import buildas, immutable
from railguard.providers.local.buildrun import ArtifactError, OnLine, run_streamed
from railguard.providers.local.dependencies import Dependencies, key, plan
from railguard.providers.local.pipconfig import uv_environment

MARKER = "layer.json"
LAYERS = ".layers"  # under the artifacts folder; its name starts with '.' so artifact GC leaves it to prune()


def uv_bin() -> str:
    return str(uv.find_uv_bin())


def base_python() -> str:
    """The real interpreter artifacts are made from (Railguard's own, without its venv)."""
    candidate = getattr(sys, "_base_executable", None) or sys.executable
    return os.path.realpath(candidate)


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
    os.chmod(root, 0o711)  # other users (build user, environment users) reach their layer; none lists or writes
    with locked(root, layer_key, blocking=True):
        found = find(root, layer_key)
        if found is not None:
            return found
        final = root / layer_key
        immutable.remove_tree(final)
        final.mkdir()
        try:
            buildas.hand_over(final)  # isolated: a requirement's setup.py is the app's code too
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
            _reclaim(final)
            immutable.remove_tree(final)  # its output is in the artifact's build.log; a half layer is never kept
            raise
        _reclaim(final)
        immutable.seal(final, exclude={MARKER})
        marker = final / f".{MARKER}.tmp"
        marker.write_text(json.dumps({"status": "built", "key": layer_key, "notes": deps.notes}))
        os.chmod(final, 0o755)
        os.replace(marker, final / MARKER)
        os.chmod(final / MARKER, 0o444)
        os.chmod(final, 0o555)
    return Layer(final, layer_key)


def _reclaim(final: Path) -> None:
    """The layer back to the daemon's user (its build user's processes gone) before it is marked and sealed."""
    try:
        buildas.reclaim(final, planted=(MARKER, f".{MARKER}.tmp", immutable.MANIFEST))
    except buildas.ReclaimError as exc:
        immutable.remove_tree(final)
        raise ArtifactError(f"the dependency layer {final.name} is refused: {exc}") from exc


def site_packages(venv: Path) -> Path:
    return venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def link(layer: Layer, artifact_venv: Path) -> int:
    """Make the artifact's venv see the layer: its site-packages, and its console scripts on the artifact's
    own interpreter. Returns the number of scripts carried over."""
    pth = site_packages(artifact_venv) / "_railguard_layer.pth"
    pth.write_text(f"import site; site.addsitedir({str(site_packages(layer.venv))!r})\n")
    os.chmod(pth, 0o644)  # the build user's steps read it too (the daemon's umask may be 077)
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


__all__ = ["Dependencies", "Layer", "ensure", "find", "key", "link", "plan", "prune", "uv_bin", "uv_env"]
