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
# The Kubernetes provider's steps of a service's create or update, in order (tests/e2e/test_faults.py's scan of
# the provider finds these and the edge's "ingress" and "edge").
SERVICE_STEPS = ["check", "environment", "secret", "job", "deployment", "rollout", "service"]
# Every provider step some walk below kills the daemon at, before and after (tests/e2e/test_faults.py compares
# this with the steps the provider can journal). "delete" and "restore" are also engine actions' names.
KUBERNETES_WALKED = {*SERVICE_STEPS, "ingress"}


@dataclass
class Case:
    step: str  # as journaled, address included
    end: bool
    prepare: Callable[[Walk], None]

    @property
    def fault(self) -> str:
        return self.step + (":end" if self.end else "")


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
            workers=workers))

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
    def plan(self) -> dict[str, Any]:
        plan = self.call("POST", "plans", {"spec": str(self.ws.spec_path), "env": "staging"})["plan"]
        assert not [d for d in plan["diagnostics"] if d["severity"] == "error"], plan["diagnostics"]
        return plan  # type: ignore[no-any-return]

    def submit(self, body: dict[str, Any]) -> str | None:
        try:
            return str(self.call("POST", "operations", {**body, "spec": str(self.ws.spec_path)})["operation"]["id"])
        except RailguardError as exc:  # the daemon died before it answered: the newest operation is it
            assert exc.diagnostics[0].code == "daemon.unavailable", exc.diagnostics
            return None

    def apply(self) -> str | None:
        self.write()
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
    if case.end:
        assert journal[-1] == (case.step, "end"), journal[-3:]
    else:
        assert (case.step, "begin") not in journal, journal
    # Nothing half applied: each Deployment runs one whole release, with that release's settings.
    deployments = {d["metadata"]["name"]: d for d in _settled_deployments(w)}
    for name, d in deployments.items():
        number = int(d["metadata"]["labels"][RELEASE])
        env = {e["name"]: e.get("value") for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert number in w.versions_by_release and name in w.versions_by_release[number], (name, number)
        assert env["VERSION"] == w.versions_by_release[number][name], (name, number, env["VERSION"])
        assert d["spec"]["template"]["metadata"]["labels"][RELEASE] == str(number), name
    # No orphans, nothing missing.
    services = {s["metadata"]["name"] for s in w.listed(f"/api/v1/namespaces/{w.namespace}/services")}
    assert services == set(deployments), (services, set(deployments))
    for job in w.listed(f"/apis/batch/v1/namespaces/{w.namespace}/jobs"):
        owner = job["metadata"]["labels"][SERVICE]
        assert owner in deployments, job["metadata"]["name"]
        assert job["metadata"]["name"] == job_name(owner, int(deployments[owner]["metadata"]["labels"][RELEASE]))
    used = {e["valueFrom"]["secretKeyRef"]["name"] for d in deployments.values()
            for e in d["spec"]["template"]["spec"]["containers"][0]["env"] if "valueFrom" in e}
    secrets = {s["metadata"]["name"] for s in w.listed(f"/api/v1/namespaces/{w.namespace}/secrets")
               if SERVICE in s["metadata"]["labels"]}
    assert secrets == used, (secrets, used)
    ingress = w.cluster.get(f"/apis/networking.k8s.io/v1/namespaces/{w.namespace}/ingresses/railguard-edge")
    backends = {p["backend"]["service"]["name"] for rule in (ingress or {}).get("spec", {}).get("rules", [])
                for p in rule["http"]["paths"]}
    assert backends <= services, (backends, services)
    # The next plan agrees with the record.
    changes = [c["address"] for c in w.plan()["changes"] if c["action"] != "no-op"]
    if record["status"] == "succeeded":
        assert not changes, changes
    else:
        assert changes, "an interrupted operation left nothing to plan"


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
    # An apply without a fault converges.
    w.deploy()
    assert not [c for c in w.plan()["changes"] if c["action"] != "no-op"]


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
