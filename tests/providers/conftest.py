"""Fixtures of the provider contract suite.

The suite shares one provider per module (starting real processes and a real Caddy once per case
would make it slow), so the session's check that a test leaves no process behind runs here once per
module, after the provider was shut down, instead of after every test.
"""

from __future__ import annotations

from collections.abc import Iterator

import psutil
import pytest

from ..conftest import _ours
from ..k8s.conftest import k8s_cluster  # noqa: F401  (the kubernetes case of the contract suite)


@pytest.fixture(autouse=True, scope="module")
def no_leftover_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    leftovers = []
    for proc in _ours([tmp_path_factory.getbasetemp()], set()):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                leftovers.append(" ".join(proc.cmdline()))
                proc.kill()
        except psutil.Error:
            continue
    assert leftovers == [], f"processes left running: {leftovers}"
