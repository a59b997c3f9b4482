"""A daemon killed at every journaled step of create, update, replace, delete and rollback, in multi-service plans.

``RAILGUARD_FAULT_STEP`` makes the daemon SIGKILL itself right before a step is journaled ("step") or right
after ("step:end"). For each operation kind a test walks through every step that kind journals, at both
phases, in one workspace whose plans always change several services (``api`` is updated in place in every
plan, ``web`` or a ``worker`` carries the step under test, and the edge follows). After each kill a new
daemon recovers, and the test checks, through the daemon's API and real HTTP through the edge:

- the fault fired where it was asked (the daemon died by SIGKILL; the step is, or is not yet, journaled);
- the operation settled (succeeded, or failed with ``operation.interrupted``) and its release agrees;
- no half switch: one live replica set per service, and the edge routes exactly the recorded live replicas;
- the environment serves, on every route, the release the record says is live for that service;
- no replica runs that the record does not know (unproven or removed replicas were stopped).

To keep the module affordable, the daemon that recovers case N is already armed with the fault of case
N+1, so each case costs one daemon start. ``test_every_journaled_step_has_a_fault_case`` compares the
steps injected here with the steps the code can journal (read from the provider's source), so a new step
cannot be added without a fault case.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

import railguard.providers
from railguard.client import Client
from railguard.data import snapshots
from railguard.data.postgres import bin_dir
from railguard.engine.execute import FAULT_ENV
from railguard.engine.workspace import Workspace
from railguard.model.diagnostics import RailguardError
from railguard.model.plans import Action

from .harness import APP, free_port, wait_for

SPEC = """
[app]
name = "faults"

[environments.staging]
edge_port = {port}
rollback_window = "{window}"

[services.api]
run = ["python", "app.py"]
env = {{ VERSION = "api-1" }}
drain_timeout = "{api_drain}"
stop_timeout = "3s"
[services.api.health]
tcp = true
interval = "200ms"
timeout = "200ms"
[[services.api.routes]]
path = "/api"

