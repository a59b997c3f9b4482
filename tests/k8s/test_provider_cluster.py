"""The Kubernetes provider against the real v1.20 control plane (tests/k8s/cluster.py): plan, apply, failures.

Each test owns a namespace and a state folder, drives the provider through the registry's router as the
daemon does (the real planner makes the changes), and reads the cluster back with the admin token to
check what the provider claims. Pods are simulated by the node agent (ready, crash-looping, failing Jobs);
nothing dials a pod.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from railguard.engine import planner
from railguard.model.canonical import digest
from railguard.model.diagnostics import RailguardError
from railguard.model.plans import Action, Change
from railguard.model.resources import ObservedResource, Resource, desired_resources
from railguard.model.specfile import parse_spec
from railguard.providers.base import (
    ApplyRequest,
    ApplyResponse,
    DescribeRequest,
    Health,
    HealthRequest,
    LogsRequest,
    ObserveRequest,
    Provider,
    ProviderEvent,
    ShutdownRequest,
    TickRequest,
)
from railguard.providers.registry import open_provider

from .cluster import Cluster

pytestmark = pytest.mark.timeout(600)  # the first test pays the cluster's start
IMAGE = "registry.example/shop@sha256:" + "0123456789abcdef" * 4
DIGEST = "sha256:" + "ab" * 32
SPEC = """
[app]
name = "shop"

[environments.{env}]
target = "kubernetes"
protected = {protected}

[environments.{env}.kubernetes]
namespace = "{namespace}"
kubeconfig = "{kubeconfig}"
context = "test"
{kube_extra}

[services.web]
run = ["python", "app.py"]
image = "{image}"
replicas = {replicas}
env = {{ VERSION = "{version}" }}
secrets = ["API_KEY"]
start_timeout = "{start}"
stop_timeout = "2s"
drain_timeout = "1s"
{release}

[services.web.health]
http = "/healthz"
interval = "1s"
timeout = "1s"
start_period = "2s"

