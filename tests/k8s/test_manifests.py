"""Manifests of the Kubernetes provider, pinned by golden files (tests/golden/k8s/<case>.json).

Each case is a spec: every resource of its Kubernetes environment becomes the manifests the provider
would apply, and the whole set is compared with the golden file (UPDATE_GOLDEN=1 rewrites them after an
intended change). Beside the goldens: the properties a reviewer must not lose in a rewrite (no secret
value in a Deployment, TCP on every port, a token-less ServiceAccount) and the unknown-field check.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from railguard.model.resources import Resource, desired_resources
from railguard.model.specfile import parse_spec
from railguard.providers.kubernetes.labels import Target
from railguard.providers.kubernetes.manifests import (
    ArtifactMount,
    edge_manifests,
    environment_manifests,
    service_manifests,
)
from railguard.providers.kubernetes.openapi import Schema

GOLDEN = Path(__file__).parents[1] / "golden" / "k8s"
DIGEST = "sha256:" + "ab" * 32

SPECS = {
    "web_with_secrets_release_and_routes": """
[app]
name = "shop"

[environments.prod]
target = "kubernetes"
protected = true

[environments.prod.kubernetes]
namespace = "shop-prod"
context = "prod"

[services.web]
run = ["gunicorn", "app:app", "--bind", "0.0.0.0:$PORT"]
release = ["python", "manage.py", "migrate"]
replicas = 3
env = { LOG_LEVEL = "info" }
secrets = ["API_KEY", "DB_PASSWORD"]
image = "registry.example/shop@sha256:%s"
resources = { cpu = "250m", memory = "256Mi" }
stop_timeout = "10s"
drain_timeout = "5s"
start_timeout = "90s"

[services.web.health]
http = "/healthz"
interval = "5s"
timeout = "2s"
start_period = "30s"
healthy_threshold = 2

[[services.web.routes]]
host = "shop.example"
path = "/"

[[services.web.routes]]
path = "/api"
""" % ("0123456789abcdef" * 4),
    "worker_without_port_on_the_base_image": """
[app]
name = "shop"

[environments.staging]
target = "kubernetes"

[environments.staging.kubernetes]
namespace = "shop-staging"
base_image = "python:3.11-slim"

[services.worker]
run = ["python", "worker.py"]
listen = false
drain_timeout = "0s"

