"""Canary rollouts on a Kubernetes environment: the real CLI, daemon, MCP server and control plane (simulated pods).

A service with ``strategy = "canary"`` and 3 replicas, steps 25/50/100 with manual pauses. Release 1 goes out all
at once (nothing beside it). Release 2 runs as the Deployment ``web-canary`` (1 pod beside the live 3: 25 %),
labelled with its release and ``railguard.dev/track=canary``, selected by the same Service (whose selector names
no release); status shows the canary. ``promote-step`` moves it to 50 % (3 pods); the daemon is restarted and
finds the canary again (from the cluster and its store); the step to 100 % rolls the live Deployment to release
2's template and deletes the canary. Release 3 crash-loops: its canary never becomes available, the apply fails
and the canary is deleted, release 2 serving. Release 4's canary is aborted: deleted, release 2 still live and
the abort recorded. Release 5's canary crash-loops after its start: the step's analysis aborts it with an
incident. In a protected environment, over MCP, ``canary_promote`` saves the step as a plan, moves it
only once a person approved it, and ``canary_abort`` needs no approval. With a timed pause, the daemon
advances the steps by itself (no request metrics on a cluster: each step passes on its pods' health) until the
canary is the live release. A deploy or an update in place of the service while its canary runs is refused
(``canary.in_progress``), the canary untouched; once promoted, the records agree with the cluster.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from railguard.state.db import DB_NAME

from ..conftest import stop_daemon
from ..e2e.harness import gone, run_on_terminal, wait_for
from ..mcp.harness import stdio_agent
from .cluster import Cluster

pytestmark = pytest.mark.timeout(600)
IMAGE = "registry.example/shop@sha256:" + "0123456789abcdef" * 4
SPEC = """
[app]
name = "shop"

[environments.staging]
target = "kubernetes"
{protected}
[environments.staging.kubernetes]
namespace = "{namespace}"
kubeconfig = "{kubeconfig}"

