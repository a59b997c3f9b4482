"""What a plan is made against (engine/observe.py ``observe_for_plan``): the inventory as the store holds it
after recording the provider's report, and the serial of that inventory.

The provider's own objects stand in for the store's rows only when they are exactly what the store reads back;
anything else (a value JSON writes otherwise, two reports of one address) is read from the store. Either way
the answer must equal ``store.inventory(env)`` and the serial recorded with it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from railguard.engine.observe import observe_for_plan
from railguard.model.resources import (
    LiveStatus,
    ObservedResource,
    Resource,
    canonical_observed,
    kept_config_text,
    make_resource,
    observed_text,
)
from railguard.providers.base import ObserveResponse
from railguard.providers.fake import FakeProvider
from railguard.state.store import Store


def _live(n: int, **config: Any) -> ObservedResource:
    return ObservedResource(address=f"s/service.w{n:02d}", kind="service", fingerprint=f"sha256:{n}",
                            config={"replicas": n, "run": ["python", "app.py"], **config}, release=n,
                            status=LiveStatus.running if n % 2 else LiveStatus.degraded, message=f"m{n}")


CASES: dict[str, tuple[list[ObservedResource], bool]] = {
    "plain: the provider's objects": (
        [_live(1), _live(2, env={"A": "é\"x"}), _live(3, ratio=1.5, on=True, off=None)], True),
    "a datetime in a config: the store's rows": ([_live(1), _live(2, at=datetime(2026, 1, 1, tzinfo=UTC))], False),
    "reported unsorted: sorted, the provider's objects": ([_live(2), _live(1)], True),
    "two at one address: the store's rows": ([_live(1), _live(1, extra=True)], False),
    "nothing live": ([], True),
}


@pytest.mark.parametrize("case", CASES)
def test_the_plan_sees_what_the_store_holds(tmp_path: Path, case: str) -> None:
    reported, reused = CASES[case]
    store = Store.open(tmp_path)
    provider = FakeProvider()
    provider.observe = lambda request: ObserveResponse(resources=reported)  # type: ignore[method-assign]  # as reported, unsorted
    inventory, serial = observe_for_plan(store, provider, "s", [])
    assert inventory == store.inventory("s")
    assert serial == store.serial("s") == (1 if reported else 0)
    if reported:
        assert all(any(a is b for b in reported) for a in inventory) is reused
    # Observed again, nothing moved: the same serial, nothing written.
    again, serial_again = observe_for_plan(store, provider, "s", [])
    assert again == inventory and serial_again == serial


def test_without_a_provider_the_plan_sees_the_recorded_inventory_and_its_serial(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.record_observed("s", [_live(1)])
    inventory, serial = observe_for_plan(store, None, "s")
    assert inventory == [_live(1)] and serial == 1


def test_the_serial_is_the_one_recorded_with_the_inventory(tmp_path: Path) -> None:
    """A move recorded after the observation (an apply's) makes the plan stale: the plan never binds to a
    serial newer than what it was made against."""
    store = Store.open(tmp_path)
    provider = FakeProvider(live={"s": {r.address: r for r in [_live(1)]}})
    inventory, serial = observe_for_plan(store, provider, "s", [])
    store.set_observed("s", _live(1, replicas=5), _live(1).address)  # an apply lands meanwhile
    assert serial == 1 and store.serial("s") == 2 and inventory == [_live(1)]


def _desired(n: int, **config: Any) -> Resource:
    return make_resource("s", "service", f"w{n:02d}", {"replicas": n, "run": ["python", "app.py"], **config}, [])


def _deployed(resource: Resource, **config: Any) -> ObservedResource:
    return ObservedResource(address=resource.address, kind="service", fingerprint=resource.fingerprint,
                            config={**resource.config, **config}, release=1)


# Live resources as a provider reports them beside the desired ones: whether each reuses the desired config's kept
# text or encodes its own, the store must hold exactly canonical_observed of the report (what `inventory` reads).
REUSE: dict[str, Any] = {
    "deployed from the desired one, unchanged": lambda d: _deployed(d),
    "deployed from it, its config drifted": lambda d: _deployed(d, replicas=99),
    "another fingerprint, the same config": lambda d: _deployed(d).model_copy(update={"fingerprint": "sha256:x"}),
    "a float where the spec has an int (equal in Python, not in JSON)": lambda d: _deployed(d, replicas=1.0),
}


@pytest.mark.parametrize("case", REUSE)
def test_an_unchanged_live_resource_reuses_the_desired_configs_text_and_the_store_still_holds_the_report(
        tmp_path: Path, case: str) -> None:
    desired = _desired(1, on=True)
    live = REUSE[case](desired)
    text, spliced = observed_text(live, desired)
    assert spliced and (kept_config_text(desired) in text) is (live.config == desired.config)
    store = Store.open(tmp_path)
    provider = FakeProvider()
    provider.observe = lambda request: ObserveResponse(resources=[live])  # type: ignore[method-assign]
    inventory, _ = observe_for_plan(store, provider, "s", [desired])
    assert inventory == store.inventory("s") == [live]
    if case.startswith("a float"):  # equal to the desired config, so its text was reused: the one known blind spot
        assert store.inventory("s")[0].config["replicas"] == 1
    else:
        assert text == canonical_observed(live)
