"""Canary rollouts in the local provider, through a real Caddy: a share of the requests, promote, abort.

One flow, as the daemon would drive it: a stable release; a failing canary (500 on every request, health
passing) at 10% gets about a tenth of the requests and is aborted, after which the stable release answers
everything; a healthy canary moves to 50% and is promoted, and becomes the live release.
"""

from __future__ import annotations

import shutil
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from railguard.engine import planner
from railguard.model.diagnostics import RailguardError
from railguard.model.plans import Action
from railguard.model.resources import desired_resources
from railguard.model.specfile import parse_spec
from railguard.providers.base import ApplyRequest, DescribeRequest, ObserveRequest, ShutdownRequest
from railguard.providers.local.provider import LocalProvider
from railguard.sources.snapshot import snapshot

ENV = "staging"
APP = Path(__file__).parent / "canary_app"
SPEC = """
[app]
name = "canary"
source = "app"

[environments.staging]
edge_port = {port}
rollback_window = "5m"

[services.web]
run = ["python", "app.py"]
env = {{ VERSION = "{version}", FAIL = "{fail}" }}
start_timeout = "20s"
stop_timeout = "2s"
drain_timeout = "1s"
strategy = "canary"
steps = [10, 50, 100]
pause = "manual"

[services.web.health]
http = "/healthz"
interval = "200ms"
timeout = "1s"
healthy_threshold = 1

[[services.web.routes]]
path = "/"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _apply(provider: LocalProvider, root: Path, port: int, release: int, version: str, fail: bool = False,
           canary: int | None = None) -> None:
    (root / "railguard.toml").write_text(SPEC.format(port=port, version=version, fail="1" if fail else "0"))
    spec, found = parse_spec((root / "railguard.toml").read_text())
    assert spec is not None, found
    desired = desired_resources(spec, ENV, snapshot(root / "app").digest)
    plan = planner.plan(ENV, desired, provider.observe(ObserveRequest(env=ENV)).resources, 0)
    wanted = {r.address: r for r in desired}
    for change in plan.changes:
        if change.action is Action.noop or change.kind == "environment":
            continue
        answer = provider.apply_change(ApplyRequest(
            env=ENV, change=change, desired=wanted.get(change.address), operation_id=f"op-{release}",
            release=release, source_root=str(root / "app"), canary_percent=canary))
        assert answer.ok, answer.diagnostics


def _requests(port: int, n: int) -> Counter[tuple[int, str]]:
    with httpx.Client(timeout=10, trust_env=False) as client:
        return Counter((r.status_code, r.text) for r in (client.get(f"http://127.0.0.1:{port}/") for _ in range(n)))


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[LocalProvider]:
    shutil.copytree(APP, tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / ".railguard").mkdir()
    made = LocalProvider(tmp_path / ".railguard")
    yield made
    made.shutdown(ShutdownRequest(everything=True, stop_timeout=1.0))


def test_a_canary_takes_its_share_is_aborted_or_promoted(provider: LocalProvider, tmp_path: Path) -> None:
    port = _free_port()
    _apply(provider, tmp_path, port, 1, "1")
    assert _requests(port, 5) == Counter({(200, "v1"): 5})

    # A release that fails every request behind a passing health check, at 10%: bounded, not timing-exact.
    _apply(provider, tmp_path, port, 2, "2", fail=True)  # the spec's first step: 10%
    seen = _requests(port, 300)
    assert set(seen) == {(200, "v1"), (500, "v2")}, seen
    assert 0.02 <= seen[(500, "v2")] / 300 <= 0.2, seen
    units = provider.describe(DescribeRequest(env=ENV)).services
    assert [u.release for u in units if u.name == "web"] == [1]  # the stable release stays the live one
    provider.abort_canary(ENV, "web")
    assert _requests(port, 100) == Counter({(200, "v1"): 100})
    assert provider.canary(ENV, "web") is None
    with pytest.raises(RailguardError) as refused:
        provider.abort_canary(ENV, "web")
    assert refused.value.diagnostics[0].code == "canary.none"

    # A healthy canary: 10%, then 50%, then promoted; it becomes the live release and the stable one goes warm.
    _apply(provider, tmp_path, port, 3, "3", canary=20)  # the request's share overrides the spec's
    provider.set_canary_weight(ENV, "web", 50)
    half = _requests(port, 200)
    assert set(half) == {(200, "v1"), (200, "v3")} and 0.3 <= half[(200, "v3")] / 200 <= 0.7, half
    provider.set_canary_weight(ENV, "web", 100)
    assert _requests(port, 50) == Counter({(200, "v3"): 50})
    web = next(u for u in provider.describe(DescribeRequest(env=ENV)).services if u.name == "web")
    assert web.release == 3 and [w.release for w in web.warm] == [1]

    # 100% (what the engine asks for a rollback): the new release switches at once, no canary.
    _apply(provider, tmp_path, port, 4, "4", canary=100)
    assert provider.canary(ENV, "web") is None and _requests(port, 5) == Counter({(200, "v4"): 5})