[services.web]
run = ["python", "app.py"]
release = ["python", "migrate.py"]
depends_on = ["api"]
replicas = {web_replicas}
env = {{ VERSION = "web-{web}" }}
stop_timeout = "3s"
drain_timeout = "3s"
[services.web.health]
http = "/healthz"
interval = "200ms"
timeout = "200ms"
{web_routes}
{extra}
"""

WORKER = """
[services.{name}]
run = ["python", "app.py"]
{release}depends_on = ["api"]
env = {{ VERSION = "{name}-1" }}
stop_timeout = "3s"
drain_timeout = "2s"
[services.{name}.health]
{health}
interval = "200ms"
timeout = "200ms"
[[services.{name}.routes]]
path = "/{name}"
"""

WEB = "staging/service.web"
EDGE = "staging/edge"
ENV = "staging/environment"
ACTIONS = tuple(a.value for a in Action if a is not Action.noop)


@dataclass
class Case:
    """One fault: the step as journaled (address included), the phase, and what makes the next plan need it."""

    step: str
    end: bool
    prepare: Callable[[Faults], None]
    reset_after: bool = False  # stop everything after the check, so the next case creates from nothing

    @property
    def fault(self) -> str:
        return self.step + (":end" if self.end else "")

    @property
    def kind(self) -> tuple[str, bool]:
        """The step without its address: an engine action ('replace') or a provider step ('switch')."""
        name = self.step.split(" ", 1)[0] if self.step.startswith(ACTIONS) else self.step.rsplit(": ", 1)[-1]
        return name, self.end


@dataclass
class Faults:
    root: Path
    port: int = field(default_factory=free_port)
    web: int = 1
    api: int = 1  # toggles api's drain timeout: every plan also updates api in place (multi-service plans)
    web_replicas: int = 1
    window: str = "5m"
    web_routes: list[str] = field(default_factory=lambda: ["/"])
    workers: list[str] = field(default_factory=list)
    worker_release: bool = False
    serving: bool = False
    databases: list[str] = field(default_factory=list)  # managed Postgres databases in the spec
    restoring: bool = False  # the next operation is a restore of the newest snapshot (data guard walk)
    rows: set[int] = field(default_factory=set)  # row counts app.db may hold after recovery (data guard walk)
    daemon: subprocess.Popen[bytes] | None = None
    versions_by_release: dict[int, dict[str, str]] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("app.py", "migrate.py"):
            shutil.copy(APP / name, self.root / name)
        self.ws = Workspace.locate(self.root / "railguard.toml")
        self.client = Client(self.ws, autostart=False)

    # -- the spec --------------------------------------------------------------------------------
    def versions(self) -> dict[str, str]:
        return {"api": "api-1", "web": f"web-{self.web}", **{w: f"{w}-1" for w in self.workers}}

    def write(self) -> None:
        routes = "".join(f'[[services.web.routes]]\npath = "{p}"\n' for p in self.web_routes)
        extra = "".join(WORKER.format(name=w, release='release = ["python", "migrate.py"]\n' if self.worker_release
                                      else "", health='http = "/healthz"' if self.worker_release else "tcp = true")
                        for w in self.workers)
        extra += "".join(f'\n[databases.{name}]\nengine = "postgres"\n' for name in self.databases)
        (self.root / "railguard.toml").write_text(SPEC.format(
            port=self.port, window=self.window, api_drain="5s" if self.api % 2 else "6s",
            web_replicas=self.web_replicas, web=self.web, web_routes=routes, extra=extra))

    # -- the daemon ------------------------------------------------------------------------------
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
            code = self.daemon.wait(timeout=120)
        except subprocess.TimeoutExpired:
            return False
        return code == -signal.SIGKILL

    def stop(self, everything: bool) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.client.stop_daemon(everything=everything)
            self.daemon.wait(timeout=60)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.client.call(method, path, body, params)

    # -- operations ------------------------------------------------------------------------------
    def submit(self, body: dict[str, Any]) -> str | None:
        """Submit an operation; None when the daemon died before it could answer (the id is found later)."""
        try:
            return str(self.call("POST", "operations", {**body, "spec": str(self.ws.spec_path)})["operation"]["id"])
        except RailguardError as exc:
            assert exc.diagnostics[0].code == "daemon.unavailable", exc.diagnostics
            return None

    def apply(self) -> str | None:
        self.write()
        plan = self.call("POST", "plans", {"spec": str(self.ws.spec_path), "env": "staging"})["plan"]
        assert not [d for d in plan["diagnostics"] if d["severity"] == "error"], plan["diagnostics"]
        self.pending = self.versions()
        return self.submit({"kind": "apply", "plan_id": plan["id"]})

    def apply_confirmed(self) -> str | None:
        """Apply, typing back every destructive change's address (a database deleted), or restore the newest
        snapshot when the case asked for it (``restoring``)."""
        if self.restoring:
            return self.restore()
        self.write()
        plan = self.call("POST", "plans", {"spec": str(self.ws.spec_path), "env": "staging"})["plan"]
        assert not [d for d in plan["diagnostics"] if d["severity"] == "error"], plan["diagnostics"]
        self.pending = self.versions()
        confirm = [c["address"] for c in plan["changes"] if c["risk"] == "destructive"]
        return self.submit({"kind": "apply", "plan_id": plan["id"], "confirm": confirm})

    def restore(self) -> str | None:
        backup = self.call("GET", "backups", params={"env": "staging"})["backups"][0]
        plan = self.call("POST", "restores", {"spec": str(self.ws.spec_path), "env": "staging",
                                              "backup": backup["id"]})["plan"]
        self.pending = {}
        return self.submit({"kind": "apply", "plan_id": plan["id"], "confirm": [c["address"] for c in plan["changes"]]})

    def rollback(self) -> str | None:
        self.pending = {}
        return self.submit({"kind": "rollback", "env": "staging"})

    def settle(self, op: str | None) -> dict[str, Any]:
        if op is None:  # the submit's answer was lost: it is the newest operation
            op = str(self.call("GET", "operations", params={"env": "staging", "limit": 1})["operations"][0]["id"])
        wait_for(lambda: self.call("GET", f"operations/{op}")["operation"]["status"] not in ("queued", "running"),
                 "the operation to settle", timeout=120)
        record = self.call("GET", f"operations/{op}")["operation"]
        release = next((r for r in self.call("GET", "releases", params={"env": "staging", "limit": 200})["releases"]
                        if r["operation_id"] == op), None)
        if release is not None:  # replicas started by this operation serve what it asked for
            target = release.get("rollback_of")
            self.versions_by_release[release["number"]] = (self.versions_by_release[target] if target
                                                           else dict(self.pending))
        return {"operation": record, "release": release}

    def deploy(self) -> None:
        """Apply the current spec with no fault armed; it must succeed."""
        settled = self.settle(self.apply())
        assert settled["operation"]["status"] == "succeeded", settled
        self.serving = True

    def live_replicas(self, service: str) -> int:
        status = self.call("GET", "status", params={"env": "staging"})["status"]
        return next(len(s["replicas"]) for s in status["services"] if s["name"] == service)

    # -- what runs -------------------------------------------------------------------------------
    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=10, trust_env=False)

    def replica_pids(self) -> set[int]:
        """App processes of this workspace: replicas run inside the state folder's artifacts."""
        artifacts = str(self.ws.home / "artifacts")
        found = set()
        for proc in psutil.process_iter(["cwd", "status"]):
            try:
                if (proc.info["cwd"] or "").startswith(artifacts) and proc.info["status"] != psutil.STATUS_ZOMBIE:
                    found.add(proc.pid)
            except psutil.Error:
                continue
        return found


