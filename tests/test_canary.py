"""Canary rollouts' pure parts: the spec's steps and pause, and the weights the edge's resolver answers.

The real-Caddy check that repeated resolver entries split traffic is
tests/local/test_edge.py::test_repeated_upstreams_split_traffic_by_weight.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from railguard.model.specfile import parse_spec
from railguard.providers.local.resolver import _MAX_ANSWER
from railguard.providers.local.weights import MAX_RECORDS, slots, weighted

SPEC = """
[app]
name = "x"
[environments.staging]
edge_port = 8080
[services.web]
run = ["python", "app.py"]
{extra}
"""


@pytest.mark.parametrize("extra", [
    'strategy = "canary"\nsteps = [10, 50]',
    'strategy = "canary"\nsteps = [50, 10, 100]',
    'strategy = "canary"\nsteps = [10, 10, 100]',
    'strategy = "canary"\nsteps = [0, 100]',
    'strategy = "canary"\nsteps = [10, 101]',
    'strategy = "canary"\nsteps = []',
    'strategy = "canary"\npause = "soon"',
    'strategy = "blue-green"',
])
def test_canary_settings_that_make_no_sense_are_refused(tmp_path: Path, extra: str) -> None:
    spec, found = parse_spec(SPEC.format(extra=extra), str(tmp_path / "railguard.toml"))
    assert [d for d in found if d.is_error], extra


@pytest.mark.parametrize("extra", ["", 'strategy = "canary"', 'strategy = "canary"\nsteps = [5, 25, 100]\n'
                                   'pause = "manual"', 'strategy = "canary"\nsteps = [100]\npause = "30s"'])
def test_canary_settings_are_accepted(tmp_path: Path, extra: str) -> None:
    spec, found = parse_spec(SPEC.format(extra=extra), str(tmp_path / "railguard.toml"))
    assert not [d for d in found if d.is_error], found


@pytest.mark.parametrize("percent", [1, 5, 10, 25, 33, 50, 67, 90, 99])
def test_slots_are_close_to_the_share_and_leave_each_side_some(percent: int) -> None:
    canary, stable = slots(percent)
    assert canary >= 1 and stable >= 1
    assert abs(canary / (canary + stable) - percent / 100) <= 0.041  # 1 of 20 at the extremes
    if percent in (5, 10, 25, 50, 90):
        assert canary * 100 == percent * (canary + stable)


def test_weighted_lists_cover_every_replica_and_fit_one_answer() -> None:
    c = ("127.0.0.1:1",)
    s = ("127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4")
    ten = weighted(c, s, 10)
    assert ten.count(c[0]) == 1 and len(ten) == 10 and {s[0], s[1], s[2]} <= set(ten)
    assert weighted(c, s, 100) == c and weighted(c, s, 0) == s
    assert weighted((), s, 50) == s and weighted(c, (), 50) == c  # a side without replicas takes nothing
    many = tuple(f"127.0.0.1:{p}" for p in range(10, 40))
    big = weighted(c, many, 10)
    assert len(big) <= MAX_RECORDS and 29 * len(big) + 60 <= _MAX_ANSWER  # one SRV record is 29 bytes
    with pytest.raises(ValueError):
        slots(101)


def test_get_status_briefs_carry_the_canary_and_its_analysis() -> None:
    from railguard.mcp.briefs import service_brief
    from railguard.model.api import CanaryStatus, Health, ServiceStatus

    canary = CanaryStatus(release=3, weight=10, stable=2, steps=[10, 50, 100], pause="manual", step_s=4.0,
                          requests=12, status_5xx=0, analysis="analysing")
    brief = service_brief(ServiceStatus(name="web", address="staging/service.web", release=2, status=Health.healthy,
                                        canary=canary))
    assert brief.canary == canary
    assert brief.model_dump(mode="json")["canary"]["weight"] == 10
