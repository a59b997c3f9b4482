"""A Kubernetes environment end to end: the real CLI and daemon, the real control plane, simulated pods.

The same spec, plans, guardrails and approvals as a local environment: production refuses an artifact staging
never ran, an agent deploys staging (a namespace), its promotion to the protected production namespace waits
for a person's approval typed on a terminal, the approved plan applies, status reads the pods, a second
release and a rollback re-apply the first release's manifests with its secret version.
The cluster is read back with the admin token.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import stop_daemon
from ..e2e.harness import APP, Workspace, free_port, run_on_terminal
from .cluster import Cluster

pytestmark = pytest.mark.timeout(900)
IMAGE = "registry.example/shop@sha256:" + "0123456789abcdef" * 4
SPEC = """
[app]
name = "shop"

[environments.staging]
target = "kubernetes"
[environments.staging.kubernetes]
namespace = "e2e-shop-staging"
kubeconfig = "{kubeconfig}"

[environments.production]
target = "kubernetes"
protected = true
soak = "0s"
[environments.production.kubernetes]
namespace = "e2e-shop-production"
kubeconfig = "{kubeconfig}"

[services.web]
run = ["python", "app.py"]
image = "{image}"
replicas = 2
secrets = ["API_TOKEN"]
env = {{ VERSION = "{version}" }}
start_timeout = "20s"
stop_timeout = "2s"
drain_timeout = "1s"
[services.web.health]
http = "/healthz"
interval = "1s"
timeout = "1s"
start_period = "2s"
[[services.web.routes]]
path = "/"
"""


class Shop(Workspace):
    kubeconfig: Path
    cluster: Cluster

    def spec(self, version: str = "1") -> None:
        (self.root / "railguard.toml").write_text(SPEC.format(kubeconfig=self.kubeconfig, image=IMAGE,
                                                              version=version))

    def secret(self, env: str, value: str) -> None:
        import subprocess
        import sys

        done = subprocess.run([sys.executable, "-m", "railguard", "secret", "set", "API_TOKEN", "--env", env,
                               "--json"], cwd=self.root, input=value, capture_output=True, text=True, timeout=60,
                              check=False)
        assert done.returncode == 0, done.stdout + done.stderr

    def token(self, name: str, role: str) -> str:
        code, found = self.rg_json("token", "create", "--name", name, "--role", role)
        assert code == 0, found
        return str(found["token"]["token"])

    def deployment(self, env: str) -> dict[str, Any] | None:
        return self.cluster.get(f"/apis/apps/v1/namespaces/e2e-shop-{env}/deployments/web")

    def secret_value(self, env: str) -> str:
        deployment = self.deployment(env)
        assert deployment is not None
        variables = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        name = variables["API_TOKEN"]["valueFrom"]["secretKeyRef"]["name"]
        found = self.cluster.get(f"/api/v1/namespaces/e2e-shop-{env}/secrets/{name}")
        assert found is not None
        return base64.b64decode(found["data"]["API_TOKEN"]).decode()


@pytest.fixture
def shop(tmp_path: Path, k8s_cluster: Cluster) -> Iterator[Shop]:
    for name in ("app.py", "migrate.py"):
        shutil.copy(APP / name, tmp_path / name)
    ws = Shop(tmp_path, free_port(), free_port())
    ws.cluster = k8s_cluster
    ws.kubeconfig = k8s_cluster.write_kubeconfig(tmp_path / "kubeconfig")
    ws.spec()
    yield ws
    stop_daemon(tmp_path)
    for env in ("staging", "production"):
        k8s_cluster.delete_namespace(f"e2e-shop-{env}", wait=False)


def test_agent_deploys_staging_and_production_waits_for_a_person(shop: Shop) -> None:
    shop.secret("staging", "stg-first")
    shop.secret("production", "prd-first")
    agent = shop.token("claude", "agent")
    code, planned = shop.rg_json("plan", "--env", "production", env={"RAILGUARD_TOKEN": agent})
    assert code == 1 and planned["plan"]["decision"] == "deny", planned  # staging never ran this artifact (denied)
    assert ("guard.promotion", "deny") in {(v["rule"], v["effect"]) for v in planned["plan"]["verdicts"]}
    code, result = shop.rg_json("deploy", "--env", "staging", "--yes", env={"RAILGUARD_TOKEN": agent})
    assert code == 0 and result["operation"]["status"] == "succeeded", result
    deployment = shop.deployment("staging")
    assert deployment is not None and deployment["status"]["availableReplicas"] == 2
    assert shop.secret_value("staging") == "stg-first"

    code, status = shop.rg_json("status", "--env", "staging")
    assert code == 0, status
    assert "stg-first" not in json.dumps(status)

    code, planned = shop.rg_json("promote", "--from", "staging", "--to", "production",
                                 env={"RAILGUARD_TOKEN": agent})
    plan = planned["plan"]
    assert code == 0 and plan["summary"]["decision"] == "require_approval", planned
    assert {c["address"]: c["action"] for c in plan["changes"] if c["kind"] != "environment"} == \
        {"production/service.web": "create", "production/edge": "create"}
    code, refused = shop.rg_json("apply", plan["id"], env={"RAILGUARD_TOKEN": agent})
    assert code == 1 and [d["code"] for d in refused["diagnostics"]] == ["policy.approval_required"]
    assert shop.deployment("production") is None  # nothing reached the production namespace

    code, text = run_on_terminal(shop.root, ["approve", plan["id"]], plan["hash"][7:15])
    assert code == 0, text
    code, result = shop.rg_json("apply", plan["id"], env={"RAILGUARD_TOKEN": agent})
    assert code == 0 and result["operation"]["status"] == "succeeded", result
    assert shop.secret_value("production") == "prd-first"
    code, operation = shop.rg_json("operations", result["operation"]["id"])
    steps = json.dumps(operation)
    for step in ("production/service.web: check", "production/service.web: rollout", "production/edge: ingress"):
        assert step in steps, step

    # A second staging release with a rotated secret, then a rollback: release 1's manifests come back.
    shop.secret("staging", "stg-second")
    shop.spec(version="2")
    code, result = shop.rg_json("deploy", "--env", "staging", "--yes")
    assert code == 0 and result["operation"]["status"] == "succeeded", result
    assert shop.secret_value("staging") == "stg-second"
    code, result = shop.rg_json("rollback", "--env", "staging")
    assert code == 0 and result["operation"]["status"] == "succeeded", result
    deployment = shop.deployment("staging")
    assert deployment is not None
    variables = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert variables["VERSION"]["value"] == "1" and shop.secret_value("staging") == "stg-first"