def _check(f: Faults, case: Case, op: str | None) -> None:
    """Everything the module docstring promises, for one case, through the recovered daemon."""
    settled = f.settle(op)
    record, release = settled["operation"], settled["release"]
    assert record["status"] in ("succeeded", "failed"), record
    if record["status"] == "failed":
        assert record["error"]["diagnostics"][0]["code"] == "operation.interrupted", record["error"]
    if release is not None:
        assert release["status"] == ("live" if record["status"] == "succeeded" else "failed"), release
    journal = [(j["step"], j["phase"]) for j in record["journal"]]
    if case.end:  # killed right after journaling the end of the step: it is the last entry
        assert journal[-1] == (case.step, "end"), journal[-3:]
    else:  # killed right before journaling its beginning
        assert (case.step, "begin") not in journal, journal
    status = f.call("GET", "status", params={"env": "staging"})["status"]
    assert status["operation"] is None, status["operation"]
    services = {s["name"]: s for s in status["services"] if s["release"] is not None}
    assert status["live_sets"] == len(services), status  # one live set per service: never two, never half
    ports_of = {name: {r["port"] for r in s["replicas"]} for name, s in services.items()}
    for route in status["edge"]["routes"]:
        upstream_ports = {int(u.rsplit(":", 1)[1]) for u in route["upstreams"]}
        owner = next((n for n, ports in ports_of.items() if ports == upstream_ports), None)
        assert owner is not None, (route, ports_of)  # the edge routes exactly one service's live replicas
        expected = f.versions_by_release[services[owner]["release"]][owner]
        answers = {f.get(route["path"]).text.split()[0] for _ in range(3)}
        assert answers == {f"v{expected}"}, (route["path"], owner, services[owner]["release"], answers)
    # Every live replica runs; anything else running is a warm replica the record keeps (the daemon may stop an
    # expired warm set at any moment, so those are counted as at most what status listed).
    live = {r["pid"] for s in services.values() for r in s["replicas"]}
    warm = sum(w["replicas"] for s in status["services"] for w in s["warm"])
    running = f.replica_pids()
    assert None not in live and live <= running, (live, running)
    assert len(running - live) <= warm, (running - live, status["services"])
    f.serving = bool(status["edge"]["routes"]) and bool(status["edge"]["running"])
    _check_data(f, status)


