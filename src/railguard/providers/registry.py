"""The one place a concrete provider is chosen: the composition root of the runtimes.

The daemon and the doctor hold a :class:`railguard.providers.base.Provider` and never
import a runtime package; they ask this module for one (the doctor also for a
:class:`~railguard.providers.base.ScratchRuntime`). A second runtime (Kubernetes)
is a second function (or a ``kind`` argument) here, and an import-linter contract in
``pyproject.toml`` keeps every other route to ``railguard.providers.local`` closed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from railguard.providers.base import Provider, ScratchRuntime, SecretSource
from railguard.providers.local.provider import LocalProvider
from railguard.providers.local.scratch import LocalScratch


def open_provider(home: Path, secrets: SecretSource | None = None,
                  store_secret: Callable[[str, str, str], None] | None = None) -> Provider:
    """The provider of the state folder ``home``; ``secrets`` gives it secret values when it starts processes,
    ``store_secret`` (env, name, value) keeps the passwords it generates for managed databases."""
    return LocalProvider(home, secrets, store_secret=store_secret)


def isolation_level(home: Path) -> tuple[str, str]:
    """Whether the runtime of ``home`` isolates workloads ('isolated' / 'shared-user') and why."""
    from railguard.providers.local.isolation import detect

    found = detect(home)
    return found.level, found.reason


def scratch_runtime() -> ScratchRuntime:
    """What the doctor runs one service with, outside any environment, the way the runtime would."""
    return LocalScratch()