[services.worker.health]
exec = ["python", "check.py"]
""",
}


def manifests_of(text: str, artifact: ArtifactMount | None = None) -> list[dict[str, Any]]:
    spec, diagnostics = parse_spec(text)
    assert spec is not None and not [d for d in diagnostics if d.is_error], diagnostics
    env = next(iter(spec.environments))
    resources = desired_resources(spec, env, DIGEST, secret_versions={"API_KEY": 2, "DB_PASSWORD": 1})
    out: list[dict[str, Any]] = []
    edge = next(r for r in resources if r.kind == "edge")
    out += environment_manifests(spec.app.name, env, Target.of(edge.config["kubernetes"]))
    for resource in resources:
        if resource.kind == "service":
            out += service_manifests(spec.app.name, resource, release=4,
                                     secret_values={"API_KEY": "k-2", "DB_PASSWORD": "p-1"},
                                     artifact=artifact).all()
        elif resource.kind == "edge":
            out += edge_manifests(spec.app.name, resource)
    return out


@pytest.mark.parametrize("name", sorted(SPECS))
def test_manifests_golden(name: str) -> None:
    got = manifests_of(SPECS[name])
    path = GOLDEN / f"{name}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    assert json.loads(json.dumps(got)) == json.loads(path.read_text())


def _web() -> list[dict[str, Any]]:
    return manifests_of(SPECS["web_with_secrets_release_and_routes"])


def _kind(found: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in found if m["kind"] == kind]


def test_secret_values_live_only_in_the_secret() -> None:
    found = _web()
    (secret,) = _kind(found, "Secret")
    for other in (m for m in found if m["kind"] != "Secret"):
        text = json.dumps(other)
        assert "k-2" not in text and "p-1" not in text and "ay0y" not in text  # nor their base64
    (deployment,) = _kind(found, "Deployment")
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
            for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"] if "valueFrom" in e}
    assert refs == {"API_KEY": secret["metadata"]["name"], "DB_PASSWORD": secret["metadata"]["name"]}


def test_every_object_is_labelled_and_every_port_is_tcp() -> None:
    for manifest in _web():
        found = manifest["metadata"]["labels"]
        assert found["app.kubernetes.io/managed-by"] == "railguard"
        assert found["app.kubernetes.io/name"] == "shop" and found["railguard.dev/environment"] == "prod"
        assert manifest["metadata"]["namespace"] == "shop-prod"
    (service,) = _kind(_web(), "Service")
    assert {p["protocol"] for p in service["spec"]["ports"]} == {"TCP"}


def test_the_rollout_is_health_gated_and_the_pods_have_no_token() -> None:
    (deployment,) = _kind(_web(), "Deployment")
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["terminationGracePeriodSeconds"] == 15
    assert pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    (account,) = _kind(_web(), "ServiceAccount")
    assert account["automountServiceAccountToken"] is False and pod["serviceAccountName"] == \
        account["metadata"]["name"]


def test_a_new_secret_version_is_a_new_secret_name() -> None:
    spec, _ = parse_spec(SPECS["web_with_secrets_release_and_routes"])
    assert spec is not None
    names = set()
    for versions in ({"API_KEY": 2, "DB_PASSWORD": 1}, {"API_KEY": 3, "DB_PASSWORD": 1}):
        web = next(r for r in desired_resources(spec, "prod", DIGEST, versions) if r.kind == "service")
        made = service_manifests("shop", web, 1, {"API_KEY": "x", "DB_PASSWORD": "y"})
        assert made.secret is not None
        names.add(made.secret["metadata"]["name"])
    assert len(names) == 2


def test_the_artifact_mount_is_wired_into_the_pod() -> None:
    mount = ArtifactMount(init_containers=[{"name": "railguard-artifact", "image": "python:3.12-slim"}],
                          volumes=[{"name": "railguard-artifact", "emptyDir": {}}],
                          mounts=[{"name": "railguard-artifact", "mountPath": "/app", "readOnly": True}],
                          env=[{"name": "PYTHONPATH", "value": "/app/src"}], workdir="/app/src")
    (deployment,) = _kind(manifests_of(SPECS["worker_without_port_on_the_base_image"], mount), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["name"] == "railguard-artifact" and pod["volumes"] == list(mount.volumes)
    container = pod["containers"][0]
    assert container["workingDir"] == "/app/src" and container["image"] == "python:3.11-slim"
    assert {"name": "PYTHONPATH", "value": "/app/src"} in container["env"]


SCHEMA = {"definitions": {
    "io.k8s.api.core.v1.ConfigMap": {
        "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "ConfigMap"}],
        "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                       "metadata": {"$ref": "#/definitions/meta"},
                       "data": {"type": "object", "additionalProperties": {"type": "string"}}}},
    "meta": {"properties": {"name": {"type": "string"}, "labels": {"additionalProperties": {"type": "string"}},
                            "ownerReferences": {"items": {"$ref": "#/definitions/owner"}}}},
    "owner": {"properties": {"name": {"type": "string"}}},
}}


def test_unknown_fields_are_named_by_their_path() -> None:
    schema = Schema(SCHEMA)
    good = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"x": "y"}},
            "data": {"anything": "goes"}}
    assert schema.unknown_fields(good) == []
    bad = {**good, "metadata": {"name": "a", "nmae": "b", "ownerReferences": [{"name": "o", "uid2": "u"}]},
           "spec": {}}
    assert schema.unknown_fields(bad) == ["metadata.nmae", "metadata.ownerReferences[0].uid2", "spec"]
    assert schema.unknown_fields({"apiVersion": "v9", "kind": "Thing"}) == ["apiVersion/kind v9/Thing"]


def test_resources_of_a_kubernetes_environment_carry_its_target() -> None:
    spec, _ = parse_spec(SPECS["web_with_secrets_release_and_routes"])
    assert spec is not None
    found: list[Resource] = desired_resources(spec, "prod", DIGEST)
    web = next(r for r in found if r.kind == "service")
    assert web.config["kubernetes"]["namespace"] == "shop-prod" and web.config["image"].startswith("registry")
    assert next(r for r in found if r.kind == "edge").config["port"] is None


def _deployment(**status: Any) -> dict[str, Any]:
    notes = {"railguard.dev/address": "prod/service.web", "railguard.dev/config": json.dumps({"replicas": 2}),
             "railguard.dev/fingerprint": "sha256:f", "railguard.dev/depends-on": ""}
    return {"metadata": {"name": "web", "generation": 2, "annotations": notes,
                         "labels": {"railguard.dev/release": "3"}},
            "spec": {"replicas": 2}, "status": status}


def test_a_deployments_conditions_become_the_observed_status() -> None:
    from railguard.model.resources import LiveStatus
    from railguard.providers.kubernetes.observe import observed

    ready = observed(_deployment(observedGeneration=2, availableReplicas=2, updatedReplicas=2), "service")
    assert ready is not None and ready.status is LiveStatus.running and ready.release == 3
    rolling = observed(_deployment(observedGeneration=2, availableReplicas=1, updatedReplicas=1), "service")
    assert rolling is not None and rolling.status is LiveStatus.progressing
    stuck = observed(_deployment(observedGeneration=2, conditions=[
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "too slow"}]),
        "service")
    assert stuck is not None and stuck.status is LiveStatus.degraded and stuck.message == "too slow"
    assert observed({"metadata": {"name": "x"}}, "service") is None  # not ours: no annotations


def test_drift_is_what_another_manager_owns_alone() -> None:
    from railguard.providers.kubernetes.observe import drift

    def entry(manager: str, fields: dict[str, Any], **more: Any) -> dict[str, Any]:
        return {"manager": manager, "operation": "Apply", "fieldsV1": fields, **more}

    spec = {"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
        'k:{"name":"web"}': {".": {}, "f:name": {}, "f:image": {}}}}}}}
    obj = {"metadata": {"managedFields": [
        entry("railguard", spec),
        entry("kubectl-set", {"f:spec": {"f:template": {"f:spec": {"f:containers": {
            'k:{"name":"web"}': {".": {}, "f:name": {}, "f:env": {}}}}}}}),
        entry("kube-controller-manager", {"f:status": {"f:replicas": {}}}, subresource="status"),
        entry("hpa", {"f:spec": {"f:replicas": {}}}),
    ]}}
    # hpa applied replicas alike (shared ownership: agreement); the controller wrote status; kubectl-set's env is
    # its own alone, and the container's key it shares with Railguard.
    assert drift(obj) == {"kubectl-set": ['spec.template.spec.containers.{"name":"web"}.env']}