def _check_data(f: Faults, status: dict[str, Any]) -> None:
    """The data steps left nothing half done: every listed snapshot verifies (a copy cut short has no manifest,
    so it is never listed), the database is whole and holds the rows before or after the step, no rehearsal
    copy is left, and each managed Postgres the record knows answers while none runs that it does not know."""
    root = f.ws.home / "backups" / "staging"
    for backup in snapshots.listing(root):
        snapshots.verify(root, backup)
    db = f.ws.home / "data" / "staging" / "app.db"
    if f.rows:
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            count = conn.execute("SELECT count(*) FROM notes").fetchone()[0]
        conn.close()
        assert count in f.rows, (count, f.rows)
    leftovers = f.ws.home / "scratch" / "rehearsal"
    assert not leftovers.exists() or not list(leftovers.iterdir()), list(leftovers.iterdir())
    records_path = f.ws.home / "databases.json"
    records = json.loads(records_path.read_text()) if records_path.exists() else {}
    known = {str(f.ws.home / "databases" / env / name / "pgdata") for env, found in records.items() for name in found
             if found[name]["engine"] == "postgres"}
    running = set()
    for proc in psutil.process_iter(["cmdline", "status"]):
        argv = proc.info["cmdline"] or []
        if proc.info["status"] != psutil.STATUS_ZOMBIE and len(argv) > 2 and argv[0].endswith("/postgres") \
                and "-D" in argv and argv[argv.index("-D") + 1].startswith(str(f.ws.home)):
            running.add(argv[argv.index("-D") + 1])
    assert running == known, (running, known)
    assert {d["status"] for d in status.get("databases", [])} <= {"healthy"}, status.get("databases")


def _walk(f: Faults, cases: list[Case], run: Callable[[Faults], str | None]) -> None:
    """Each case: arm its fault, make an operation reach it, recover with the next case's fault armed, check."""
    f.stop(everything=False)
    f.start(cases[0].fault)
    for i, case in enumerate(cases):
        serving = f.serving
        case.prepare(f)
        op = run(f)
        assert f.killed_by_fault(), f"the daemon was not killed at {case.fault}: {f.settle(op)['operation']}"
        if serving:
            assert f.get("/api").status_code == 200  # traffic flows while no daemon runs
        following = cases[i + 1].fault if i + 1 < len(cases) else None
        f.start(None if case.reset_after else following)
        try:
            _check(f, case, op)
        except AssertionError as exc:
            raise AssertionError(f"after the fault at {case.fault}: {exc}") from exc
        if case.reset_after:
            f.stop(everything=True)
            f.serving = False
            f.start(following)
    f.stop(everything=True)


def _faults(root: Path) -> Iterator[Faults]:
    f = Faults(root)
    yield f
    if f.daemon is not None and f.daemon.poll() is None:
        f.stop(everything=True)
    elif (f.ws.home / "runtime.json").exists():  # a failed case left no daemon: one stops what is left
        f.start(None)
        f.stop(everything=True)


@pytest.fixture
def faults(tmp_path: Path) -> Iterator[Faults]:
    yield from _faults(tmp_path)


@pytest.fixture
def pg_faults(session_temp_folder: Path) -> Iterator[Faults]:
    """Outside pytest's temp root, which any pytest started as root resets to 0700: a Postgres server run as
    its own user would lose its way to its files (see tests/data/conftest.py)."""
    root = Path(tempfile.mkdtemp(prefix="faults-", dir=session_temp_folder))
    yield from _faults(root)
    shutil.rmtree(root, ignore_errors=True)


def _both(step: str, prepare: Callable[[Faults], None], reset_after: bool = False) -> list[Case]:
    return [Case(step, end, prepare, reset_after) for end in (False, True)]


def _bump_api(f: Faults) -> None:
    f.api += 1


# -- the cases of each operation kind ---------------------------------------------------------------------
ROLLOUT = ["build", "release-command", "start", "gate", "switch", "drain", "stop-old"]


def create_cases() -> list[Case]:
    # The environment and the edge are created once: the first cases run on an empty environment, and
    # everything is stopped after an edge case that created it, so the next plan creates it again.
    cases = [*_both(f"create {ENV}", _bump_api), Case(f"create {EDGE}", False, _bump_api),
             Case(f"{EDGE}: edge", False, _bump_api), Case(f"{EDGE}: edge", True, _bump_api, reset_after=True),
             Case(f"create {EDGE}", True, _bump_api, reset_after=True)]
    # Then a new service in each case (created beside api's update; the previous new one is deleted).
    for name in ["create {}", *ROLLOUT[:5]]:
        for end in (False, True):
            n = len(cases)

            def new_service(f: Faults, n: int = n) -> None:
                f.api += 1
                f.workers = [f"new{n}"]

            address = f"staging/service.new{n}"
            cases.append(Case(name.format(address) if "{}" in name else f"{address}: {name}", end, new_service))
    return cases


