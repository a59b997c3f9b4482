"""`railguard k8s rbac` prints exactly the RBAC Railguard needs, and it works on a real API server.

The printed YAML is what --json lists (pinned by a golden file); bad input is a diagnostic. Against the session's
control plane: the printed objects, applied by an administrator, let the user ``railguard-staging`` do every verb of
:data:`REQUIRED` in its namespace — the API server's own authorizer answers each one, and real requests get through
— and nothing in another namespace (real 403s), nor anything REQUIRED does not list.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from railguard.providers.kubernetes.rbac import REQUIRED
from tests.test_cli import rg

from .cluster import Cluster, wait_until

pytestmark = pytest.mark.timeout(600)  # the first test of a session pays the cluster's start
GOLDEN = Path(__file__).parents[1] / "golden" / "k8s" / "rbac.yaml"

SPEC = """
[app]
name = "shop"

[environments.staging]
target = "kubernetes"
[environments.staging.kubernetes]
namespace = "{namespace}"

[environments.production]
edge_port = 18443

[services.web]
run = ["python", "app.py"]
"""


def _folder(tmp_path: Path, namespace: str) -> Path:
    (tmp_path / "railguard.toml").write_text(SPEC.format(namespace=namespace))
    (tmp_path / "app.py").write_text("print('hi')\n")
    return tmp_path


def _printed(folder: Path, *extra: str) -> tuple[str, dict[str, Any]]:
    text = rg("k8s", "rbac", "--env", "staging", *extra, cwd=folder)
    assert text.returncode == 0, text.stdout + text.stderr
    answer = rg("k8s", "rbac", "--env", "staging", *extra, "--json", cwd=folder)
    assert answer.returncode == 0, answer.stderr
    return text.stdout, json.loads(answer.stdout)


def test_the_printed_yaml_is_the_json_and_as_reviewed(tmp_path: Path) -> None:
    text, answer = _printed(_folder(tmp_path, "shop-staging"), "--user", "railguard-staging")
    assert list(yaml.safe_load_all(text)) == answer["manifests"]
    assert [(r["apiGroup"], r["resource"], tuple(r["verbs"])) for r in answer["required"]] == REQUIRED
    role = next(m for m in answer["manifests"] if m["kind"] == "Role")
    assert [(r["apiGroups"][0], r["resources"][0], tuple(r["verbs"])) for r in role["rules"]] == REQUIRED
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "the printed RBAC changed; review it, then UPDATE_GOLDEN=1"
    _, with_cluster_role = _printed(tmp_path, "--cluster-role")
    assert with_cluster_role["manifests"][-1]["kind"] == "ClusterRole"


def test_bad_input_is_a_diagnostic(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "shop-staging")
    local = rg("k8s", "rbac", "--env", "production", "--json", cwd=folder)
    assert local.returncode == 1 and json.loads(local.stdout)["diagnostics"][0]["code"] == "kubernetes.wrong_target"
    unknown = rg("k8s", "rbac", "--env", "nope", "--json", cwd=folder)
    assert unknown.returncode == 1
    assert json.loads(unknown.stdout)["diagnostics"][0]["code"] == "spec.unknown_environment"
    plain = rg("k8s", "rbac", "--env", "production", cwd=folder)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr and "kubernetes.wrong_target" in plain.stderr


def _can(client: httpx.Client, namespace: str, group: str, resource: str, verb: str) -> bool:
    """The API server's authorizer's answer for this user (a SelfSubjectAccessReview, allowed to everyone)."""
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"resourceAttributes": {"namespace": namespace, "group": group, "resource": resource,
                                              "verb": verb,
                                              **({"name": namespace} if resource == "namespaces" else {})}}}
    answer = client.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", json=review)
    assert answer.status_code == 201, answer.text
    return bool(answer.json()["status"].get("allowed"))


def _collection(namespace: str, group: str, resource: str) -> str:
    if resource == "namespaces":
        return f"/api/v1/namespaces/{namespace}"
    base = "/api/v1" if group == "" else f"/apis/{group}/v1"
    return f"{base}/namespaces/{namespace}/{resource}"


def test_the_printed_role_grants_exactly_the_required_verbs_in_its_namespace(k8s_cluster: Cluster,
                                                                             tmp_path: Path) -> None:
    ours, other = k8s_cluster.create_namespace("rbac-ours"), k8s_cluster.create_namespace("rbac-other")
    _, answer = _printed(_folder(tmp_path, ours), "--user", "railguard-staging")
    staging = k8s_cluster.client("railguard-staging")
    try:
        assert staging.get(_collection(ours, "apps", "deployments")).status_code == 403  # nothing before
        for manifest in answer["manifests"]:
            k8s_cluster.apply(manifest)
        wait_until(lambda: staging.get(_collection(ours, "apps", "deployments")).status_code == 200, 30,
                   "the RoleBinding to take effect")
        for group, resource, verbs in REQUIRED:
            for verb in verbs:
                assert _can(staging, ours, group, resource, verb), (group, resource, verb)
                assert not _can(staging, other, group, resource, verb), (other, group, resource, verb)
            # Real requests, not only the authorizer's word: a read in ours passes, the same read elsewhere is 403.
            assert staging.get(_collection(ours, group, resource)).status_code == 200, resource
            refused = staging.get(_collection(other, group, resource))
            assert refused.status_code == 403 and refused.json()["reason"] == "Forbidden", resource
        # A write as the provider makes it (server-side apply, dry-run so nothing stays): ours yes, another no.
        service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                   "spec": {"ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}], "selector": {"a": "b"}}}
        for namespace, status in ((ours, (200, 201)), (other, (403,))):
            body = {**service, "metadata": {"name": "web", "namespace": namespace}}
            written = staging.patch(f"/api/v1/namespaces/{namespace}/services/web",
                                    params={"fieldManager": "railguard", "dryRun": "All"}, content=json.dumps(body),
                                    headers={"Content-Type": "application/apply-patch+yaml"})
            assert written.status_code in status, (namespace, written.status_code, written.text)
        # Nothing beyond the list: no RBAC of its own (no escalation), no exec into pods, no namespace creation.
        assert not _can(staging, ours, "rbac.authorization.k8s.io", "roles", "create")
        assert not _can(staging, ours, "", "pods/exec", "create")
        assert not _can(staging, ours, "apps", "replicasets", "delete")
        assert staging.post("/api/v1/namespaces", json={"metadata": {"name": "rbac-new"}}).status_code == 403
        # Another limited user gains nothing from the binding.
        with k8s_cluster.client("railguard-prod") as prod:
            assert prod.get(_collection(ours, "apps", "deployments")).status_code == 403
    finally:
        staging.close()
        k8s_cluster.delete_namespace(ours, wait=False)
        k8s_cluster.delete_namespace(other, wait=False)
