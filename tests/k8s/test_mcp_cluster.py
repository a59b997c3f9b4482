"""The MCP tools on a Kubernetes environment: an agent session over stdio against a real daemon and the real
control plane (simulated pods).

An ``agent`` token drives ``railguard mcp`` with the official client library: get_status, plan and apply_plan of
staging (a namespace), get_operation, list_events, the doctor (its scratch is a temporary namespace), a failed
rollout (the node agent makes the new release's pods crash-loop) whose operation and diagnosis carry the pods'
reasons, and a production plan that requires a person's approval. Every result is a typed payload (the harness
validates each against the tool's output schema), and no secret value nor token appears in any of them (asserted
on the raw JSON text).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from ..conftest import stop_daemon
from ..mcp.harness import Agent, action, stdio_agent
from .cluster import Cluster

pytestmark = pytest.mark.timeout(600)
IMAGE = "registry.example/shop@sha256:" + "0123456789abcdef" * 4
STAGING_SECRET = "stg-8f3e1d-mcp-cluster-token"
PRODUCTION_SECRET = "prd-4a7c2b-mcp-cluster-token"
PREFIX = "mcpk8s"
SPEC = """
[app]
name = "shop"

[environments.staging]
target = "kubernetes"
[environments.staging.kubernetes]
namespace = "{prefix}-staging"
kubeconfig = "{kubeconfig}"

[environments.production]
target = "kubernetes"
protected = true
soak = "0s"
[environments.production.kubernetes]
namespace = "{prefix}-production"
kubeconfig = "{kubeconfig}"

