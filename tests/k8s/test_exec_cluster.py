"""``railguard exec`` on a Kubernetes environment: a one-off Job from the release's pod template, on the real CLI,
daemon and control plane (simulated pods).

The simulated node decides how a command ends (``exit:N`` rules on the exec pods); pod logs are never read here
(``RAILGUARD_KUBE_POD_LOGS=off``: that API makes the API server dial the node), so the output is the note saying so.
Unprotected: the exit code comes from the pod's terminated state (0 and 3); a command that does not end is killed
at its timeout and its Job deleted — while it runs, the Job is the release's pod (its image, variables, the secret
by reference, the token-less ServiceAccount) with the command, ``backoffLimit: 0``, no probes, never selected by
the Service; both ends are events and audit records. Protected: the command is a plan that runs once approved,
its exit code in the operation's journal; a failing one fails its operation with ``exec.failed``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..conftest import stop_daemon
from ..e2e.harness import run_on_terminal, wait_for
from .cluster import Cluster

pytestmark = pytest.mark.timeout(600)
IMAGE = "registry.example/shop@sha256:" + "0123456789abcdef" * 4
SECRET = "exec-cluster-4c1d9e-value"
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
replicas = 1
secrets = ["API_TOKEN"]
env = {{ VERSION = "1" }}
start_timeout = "15s"
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
    namespace: str
    cluster: Cluster

    def spec(self, protected: bool = False) -> None:
        (self.root / "railguard.toml").write_text(SPEC.format(
            namespace=self.namespace, kubeconfig=self.cluster.write_kubeconfig(self.root / "kubeconfig"),
            image=IMAGE, protected="protected = true" if protected else ""))

    def run(self, *args: str, token: str | None = None, stdin: str | None = None) -> tuple[int, dict[str, Any]]:
        env = {**os.environ, "NO_COLOR": "1", "RAILGUARD_KUBE_POD_LOGS": "off"}  # the daemon starts from here
        env.pop("RAILGUARD_TOKEN", None)
        if token:
            env["RAILGUARD_TOKEN"] = token
        if "--" in args:
            split = args.index("--")
            args = (*args[:split], "--json", *args[split:])
        else:
            args = (*args, "--json")
        done = subprocess.run([sys.executable, "-m", "railguard", *args], cwd=self.root, env=env, input=stdin,
                              capture_output=True, text=True, timeout=180, check=False)
        assert "Traceback" not in done.stderr, done.stderr
        return done.returncode, dict(json.loads(done.stdout))

    def jobs(self) -> list[dict[str, Any]]:
        found = self.cluster.get(f"/apis/batch/v1/namespaces/{self.namespace}/jobs")
        return [j for j in (found or {}).get("items", []) if "railguard.dev/exec" in j["metadata"]["labels"]]


@pytest.fixture
def shop(tmp_path: Path, k8s_cluster: Cluster, request: pytest.FixtureRequest) -> Any:
    namespace = f"exec-{request.node.name[5:22].replace('_', '-')}".rstrip("-")
    found = Shop(tmp_path, namespace, k8s_cluster)
    (tmp_path / "app.py").write_text("print('app')\n")
    found.spec()
    code, _ = found.run("secret", "set", "API_TOKEN", "--env", "staging", stdin=SECRET)
    assert code == 0
    yield found
    assert k8s_cluster.agent is not None
    k8s_cluster.agent.clear(namespace)
    subprocess.run([sys.executable, "-m", "railguard", "daemon", "stop", "--spec", str(tmp_path / "railguard.toml")],
                   capture_output=True, timeout=60, check=False, env={**os.environ, "RAILGUARD_KUBE_POD_LOGS": "off"})
    stop_daemon(tmp_path)
    k8s_cluster.delete_namespace(namespace, wait=False)


def test_exec_runs_a_job_from_the_release_pod_reports_its_exit_code_and_is_audited(shop: Shop) -> None:
    code, done = shop.run("deploy", "--env", "staging", "--yes")
    assert code == 0 and done["operation"]["status"] == "succeeded", done
    code, ran = shop.run("exec", "web", "--env", "staging", "--", "python", "manage.py", "migrate")
    assert code == 0 and ran["exec"]["exit_code"] == 0 and ran["exec"]["release"] == 1, ran
    assert any("pod logs are off" in line for line in ran["exec"]["output"]), ran
    assert shop.jobs() == [] or wait_for(lambda: shop.jobs() == [], what="the exec Job deleted")
    # On a terminal: no attach through the API server; a note says where it runs, then its outcome.
    code, screen = run_on_terminal(shop.root, ["exec", "web", "--env", "staging", "--", "true"], "",
                                   env={"RAILGUARD_KUBE_POD_LOGS": "off"})
    assert code == 0 and "running as Job web-exec-" in screen and "stdin is not connected" in screen, screen
    assert "pod logs are off" in screen, screen

    agent = shop.cluster.agent
    assert agent is not None
    agent.behave(shop.namespace, {"railguard.dev/exec-of": "web"}, "exit:3")
    code, ran = shop.run("exec", "web", "--env", "staging", "--", "python", "-c", "raise SystemExit(3)")
    assert code == 3 and ran["exec"]["exit_code"] == 3, ran

    # A command that does not end: while it runs, its Job is the release's pod with the command.
    agent.behave(shop.namespace, {"railguard.dev/exec-of": "web"}, "never-ready")
    answer: dict[str, Any] = {}

    def slow() -> None:
        answer["result"] = shop.run("exec", "web", "--env", "staging", "--timeout", "8", "--", "sleep", "$(HOME)")

    runner = threading.Thread(target=slow)
    runner.start()
    try:
        job = wait_for(lambda: next(iter(shop.jobs()), None), what="the exec Job", timeout=60)
        deployment = shop.cluster.get(f"/apis/apps/v1/namespaces/{shop.namespace}/deployments/web")
        assert deployment is not None
        labels = job["spec"]["template"]["metadata"]["labels"]
        assert labels["railguard.dev/exec-of"] == "web" and labels["railguard.dev/release"] == "1"
        assert "railguard.dev/service" not in labels  # the Service never sends it requests
        service = shop.cluster.get(f"/api/v1/namespaces/{shop.namespace}/services/web")
        assert service is not None and not all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
        assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] > 0
        pod, live = job["spec"]["template"]["spec"], deployment["spec"]["template"]["spec"]
        assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
        assert pod["serviceAccountName"] == live["serviceAccountName"] == "railguard-workload"
        [container] = pod["containers"]
        assert container["command"] == ["sleep", "$$(HOME)"]  # the argv literally, never expanded by Kubernetes
        assert container["image"] == IMAGE and container["env"] == live["containers"][0]["env"]
        assert any(e["name"] == "API_TOKEN" and "secretKeyRef" in e.get("valueFrom", {}) for e in container["env"])
        assert not {"readinessProbe", "livenessProbe", "startupProbe", "ports"} & set(container)
        assert SECRET not in json.dumps(job)
    finally:
        runner.join(timeout=120)
    code, ran = answer["result"]
    assert ran["exec"]["timed_out"] is True and ran["exec"]["exit_code"] == -9, ran
    assert wait_for(lambda: shop.jobs() == [], what="the killed Job deleted")

    code, events = shop.run("events", "--env", "staging")
    kinds = [e["kind"] for e in events["events"]]
    assert kinds.count("exec.started") == 4 and kinds.count("exec.finished") == 4, kinds
    code, audit = shop.run("audit")
    assert sum(1 for a in audit["audit"] if a["action"] == "exec.finished") == 4
    assert SECRET not in json.dumps(events) + json.dumps(audit)


def _approve_and_apply(shop: Shop, plan: dict[str, Any], token: str) -> tuple[int, dict[str, Any]]:
    code, text = run_on_terminal(shop.root, ["approve", plan["id"]], plan["hash"][7:15],
                                 env={"RAILGUARD_KUBE_POD_LOGS": "off"})
    assert code == 0, text
    return shop.run("apply", plan["id"], token=token)


def test_exec_in_a_protected_kubernetes_environment_is_a_plan_that_runs_once_approved(shop: Shop) -> None:
    shop.spec(protected=True)
    code, made = shop.run("token", "create", "--name", "claude", "--role", "agent")
    token = str(made["token"]["token"])
    code, planned = shop.run("plan", "--env", "staging", token=token)
    code, done = _approve_and_apply(shop, planned["plan"], token)
    assert code == 0 and done["operation"]["status"] == "succeeded", done

    code, answer = shop.run("exec", "web", "--env", "staging", "--", "python", "manage.py", "migrate", token=token)
    assert code == 0 and answer["exec"] is None and answer["plan"]["decision"] == "require_approval", answer
    assert shop.jobs() == []  # nothing ran
    code, result = _approve_and_apply(shop, answer["plan"], token)
    assert code == 0 and result["operation"]["status"] == "succeeded", result
    ended = [j for j in result["operation"]["journal"] if j["step"].endswith(": command") and j["phase"] == "end"]
    assert ended and ended[0]["detail"]["exit_code"] == 0, result["operation"]["journal"]

    assert shop.cluster.agent is not None
    shop.cluster.agent.behave(shop.namespace, {"railguard.dev/exec-of": "web"}, "exit:5")
    code, answer = shop.run("exec", "web", "--env", "staging", "--", "python", "-c", "raise SystemExit(5)",
                            token=token)
    code, result = _approve_and_apply(shop, answer["plan"], token)
    assert code == 1 and [d["code"] for d in result["diagnostics"]] == ["exec.failed"], result
    assert result["diagnostics"][0]["extra"]["exit_code"] == 5
    code, releases = shop.run("releases", "--env", "staging")
    assert [r["number"] for r in releases["releases"]] == [1]  # a command makes no release