[[services.web.routes]]
path = "/"
"""


@dataclass
class Rig:
    """One environment on the test cluster: a state folder, a kubeconfig and the provider."""

    cluster: Cluster
    root: Path
    namespace: str
    env: str = "staging"
    user: str = "admin"
    secrets: dict[tuple[str, int], str] = field(default_factory=dict)
    release: int = 0
    journal: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.kubeconfig = self.cluster.write_kubeconfig(self.root / f"kubeconfig-{self.user}", user=self.user)
        self.provider: Provider = open_provider(self.root / ".railguard", secrets=self._values)

    def _values(self, env: str, versions: dict[str, int]) -> dict[str, str]:
        return {name: self.secrets[(name, version)] for name, version in versions.items()}

    def desired(self, version: str = "1", replicas: int = 2, api_key: int = 1, release: str = "",
                start: str = "20s", protected: bool = False, kube_extra: str = "") -> list[Resource]:
        text = SPEC.format(env=self.env, namespace=self.namespace, kubeconfig=self.kubeconfig, image=IMAGE,
                           replicas=replicas, version=version, release=release, start=start,
                           protected=str(protected).lower(), kube_extra=kube_extra)
        spec, diagnostics = parse_spec(text)
        assert spec is not None and not [d for d in diagnostics if d.is_error], diagnostics
        return desired_resources(spec, self.env, DIGEST, secret_versions={"API_KEY": api_key})

    def observe(self, desired: list[Resource] | None = None) -> dict[str, ObservedResource]:
        found = self.provider.observe(ObserveRequest(env=self.env, desired=desired or []))
        return {r.address: r for r in found.resources}

    def plan(self, desired: list[Resource]) -> list[Change]:
        live = list(self.observe(desired).values())
        return [c for c in planner.plan(self.env, desired, live, 0).changes
                if c.action is not Action.noop and c.kind != "environment"]

    def apply(self, desired: list[Resource], changes: list[Change] | None = None) -> list[ApplyResponse]:
        wanted = {r.address: r for r in desired}
        self.release += 1
        answers = []
        for change in changes if changes is not None else self.plan(desired):
            answer = self.provider.apply_change(ApplyRequest(
                env=self.env, change=change, desired=wanted.get(change.address), operation_id=f"op{self.release}",
                release=self.release, app="shop"), lambda step, phase, detail: self.journal.append((step, phase)))
            answers.append(answer)
            if not answer.ok:
                break
        return answers

    def get(self, path: str) -> dict[str, Any] | None:
        return self.cluster.get(f"/apis/apps/v1/namespaces/{self.namespace}/{path}" if path.startswith(
            "deployments") else f"/api/v1/namespaces/{self.namespace}/{path}")


@pytest.fixture
def rig(k8s_cluster: Cluster, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    name = "p-" + request.node.name.removeprefix("test_").replace("_", "-")[:40].rstrip("-")
    made = Rig(k8s_cluster, tmp_path, name)
    made.secrets = {("API_KEY", 1): "first-key", ("API_KEY", 2): "second-key"}
    yield made
    made.provider.shutdown(ShutdownRequest())
    assert k8s_cluster.agent is not None
    k8s_cluster.agent.clear()
    k8s_cluster.delete_namespace(name, wait=False)


def test_plan_apply_and_observe_roundtrip(rig: Rig) -> None:
    desired = rig.desired()
    assert {c.address: c.action for c in rig.plan(desired)} == {"staging/service.web": Action.create,
                                                                "staging/edge": Action.create}
    answers = rig.apply(desired)
    assert all(a.ok for a in answers), [a.diagnostics for a in answers]
    steps = [s for s, phase in rig.journal if phase == "begin"]
    assert steps[:6] == ["check", "environment", "secret", "deployment", "rollout", "service"]
    deployment = rig.get("deployments/web")
    assert deployment is not None and deployment["status"]["availableReplicas"] == 2
    assert "first-key" not in json.dumps(deployment)  # the value lives only in the Secret
    account = rig.get("serviceaccounts/railguard-workload")
    assert account is not None and account["automountServiceAccountToken"] is False
    # Observed back exactly as applied (the record the engine keeps moves no serial), and a second plan is empty.
    assert rig.plan(desired) == []
    live = rig.observe()
    assert {a.observed.address: a.observed for a in answers if a.observed} == live
    assert live["staging/service.web"].release == 1
    assert rig.provider.health(HealthRequest(env="staging", address="staging/service.web")).health is Health.healthy
    described = rig.provider.describe(DescribeRequest(env="staging"))
    assert [len(s.replicas) for s in described.services] == [2] and described.edge.running
    assert [(r.path, r.upstreams) for r in described.edge.routes] == [("/", ["service/web"])]
    logs = rig.provider.logs(LogsRequest(env="staging", service="web"))
    assert logs.files and "not read in this version" in logs.files[0].lines[0]


def test_the_namespace_enforces_restricted_pods_and_the_policy_limits_egress(rig: Rig) -> None:
    from railguard.providers.kubernetes.scratch import egress_reaches, ingress_denied

    kube = 'egress_deny = ["10.0.0.0/8", "fd00::/8"]\ningress_namespace = "ingress-nginx"'
    answers = rig.apply(rig.desired(kube_extra=kube))
    assert answers and all(a.ok for a in answers), [a.diagnostics for a in answers]
    namespace = rig.cluster.get(f"/api/v1/namespaces/{rig.namespace}")
    assert namespace is not None
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    path = f"/apis/networking.k8s.io/v1/namespaces/{rig.namespace}/networkpolicies/railguard-isolation"
    policy = rig.cluster.get(path)
    assert policy is not None
    spec = policy["spec"]  # as the API server admitted and stored it
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert not egress_reaches(spec, "169.254.169.254", 80) and not egress_reaches(spec, "10.0.0.1", 443)
    assert egress_reaches(spec, "93.184.216.34", 443) and ingress_denied(spec, "ingress-nginx")
    pod = rig.get("deployments/web")["spec"]["template"]["spec"]  # type: ignore[index]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert rig.plan(rig.desired(kube_extra=kube)) == []  # observed back as applied
    # Another egress_deny is a change of every service: the policy is applied again with it.
    changes = rig.plan(rig.desired(kube_extra='ingress_namespace = "ingress-nginx"'))
    assert [c.address for c in changes] == ["staging/service.web", "staging/edge"] or \
        {c.address for c in changes} == {"staging/service.web", "staging/edge"}, changes
    answers = rig.apply(rig.desired(kube_extra='ingress_namespace = "ingress-nginx"'), changes)
    assert all(a.ok for a in answers), [a.diagnostics for a in answers]
    spec = rig.cluster.get(path)["spec"]  # type: ignore[index]
    assert egress_reaches(spec, "10.0.0.1", 443) and not egress_reaches(spec, "169.254.169.254", 80)


def test_scaling_is_in_place_and_a_new_version_is_a_new_release(rig: Rig) -> None:
    assert all(a.ok for a in rig.apply(rig.desired()))
    template = rig.get("deployments/web")["spec"]["template"]  # type: ignore[index]
    changes = rig.plan(rig.desired(replicas=3))
    assert [(c.action, c.risk.value) for c in changes] == [(Action.update, "safe")]
    assert all(a.ok for a in rig.apply(rig.desired(replicas=3), changes))
    after = rig.get("deployments/web")
    assert after is not None and after["spec"]["template"] == template and after["spec"]["replicas"] == 3
    changes = rig.plan(rig.desired(version="2", replicas=3))
    assert [(c.action, c.risk.value) for c in changes] == [(Action.replace, "disruptive")]
    assert all(a.ok for a in rig.apply(rig.desired(version="2", replicas=3), changes))
    assert rig.observe()["staging/service.web"].release == 3


def test_a_crash_looping_rollout_is_rolled_back_with_the_pods_reasons(rig: Rig) -> None:
    assert all(a.ok for a in rig.apply(rig.desired()))
    assert rig.cluster.agent is not None
    rig.cluster.agent.behave(rig.namespace, {"railguard.dev/release": "2"}, "crashloop")
    answers = rig.apply(rig.desired(version="2", api_key=2))
    failed = answers[-1]
    assert not failed.ok and failed.diagnostics[0].code == "cluster.rollout_failed"
    assert "CrashLoopBackOff" in json.dumps(failed.diagnostics[0].model_dump())
    assert "release 1's template" in failed.diagnostics[0].detail
    deployment = rig.get("deployments/web")
    assert deployment is not None
    assert deployment["spec"]["template"]["metadata"]["labels"]["railguard.dev/release"] == "1"
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["VERSION"]["value"] == "1"  # the previous config, and the previous secret version's Secret
    secret = rig.get(f"secrets/{env['API_KEY']['valueFrom']['secretKeyRef']['name']}")
    assert secret is not None and secret["data"]["API_KEY"] == "Zmlyc3Qta2V5"  # base64 of first-key
    assert rig.observe()["staging/service.web"].release == 1
    secrets = [s["metadata"]["name"] for s in rig.get("secrets")["items"]  # type: ignore[index]
               if s["metadata"]["name"].startswith("web-")]
    assert secrets == [env["API_KEY"]["valueFrom"]["secretKeyRef"]["name"]]  # the failed release's Secret went
    assert rig.provider.health(HealthRequest(env="staging", address="staging/service.web")).health is Health.healthy


def test_a_new_service_that_never_becomes_available_leaves_nothing(rig: Rig) -> None:
    k8s = rig.cluster
    k8s.create_namespace(rig.namespace)
    assert k8s.agent is not None
    k8s.agent.behave(rig.namespace, {"railguard.dev/service": "web"}, "never-ready")
    answers = rig.apply(rig.desired(start="3s"))
    failed = answers[0]
    assert not failed.ok and failed.diagnostics[0].code == "cluster.rollout_failed"
    assert "nothing of it is left" in failed.diagnostics[0].detail and failed.observed is None
    assert rig.get("deployments/web") is None and rig.get("services/web") is None
    assert not [s for s in rig.get("secrets")["items"]  # type: ignore[index]
                if s["metadata"]["name"].startswith("web-")]
    assert rig.observe() == {}


def test_a_failing_release_command_leaves_the_deployment_alone(rig: Rig) -> None:
    assert all(a.ok for a in rig.apply(rig.desired()))
    assert rig.cluster.agent is not None
    rig.cluster.agent.behave(rig.namespace, {"job-name": "web-release-r2"}, "fail")
    answers = rig.apply(rig.desired(version="2", api_key=2, release='release = ["python", "migrate.py"]'))
    assert not answers[-1].ok and answers[-1].diagnostics[0].code == "cluster.release_failed"
    deployment = rig.get("deployments/web")
    assert deployment is not None and deployment["metadata"]["labels"]["railguard.dev/release"] == "1"
    secrets = [s["metadata"]["name"] for s in rig.get("secrets")["items"]  # type: ignore[index]
               if s["metadata"]["name"].startswith("web-")]
    assert len(secrets) == 1  # the failed release's Secret (the second key) went; release 1's stays


def test_rollback_reapplies_the_previous_release_with_its_secret_version(rig: Rig) -> None:
    first = rig.desired()
    assert all(a.ok for a in rig.apply(first))
    assert all(a.ok for a in rig.apply(rig.desired(version="2", api_key=2)))
    secrets = [s["metadata"]["name"] for s in rig.get("secrets")["items"]  # type: ignore[index]
               if s["metadata"]["name"].startswith("web-secrets-")]
    assert len(secrets) == 1  # the first version's Secret went once release 2 served
    assert all(a.ok for a in rig.apply(first))  # what the engine's rollback does: the old release's resources
    deployment = rig.get("deployments/web")
    assert deployment is not None
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["VERSION"]["value"] == "1"
    secret = rig.get(f"secrets/{env['API_KEY']['valueFrom']['secretKeyRef']['name']}")
    assert secret is not None and secret["data"]["API_KEY"] == "Zmlyc3Qta2V5"
    assert rig.plan(first) == []


def test_drift_by_another_field_manager_is_planned_back(rig: Rig) -> None:
    desired = rig.desired()
    assert all(a.ok for a in rig.apply(desired))
    rig.cluster.apply({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "web", "namespace": rig.namespace},
                       "spec": {"replicas": 5}}, manager="kubectl-edit")
    live = rig.observe()["staging/service.web"]
    assert live.config["drift"] == {"kubectl-edit": ["spec.replicas"]}
    changes = rig.plan(desired)
    assert [c.address for c in changes] == ["staging/service.web"]
    assert any(d.path.startswith("drift") for d in changes[0].diff)
    assert [(c.action, c.risk.value) for c in changes] == [(Action.update, "safe")]  # no pod restarts
    assert all(a.ok for a in rig.apply(desired, changes))
    assert rig.get("deployments/web")["spec"]["replicas"] == 2  # type: ignore[index]
    assert rig.plan(desired) == []
    # A changed pod template is put back by new pods: a replace, disruptive.
    rig.cluster.apply({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "web", "namespace": rig.namespace},
                       "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "evil:latest"}]}}}},
                      manager="kubectl-set")
    live = rig.observe()["staging/service.web"]
    (paths,) = live.config["template_drift"].values()
    assert list(live.config["template_drift"]) == ["kubectl-set"] and [p for p in paths if p.endswith(".image")]
    changes = rig.plan(desired)
    assert [(c.action, c.risk.value) for c in changes] == [(Action.replace, "disruptive")]
    assert all(a.ok for a in rig.apply(desired, changes))
    pod = rig.get("deployments/web")["spec"]["template"]["spec"]  # type: ignore[index]
    assert pod["containers"][0]["image"] == IMAGE and rig.plan(desired) == []


def test_a_junk_config_annotation_is_drift_with_a_diagnostic_never_a_traceback(rig: Rig) -> None:
    desired = rig.desired()
    assert all(a.ok for a in rig.apply(desired))
    rig.cluster.apply({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "web", "namespace": rig.namespace,
                                    "annotations": {"railguard.dev/config": "{not json"}}}, manager="kubectl-edit")
    found = rig.provider.observe(ObserveRequest(env=rig.env, desired=desired))
    live = {r.address: r for r in found.resources}["staging/service.web"]
    assert "annotation not readable" in json.dumps(live.config["drift"])
    assert [d.code for d in found.diagnostics if d.code == "cluster.annotation_unreadable"] == [
        "cluster.annotation_unreadable"]
    changes = rig.plan(desired)  # planned back: the next apply writes the annotation again
    assert [c.address for c in changes] == ["staging/service.web"]
    assert all(a.ok for a in rig.apply(desired, changes))
    assert rig.plan(desired) == []


def test_a_service_no_longer_in_the_spec_is_deleted(rig: Rig) -> None:
    assert all(a.ok for a in rig.apply(rig.desired()))
    edge_only = [r for r in rig.desired() if r.kind != "service"]
    changes = rig.plan(edge_only)
    assert [(c.address, c.action, c.risk.value) for c in changes if c.kind == "service"] == \
        [("staging/service.web", Action.delete, "destructive")]
    assert all(a.ok for a in rig.apply(edge_only, changes))
    assert rig.get("deployments/web") is None and rig.get("services/web") is None


def test_a_staging_token_is_refused_on_the_production_namespace(rig: Rig, k8s_cluster: Cluster,
                                                               tmp_path: Path) -> None:
    # The namespace exists (production's), and the staging user has no role in it.
    k8s_cluster.create_namespace(rig.namespace)
    staging = Rig(k8s_cluster, tmp_path / "staging-user", rig.namespace, user="railguard-staging")
    staging.secrets = rig.secrets
    desired = staging.desired()
    with pytest.raises(RailguardError) as refused:  # the plan's observation is refused already
        staging.plan(desired)
    assert refused.value.diagnostics[0].code == "cluster.forbidden"
    assert refused.value.diagnostics[0].extra["verb"] == "list"
    # An apply with that token (the plan made with another one) changes nothing either.
    changes = [c for c in planner.plan("staging", desired, [], 0).changes if c.kind == "service"]
    answers = staging.apply(desired, changes)
    assert not answers[0].ok
    diagnostic = answers[0].diagnostics[0]
    assert diagnostic.code == "cluster.forbidden"
    assert diagnostic.extra["namespace"] == rig.namespace and diagnostic.extra["verb"]
    assert k8s_cluster.server in diagnostic.detail
    assert rig.get("deployments/web") is None
    assert not [s for s in rig.get("secrets")["items"]  # type: ignore[index]
                if s["metadata"]["name"].startswith("web-")]  # nothing half-applied
    staging.provider.shutdown(ShutdownRequest())


def test_a_namespace_running_something_else_is_refused(rig: Rig, k8s_cluster: Cluster) -> None:
    k8s_cluster.create_namespace(rig.namespace)
    k8s_cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": rig.namespace}})
    k8s_cluster.apply({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "legacy", "namespace": rig.namespace},
                       "spec": {"replicas": 0, "selector": {"matchLabels": {"a": "b"}}, "template": {
                           "metadata": {"labels": {"a": "b"}},
                           "spec": {"containers": [{"name": "c", "image": IMAGE}]}}}})
    answers = rig.apply(rig.desired())
    assert not answers[0].ok and answers[0].diagnostics[0].code == "cluster.namespace_taken"
    assert "legacy" in answers[0].diagnostics[0].summary
    assert rig.get("deployments/web") is None


def test_an_unreachable_cluster_and_a_wrong_context_are_diagnostics(rig: Rig, tmp_path: Path) -> None:
    desired = rig.desired()
    config = json.loads(rig.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:9"  # nothing listens there
    rig.kubeconfig.write_text(json.dumps(config))
    with pytest.raises(RailguardError) as refused:
        rig.plan(desired)
    assert refused.value.diagnostics[0].code == "cluster.unreachable"
    assert "127.0.0.1:9" in refused.value.diagnostics[0].summary
    answers = rig.apply(desired, [c for c in planner.plan("staging", desired, [], 0).changes if c.kind == "service"])
    assert not answers[0].ok and answers[0].diagnostics[0].code == "cluster.unreachable"
    wrong = [r.model_copy(update={"config": {**r.config, "kubernetes": {**r.config["kubernetes"],
                                                                        "context": "nope"}}})
             if "kubernetes" in r.config else r for r in desired]
    fresh = Rig(rig.cluster, tmp_path / "other", rig.namespace)
    answers = fresh.apply(wrong, [c for c in planner.plan("staging", wrong, [], 0).changes
                                  if c.kind == "service"])
    assert not answers[0].ok and answers[0].diagnostics[0].code == "cluster.config"
    assert "nope" in answers[0].diagnostics[0].summary


def test_the_plan_carries_the_servers_dry_run(rig: Rig) -> None:
    assert all(a.ok for a in rig.apply(rig.desired()))
    answer = rig.provider.observe(ObserveRequest(env="staging", desired=rig.desired(replicas=3, version="2")))
    diffs = {d.extra["kind"]: d.extra["paths"] for d in answer.diagnostics if d.code == "cluster.server_diff"}
    assert "spec.replicas" in diffs["Deployment"]
    assert "spec.template.spec.containers[0].env[4].value" in diffs["Deployment"]  # VERSION
    assert not [d for d in answer.diagnostics if d.is_error]
    assert rig.get("deployments/web")["spec"]["replicas"] == 2  # type: ignore[index]  # a dry-run stores nothing
    unchanged = rig.provider.observe(ObserveRequest(env="staging", desired=rig.desired()))
    assert unchanged.diagnostics == []  # nothing changes: nothing is sent


def test_a_quota_refusal_is_named_at_plan_time_and_nothing_is_applied(rig: Rig, k8s_cluster: Cluster) -> None:
    k8s_cluster.create_namespace(rig.namespace)
    k8s_cluster.apply({"apiVersion": "v1", "kind": "ResourceQuota",
                       "metadata": {"name": "no-deployments", "namespace": rig.namespace},
                       "spec": {"hard": {"count/deployments.apps": "0"}}})
    from .cluster import wait_until

    wait_until(lambda: (rig.cluster.get(f"/api/v1/namespaces/{rig.namespace}/resourcequotas/no-deployments")
                        or {}).get("status", {}).get("hard"), 30, "the quota to be counted")
    answer = rig.provider.observe(ObserveRequest(env="staging", desired=rig.desired()))
    codes = {d.code for d in answer.diagnostics if d.is_error}
    assert codes == {"cluster.quota"}, answer.diagnostics
    answers = rig.apply(rig.desired())
    assert not answers[0].ok and answers[0].diagnostics[0].code == "cluster.quota"
    assert rig.get("deployments/web") is None and rig.get("services/web") is None


def test_expired_credentials_are_named(rig: Rig) -> None:
    config = json.loads(rig.kubeconfig.read_text())
    config["users"][0]["user"]["token"] = "expired-or-unknown"
    rig.kubeconfig.write_text(json.dumps(config))
    with pytest.raises(RailguardError) as refused:
        rig.plan(rig.desired())
    found = refused.value.diagnostics[0]
    assert found.code == "cluster.unauthorized" and found.extra["namespace"] == rig.namespace


def test_every_manifest_fits_the_servers_schema(rig: Rig) -> None:
    from railguard.providers.kubernetes.cluster import Cluster as Connection
    from railguard.providers.kubernetes.labels import Target
    from railguard.providers.kubernetes.manifests import edge_manifests, environment_manifests, service_manifests

    desired = rig.desired(release='release = ["python", "migrate.py"]')
    web = next(r for r in desired if r.kind == "service")
    edge = next(r for r in desired if r.kind == "edge")
    connection = Connection(Target.of(web.config["kubernetes"]))
    schema = connection.schema()
    made = [*environment_manifests("shop", "staging", Target.of(web.config["kubernetes"])),
            *service_manifests("shop", web, 1, {"API_KEY": "x"}).all(), *edge_manifests("shop", edge)]
    assert {m["kind"] for m in made} >= {"Deployment", "Service", "Secret", "Job", "Ingress", "NetworkPolicy"}
    assert {m["kind"]: schema.unknown_fields(m) for m in made} == {m["kind"]: [] for m in made}
    typo = service_manifests("shop", web, 1).deployment
    typo["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"tcpSocket": {"port": 80}}
    typo["spec"]["progressDeadline"] = 5
    assert sorted(schema.unknown_fields(typo)) == ["spec.progressDeadline",
                                           "spec.template.spec.containers[0].readinesProbe"]
    connection.close()


def test_a_service_without_image_fetches_its_artifact_by_digest(rig: Rig) -> None:
    from railguard.sources.store import SnapshotStore, capture

    app = rig.root / "app"
    app.mkdir()
    (app / "app.py").write_text("print('hello')\n")
    snap, _ = capture(SnapshotStore.of(rig.root / ".railguard"), app)
    desired = []
    for resource in rig.desired():
        config = dict(resource.config)
        if resource.kind == "service":
            config.pop("image")
            config["source"] = snap.digest
        if "kubernetes" in config:
            config["kubernetes"] = {**config["kubernetes"], "artifact_store": "http://10.0.0.1:8700"}
        desired.append(resource.model_copy(update={"config": config, "fingerprint": digest(config)}))
    answers = rig.apply(desired)
    assert all(a.ok for a in answers), [a.diagnostics for a in answers]
    pod = rig.get("deployments/web")["spec"]["template"]["spec"]  # type: ignore[index]
    (init,) = pod["initContainers"]
    variables = {e["name"]: e.get("value") for e in init["env"]}
    assert variables["RAILGUARD_ARTIFACT_URL"].startswith("http://10.0.0.1:8700/v1/artifacts/")
    assert pod["containers"][0]["image"] == "python:3.12-slim" and pod["containers"][0]["workingDir"] == "/app/src"
    token = rig.get("secrets/railguard-artifact-token")
    assert token is not None and token["data"]["token"]
    # Without an artifact store the service cannot get its code: refused before anything is applied.
    bare = []
    for resource in desired:
        config = {**resource.config, "kubernetes": {**resource.config["kubernetes"], "artifact_store": None},
                  "replicas": 3} if resource.kind == "service" else resource.config
        bare.append(resource.model_copy(update={"config": config, "fingerprint": digest(config)}))
    answers = rig.apply(bare, [c for c in rig.plan(bare) if c.kind == "service"])
    assert not answers[0].ok and answers[0].diagnostics[0].code == "artifact.store_missing"
    assert rig.get("deployments/web")["spec"]["replicas"] == 2  # type: ignore[index]


def test_the_printed_role_is_enough_to_run_an_environment(rig: Rig, k8s_cluster: Cluster, tmp_path: Path) -> None:
    """Railguard with exactly `railguard k8s rbac`'s Role (no cluster-wide right) plans, applies, rolls back."""
    from railguard.providers.kubernetes import rbac

    from .cluster import wait_until

    k8s_cluster.create_namespace(rig.namespace)
    for manifest in rbac.manifests(rig.namespace, "staging", users=["railguard-staging"]):
        k8s_cluster.apply(manifest)
    scoped = Rig(k8s_cluster, tmp_path / "scoped", rig.namespace, user="railguard-staging")
    scoped.secrets = rig.secrets
    wait_until(lambda: _allowed(scoped), 30, "the RoleBinding to take effect")
    answers = scoped.apply(scoped.desired())
    assert all(a.ok for a in answers), [a.diagnostics for a in answers]
    assert scoped.cluster.agent is not None
    scoped.cluster.agent.behave(rig.namespace, {"railguard.dev/release": "2"}, "crashloop")
    answers = scoped.apply(scoped.desired(version="2"))
    assert answers[-1].diagnostics[0].code == "cluster.rollout_failed"
    assert "CrashLoopBackOff" in json.dumps(answers[-1].diagnostics[0].extra)  # pods and events readable
    assert scoped.observe()["staging/service.web"].release == 1
    described = scoped.provider.describe(DescribeRequest(env="staging"))
    assert described.services and described.edge.running
    scoped.provider.shutdown(ShutdownRequest())