[services.web]
run = ["python", "app.py"]
image = "{image}"
replicas = {replicas}
env = {{ VERSION = "{version}" }}
start_timeout = "15s"
stop_timeout = "2s"
drain_timeout = "1s"
strategy = "canary"
steps = [25, 50, 100]
pause = "{pause}"
[services.web.health]
http = "/healthz"
interval = "1s"
timeout = "1s"
start_period = "2s"
"""


@dataclass
class Shop:
    root: Path
    kubeconfig: Path
    namespace: str
    cluster: Cluster
    protected: bool = False
    pause: str = "manual"
    replicas: int = 3

    @property
    def spec_path(self) -> Path:
        return self.root / "railguard.toml"

    def spec(self, version: str) -> None:
        self.spec_path.write_text(SPEC.format(namespace=self.namespace, kubeconfig=self.kubeconfig, image=IMAGE,
                                              version=version, pause=self.pause, replicas=self.replicas,
                                              protected="protected = true" if self.protected else ""))

    def rg(self, *args: str, token: str | None = None, ok: bool = True) -> dict[str, Any]:
        import os

        env = {**os.environ, "NO_COLOR": "1"}
        env.pop("RAILGUARD_TOKEN", None)
        if token:
            env["RAILGUARD_TOKEN"] = token
        done = subprocess.run([sys.executable, "-m", "railguard", *args, "--json"], cwd=self.root, env=env,
                              capture_output=True, text=True, timeout=180, check=False)
        assert "Traceback" not in done.stderr, done.stderr
        assert (done.returncode == 0) == ok, done.stdout + done.stderr
        return dict(json.loads(done.stdout))

    def deployment(self, name: str = "web") -> dict[str, Any] | None:
        return self.cluster.get(f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{name}")

    def canary(self) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.rg("status", "--env", "staging")["status"]["services"][0]["canary"]
        return found

    def release_of(self, name: str = "web") -> str | None:
        deployment = self.deployment(name)
        return None if deployment is None else deployment["spec"]["template"]["metadata"]["labels"][
            "railguard.dev/release"]

    def version_of(self, name: str = "web") -> str:
        deployment = self.deployment(name)
        assert deployment is not None
        variables = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        return str(variables["VERSION"])

    def daemon_pid(self) -> int | None:
        path = self.root / ".railguard" / "daemon.pid"
        return int(json.loads(path.read_text())["pid"]) if path.exists() else None


@pytest.fixture
def shop(tmp_path: Path, k8s_cluster: Cluster, request: pytest.FixtureRequest) -> Any:
    namespace = f"canary-{request.node.name[5:20].replace('_', '-')}".rstrip("-")
    found = Shop(tmp_path, k8s_cluster.write_kubeconfig(tmp_path / "kubeconfig"), namespace, k8s_cluster)
    (tmp_path / "app.py").write_text("print('app')\n")
    found.spec("1")
    yield found
    assert k8s_cluster.agent is not None
    k8s_cluster.agent.clear(namespace)
    stop_daemon(tmp_path)
    k8s_cluster.delete_namespace(namespace, wait=False)


def test_a_canary_runs_beside_the_live_release_survives_a_restart_and_is_promoted_or_aborted(shop: Shop) -> None:
    done = shop.rg("deploy", "--env", "staging", "--yes")
    assert done["operation"]["status"] == "succeeded", done
    assert shop.release_of() == "1" and shop.deployment("web-canary") is None  # nothing beside it: all at once

    shop.spec("2")
    done = shop.rg("deploy", "--env", "staging", "--yes")
    assert done["operation"]["status"] == "succeeded", done
    canary = shop.deployment("web-canary")
    assert canary is not None and canary["spec"]["replicas"] == 1  # 1 of 4 pods: the 25 % step
    assert canary["metadata"]["labels"]["railguard.dev/track"] == "canary"
    assert canary["spec"]["template"]["metadata"]["labels"]["railguard.dev/release"] == "2"
    assert shop.version_of("web-canary") == "2" and shop.release_of() == "1" and shop.version_of() == "1"
    assert shop.deployment()["spec"]["replicas"] == 3  # type: ignore[index]  # the live capacity is untouched
    service = shop.cluster.get(f"/api/v1/namespaces/{shop.namespace}/services/web")
    assert service is not None and "railguard.dev/release" not in service["spec"]["selector"]
    assert wait_for(lambda: (canary["status"] if (canary := shop.deployment("web-canary")) else {}).get(
        "availableReplicas") == 1, what="the canary pod available")
    seen = wait_for(lambda: shop.canary(), what="the canary in status")
    assert seen["release"] == 2 and seen["weight"] == 25 and seen["stable"] == 1, seen
    status = shop.rg("status", "--env", "staging")["status"]["services"][0]
    assert status["release"] == 1, status
    operation = shop.rg("operations", done["operation"]["id"])
    assert "staging/service.web: canary" in json.dumps(operation), operation  # a journaled step

    moved = shop.rg("promote-step", "--env", "staging", "web")
    assert moved["canary"]["weight"] == 50, moved
    assert shop.deployment("web-canary")["spec"]["replicas"] == 3  # type: ignore[index]  # 3 of 6 pods

    # A restarted daemon finds the canary where it was: from the cluster (and its step from the store).
    pid = shop.daemon_pid()
    assert pid is not None
    stopped = subprocess.run([sys.executable, "-m", "railguard", "daemon", "stop", "--spec", str(shop.spec_path)],
                             capture_output=True, text=True, timeout=60, check=False)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    wait_for(lambda: gone(pid), "the daemon to stop")
    assert shop.deployment("web-canary") is not None  # a clean stop leaves the cluster as it is
    seen = wait_for(lambda: shop.canary(), what="the canary after the restart")
    assert shop.daemon_pid() not in (None, pid) and seen["release"] == 2 and seen["weight"] == 50, seen

    moved = shop.rg("promote-step", "--env", "staging", "web")
    assert moved["canary"] == {"env": "staging", "service": "web", "action": "promoted", "weight": 100}, moved
    assert shop.release_of() == "2" and shop.version_of() == "2" and shop.deployment("web-canary") is None
    live = shop.deployment()
    assert live is not None and live["status"].get("availableReplicas") == 3, live["status"]
    assert wait_for(lambda: shop.canary() is None, what="no canary in status")
    assert shop.rg("status", "--env", "staging")["status"]["services"][0]["release"] == 2
    events = shop.rg("events", "--env", "staging")["events"]
    assert {"canary.step", "canary.promoted"} <= {e["kind"] for e in events}, [e["kind"] for e in events]

    # Release 3 crash-loops: its canary never becomes available; it is deleted and release 2 serves.
    assert shop.cluster.agent is not None
    shop.cluster.agent.behave(shop.namespace, {"railguard.dev/release": "3"}, "crashloop")
    shop.spec("3")
    failed = shop.rg("deploy", "--env", "staging", "--yes", ok=False)
    assert "cluster.rollout_failed" in json.dumps(failed) and "CrashLoopBackOff" in json.dumps(failed), failed
    assert shop.deployment("web-canary") is None and shop.release_of() == "2"

    # Release 4's canary is aborted: deleted; release 2 keeps serving and the abort is recorded.
    shop.spec("4")
    done = shop.rg("deploy", "--env", "staging", "--yes")
    assert done["operation"]["status"] == "succeeded", done
    assert shop.release_of("web-canary") == "4"
    moved = shop.rg("abort", "--env", "staging", "web")
    assert moved["canary"]["action"] == "aborted", moved
    assert shop.deployment("web-canary") is None and shop.release_of() == "2" and shop.version_of() == "2"

    def records() -> dict[int, str]:
        return {r["number"]: r["status"] for r in shop.rg("releases", "--env", "staging")["releases"]}

    assert wait_for(lambda: (found := records()).get(4) == "aborted" and found.get(2) == "live" and found,
                    what="the abort recorded")
    refused = shop.rg("promote-step", "--env", "staging", "web", ok=False)
    assert [d["code"] for d in refused["diagnostics"]] == ["canary.none"], refused

    # Release 5's canary starts healthy, then crash-loops: the step's analysis (the canary pods' restarts; no
    # request metrics on a cluster) aborts it with an incident, and release 2 serves on.
    shop.spec("5")
    done = shop.rg("deploy", "--env", "staging", "--yes")
    assert done["operation"]["status"] == "succeeded" and shop.release_of("web-canary") == "5", done
    assert wait_for(lambda: (shop.canary() or {}).get("release") == 5, what="the canary of release 5 analysed")
    shop.cluster.agent.behave(shop.namespace, {"railguard.dev/release": "5"}, "crashloop")
    incident = wait_for(lambda: next((i for i in shop.rg("incidents", "--env", "staging")["incidents"]
                                      if i["kind"] == "verification_failed"), None),
                        what="the canary's incident", timeout=90)
    assert incident["kind"] == "verification_failed" and incident["release"] == 5, incident
    assert "crash-loops" in incident["summary"], incident
    assert wait_for(lambda: shop.deployment("web-canary") is None, what="the canary deleted")
    assert shop.release_of() == "2"


async def _steps(shop: Shop, token: str, errlog: Path) -> None:
    async with stdio_agent(shop, token, errlog) as agent:  # type: ignore[arg-type]  # spec_path and root only
        asked = await agent.call("canary_promote", {"env": "staging", "service": "web"})
        assert not asked.is_error and "canary" not in asked.data, asked.data
        plan = asked.data["plan"]
        assert plan["decision"] == "require_approval", plan
        assert shop.deployment("web-canary")["spec"]["replicas"] == 1  # type: ignore[index]  # nothing moved
        early = await agent.call("canary_promote", {"env": "staging", "service": "web", "plan_id": plan["id"]})
        assert early.is_error and early.codes == ["policy.approval_required"], early.data
        code, text = await anyio.to_thread.run_sync(run_on_terminal, shop.root, ["approve", plan["id"]],
                                                    plan["short_hash"])
        assert code == 0, text
        moved = await agent.call("canary_promote", {"env": "staging", "service": "web", "plan_id": plan["id"]})
        assert not moved.is_error and moved.data["canary"]["weight"] == 50, moved.data
        assert shop.deployment("web-canary")["spec"]["replicas"] == 3  # type: ignore[index]
        again = await agent.call("canary_promote", {"env": "staging", "service": "web", "plan_id": plan["id"]})
        assert again.is_error and again.codes == ["canary.step_mismatch"], again.data
        aborted = await agent.call("canary_abort", {"env": "staging", "service": "web"})
        assert not aborted.is_error and aborted.data["canary"]["action"] == "aborted", aborted.data


def _ship(shop: Shop, token: str) -> None:
    plan = shop.rg("plan", "--env", "staging", token=token)["plan"]
    code, text = run_on_terminal(shop.root, ["approve", plan["id"]], plan["short_hash"])
    assert code == 0, text
    done = shop.rg("apply", plan["id"], token=token)
    assert done["ok"], done


def test_canary_steps_in_a_protected_kubernetes_environment_need_an_approval_over_mcp(
        shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> None:
    shop.protected = True
    shop.spec("1")
    token = str(shop.rg("token", "create", "--name", "claude", "--role", "agent")["token"]["token"])
    _ship(shop, token)
    shop.spec("2")
    _ship(shop, token)
    assert wait_for(lambda: (shop.canary() or {}).get("weight") == 25, what="the canary at 25%")
    anyio.run(_steps, shop, token, tmp_path_factory.mktemp("mcp-canary-log") / "server.log")
    assert shop.deployment("web-canary") is None
    assert shop.release_of() == "1" and shop.version_of() == "1"
    entries = shop.rg("audit")["audit"]
    aborts = [e for e in entries if e["action"].endswith("/abort")]
    assert aborts and aborts[-1]["principal"].startswith("token:"), aborts


def test_a_timed_pause_advances_a_kubernetes_canary_to_the_live_release(shop: Shop) -> None:
    shop.pause = "2s"
    shop.spec("1")
    assert shop.rg("deploy", "--env", "staging", "--yes")["operation"]["status"] == "succeeded"
    shop.spec("2")
    assert shop.rg("deploy", "--env", "staging", "--yes")["operation"]["status"] == "succeeded"
    assert shop.release_of("web-canary") == "2" and shop.release_of() == "1"
    assert wait_for(lambda: shop.release_of() == "2" and shop.deployment("web-canary") is None,
                    what="the canary promoted by the daemon", timeout=120)
    events = shop.rg("events", "--env", "staging")["events"]
    moved = [e for e in events if e["kind"] in ("canary.step", "canary.promoted") and "railguard:canary" in
             e["message"]]
    assert [e["kind"] for e in moved][-1] == "canary.promoted" and len(moved) >= 2, [e["message"] for e in events]


def test_a_rollback_during_a_canary_goes_back_at_once_and_deletes_the_canary(shop: Shop) -> None:
    assert shop.rg("deploy", "--env", "staging", "--yes")["operation"]["status"] == "succeeded"
    shop.spec("2")
    assert shop.rg("deploy", "--env", "staging", "--yes")["operation"]["status"] == "succeeded"
    assert shop.release_of("web-canary") == "2" and shop.release_of() == "1"
    started = shop.rg("operations", "--env", "staging")["operations"][0]["id"]  # the deploy of the canary
    done = shop.rg("rollback", "--env", "staging")
    assert done["operation"]["status"] == "succeeded", done
    assert shop.deployment("web-canary") is None and shop.version_of() == "1" and shop.release_of() == "1"
    assert wait_for(lambda: shop.canary() is None, what="no canary in status")
    # Recorded as an abort is: the canary's release aborted, release 1 live again (the rollback's target, so
    # there is nothing more to run), the events, a step in the rollback's journal and in the canary's deploy.
    records = {r["number"]: r["status"] for r in shop.rg("releases", "--env", "staging")["releases"]}
    assert records == {1: "live", 2: "aborted"}, records
    kinds = [e["kind"] for e in shop.rg("events", "--env", "staging")["events"]]
    assert {"canary.aborted", "release.aborted", "rollback.succeeded"} <= set(kinds), kinds
    steps = [(j["step"], j["phase"]) for j in shop.rg("operations", done["operation"]["id"])["operation"]["journal"]]
    assert steps == [("staging/service.web: abort-canary", "begin"), ("staging/service.web: abort-canary", "end")]
    deploy = shop.rg("operations", started)["operation"]["journal"]
    assert any(j["step"] == "staging/service.web: canary step" and j["detail"].get("aborted") for j in deploy), deploy
    status = shop.rg("status", "--env", "staging")["status"]["services"][0]
    assert status["release"] == 1, status
    audited = [e for e in shop.rg("audit")["audit"] if e["action"] == "operations:rollback"]
    assert audited and audited[-1]["outcome"] == "ok", audited


def _records(shop: Shop) -> dict[int, str]:
    return {r["number"]: r["status"] for r in shop.rg("releases", "--env", "staging")["releases"]}


def _stored_canaries(shop: Shop) -> list[tuple[Any, ...]]:
    """The canary controller's step records in the state database (read only)."""
    with sqlite3.connect(f"file:{shop.root / '.railguard' / DB_NAME}?mode=ro", uri=True) as db:
        return list(db.execute("SELECT service, release, weight, state FROM canary_runs").fetchall())


