"""Where things are: the spec file and the state folder, and loading the spec.

The spec is ``railguard.toml`` in the current folder unless ``--spec`` or
``RAILGUARD_SPEC`` says otherwise; the state folder is ``.railguard/`` beside the
spec unless ``RAILGUARD_HOME`` says otherwise. Reading the file is the only I/O
here; parsing is :func:`railguard.model.specfile.parse_spec`. Used by every
command that needs the spec or the store.

A workspace may carry a *proposed* spec text (from the MCP server's ``plan`` tool):
it is parsed as if it were the file at ``spec_path``, so ``[app].source`` and other
relative paths resolve exactly as for the real spec, and nothing is written beside it
(a temporary file in the app folder would become part of the source snapshot).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the models are imported where a spec is parsed or a problem raised: a CLI command that only
    # needs the paths (rollback, deploy through a running daemon) never loads pydantic (bench/deploy_timing.py)
    from railguard.model.diagnostics import Diagnostic
    from railguard.model.spec import Spec
    from railguard.state.store import Store

SPEC_NAME = "railguard.toml"


class SpecTooLarge(ValueError):
    """The spec file holds more than :data:`~railguard.model.speclimit.MAX_SPEC_BYTES`."""


def read_spec_file(path: Path) -> str:
    """The text of the spec file at ``path`` as ``Path.read_text(encoding="utf-8")`` gives it, read as the name of
    something an agent may have put there (:func:`railguard.sources.readfile.read_regular`: a regular file, never
    waited on, at most the size limit). Raises ``OSError``, ``UnicodeDecodeError`` or :class:`SpecTooLarge`.
    Called by :meth:`Workspace.read_spec_text`, the drift check of the file on disk and the CLI's early parse."""
    from railguard.model.speclimit import MAX_SPEC_BYTES
    from railguard.sources.readfile import read_regular, text_mode

    data = read_regular(path, MAX_SPEC_BYTES)
    if len(data) > MAX_SPEC_BYTES:
        raise SpecTooLarge(str(path))
    return text_mode(data)


class Workspace:
    """The spec file and the state folder of one app (immutable, compared by value).

    Written by hand rather than as a frozen dataclass: importing ``dataclasses`` (and ``inspect`` with it) was a
    good part of what the hot CLI commands import (:mod:`railguard.cli.fastpath`)."""

    spec_path: Path
    home: Path
    text: str | None  # a proposed spec, read instead of the file at spec_path

    def __init__(self, spec_path: Path, home: Path, text: str | None = None) -> None:
        object.__setattr__(self, "spec_path", spec_path)
        object.__setattr__(self, "home", home)
        object.__setattr__(self, "text", text)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field '{name}': a Workspace does not change")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field '{name}': a Workspace does not change")

    def _key(self) -> tuple[Path, Path, str | None]:
        return self.spec_path, self.home, self.text

    def __eq__(self, other: object) -> bool:
        return other.__class__ is self.__class__ and isinstance(other, Workspace) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Workspace(spec_path={self.spec_path!r}, home={self.home!r}, text={self.text!r})"

    @classmethod
    def locate(cls, spec: str | os.PathLike[str] | None = None) -> Workspace:
        spec_path = Path(spec or os.environ.get("RAILGUARD_SPEC") or SPEC_NAME).absolute()
        home_env = os.environ.get("RAILGUARD_HOME")
        home = Path(home_env).absolute() if home_env else spec_path.parent / ".railguard"
        return cls(spec_path=spec_path, home=home)

    @property
    def root(self) -> Path:
        return self.spec_path.parent

    def read_spec_text(self) -> str:
        from railguard.model.diagnostics import RailguardError, error

        if self.text is not None:
            return self.text
        if not self.spec_path.exists():
            raise RailguardError(error(
                "spec.not_found", f"No spec at {self.spec_path}",
                f"Railguard looks for {SPEC_NAME} in the current folder (or the file given with --spec / "
                f"RAILGUARD_SPEC) and found nothing at {self.spec_path}.",
                "Run `railguard init` to write a starter spec for this app, or pass --spec PATH.",
                file=str(self.spec_path),
            ))
        try:
            return read_spec_file(self.spec_path)
        except SpecTooLarge as exc:
            from railguard.model.specfile import too_large

            raise RailguardError(too_large(str(self.spec_path))) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise RailguardError(error(
                "spec.unreadable", f"Cannot read {self.spec_path.name}",
                f"Reading {self.spec_path} failed: {exc}.",
                "Check the file's permissions and that it is UTF-8 text.", file=str(self.spec_path),
            )) from exc

    def load(self) -> tuple[Spec | None, list[Diagnostic]]:
        """Parse the spec; diagnostics include warnings even when the spec is usable."""
        # Imported here, not at the top: the CLI's commands that only talk to the daemon (deploy, rollback, apply,
        # status) locate a workspace without parsing a spec or opening the store, and must not pay for importing
        # the parser, the spec models and the store at start-up (bench/deploy_timing.py).
        from railguard.engine import datafolders, specmemo
        from railguard.engine.gcpause import paused_gc

        text = self.read_spec_text()
        with paused_gc():  # a 10k-service spec is ~a million short-lived objects (engine/gcpause.py)
            # Shared: the daemon's observer asks for the same text as the request that pinned it (specmemo.py).
            spec, diagnostics = specmemo.parse(text, self._display_path())
        if spec is not None:  # data folders as they resolve on this machine, beside the state folder
            seen = {(d.code, d.address) for d in diagnostics}
            diagnostics += [d for d in datafolders.check(spec, self.root, self.home) if (d.code, d.address) not in seen]
        return spec, diagnostics

    def load_valid(self, tolerate: frozenset[str] = frozenset()) -> tuple[Spec, list[Diagnostic]]:
        """Parse the spec or raise with every error found (errors with a ``tolerate``d code excepted)."""
        from railguard.model.diagnostics import has_errors
        from railguard.model.errors import PermanentError

        spec, diagnostics = self.load()
        if spec is None or has_errors([d for d in diagnostics if d.code not in tolerate]):
            raise PermanentError(*diagnostics)  # the same text fails the same way: fix the spec
        return spec, diagnostics

    def open_store(self) -> Store:
        from railguard.state.store import Store  # not at the top: see load()

        return Store.open(self.home)

    @property
    def socket_path(self) -> Path:
        """Where a client finds the daemon (nothing is created: the daemon makes its folder)."""
        return daemon_socket(self.home, create=False)

    def _display_path(self) -> str:
        try:
            shown = str(self.spec_path.relative_to(Path.cwd()))
        except ValueError:
            shown = str(self.spec_path)
        return f"{shown} (proposed)" if self.text is not None else shown