def _allowed(rig: Rig) -> bool:
    try:
        rig.observe()
    except RailguardError:
        return False
    return True


def test_tick_reports_restarts_of_live_pods(rig: Rig) -> None:
    assert all(a.ok for a in rig.apply(rig.desired(replicas=1)))
    assert rig.provider.tick(TickRequest()).events == []  # the first pass only learns the counts
    assert rig.cluster.agent is not None
    rig.cluster.agent.behave(rig.namespace, {"railguard.dev/service": "web"}, "crashloop")
    from .cluster import wait_until

    def restarted() -> list[ProviderEvent]:
        time.sleep(0.5)
        rig.provider._next_tick = 0.0  # type: ignore[attr-defined]  # the test does not wait out the throttle
        return [e for e in rig.provider.tick(TickRequest()).events if e.kind == "replica.restarted"]

    events = wait_until(restarted, 60, "a restart to be reported")
    assert events[0].env == "staging" and "CrashLoopBackOff" in events[0].message


def test_a_missing_namespace_railguard_may_not_create_is_named(rig: Rig, k8s_cluster: Cluster,
                                                               tmp_path: Path) -> None:
    limited = Rig(k8s_cluster, tmp_path / "limited", rig.namespace, user="railguard-prod")
    desired = limited.desired()
    answers = limited.apply(desired, [c for c in planner.plan("staging", desired, [], 0).changes
                                      if c.kind == "service"])
    found = answers[0].diagnostics[0]
    assert found.code == "cluster.forbidden", found
    # It may not read the namespace either, so what it is refused first is listing what runs there.
    assert (found.extra["verb"], found.extra["resource"]) == ("list", "deployments")
    assert k8s_cluster.get(f"/api/v1/namespaces/{rig.namespace}") is None
    limited.provider.shutdown(ShutdownRequest())