def test_a_deploy_or_an_update_in_place_during_a_canary_is_refused_until_it_is_decided(shop: Shop) -> None:
    """A plan that would change the service while its canary runs (a new release, an update in place) is refused
    with ``canary.in_progress``: the canary Deployment, its share and the records stay as they were. Promoted to
    100 %, the records agree with the cluster (release 2 live, no canary anywhere, no step record left, nothing to
    plan), and the next deploy goes out as a new canary beside release 2."""
    assert shop.rg("deploy", "--env", "staging", "--yes")["operation"]["status"] == "succeeded"
    shop.spec("2")
    assert shop.rg("deploy", "--env", "staging", "--yes")["operation"]["status"] == "succeeded"
    assert wait_for(lambda: (shop.canary() or {}).get("release") == 2, what="the canary of release 2")
    records = _records(shop)
    canary_before = shop.deployment("web-canary")
    assert canary_before is not None

    def unchanged() -> None:
        found = shop.deployment("web-canary")
        assert found is not None and found["metadata"]["uid"] == canary_before["metadata"]["uid"]
        assert found["spec"]["replicas"] == 1 and shop.release_of("web-canary") == "2"
        assert shop.release_of() == "1" and shop.deployment()["spec"]["replicas"] == 3  # type: ignore[index]
        assert _records(shop) == records
        seen = shop.canary()
        assert seen is not None and seen["release"] == 2 and seen["weight"] == 25, seen

    shop.spec("3")  # a new release of web
    planned = shop.rg("plan", "--env", "staging", ok=False)["plan"]  # errored: exit 1, the plan saved
    assert "canary.in_progress" in [d["code"] for d in planned["diagnostics"]], planned
    refused = shop.rg("deploy", "--env", "staging", "--yes", ok=False)
    found = [d for d in refused["diagnostics"] if d["code"] == "canary.in_progress"] or [
        d for e in refused["diagnostics"] for d in (e.get("extra") or {}).get("diagnostics", [])
        if d["code"] == "canary.in_progress"]
    assert found and found[0]["remediation"] and found[0]["address"] == "staging/service.web", refused
    unchanged()
    shop.replicas = 4  # an update in place of the live release (its replicas only): the canary would go silently
    shop.spec("1")
    planned = shop.rg("plan", "--env", "staging", ok=False)["plan"]
    assert [c["action"] for c in planned["changes"] if c["address"] == "staging/service.web"] == ["update"], planned
    assert "canary.in_progress" in [d["code"] for d in planned["diagnostics"]], planned
    assert "canary.in_progress" in json.dumps(shop.rg("deploy", "--env", "staging", "--yes", ok=False))
    unchanged()

    # Decided: promoted to 100 %, the records agree with the cluster.
    shop.replicas = 3
    shop.spec("2")
    assert shop.rg("promote-step", "--env", "staging", "web", "--from", "25")["canary"]["weight"] == 50
    assert wait_for(lambda: any(e["kind"] == "canary.step" and "release 2 takes 50%" in e["message"]
                                for e in shop.rg("events", "--env", "staging")["events"]), what="the step at 50%")
    moved = shop.rg("promote-step", "--env", "staging", "web", "--from", "50")
    assert moved["canary"] == {"env": "staging", "service": "web", "action": "promoted", "weight": 100}, moved
    assert shop.deployment("web-canary") is None and shop.release_of() == "2"
    assert wait_for(lambda: shop.canary() is None, what="no canary in status")
    assert _records(shop) == {1: "superseded", 2: "live"}
    assert _stored_canaries(shop) == []
    assert shop.rg("status", "--env", "staging")["status"]["services"][0]["release"] == 2
    assert not [c for c in shop.rg("plan", "--env", "staging")["plan"]["changes"] if c["action"] != "no-op"]

    shop.spec("3")
    assert shop.rg("deploy", "--env", "staging", "--yes")["operation"]["status"] == "succeeded"
    seen = wait_for(lambda: (c := shop.canary()) is not None and c["release"] == 3 and c, what="the new canary")
    assert seen["weight"] == 25 and seen["stable"] == 2, seen
