"""Fixtures of the console tests: one headless Chromium for the whole run (Debian's package, driven by Playwright).

The browser is started once per session: starting Chromium costs about a second and the suite has a
budget. It is Debian's ``chromium`` (``.ci/run`` installs it): the browser download Playwright does by
itself cannot reach its servers here. Screenshots go to ``test-artifacts/console`` (ignored by git).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from ..conftest import shared_processes

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"


def chromium_path() -> str:
    found = os.environ.get("RAILGUARD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("The console's browser tests need Chromium: `apt-get install chromium` (.ci/run does it), "
                    "or set RAILGUARD_CHROMIUM to its path.")
    return found


@pytest.fixture(scope="module")  # one module uses it; Playwright's sync API keeps an asyncio loop in this thread
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    # The driver and the browser live for the whole session: not any one test's leftovers.
    with shared_processes("playwright/driver"), shared_processes("playwright_chromium"), sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()
    # Chromium's helpers exit asynchronously after close: wait, so a later test never counts them as its own.
    psutil.wait_procs([p for p in psutil.Process().children(recursive=True)
                       if "chrom" in " ".join(_cmdline(p)) or "playwright" in " ".join(_cmdline(p))], timeout=15)


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