def update_cases() -> list[Case]:
    def scale_up(f: Faults) -> None:
        f.api += 1
        f.web_replicas = f.live_replicas("web") + 1

    def scale_down(f: Faults) -> None:
        f.api += 1
        f.web_replicas = f.live_replicas("web") - 1

    def new_route(f: Faults) -> None:
        f.api += 1
        f.web_routes.append(f"/extra{len(f.web_routes)}")

    return [*_both(f"update {WEB}", scale_up), *_both(f"{WEB}: scale-up", scale_up),
            *_both(f"{WEB}: switch", scale_up), *_both(f"{WEB}: drain", scale_down),
            *_both(f"update {EDGE}", new_route), *_both(f"{EDGE}: edge", new_route)]


def _new_web(f: Faults) -> None:
    f.api += 1
    f.web += 1


def replace_cases() -> list[Case]:
    return [*_both(f"replace {WEB}", _new_web)] + [c for step in ROLLOUT for c in _both(f"{WEB}: {step}", _new_web)]


def delete_cases() -> list[Case]:
    cases: list[Case] = []
    for name in ["delete {}", "switch", "drain", "stop"]:
        for end in (False, True):
            n = len(cases)

            def next_worker(f: Faults, n: int = n) -> None:  # w<n> goes, w<n+1> is created in the same plan
                f.api += 1
                f.workers = [f"w{n + 1}"]

            address = f"staging/service.w{n}"
            cases.append(Case(name.format(address) if "{}" in name else f"{address}: {name}", end, next_worker))
    return cases


def rollback_cases() -> list[Case]:
    # A rollback restores the previous release of api and web; web's replicas are replaced (cold: no warm set).
    return [*_both(f"replace {WEB}", lambda f: None)] + [
        c for step in ROLLOUT for c in _both(f"{WEB}: {step}", lambda f: None)]


def data_guard_cases() -> list[Case]:
    """A release command on data (web replaced): its snapshot and rehearsal; then a restore of the newest snapshot
    (the engine's restore action and the provider's write-back)."""
    def restore(f: Faults) -> None:  # every row deleted since the snapshot (of 3 rows): restored, or not yet
        f.restoring = True
        with sqlite3.connect(f.ws.home / "data" / "staging" / "app.db") as db:
            db.execute("DELETE FROM notes")
        db.close()
        f.rows = {0, 3}

    return [*(c for step in ("snapshot", "rehearse") for c in _both(f"{WEB}: {step}", _new_web)),
            *_both("restore staging/database.app", restore), *_both("staging/database.app: restore", restore)]


def database_cases() -> list[Case]:
    """A managed Postgres created (its server started) and deleted (stopped, its folder removed)."""
    def create(name: str) -> Callable[[Faults], None]:
        return lambda f: setattr(f, "databases", [name])

    def delete(f: Faults) -> None:
        f.databases = []

    return [Case("staging/database.db0: start-database", False, create("db0")),
            Case("staging/database.db1: start-database", True, create("db1")),
            *_both("staging/database.db1: delete-database", delete)]


KINDS: dict[str, Callable[[], list[Case]]] = {
    "create": create_cases, "update": update_cases, "replace": replace_cases, "delete": delete_cases,
    "rollback": rollback_cases, "data": data_guard_cases, "databases": database_cases,
}


