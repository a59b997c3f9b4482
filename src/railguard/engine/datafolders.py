"""Each environment's data folder, checked on the paths it really resolves to.

The spec's own check (:mod:`railguard.model.checks`) compares ``data_dir`` strings, which says nothing about
``data/prod`` against ``./data/prod``, a symlink to another environment's folder, or the default
``<state>/data/<env>`` that no string names. Here every folder is resolved (defaults included, symlinks
followed) and refused when it is another environment's folder, inside or around one, inside the state folder
(other than its own default place), around the state folder, inside an artifact, or a system folder (``/``,
anything under ``/etc``, ``/usr``, ``/var/spool``…, a home folder itself): the daemon may run as root and hands the
folder to the environment's user. The provider refuses, besides, any existing folder that is not new, empty or
already the environment's (:func:`railguard.providers.local.isolation.prepare_data`). Called by
:class:`railguard.engine.workspace.Workspace` whenever the spec is loaded with its state folder known.
"""

from __future__ import annotations

import pwd
from collections.abc import Iterator
from pathlib import Path

from railguard.model.diagnostics import Diagnostic, error
from railguard.model.spec import Spec


def resolved(spec: Spec, env: str, root: Path, home: Path) -> Path:
    configured = spec.environments[env].data_dir
    return ((root / configured) if configured else (home / "data" / env)).resolve()


# Folders the operating system, its services or its users own: never an app's data folder (nor anything in them).
SYSTEM_TREES = tuple(Path(p) for p in ("/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
                                        "/boot", "/proc", "/sys", "/dev", "/run", "/var/spool", "/var/run",
                                        "/var/log", "/var/cache", "/var/backups", "/var/mail", "/snap"))
# Folders an app's data may go inside, but that are not one app's to have.
SHARED_ROOTS = tuple(Path(p) for p in ("/", "/home", "/var", "/var/lib", "/var/tmp", "/tmp", "/opt", "/srv", "/mnt",
                                        "/media", "/data"))


def system_folder(path: Path) -> str | None:
    """Why ``path`` (resolved) is the system's and not an app's to keep data in; None when it may be."""
    if path in SHARED_ROOTS:
        return f"it is {path} itself, which many programs and users share"
    for tree in SYSTEM_TREES:
        if _within(path, tree):
            return f"it is in {tree}, which belongs to the operating system"
    homes = {Path(entry.pw_dir) for entry in pwd.getpwall() if entry.pw_dir not in ("", "/", "/nonexistent")}
    if path in homes:
        return "it is a user's home folder"
    return None


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check(spec: Spec, root: Path, home: Path) -> Iterator[Diagnostic]:
    state = home.resolve()
    folders = {env: resolved(spec, env, root, home) for env in spec.environments}
    envs = list(folders)
    for i, env in enumerate(envs):
        path, address = folders[env], f"environments.{env}.data_dir"
        for other in envs[:i]:
            if _within(path, folders[other]) or _within(folders[other], path):
                yield error(
                    "spec.shared_resource", f"Environments '{other}' and '{env}' share a data folder",
                    f"'{env}' keeps its data in {path} and '{other}' in {folders[other]}: one is the other or "
                    "inside it (paths resolved, symlinks followed), so one environment could read or change the "
                    "other's data.",
                    f"Give '{env}' a data_dir of its own outside every other environment's, then run "
                    "`railguard validate`.", address=address)
        system = system_folder(path) if spec.environments[env].data_dir else None
        if system is not None:
            yield _unsafe(env, path, system, address)
        elif _within(state, path):
            yield _unsafe(env, path, f"it contains the state folder {state}", address)
        elif _within(path, state / "artifacts"):
            yield _unsafe(env, path, "it is inside a release artifact, which must never change", address)
        elif _within(path, state) and path != (state / "data" / env):
            yield _unsafe(env, path, f"it is inside the state folder {state}, which app code must never write",
                          address)


def _unsafe(env: str, path: Path, why: str, address: str) -> Diagnostic:
    return error(
        "spec.data_dir_unsafe", f"The data folder of '{env}' is not a safe place",
        f"{path}: {why}.",
        f"Point environments.{env}.data_dir at a folder of its own outside the state folder (or remove it to use "
        "the default), then run `railguard validate`.", address=address)
