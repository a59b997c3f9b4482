"""An environment's data: finding its databases, snapshotting, restoring, rehearsing release commands.

Runtime-neutral building blocks (SQLite through the standard library) used by the local provider
(snapshot before a release command, rehearsal on a scratch copy, restore) and by the doctor's
release checks. Imports only :mod:`railguard.model`.
"""
