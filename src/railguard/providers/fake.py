"""An in-memory provider for unit tests of the engine.

It keeps live resources in a dict and applies changes instantly; ``fail_on`` makes
a given address fail to apply, so tests can exercise partial applies. Pure logic,
no processes: tests of real behaviour use the local runtime instead.
"""

from __future__ import annotations

from railguard.model.diagnostics import error
from railguard.model.plans import Action
from railguard.model.resources import LiveStatus, ObservedResource
from railguard.providers.base import (
    ApplyRequest,
    ApplyResponse,
    Health,
    HealthRequest,
    HealthResponse,
    ObserveRequest,
    ObserveResponse,
    Progress,
)


class FakeProvider:
    kind = "fake"

    def __init__(self, fail_on: set[str] | None = None) -> None:
        self.live: dict[str, dict[str, ObservedResource]] = {}
        self.fail_on = fail_on or set()
        self.applied: list[tuple[str, Action]] = []

    def observe(self, request: ObserveRequest) -> ObserveResponse:
        return ObserveResponse(resources=sorted(self.live.get(request.env, {}).values(), key=lambda r: r.address))

    def apply_change(self, request: ApplyRequest, progress: Progress | None = None) -> ApplyResponse:
        change = request.change
        if change.address in self.fail_on:
            return ApplyResponse(ok=False, observed=self.live.get(request.env, {}).get(change.address), diagnostics=[
                error("apply.step_failed", f"{change.address} failed", "The fake provider was told to fail.",
                      "Nothing to do: this is a test.", address=change.address)])
        env = self.live.setdefault(request.env, {})
        self.applied.append((change.address, change.action))
        if change.action is Action.delete:
            env.pop(change.address, None)
            return ApplyResponse(ok=True, observed=None)
        desired = request.desired
        assert desired is not None
        previous = env.get(change.address)
        if previous is None:
            release = 1
        elif change.action is Action.replace:
            release = (previous.release or 0) + 1
        else:
            release = previous.release or 1
        observed = ObservedResource(address=desired.address, kind=desired.kind, fingerprint=desired.fingerprint,
                                    config=desired.config, depends_on=desired.depends_on,
                                    status=LiveStatus.running, release=release)
        env[change.address] = observed
        return ApplyResponse(ok=True, observed=observed)

    def health(self, request: HealthRequest) -> HealthResponse:
        found = self.live.get(request.env, {}).get(request.address)
        if found is None:
            return HealthResponse(address=request.address, health=Health.missing)
        return HealthResponse(address=request.address, health=Health.healthy)
