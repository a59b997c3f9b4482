"""A daemon killed before and after every Kubernetes step of create, update, delete and rollback, on the test cluster.

The same fault injection as tests/e2e/test_faults.py (``RAILGUARD_FAULT_STEP``: the daemon SIGKILLs itself right
before a step is journaled, or right after with ``:end``), against a real API server and controllers with the
simulated node. One workspace per walk, plans of a few services (``api``, ``web`` with a release command and a
secret, and a ``worker`` that comes and goes, every one routed by the edge). After each kill a new daemon recovers
(it is already armed with the next case's fault, so a case costs one daemon start), and the test checks, through
the daemon's API and the cluster read back with the admin token:

- the fault fired where it was asked, and the operation settled (succeeded, or failed ``operation.interrupted``)
  with its release agreeing;
- nothing is half applied: every Deployment of ours finishes its rollout with no operation's mark left on it, and
  runs a whole release — the one its release label names, with that release's settings;
- no orphans: every Service has its Deployment and every Deployment its Service, Jobs and Secrets are only those
  the live Deployment uses, the Ingress routes only to Services that exist;
- the next plan agrees with the record: nothing to do after a success, the interrupted change after a failure;
  and at the end of each walk an apply without a fault converges (its next plan is empty).

The module shares the session's cluster and keeps to a few services, so it stays within a few minutes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from railguard.client import Client
from railguard.engine.execute import FAULT_ENV
from railguard.engine.workspace import Workspace
from railguard.model.diagnostics import RailguardError
from railguard.providers.kubernetes.canary import TRACK
from railguard.providers.kubernetes.labels import PENDING, RELEASE, SERVICE, job_name

from ..e2e.harness import APP, wait_for
from .cluster import Cluster

pytestmark = pytest.mark.timeout(600)
IMAGE = "registry.example/kfaults@sha256:" + "0123456789abcdef" * 4
NS = "kfaults-{walk}"
SPEC = """
[app]
name = "kfaults"

[environments.staging]
target = "kubernetes"
[environments.staging.kubernetes]
namespace = "{namespace}"
kubeconfig = "{kubeconfig}"

[services.api]
run = ["python", "app.py"]
image = "{image}"
env = {{ VERSION = "api-{api}" }}
start_timeout = "20s"
stop_timeout = "1s"
drain_timeout = "0s"
[services.api.health]
tcp = true
interval = "1s"
timeout = "1s"
[[services.api.routes]]
path = "/api"

