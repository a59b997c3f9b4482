"""The provider contract: the same cases against every provider, so a new runtime has a suite to pass.

Each provider kind gets one rig per module (a state folder, the app, a free edge port) and the cases
run in order against it, as a daemon would drive it: observe an empty environment, create a service
and its edge, update it in place, replace it, read its logs, retire warm replicas with a tick, adopt
after the provider is constructed again (a daemon restart), delete, and shut everything down. The
local provider runs real processes behind a real Caddy, so where a provider serves real traffic the
cases also GET through its edge. The Kubernetes provider runs against the session's real control plane
(tests/k8s) with simulated pods: nothing runs in them and no ingress controller serves the Ingress, so the
cases that are structurally local (GET through the edge, the edge's port, warm replica sets kept for an
instant rollback: a cluster rolls back by re-applying the previous release) are skipped for it, each where
it is asserted. Changes come from the real planner, as in an apply. A replaced
release stays warm (routable for an instant rollback) until a tick passes its rollback window: that
is part of the contract, the engine's rollback relies on it.
"""

from __future__ import annotations

import math
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from railguard.engine import planner
from railguard.model.plans import Action
from railguard.model.resources import LiveStatus, ObservedResource, Resource, canonical_observed, desired_resources
from railguard.model.specfile import parse_spec
from railguard.providers.base import (
    AdoptResponse,
    ApplyRequest,
    DescribeRequest,
    DescribeResponse,
    Health,
    HealthRequest,
    LogsRequest,
    ObserveRequest,
    Provider,
    ScratchRuntime,
    ShutdownRequest,
    TickRequest,
    TickResponse,
)
from railguard.providers.fake import FakeProvider
from railguard.providers.registry import open_provider, scratch_runtime
from railguard.sources.snapshot import snapshot

ENV = "staging"
WEB = f"{ENV}/service.web"
EDGE = f"{ENV}/edge"
APP = Path(__file__).parent / "app"
SPEC = """
[app]
name = "contract"
source = "app"

[environments.staging]
edge_port = {port}
rollback_window = "5m"

[services.web]
run = ["python", "app.py"]
replicas = {replicas}
env = {{ VERSION = "{version}" }}
start_timeout = "20s"
stop_timeout = "2s"
drain_timeout = "1s"

[services.web.health]
http = "/healthz"
interval = "200ms"
timeout = "1s"
healthy_threshold = 1

[[services.web.routes]]
path = "/"
"""


K8S_SPEC = """
[app]
name = "contract"
source = "app"

[environments.staging]
target = "kubernetes"

[environments.staging.kubernetes]
namespace = "{namespace}"
kubeconfig = "{kubeconfig}"

[services.web]
run = ["python", "app.py"]
image = "registry.example/contract@sha256:{digest}"
replicas = {replicas}
env = {{ VERSION = "{version}" }}
start_timeout = "20s"
stop_timeout = "2s"
drain_timeout = "1s"

[services.web.health]
http = "/healthz"
interval = "1s"
timeout = "1s"
healthy_threshold = 1

[[services.web.routes]]
path = "/"
"""
K8S_NAMESPACE = "contract-kubernetes"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Rig:
    kind: str
    root: Path
    home: Path
    port: int
    provider: Provider = field(init=False)
    release: int = 0
    pids: set[int] = field(default_factory=set)  # every replica pid seen, to prove they are gone at the end
    kubeconfig: Path | None = None  # the kubernetes rig's, for the session's test cluster

    def __post_init__(self) -> None:
        self.provider = self.construct()
        if self.kind == "kubernetes":  # bound to its namespace as a plan binds it (from the spec's resources)
            self.provider.observe(ObserveRequest(env=ENV, desired=self.desired()))

    @property
    def real_traffic(self) -> bool:
        """Requests really served through the edge (a cluster's Ingress is not served in the test cluster)."""
        return self.kind == "local"

    @property
    def upstreams(self) -> int:
        """Upstreams a route of the edge lists: the fake names none."""
        return 0 if self.kind == "fake" else 1

    def construct(self) -> Provider:
        """A provider over the rig's state; for the fake, over the same in-memory runtime (what survives)."""
        if self.kind == "fake":
            previous = getattr(self, "provider", None)
            return FakeProvider(live=previous.live if isinstance(previous, FakeProvider) else None)
        return open_provider(self.home)

    def desired(self, version: str = "1", replicas: int = 1, web: bool = True) -> list[Resource]:
        text = (K8S_SPEC.format(namespace=K8S_NAMESPACE, kubeconfig=self.kubeconfig, digest="ab" * 32, version=version,
                                replicas=replicas) if self.kind == "kubernetes"
                else SPEC.format(port=self.port, version=version, replicas=replicas))
        (self.root / "railguard.toml").write_text(text)
        spec, diagnostics = parse_spec((self.root / "railguard.toml").read_text())
        assert spec is not None, diagnostics
        resources = desired_resources(spec, ENV, snapshot(self.root / "app").digest)
        return resources if web else [r for r in resources if r.kind == "environment"]

    def apply(self, desired: list[Resource]) -> dict[str, Action]:
        """Plan ``desired`` against what the provider observes and apply each change, as the engine does."""
        observed = self.provider.observe(ObserveRequest(env=ENV)).resources
        plan = planner.plan(ENV, desired, observed, 0)
        wanted = {r.address: r for r in desired}
        self.release += 1
        done: dict[str, Action] = {}
        for change in plan.changes:
            if change.action is Action.noop or change.kind == "environment":  # the engine keeps those itself
                continue
            answer = self.provider.apply_change(ApplyRequest(
                env=ENV, change=change, desired=wanted.get(change.address), operation_id=f"op-{self.release}",
                release=self.release, source_root=str(self.root / "app")))
            assert answer.ok, answer.diagnostics
            if change.action is Action.delete:
                assert answer.observed is None
            else:
                assert answer.observed is not None and answer.observed.fingerprint == wanted[change.address].fingerprint
            done[change.address] = change.action
        return done

    def observed(self) -> dict[str, ObservedResource]:
        found = self.provider.observe(ObserveRequest(env=ENV)).resources
        # JSON data, nothing else (no tuples, no dates): what the store reads back equals what was reported, so a
        # plan may be made against the report itself (engine/observe.py, observe_for_plan).
        for resource in found:
            assert ObservedResource.model_validate_json(canonical_observed(resource)) == resource, resource
        return {r.address: r for r in found}

    def describe(self) -> DescribeResponse:
        found = self.provider.describe(DescribeRequest(env=ENV))
        self.pids |= {r.pid for s in found.services for r in s.replicas if r.pid is not None}
        return found

    def healthy(self) -> DescribeResponse | None:
        """The environment once every replica of web passes its checks (background passes run meanwhile)."""
        self.provider.tick(TickRequest())
        found = self.describe()
        web = next((s for s in found.services if s.address == WEB), None)
        if web is None or not web.replicas or any(r.health != "healthy" for r in web.replicas):
            return None
        return found

    def get(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.port}/", timeout=5, trust_env=False).text


