"""Canary traffic shares as upstream lists: a weight becomes repeated entries in the resolver's answer.

The edge reaches replicas through Caddy's ``dynamic_upstreams`` (SRV, answered by
:mod:`railguard.providers.local.resolver`) with the ``round_robin`` policy. Caddy builds one upstream per SRV
record, duplicates included, and ignores the records' weight field for selection (Go's resolver only uses it to
order the answer), so an address listed k times out of n gets k/n of the requests. A canary step therefore
changes only the resolver's table, never Caddy's config: no reload, no closed connections. Measured through a
real Caddy by ``tests/local/test_edge.py::test_repeated_upstreams_split_traffic_by_weight``.

Called by :meth:`railguard.providers.local.rollout.Rollouts.edge_routes` when a service has a canary set.
"""

from __future__ import annotations

from fractions import Fraction

# The resolver refuses answers over 1232 bytes (about 40 SRV records of "localhost."): the ratio is found within
# MAX_ENTRIES, and scaling up to cover many replicas stops at MAX_RECORDS.
MAX_ENTRIES = 20  # 1% is then 1 of 20: the smallest share a step can have is 5%
MAX_RECORDS = 36


def slots(percent: int, limit: int = MAX_ENTRIES) -> tuple[int, int]:
    """(canary entries, stable entries) whose ratio is closest to ``percent``/100 within ``limit`` entries.

    0 and 100 are exact (no entry of the other side); any share in between gives each side at least one entry,
    so a 1% canary still sees traffic and a 99% one still leaves the stable release some (pure).
    """
    if not 0 <= percent <= 100:
        raise ValueError(f"a traffic share is a percentage in 0..100, not {percent}")
    if percent in (0, 100):
        return (0, 1) if percent == 0 else (1, 0)
    # The closest ratio with a few entries (fewest on a tie): 1% is 1 of 20 (5%) rather than nothing at all.
    best = min(((k, total) for total in range(2, limit + 1) for k in range(1, total)),
               key=lambda kt: (abs(Fraction(kt[0], kt[1]) - Fraction(percent, 100)), kt[1]))
    return (best[0], best[1] - best[0])


def _spread(addresses: tuple[str, ...], count: int) -> list[str]:
    # Whole rounds of the replicas first, so every replica of a side carries the same share (give or take one).
    return [addresses[i % len(addresses)] for i in range(count)] if addresses else []


def weighted(canary: tuple[str, ...], stable: tuple[str, ...], percent: int,
             limit: int = MAX_ENTRIES) -> tuple[str, ...]:
    """The upstream list that sends ``percent`` of requests to ``canary`` and the rest to ``stable`` (pure).

    Each side gets at least as many entries as it has replicas (all of them serve), scaled together so the ratio
    holds; a side without replicas gets nothing (the other takes everything rather than requests failing).
    """
    if not canary or percent >= 100:
        return canary if percent >= 100 and canary else stable
    if not stable or percent <= 0:
        return stable if stable else canary
    c, s = slots(percent, limit)
    # Enough whole multiples of (c, s) that each side covers its replicas, within the answer's size limit.
    scale = max(-(-len(canary) // c), -(-len(stable) // s), 1)
    while scale > 1 and (c + s) * scale > MAX_RECORDS:
        scale -= 1
    return tuple(_spread(canary, c * scale) + _spread(stable, s * scale))
