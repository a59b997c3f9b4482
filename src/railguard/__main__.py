"""``python -m railguard``: the same as the ``railguard`` command."""

from railguard.cli.launch import main

main()