def journaled_steps(runtime: str = "local") -> set[str]:
    """Every step name a runtime can journal: the engine's actions and its provider's ``step("...")`` calls."""
    found = set(ACTIONS)
    for folder in railguard.providers.__path__:
        for path in sorted((Path(folder) / runtime).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "step":
                    assert node.args and isinstance(node.args[0], ast.Constant), \
                        f"{path}:{node.lineno}: a step name must be a literal, so fault cases can be checked"
                    found.add(str(node.args[0].value))
    return found


# The Kubernetes provider's steps are walked against the test control plane by tests/k8s/test_faults_cluster.py
# (KUBERNETES_WALKED there). Not walked: "edge", the edge's delete, which no plan makes (an environment's edge goes
# only with the environment, and an environment cannot be removed by a plan). Listed so that a new Kubernetes step
# still fails this suite until it is walked or considered.
KUBERNETES_NOT_WALKED_YET = {
    "edge",
    "canary",  # a canary Deployment's start or weight change on a cluster: not walked yet (as the local "canary")
}


def test_kubernetes_steps_are_known() -> None:
    from ..k8s.test_faults_cluster import KUBERNETES_WALKED

    assert journaled_steps("kubernetes") - set(ACTIONS) == KUBERNETES_NOT_WALKED_YET | KUBERNETES_WALKED


# Steps journaled by features of this round whose crash-at-the-step walks are not written yet. Each is a known
# gap (named in the session's closing note), listed here so a NEW step without a fault case still fails the test.
NOT_WALKED_YET = {
    "command": "an approved one-off command (railguard exec in a protected environment)",
    "canary": "a canary step's weight change",
    "canary-step": "an approved canary step in a protected environment (a plan of one change)",
}


def test_every_journaled_step_has_a_fault_case() -> None:
    injected = {case.kind for make in KINDS.values() for case in make()}
    steps = journaled_steps()
    assert len(steps) > len(ACTIONS)  # the scan found the provider's steps
    assert set(NOT_WALKED_YET) <= steps, "a step listed as not walked yet is no longer journaled: drop it"
    assert injected == {(step, end) for step in steps - set(NOT_WALKED_YET) for end in (False, True)}


# -- the walks ------------------------------------------------------------------------------------------
@pytest.mark.timeout(1200)
def test_faults_at_every_step_of_create(faults: Faults) -> None:
    faults.worker_release = True  # new services run the release command, like web
    faults.start(None)
    _walk(faults, create_cases(), Faults.apply)


@pytest.mark.timeout(1200)
def test_faults_at_every_step_of_update(faults: Faults) -> None:
    faults.web_replicas = 2
    faults.start(None)
    faults.deploy()
    _walk(faults, update_cases(), Faults.apply)


@pytest.mark.timeout(1200)
def test_faults_at_every_step_of_replace(faults: Faults) -> None:
    faults.window = "0s"  # the old replicas are stopped right after the drain (stop-old)
    faults.start(None)
    faults.deploy()
    _walk(faults, replace_cases(), Faults.apply)


@pytest.mark.timeout(1200)
def test_faults_at_every_step_of_delete(faults: Faults) -> None:
    faults.workers = ["w0"]
    faults.start(None)
    faults.deploy()
    _walk(faults, delete_cases(), Faults.apply)


@pytest.mark.timeout(1200)
def test_faults_at_every_step_of_rollback(faults: Faults) -> None:
    faults.window = "0s"  # no warm replicas: a rollback builds, runs the release command, starts and gates
    faults.start(None)
    faults.deploy()
    _new_web(faults)
    faults.deploy()
    _walk(faults, rollback_cases(), Faults.rollback)


def _seed_notes(f: Faults, rows: int = 3) -> None:
    """A SQLite database in the data folder: from now on every release command is snapshotted and rehearsed."""
    data = f.ws.home / "data" / "staging"
    owner = data.stat()
    with sqlite3.connect(data / "app.db") as db:
        db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        db.executemany("INSERT INTO notes (body) VALUES (?)", [(f"note {i}",) for i in range(rows)])
    db.close()
    os.chown(data / "app.db", owner.st_uid, owner.st_gid)  # the environment's, as what its app writes
    f.rows = {rows}


@pytest.mark.timeout(1200)
def test_faults_at_every_step_of_the_data_guard(faults: Faults) -> None:
    faults.window = "0s"
    faults.start(None)
    faults.deploy()
    _seed_notes(faults)
    _walk(faults, data_guard_cases(), Faults.apply_confirmed)


@pytest.mark.timeout(1200)
@pytest.mark.skipif(bin_dir() is None, reason="the postgres extra is not installed")
def test_faults_at_every_step_of_a_managed_database(pg_faults: Faults) -> None:
    pg_faults.start(None)
    pg_faults.deploy()
    _walk(pg_faults, database_cases(), Faults.apply_confirmed)