[services.web]
run = ["python", "app.py"]
image = "{image}"
replicas = 2
secrets = ["API_TOKEN"]
env = {{ VERSION = "{version}" }}
start_timeout = "20s"
stop_timeout = "2s"
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

    @property
    def spec_path(self) -> Path:
        return self.root / "railguard.toml"

    def spec(self, version: str) -> None:
        self.spec_path.write_text(SPEC.format(prefix=PREFIX, kubeconfig=self.kubeconfig, image=IMAGE,
                                              version=version))

    def rg(self, *args: str, stdin: str | None = None) -> dict[str, Any]:
        done = subprocess.run([sys.executable, "-m", "railguard", *args, "--json"], cwd=self.root, input=stdin,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return dict(json.loads(done.stdout))


async def _get_operation(agent: Agent, started: Any) -> Any:
    """Follow an operation until it ends (get_operation waits a while per call; bounded calls)."""
    follow = action(started, "get_operation")
    for _ in range(20):
        done = await agent.follow(follow)
        if done.data["operation"]["status"] not in ("pending", "running"):
            return done
    raise AssertionError(f"the operation did not end: {done.data['operation']}")


async def _session(shop: Shop, token: str, errlog: Path, cluster: Cluster) -> Agent:
    async with stdio_agent(shop, token, errlog) as agent:  # type: ignore[arg-type]  # spec_path and root only
        before = await agent.call("get_status", {"env": "staging"})
        assert not before.is_error and before.data["services"] == [], before.data  # nothing runs yet

        planned = await agent.call("plan", {"env": "staging"})
        assert planned.data["plan"]["decision"] == "allow", planned.data
        assert {c["action"] for c in planned.data["changes"]} == {"create"}, planned.data["changes"]
        applied = await agent.follow(action(planned, "apply_plan"))
        done = await _get_operation(agent, applied)
        assert done.data["operation"]["status"] == "succeeded", done.data
        deployment = cluster.get(f"/apis/apps/v1/namespaces/{PREFIX}-staging/deployments/web")
        assert deployment is not None and deployment["status"]["availableReplicas"] == 2

        status = await agent.call("get_status", {"env": "staging"})
        service = next(s for s in status.data["services"] if s["name"] == "web")
        # The cluster's facts: two pods of release 1, both ready (read from the pods' statuses).
        assert service["release"] == 1 and service["replicas"] == 2 and service["healthy"] == 2, service
        assert status.data["counts"] == {"healthy": 1}, status.data
        assert [(r["release"], r["replicas"], r["ready"]) for r in service["replica_sets"]] == [(1, 2, 2)], service
        events = await agent.call("list_events", {"env": "staging", "limit": 100})
        assert not events.is_error and events.data["events"], events.data

        # The doctor on the Kubernetes environment: its scratch is a temporary namespace, deleted afterwards.
        doctor = await agent.call("doctor", {"env": "staging", "checks": [
            "honest-health", "graceful-shutdown", "env-isolation"]})
        checks = {c["id"]: c for c in doctor.data["doctor"]["checks"]}
        assert checks["honest-health"]["status"] == "pass", checks["honest-health"]
        assert "not applicable on Kubernetes" in checks["graceful-shutdown"]["summary"]
        # Both environments use the admin kubeconfig: staging's credentials can write production's namespace.
        writes = [f for f in checks["env-isolation"]["findings"] if f["subject"] == "staging/production"]
        assert writes and writes[0]["status"] == "fail" and "can write production's namespace" in \
            writes[0]["summary"], checks["env-isolation"]
        assert doctor.data["doctor"]["teardown"][0].startswith(f"deleted scratch namespace {PREFIX}-staging-doctor-")

        # A production plan: staging ran this artifact, so it may go, with a person's approval.
        production = await agent.call("plan", {"env": "production"})
        assert production.data["plan"]["decision"] == "require_approval", production.data
        refused = await agent.call("apply_plan", {"plan_id": production.data["plan"]["id"], "env": "production"})
        assert refused.is_error and refused.codes == ["policy.approval_required"], refused.data
        assert cluster.get(f"/apis/apps/v1/namespaces/{PREFIX}-production/deployments/web") is None

        # A failed rollout: release 2's pods crash-loop on the (simulated) node.
        assert cluster.agent is not None
        cluster.agent.behave(f"{PREFIX}-staging", {"railguard.dev/release": "2"}, "crashloop")
        shop.spec("2")
        planned = await agent.call("plan", {"env": "staging"})
        assert [c["action"] for c in planned.data["changes"]] == ["replace"], planned.data["changes"]
        applied = await agent.follow(action(planned, "apply_plan"))
        failed = await _get_operation(agent, applied)
        assert failed.data["operation"]["status"] == "failed", failed.data
        assert "cluster.rollout_failed" in failed.codes, failed.data
        assert "CrashLoopBackOff" in json.dumps(failed.data), failed.data
        diagnosis = await agent.call("diagnose", {"env": "staging"})  # the last operation failed: that one
        assert not diagnosis.is_error and diagnosis.data["verdict"] == "failed", diagnosis.data
        assert diagnosis.data["cause"]["code"] == "cluster.rollout_failed", diagnosis.data
        assert "CrashLoopBackOff" in diagnosis.data["cause"]["detail"], diagnosis.data
        assert diagnosis.data["live_release"] == 1 and diagnosis.data["last_good_release"] == 1, diagnosis.data
        assert "rollback" not in {a["tool"] for a in diagnosis.data["next_actions"]}  # release 1 serves again
        # The ReplicaSets say which release is which: release 1's serves again, release 2's is scaled down.
        sets = {r["release"]: r for r in diagnosis.data["service"]["replica_sets"]}
        assert sets[1]["replicas"] == 2 and sets[1]["ready"] == 2 and sets[2]["replicas"] == 0, sets
        assert any(f.startswith("web's ReplicaSets: release 2: 0/0 ready") for f in diagnosis.data["findings"]), \
            diagnosis.data["findings"]
        service_view = await agent.call("diagnose", {"env": "staging", "service": "web"})
        assert service_view.data["verdict"] == "healthy" and service_view.data["service"]["release"] == 1, \
            service_view.data
        # The previous release serves again (the provider re-applied release 1's template).
        status = await agent.call("get_status", {"env": "staging"})
        service = next(s for s in status.data["services"] if s["name"] == "web")
        assert service["release"] == 1, service
        operation = await agent.call("get_operation", {"operation_id": failed.data["operation"]["id"]})
        assert operation.data["operation"]["status"] == "failed"
        for tool, args in (("list_events", {"limit": 100}), ("list_releases", {"env": "staging"}),
                           ("list_operations", {}), ("get_status", {"env": "production"}),
                           ("diagnose", {"env": "staging"}), ("show_plan", {"plan_id": planned.data["plan"]["id"]})):
            result = await agent.call(tool, args)
            assert not result.is_error, (tool, result.data)
        return agent


def test_an_agent_drives_a_kubernetes_environment_over_mcp(tmp_path: Path, k8s_cluster: Cluster,
                                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    shop = Shop(tmp_path, k8s_cluster.write_kubeconfig(tmp_path / "kubeconfig"))
    (tmp_path / "app.py").write_text("print('app')\n")
    shop.spec("1")
    errlog = tmp_path_factory.mktemp("mcp-k8s-log") / "server.log"
    try:
        shop.rg("secret", "set", "API_TOKEN", "--env", "staging", stdin=STAGING_SECRET)
        shop.rg("secret", "set", "API_TOKEN", "--env", "production", stdin=PRODUCTION_SECRET)
        token = str(shop.rg("token", "create", "--name", "claude", "--role", "agent")["token"]["token"])
        agent = anyio.run(_session, shop, token, errlog, k8s_cluster)
        blob = "\n".join(agent.seen) + errlog.read_text()
        for secret in (STAGING_SECRET, PRODUCTION_SECRET, token):
            assert secret not in blob
    finally:
        assert k8s_cluster.agent is not None
        k8s_cluster.agent.clear(f"{PREFIX}-staging")
        stop_daemon(tmp_path)
        for env in ("staging", "production"):
            k8s_cluster.delete_namespace(f"{PREFIX}-{env}", wait=False)
