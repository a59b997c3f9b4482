"""The ``railguard`` executable's first code: answers ``--version`` before importing any command.

Importing the command tree (typer, rich, pydantic models, the HTTP client) costs a few hundred milliseconds;
``railguard --version`` needs none of it, and scripts and agents call it to probe for the tool. The hot command
lines of agents (``rollback``/``deploy``/``status``/``plan ... --json``) are answered by :mod:`railguard.cli.fastpath`
without it too.
Everything else goes to :func:`railguard.cli.main.main`. Called by the console script and ``python -m railguard``.
"""

from __future__ import annotations

import sys


def main() -> None:
    args = sys.argv[1:]
    if args == ["--version"]:
        from railguard import __version__
        sys.stdout.write(f"railguard {__version__}\n")
        sys.exit(0)
    if args[:1] == ["validate"]:
        _parse_ahead(args[1:])
    from railguard.cli.fastpath import run as hot

    hot(args)  # exits when it answered (rollback/deploy/status/plan --json, a daemon running); else nothing was sent
    from railguard.cli.main import main as run
    try:
        run()
    finally:
        # The interpreter's exit runs one last full collection over everything still alive: after a command that
        # parsed a 10,000-service spec (validate), ~0.2 s spent walking objects that are about to go anyway.
        # Frozen objects are left out of it; nothing here needs a collection at exit (no finalizer depends on one).
        import gc

        gc.freeze()


def _parse_ahead(options: list[str]) -> None:
    """``railguard validate``: a large spec's TOML starts parsing in its child process (engine/tomlchild.py) while
    this process imports the command tree and the spec models; the command's own parse takes that answer when it
    reads the same text. Only a plain ``--spec PATH`` (or ``RAILGUARD_SPEC``, or ./railguard.toml) is looked at:
    anything unusual, or a file that cannot be read, leaves the parse to the command, which reports the error."""
    import os
    from pathlib import Path

    from railguard.engine.workspace import read_spec_file

    spec = os.environ.get("RAILGUARD_SPEC") or "railguard.toml"
    for i, word in enumerate(options):
        if word == "--spec" and i + 1 < len(options):
            spec = options[i + 1]
        elif word.startswith("--spec="):
            spec = word.split("=", 1)[1]
    try:
        text = read_spec_file(Path(spec))
    except (OSError, ValueError):  # the command reads it again and reports what is wrong
        return
    from railguard.engine import tomlchild

    tomlchild.start_early(text)