def test_the_release_job_runs_once_per_release_before_the_deployment(rig: Rig) -> None:
    command = 'release = ["python", "migrate.py"]'
    assert all(a.ok for a in rig.apply(rig.desired(release=command)))
    assert rig.cluster.get(f"/apis/batch/v1/namespaces/{rig.namespace}/jobs/web-release-r1") is not None
    steps = [s for s, phase in rig.journal if phase == "begin"]
    assert steps.index("job") < steps.index("deployment")
    # Scaling changes no release: the plan's dry-run leaves the Job out, the apply runs none.
    answer = rig.provider.observe(ObserveRequest(env="staging", desired=rig.desired(release=command, replicas=3)))
    assert not [d for d in answer.diagnostics if d.is_error], answer.diagnostics
    rig.journal.clear()
    assert all(a.ok for a in rig.apply(rig.desired(release=command, replicas=3)))
    assert "job" not in [s for s, _ in rig.journal]
    # A new version is a new release: its own Job, and the old one goes once it serves.
    answer = rig.provider.observe(ObserveRequest(env="staging", desired=rig.desired(release=command, version="2")))
    assert not [d for d in answer.diagnostics if d.is_error], answer.diagnostics
    assert all(a.ok for a in rig.apply(rig.desired(release=command, version="2")))
    assert rig.cluster.get(f"/apis/batch/v1/namespaces/{rig.namespace}/jobs/web-release-r3") is not None
    assert rig.cluster.get(f"/apis/batch/v1/namespaces/{rig.namespace}/jobs/web-release-r1") is None