def daemon_socket(home: Path, *, create: bool = True) -> Path:
    """The daemon's API socket: in the state folder, or in a private short folder when that is too long.

    Unix socket paths are limited to 107 bytes; deep state folders (CI, pytest) exceed it. The short folder is
    checked (ours, not a symlink, no one else's to rename: :mod:`railguard.model.privatedir`) and refused with
    ``daemon.unsafe_socket_folder`` otherwise. ``create``: the daemon makes it; a client (False) makes nothing.
    """
    inside = home / "daemon.sock"
    if len(str(inside)) < 100:
        return inside
    import hashlib  # deep state folders only

    from railguard.model.privatedir import private_dir

    return private_dir(create=create) / (hashlib.sha256(str(home).encode()).hexdigest()[:16] + ".sock")


def require_env(spec: Spec, env: str) -> None:
    from railguard.model.diagnostics import RailguardError, error

    if env not in spec.environments:
        import difflib

        names = sorted(spec.environments)
        guess = difflib.get_close_matches(env, names, n=1, cutoff=0.6)
        raise RailguardError(error(
            "spec.unknown_environment", f"No environment '{env}'",
            f"The spec defines these environments: {', '.join(names) or 'none'}.",
            (f"Did you mean '{guess[0]}'? " if guess else "") + "Pass one of them with --env.",
            address=f"environments.{env}",
        ))


def pick_env(spec: Spec, env: str | None) -> str:
    """The environment a command means: ``env``, or the spec's only one when none is named."""
    from railguard.model.diagnostics import RailguardError, error

    if env is None:
        if len(spec.environments) == 1:
            return next(iter(spec.environments))
        raise RailguardError(error(
            "spec.unknown_environment", "Which environment?",
            f"The spec defines {len(spec.environments)} environments: {', '.join(sorted(spec.environments))}.",
            "Pass one with --env, e.g. `--env staging`.", address="environments",
        ))
    require_env(spec, env)
    return env


def refuse_protected_deploy(spec: Spec, env: str) -> None:
    """``deploy`` plans and applies in one step, so a protected environment (reviewed plans only) refuses it.

    Checked by the CLI before it starts a daemon, and by the daemon for every deploy request."""
    from railguard.model.diagnostics import RailguardError, error

    if spec.environments[env].protected:
        raise RailguardError(error(
            "spec.invalid_value", f"'{env}' is protected",
            "Protected environments only run plans that were reviewed on their own; deploy skips that.",
            f"Run `railguard plan --env {env}`, review it, then `railguard apply PLAN_ID`.",
            address=f"environments.{env}.protected"))