[services.web]
run = ["python", "app.py"]
image = "{image}"
release = ["python", "migrate.py"]
secrets = ["TOKEN"]
depends_on = ["api"]
env = {{ VERSION = "web-{web}" }}
start_timeout = "20s"
stop_timeout = "1s"
drain_timeout = "0s"
{web_strategy}
[services.web.health]
http = "/healthz"
interval = "1s"
timeout = "1s"
[[services.web.routes]]
path = "/"
{workers}
"""
WORKER = """
[services.{name}]
run = ["python", "app.py"]
image = "{image}"
release = ["python", "migrate.py"]
secrets = ["TOKEN"]
depends_on = ["api"]
env = {{ VERSION = "{name}-1" }}
start_timeout = "20s"
stop_timeout = "1s"
drain_timeout = "0s"
[services.{name}.health]
tcp = true
interval = "1s"
timeout = "1s"
[[services.{name}.routes]]
path = "/{name}"
"""
CANARY = 'strategy = "canary"\nsteps = [25, 50, 100]\npause = "manual"'
# The Kubernetes provider's steps of a service's create or update, in order (tests/e2e/test_faults.py's scan of
# the provider finds these and the edge's "ingress" and "edge").
SERVICE_STEPS = ["check", "environment", "secret", "job", "deployment", "rollout", "service"]
# Every provider step some walk below kills the daemon at, before and after (tests/e2e/test_faults.py compares
# this with the steps the provider can journal). "delete" and "restore" are also engine actions' names.
KUBERNETES_WALKED = {*SERVICE_STEPS, "ingress", "canary"}


@dataclass
class Case:
    step: str  # as journaled, address included
    end: bool
    prepare: Callable[[Walk], None]
    inside: str | None = None  # a provider's own fault point within ``step`` (kubernetes/canary.py's checkpoint)

    @property
    def fault(self) -> str:
        return self.inside or self.step + (":end" if self.end else "")


@dataclass
class Walk:
    root: Path
    cluster: Cluster
    namespace: str
    api: int = 1
    web: int = 1
    workers: list[str] = field(default_factory=list)
    created: int = 0  # workers created so far (the create walk names each new one after this count)
    daemon: subprocess.Popen[bytes] | None = None
    pending: dict[str, str] = field(default_factory=dict)
    versions_by_release: dict[int, dict[str, str]] = field(default_factory=dict)
    canary: bool = False  # web rolls out as a canary (steps 25/50/100, manual pause)

    def __post_init__(self) -> None:
        for name in ("app.py", "migrate.py"):
            (self.root / name).write_bytes((APP / name).read_bytes())
        self.kubeconfig = self.cluster.write_kubeconfig(self.root / "kubeconfig")
        self.write()
        self.ws = Workspace.locate(self.root / "railguard.toml")
        self.client = Client(self.ws, autostart=False)

    def versions(self) -> dict[str, str]:
        return {"api": f"api-{self.api}", "web": f"web-{self.web}", **{w: f"{w}-1" for w in self.workers}}

    def write(self) -> None:
        workers = "".join(WORKER.format(name=w, image=IMAGE) for w in self.workers)
        (self.root / "railguard.toml").write_text(SPEC.format(
            namespace=self.namespace, kubeconfig=self.kubeconfig, image=IMAGE, api=self.api, web=self.web,
            workers=workers, web_strategy=CANARY if self.canary else ""))

    # -- the daemon --------------------------------------------------------------------------------
    def start(self, fault: str | None) -> None:
        environ = {k: v for k, v in os.environ.items() if k not in (FAULT_ENV, "RAILGUARD_HOME")}
        if fault:
            environ[FAULT_ENV] = fault
        self.ws.home.mkdir(exist_ok=True)
        with open(self.ws.home / "daemon.out", "ab") as out:
            self.daemon = subprocess.Popen([sys.executable, "-m", "railguard", "daemon", "run", "--home",
                                            str(self.ws.home)], stdin=subprocess.DEVNULL, stdout=out,
                                           stderr=subprocess.STDOUT, cwd=self.ws.home, env=environ)
        daemon = self.daemon
        wait_for(lambda: self.client.alive() or daemon.poll() is not None, "the daemon to answer", timeout=60)
        assert daemon.poll() is None, (self.ws.home / "daemon.out").read_text()[-2000:]

    def killed_by_fault(self) -> bool:
        assert self.daemon is not None
        try:
            return self.daemon.wait(timeout=120) == -signal.SIGKILL
        except subprocess.TimeoutExpired:
            return False

    def stop(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.client.stop_daemon(everything=False)
            self.daemon.wait(timeout=60)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.client.call(method, path, body, params)

    # -- operations --------------------------------------------------------------------------------
    def plan(self, canary_running: bool = False) -> dict[str, Any]:
        plan = self.call("POST", "plans", {"spec": str(self.ws.spec_path), "env": "staging"})["plan"]
        # While a canary runs, a plan of its service is refused until it is promoted or aborted.
        allowed = {"canary.in_progress"} if canary_running else set()
        assert not [d for d in plan["diagnostics"] if d["severity"] == "error" and d["code"] not in allowed], \
            plan["diagnostics"]
        return plan  # type: ignore[no-any-return]

    def submit(self, body: dict[str, Any]) -> str | None:
        try:
            return str(self.call("POST", "operations", {**body, "spec": str(self.ws.spec_path)})["operation"]["id"])
        except RailguardError as exc:  # the daemon died before it answered: the newest operation is it
            assert exc.diagnostics[0].code == "daemon.unavailable", exc.diagnostics
            return None

    def apply(self) -> str | None:
        self.write()
        if self.canary and self.canary_of() is not None:
            # A deploy is refused while a canary runs (canary.in_progress): decided first, as a user must.
            self.call("POST", "canaries/staging/web/abort", {"env": "staging"})
        plan = self.plan()
        self.pending = self.versions()
        confirm = [c["address"] for c in plan["changes"] if c["risk"] == "destructive"]
        return self.submit({"kind": "apply", "plan_id": plan["id"], "confirm": confirm})

    def rollback(self) -> str | None:
        self.pending = {}
        return self.submit({"kind": "rollback", "env": "staging"})

    def settle(self, op: str | None) -> dict[str, Any]:
        if op is None:
            op = str(self.call("GET", "operations", params={"env": "staging", "limit": 1})["operations"][0]["id"])
        wait_for(lambda: self.call("GET", f"operations/{op}")["operation"]["status"] not in ("queued", "running"),
                 "the operation to settle", timeout=120)
        record = self.call("GET", f"operations/{op}")["operation"]
        release = next((r for r in self.call("GET", "releases", params={"env": "staging", "limit": 200})["releases"]
                        if r["operation_id"] == op), None)
        if release is not None:
            target = release.get("rollback_of")
            self.versions_by_release[release["number"]] = (self.versions_by_release[target] if target
                                                           else dict(self.pending))
        return {"operation": record, "release": release}

    def deploy(self) -> None:
        settled = self.settle(self.apply())
        assert settled["operation"]["status"] == "succeeded", settled

    def canary_of(self, service: str = "web") -> dict[str, Any] | None:
        services = self.call("GET", "status", params={"env": "staging"})["status"]["services"]
        found: dict[str, Any] | None = next((s["canary"] for s in services if s["name"] == service), None)
        return found

    def promote(self, service: str = "web", from_weight: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"env": "staging"}
        if from_weight is not None:  # the share just read: a promote right after another one is not "pending"
            body["from_weight"] = from_weight
        return self.call("POST", f"canaries/staging/{service}/promote-step", body)

    def records(self) -> dict[int, str]:
        return {r["number"]: r["status"] for r in self.call("GET", "releases", params={"env": "staging",
                                                                                    "limit": 200})["releases"]}

    def set_secret(self, value: str) -> None:
        self.call("POST", "secrets", {"env": "staging", "name": "TOKEN", "value": value})

    # -- the cluster -------------------------------------------------------------------------------
    def listed(self, path: str) -> list[dict[str, Any]]:
        found = self.cluster.get(f"{path}?labelSelector=railguard.dev/environment%3Dstaging")
        return list((found or {}).get("items", []))


def _settled_deployments(w: Walk) -> list[dict[str, Any]]:
    """Our Deployments once none carries an operation's mark and every one has rolled out completely."""
    def done() -> list[dict[str, Any]] | None:
        found = w.listed(f"/apis/apps/v1/namespaces/{w.namespace}/deployments")
        for d in found:
            status, wanted = d.get("status") or {}, int(d["spec"].get("replicas", 1))
            if PENDING in (d["metadata"].get("annotations") or {}) or \
                    int(status.get("observedGeneration") or 0) < int(d["metadata"]["generation"]) or \
                    not int(status.get("updatedReplicas") or 0) == int(status.get("availableReplicas") or 0) == \
                    int(status.get("replicas") or 0) == wanted:
                return None
        return found or [{}]

    found = wait_for(done, "every Deployment to carry no mark and to finish its rollout", timeout=60)
    return [d for d in found if d]


