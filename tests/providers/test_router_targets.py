"""A plan never re-routes an environment: only an apply the runtime answered ok binds its target.

Pure: the router's two runtimes are stubs that record which requests they saw (no cluster needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from railguard.model.plans import Action, Change, Risk
from railguard.model.resources import Resource
from railguard.providers.base import ApplyRequest, ApplyResponse, HealthRequest, ObserveRequest, ObserveResponse
from railguard.providers.registry import TARGETS_FILE, Router

CLUSTER = {"namespace": "shop-prod", "context": "kind-a"}


class _Stub:
    def __init__(self, name: str, ok: bool = True) -> None:
        self.name, self.ok = name, ok
        self.seen: list[tuple[str, str]] = []

    def observe(self, request: ObserveRequest) -> ObserveResponse:
        self.seen.append(("observe", request.env))
        return ObserveResponse(resources=[])

    def apply_change(self, request: ApplyRequest, progress: Any = None) -> ApplyResponse:
        self.seen.append(("apply", request.env))
        return ApplyResponse(ok=self.ok, observed=None)

    def health(self, request: HealthRequest) -> Any:
        self.seen.append(("health", request.env))
        raise LookupError  # never answered: only the route matters


def _edge(config: dict[str, Any]) -> Resource:
    return Resource(address="prod/edge.main", env="prod", kind="edge", name="main", config=config, fingerprint="f")


def _router(home: Path, ok: bool = True) -> tuple[Router, _Stub, _Stub]:
    local, cluster = _Stub("local"), _Stub("cluster", ok)
    router = Router(home, local)  # type: ignore[arg-type]
    router._kubernetes = cluster  # type: ignore[assignment]
    return router, local, cluster


def _apply(router: Router, resource: Resource) -> ApplyResponse:
    change = Change(address=resource.address, kind=resource.kind, action=Action.update, reason="r", risk=Risk.safe)
    return router.apply_change(ApplyRequest(env="prod", change=change, desired=resource, operation_id="op"))


def _health(router: Router) -> None:
    try:
        router.health(HealthRequest(env="prod", address="prod/service.web"))
    except LookupError:
        pass


def test_a_plan_naming_another_target_routes_that_request_only(tmp_path: Path) -> None:
    router, local, cluster = _router(tmp_path)
    router.observe(ObserveRequest(env="prod", desired=[_edge({"kubernetes": CLUSTER})]))
    assert cluster.seen == [("observe", "prod")]  # the plan saw the cluster it names
    assert not (tmp_path / TARGETS_FILE).exists()
    _health(router)
    assert local.seen == [("health", "prod")]  # and status/health still go where the environment runs
    assert Router(tmp_path, local).book.get("prod") is None  # type: ignore[arg-type]


def test_a_plan_dropping_the_target_does_not_unbind_it(tmp_path: Path) -> None:
    router, local, cluster = _router(tmp_path)
    assert _apply(router, _edge({"kubernetes": CLUSTER})).ok
    bound = (tmp_path / TARGETS_FILE).read_text()
    router.observe(ObserveRequest(env="prod", desired=[_edge({})]))  # a plan with the target dropped
    assert local.seen == [("observe", "prod")]
    assert (tmp_path / TARGETS_FILE).read_text() == bound
    _health(router)
    assert cluster.seen[-1] == ("health", "prod")


def test_only_an_ok_apply_binds_the_target(tmp_path: Path) -> None:
    router, _, cluster = _router(tmp_path, ok=False)
    assert not _apply(router, _edge({"kubernetes": CLUSTER})).ok
    assert cluster.seen == [("apply", "prod")]  # the apply went to the cluster its resource names
    assert not (tmp_path / TARGETS_FILE).exists()
    cluster.ok = True
    assert _apply(router, _edge({"kubernetes": CLUSTER})).ok
    assert Router(tmp_path, cluster).book.get("prod") is not None  # type: ignore[arg-type]
