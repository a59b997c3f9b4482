"""``python -m railguard``: the same as the ``railguard`` command."""

from railguard.cli.main import main

main()