def _check(w: Walk, case: Case, op: str | None) -> None:
    settled = w.settle(op)
    record, release = settled["operation"], settled["release"]
    assert record["status"] in ("succeeded", "failed"), record
    if record["status"] == "failed":
        assert record["error"]["diagnostics"][0]["code"] == "operation.interrupted", record["error"]
    if release is not None:
        assert release["status"] == ("live" if record["status"] == "succeeded" else "failed"), release
    journal = [(j["step"], j["phase"]) for j in record["journal"]]
    if case.inside:  # killed within the step (the next daemon may have finished it: an abort is)
        assert (case.step, "begin") in journal, journal[-3:]
    elif case.end:
        assert journal[-1] == (case.step, "end"), journal[-3:]
    else:
        assert (case.step, "begin") not in journal, journal
    _check_cluster(w, record, release)


def _check_cluster(w: Walk, record: dict[str, Any], release: dict[str, Any] | None) -> None:
    # Nothing half applied: each Deployment runs one whole release, with that release's settings (a canary
    # Deployment runs its release beside its service's live one).
    everything = {d["metadata"]["name"]: d for d in _settled_deployments(w)}
    canaries = {n: d for n, d in everything.items() if d["metadata"]["labels"].get(TRACK) == "canary"}
    deployments = {n: d for n, d in everything.items() if n not in canaries}
    for name, d in everything.items():
        service, number = d["metadata"]["labels"][SERVICE], int(d["metadata"]["labels"][RELEASE])
        env = {e["name"]: e.get("value") for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert number in w.versions_by_release and service in w.versions_by_release[number], (name, number)
        assert env["VERSION"] == w.versions_by_release[number][service], (name, number, env["VERSION"])
        assert d["spec"]["template"]["metadata"]["labels"][RELEASE] == str(number), name
    # A canary runs only beside its live service, for a release the record calls live (its deploy succeeded), and
    # status shows it; an interrupted deploy left none of its release.
    records = w.records()
    for name, d in canaries.items():
        service, number = d["metadata"]["labels"][SERVICE], int(d["metadata"]["labels"][RELEASE])
        assert service in deployments and records.get(number) == "live", (name, number, records)
        assert (w.canary_of(service) or {}).get("release") == number, (name, w.canary_of(service))
    if release is not None and record["status"] == "failed":
        assert str(release["number"]) not in {d["metadata"]["labels"][RELEASE] for d in canaries.values()}
    # No orphans, nothing missing.
    services = {s["metadata"]["name"] for s in w.listed(f"/api/v1/namespaces/{w.namespace}/services")}
    assert services == set(deployments), (services, set(deployments))
    for job in w.listed(f"/apis/batch/v1/namespaces/{w.namespace}/jobs"):
        owner = job["metadata"]["labels"][SERVICE]
        assert owner in deployments, job["metadata"]["name"]
        assert job["metadata"]["name"] in {job_name(owner, int(d["metadata"]["labels"][RELEASE]))
                                           for d in everything.values() if d["metadata"]["labels"][SERVICE] == owner}
    used = {e["valueFrom"]["secretKeyRef"]["name"] for d in everything.values()
            for e in d["spec"]["template"]["spec"]["containers"][0]["env"] if "valueFrom" in e}
    secrets = {s["metadata"]["name"] for s in w.listed(f"/api/v1/namespaces/{w.namespace}/secrets")
               if SERVICE in s["metadata"]["labels"]}
    assert secrets == used, (secrets, used)
    ingress = w.cluster.get(f"/apis/networking.k8s.io/v1/namespaces/{w.namespace}/ingresses/railguard-edge")
    backends = {p["backend"]["service"]["name"] for rule in (ingress or {}).get("spec", {}).get("rules", [])
                for p in rule["http"]["paths"]}
    assert backends <= services, (backends, services)
    # The next plan agrees with the record (a canary's service plans its release again until it is promoted, as
    # on the local runtime: observation reports the live release).
    changes = [c["address"] for c in w.plan(canary_running=bool(canaries))["changes"] if c["action"] != "no-op"]
    if record["status"] == "succeeded":
        assert set(changes) <= ({"staging/service.web"} if w.canary else set()), changes
    else:
        assert changes, "an interrupted operation left nothing to plan"


def _converge(w: Walk) -> None:
    """An apply without a fault (and its canary promoted) leaves nothing to plan."""
    w.deploy()
    while (canary := w.canary_of()) is not None:
        # From the share just read, as an agent promoting in a loop does: without it a second promote-step before
        # the analysis began the first one's step moves nothing (canary.step_moved, pending).
        w.promote(from_weight=canary["weight"])
    assert not [c for c in w.plan()["changes"] if c["action"] != "no-op"]


def _walk(w: Walk, cases: list[Case], run: Callable[[Walk], str | None]) -> None:
    w.stop()
    w.start(cases[0].fault)
    for i, case in enumerate(cases):
        case.prepare(w)
        op = run(w)
        assert w.killed_by_fault(), f"the daemon was not killed at {case.fault}: {w.settle(op)['operation']}"
        following = cases[i + 1].fault if i + 1 < len(cases) else None
        w.start(following)
        try:
            _check(w, case, op)
        except AssertionError as exc:
            raise AssertionError(f"after the fault at {case.fault}: {exc}") from exc
    _converge(w)  # an apply without a fault converges


@pytest.fixture
def walk(tmp_path: Path, k8s_cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[Walk]:
    namespace = k8s_cluster.create_namespace(NS.format(walk=request.node.name.rsplit("_", 1)[-1]))
    w = Walk(tmp_path, k8s_cluster, namespace)
    w.start(None)
    w.set_secret("first")
    yield w
    w.stop()
    if w.daemon is not None and w.daemon.poll() is None:
        w.daemon.kill()
    k8s_cluster.delete_namespace(namespace, wait=False)


def _new_worker(w: Walk) -> None:
    """A new worker in each case (the previous one deleted in the same plan); api is updated in place."""
    w.api += 1
    w.created += 1
    w.workers = [f"n{w.created}"]


# -- the walks ----------------------------------------------------------------------------------------
def test_faults_at_every_step_of_create(walk: Walk) -> None:
    cases = []
    for i, step in enumerate(SERVICE_STEPS * 2):
        end = i >= len(SERVICE_STEPS)
        cases.append(Case(f"staging/service.n{1 + i}: {step}", end, _new_worker))
    cases += [Case("staging/edge: ingress", end, _new_worker) for end in (False, True)]
    _walk(walk, cases, Walk.apply)


def _new_web(w: Walk) -> None:
    """A new pod template for web (its VERSION), a rotated secret, and api updated in place."""
    w.web += 1
    w.api += 1
    w.set_secret(f"value-{w.web}")


def test_faults_at_every_step_of_update_and_rollback(walk: Walk) -> None:
    """A new pod template for web (and a rotated secret), killed at each step that changes the cluster; then
    rollbacks to the release before, killed while the previous template goes back."""
    walk.deploy()
    steps = ["job", "deployment", "rollout", "service"]
    _walk(walk, [Case(f"staging/service.web: {s}", end, _new_web) for end in (False, True) for s in steps],
          Walk.apply)
    _walk(walk, [Case("staging/service.web: rollout", end, lambda w: None) for end in (False, True)], Walk.rollback)


def test_faults_at_every_step_of_delete(walk: Walk) -> None:
    walk.workers = ["w0"]
    walk.deploy()
    cases = []
    for n, end in enumerate((False, True)):
        def next_worker(w: Walk, n: int = n) -> None:  # w<n> goes, w<n+1> comes in the same plan
            w.api += 1
            w.workers = [f"w{n + 1}"]

        cases.append(Case(f"staging/service.w{n}: delete", end, next_worker))
    _walk(walk, cases, Walk.apply)


# -- canaries -----------------------------------------------------------------------------------------------------
def test_faults_at_every_step_of_a_canary_start_and_of_a_rollback_that_aborts_it(walk: Walk) -> None:
    """web as a canary: its new template killed at the canary's own steps (a daemon killed while the canary rolls
    out leaves none of it: the record says the deploy failed; killed once it runs, the record says it succeeded and
    status shows it), then rollbacks killed while they abort the canary (the abort is finished by the next daemon
    once begun: the canary's release aborted, the stable one live)."""
    walk.canary = True
    walk.deploy()  # release 1: nothing beside it, all at once
    steps = ["canary", "service"]
    _walk(walk, [*(Case(f"staging/service.web: {s}", end, _new_web) for end in (False, True) for s in steps),
                 Case("staging/service.web: canary", False, _new_web, inside="canary-start")], Walk.apply)

    def canary(w: Walk) -> None:  # a new canary of web to abort (the armed fault is not on its path)
        _new_web(w)
        w.deploy()
        assert w.canary_of() is not None

    _walk(walk, [*(Case("staging/service.web: abort-canary", end, canary) for end in (False, True)),
                 Case("staging/service.web: abort-canary", False, canary, inside="canary-abort")], Walk.rollback)
    records = walk.records()
    assert "aborted" in records.values(), records
    # The rollback killed inside its abort: the next daemon finished the abort and recorded it.
    last = next(o for o in walk.call("GET", "operations", params={"env": "staging", "limit": 20})["operations"]
                if o["kind"] == "rollback")
    journal = walk.call("GET", f"operations/{last['id']}")["operation"]["journal"]
    ended = [j for j in journal if j["step"] == "staging/service.web: abort-canary" and j["phase"] == "end"]
    assert ended and ended[0]["detail"].get("recovered") and records[ended[0]["detail"]["aborted"]] == "aborted", \
        journal


def test_a_daemon_killed_while_a_canary_moves_leaves_it_where_the_cluster_says(walk: Walk) -> None:
    """promote-step killed after the canary's new size was sent, after the live Deployment was sent the new
    template (a promotion cut off), and once it served before the canary was deleted: the next daemon shows the
    canary where the cluster has it, and the next promote-step (or abort) finishes the job."""
    walk.canary = True
    walk.deploy()
    for fault in ("canary-weight", "canary-promote", "canary-promoted"):
        _new_web(walk)
        walk.deploy()
        release = max(n for n, s in walk.records().items() if s == "live")
        assert (walk.canary_of() or {}).get("release") == release, walk.canary_of()
        walk.stop()
        walk.start(fault)
        if fault != "canary-weight":
            walk.promote()  # to 50 %
            # (the controller's step must have seen 50 % first: a promote-step right after another one moves from
            # the share its previous pass saw, so it would ask for 50 % again)
            seen_at = f"release {release} takes 50%"
            wait_for(lambda: any(e["kind"] == "canary.step" and seen_at in e["message"]  # noqa: B023
                                 for e in walk.call("GET", "events", params={"env": "staging"})["events"]),
                     "the controller at 50 %")
        try:
            walk.promote()  # killed on the way
        except RailguardError as exc:
            assert exc.diagnostics[0].code == "daemon.unavailable", exc.diagnostics
        assert walk.killed_by_fault(), f"the daemon was not killed at {fault}"
        walk.start(None)
        seen = walk.canary_of()
        everything = {d["metadata"]["name"]: d for d in _settled_deployments(walk)}
        found = everything.get("web-canary")
        if fault == "canary-promoted":  # the live Deployment serves the new release; the canary was still there
            assert everything["web"]["metadata"]["labels"][RELEASE] == str(release)
        if found is None:
            assert seen is None, seen
        else:
            notes = found["metadata"]["annotations"]
            assert seen is not None and seen["release"] == release, seen
            assert str(seen["weight"]) == notes["railguard.dev/canary-weight"], (seen, notes)
        if fault == "canary-weight":
            assert seen is not None and seen["weight"] == 50, seen  # the size sent is the step it is at
        while (canary := walk.canary_of()) is not None:  # the next promote-step finishes what was cut off
            walk.promote(from_weight=canary["weight"])
        deployment = {d["metadata"]["name"]: d for d in _settled_deployments(walk)}
        assert set(deployment) == {"api", "web"} and deployment["web"]["metadata"]["labels"][RELEASE] == str(release)
        _check_cluster(walk, {"status": "succeeded"}, None)
        assert not [c for c in walk.plan()["changes"] if c["action"] != "no-op"]
        assert walk.records().get(release) == "live"


def test_a_daemon_killed_after_the_cluster_aborted_a_canary_records_the_abort(walk: Walk) -> None:
    """``railguard abort`` killed after the canary Deployment was deleted, before the abort was recorded (fault
    point ``canary-aborted``): the next daemon finds the canary gone while its store says it runs, and records the
    abort from the live release — the canary's release ``aborted``, the stable one ``live`` again — so status, the
    records and the cluster agree and nothing of the canary is left."""
    walk.canary = True
    walk.deploy()
    stable = max(n for n, s in walk.records().items() if s == "live")
    _new_web(walk)
    walk.deploy()
    release = max(n for n, s in walk.records().items() if s == "live")
    assert release != stable and (walk.canary_of() or {}).get("release") == release, walk.canary_of()
    wait_for(lambda: any(e["kind"] == "canary.step" and f"release {release} takes" in e["message"]
                         for e in walk.call("GET", "events", params={"env": "staging"})["events"]),
             "the controller's step record")
    walk.stop()
    walk.start("canary-aborted")
    try:
        walk.call("POST", "canaries/staging/web/abort", {"env": "staging"})
    except RailguardError as exc:
        assert exc.diagnostics[0].code == "daemon.unavailable", exc.diagnostics
    assert walk.killed_by_fault(), "the daemon was not killed at canary-aborted"
    assert "web-canary" not in {d["metadata"]["name"] for d in _settled_deployments(walk)}  # the cluster moved
    walk.start(None)
    records = wait_for(lambda: (r := walk.records()).get(release) == "aborted" and r, "the abort recorded", timeout=60)
    assert records[stable] == "live", records
    assert walk.canary_of() is None
    deployments = {d["metadata"]["name"]: d for d in _settled_deployments(walk)}
    assert "web-canary" not in deployments and deployments["web"]["metadata"]["labels"][RELEASE] == str(stable)
    assert "release.aborted" in {e["kind"] for e in walk.call("GET", "events", params={"env": "staging"})["events"]}
    _check_cluster(walk, {"status": "succeeded"}, None)