@pytest.fixture(scope="module", params=["fake", "local", "kubernetes"])
def rig(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    root = tmp_path_factory.mktemp(f"contract-{request.param}")
    shutil.copytree(APP, root / "app", ignore=shutil.ignore_patterns("__pycache__"))
    cluster = request.getfixturevalue("k8s_cluster") if request.param == "kubernetes" else None
    kubeconfig = cluster.write_kubeconfig(root / "kubeconfig") if cluster is not None else None
    (root / ".railguard").mkdir()
    built = Rig(request.param, root, root / ".railguard", _free_port(), kubeconfig=kubeconfig)
    yield built
    built.provider.shutdown(ShutdownRequest(everything=True, stop_timeout=1.0))  # whatever a failed case left
    if cluster is not None:
        cluster.delete_namespace(K8S_NAMESPACE, wait=False)


def test_the_provider_implements_the_whole_protocol(rig: Rig) -> None:
    assert isinstance(rig.provider, Provider)
    if rig.kind == "local":
        assert isinstance(scratch_runtime(), ScratchRuntime)  # what the doctor runs single services with


def test_observe_an_empty_environment(rig: Rig) -> None:
    assert rig.provider.observe(ObserveRequest(env=ENV)).resources == []
    described = rig.describe()
    assert described.services == [] and described.live_sets == 0
    assert described.edge.port is None and not described.edge.running
    assert rig.provider.health(HealthRequest(env=ENV, address=WEB)).health is Health.missing


def test_create_a_service_and_its_edge(rig: Rig) -> None:
    assert rig.apply(rig.desired()) == {WEB: Action.create, EDGE: Action.create}
    live = rig.observed()
    assert live[WEB].status is LiveStatus.running and live[WEB].release == rig.release
    assert live[EDGE].status is LiveStatus.running
    described = wait_for(rig.healthy, "the replica to pass its health check")
    assert [s.address for s in described.services] == [WEB] and described.live_sets == 1
    assert described.edge.running
    if rig.kind != "kubernetes":  # structurally local: an Ingress has no port of its own
        assert described.edge.port == rig.port
    assert [(r.path, len(r.upstreams)) for r in described.edge.routes] == [("/", rig.upstreams)]
    assert wait_for(lambda: rig.provider.health(HealthRequest(env=ENV, address=WEB)).health is Health.healthy,
                    "the service to be healthy")
    # A unit that carries its health (status then asks no more) carries what ``health`` answers.
    assert [s.health for s in rig.describe().services] in ([None], [Health.healthy])
    if rig.real_traffic:
        assert rig.get() == "v1"


def test_update_in_place_keeps_the_release_and_its_replicas(rig: Rig) -> None:
    before = rig.describe().services[0]
    release = rig.observed()[WEB].release
    assert rig.apply(rig.desired(replicas=2)) == {WEB: Action.update}
    assert rig.observed()[WEB].release == release
    after = wait_for(rig.healthy, "both replicas to be healthy").services[0]
    assert len(after.replicas) == 2 and after.release == release
    kept = {r.name: r.pid for r in before.replicas}
    assert {r.name: r.pid for r in after.replicas if r.name in kept} == kept  # the first replica was not touched


def test_replace_starts_a_new_release(rig: Rig) -> None:
    old = rig.observed()[WEB].release
    assert rig.apply(rig.desired(version="2", replicas=2)) == {WEB: Action.replace}
    live = rig.observed()[WEB]
    assert live.status is LiveStatus.running and live.release == rig.release and live.release != old
    described = wait_for(rig.healthy, "the new release to be healthy")
    assert described.services[0].release == live.release and described.live_sets == 1
    if rig.kind != "kubernetes":  # structurally local: a cluster keeps no warm replica set (rollback re-applies)
        assert [w.release for w in described.services[0].warm] == [old]  # kept for an instant rollback
    if rig.real_traffic:
        assert {rig.get() for _ in range(4)} == {"v2"}


def test_logs_show_what_the_service_wrote(rig: Rig) -> None:
    answer = rig.provider.logs(LogsRequest(env=ENV, service="web", lines=50))
    assert answer.files and any(answer.files[i].lines for i in range(len(answer.files)))
    assert set(answer.offsets) and all(v >= 0 for v in answer.offsets.values())
    later = rig.provider.logs(LogsRequest(env=ENV, service="web", offsets=answer.offsets))
    assert all(not f.lines for f in later.files)  # follow mode: nothing new was written since
    assert rig.provider.logs(LogsRequest(env=ENV, service="nothing-here")).files == []


def test_tick_retires_warm_replicas_and_leaves_the_live_ones(rig: Rig) -> None:
    assert isinstance(rig.provider.tick(TickRequest()), TickResponse)
    warm = [w.release for s in rig.describe().services for w in s.warm]  # both runtimes keep release 1 warm
    events = rig.provider.tick(TickRequest(now=math.inf, stop_timeout=1.0)).events  # past every rollback window
    assert [e.kind for e in events if e.kind == "release.warm_stopped"] == ["release.warm_stopped"] * len(warm)
    assert all(e.env == ENV for e in events)
    described = rig.describe()
    assert all(s.warm == [] for s in described.services)
    assert rig.observed()[WEB].status is LiveStatus.running
    if rig.real_traffic:
        assert rig.get() == "v2"


def test_adopt_after_the_provider_is_constructed_again(rig: Rig) -> None:
    before = rig.observed()
    pids = {r.name: r.pid for r in rig.describe().services[0].replicas}
    rig.provider.shutdown(ShutdownRequest())  # a daemon stopping: what runs keeps running
    rig.provider = rig.construct()
    adopted = rig.provider.adopt()
    assert isinstance(adopted, AdoptResponse)
    after = rig.observed()
    assert {a: (o.fingerprint, o.release, o.status) for a, o in after.items()} == \
        {a: (o.fingerprint, o.release, o.status) for a, o in before.items()}
    assert {r.name: r.pid for r in rig.describe().services[0].replicas} == pids  # adopted, not restarted
    if rig.real_traffic:
        assert rig.get() == "v2"


def test_delete_stops_the_service_and_its_edge(rig: Rig) -> None:
    pids = {r.pid for r in rig.describe().services[0].replicas if r.pid is not None}
    assert rig.apply(rig.desired(web=False)) == {WEB: Action.delete, EDGE: Action.delete}
    assert rig.observed() == {}
    assert rig.describe().services == []
    wait_for(lambda: not any(_running(p) for p in pids), "the replicas to stop")
    assert not rig.describe().edge.running


def test_shutdown_everything_leaves_nothing_running(rig: Rig) -> None:
    rig.apply(rig.desired(version="3"))
    assert wait_for(rig.healthy, "the service to be healthy again")
    rig.provider.shutdown(ShutdownRequest(everything=True))
    rig.provider = rig.construct()
    assert rig.provider.observe(ObserveRequest(env=ENV)).resources == []
    described = rig.describe()
    assert described.services == [] and not described.edge.running
    assert rig.provider.summary().replicas == 0
    assert rig.real_traffic is bool(rig.pids)  # the fake runs no process
    assert not any(_running(p) for p in rig.pids)
    if rig.real_traffic:
        with pytest.raises(httpx.HTTPError):
            rig.get()


def _running(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False
