"""The doctor on a Kubernetes environment: its scratch is a temporary namespace on the same cluster.

Through the real CLI against the real control plane: the release Job runs twice and the Deployment becomes
Available in a namespace ``<ns>-doctor-<random>`` (labelled as Railguard's doctor's), which is deleted afterwards;
a leftover scratch namespace of a crashed run is deleted by the next run; checks about local processes, ports and
data folders say they do not apply; env-isolation reads the namespaces' ServiceAccount and NetworkPolicy and finds a
staging kubeconfig user that can write the production namespace (the API server's SelfSubjectAccessReview). The
rollback drill rolls the previous release, the current tree and the rollback in the scratch namespace, and fails
when the rolled-back release's pods do not come up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from railguard.providers.kubernetes import rbac

from .cluster import Cluster, wait_until

IMAGE = "registry.example/shop@sha256:" + "0123456789abcdef" * 4
SPEC = """
[app]
name = "doc"

[environments.staging]
target = "kubernetes"
[environments.staging.kubernetes]
namespace = "{prefix}-staging"
kubeconfig = "{staging}"

[environments.production]
target = "kubernetes"
protected = true
[environments.production.kubernetes]
namespace = "{prefix}-production"
kubeconfig = "{production}"

[services.web]
run = ["python", "app.py"]
release = ["python", "migrate.py"]
image = "{image}"
replicas = 1
start_timeout = "30s"
stop_timeout = "2s"
[services.web.health]
http = "/healthz"
interval = "1s"
timeout = "1s"
"""
DOCTOR_LABEL = "railguard.dev/doctor"


def _doctor(root: Path, *checks: str) -> tuple[int, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAILGUARD_HOME", "RAILGUARD_SPEC")}
    done = subprocess.run([sys.executable, "-m", "railguard", "doctor", "--env", "staging", "--json",
                           "--check", ",".join(checks)], cwd=root, capture_output=True, text=True, timeout=240,
                          env={**env, "TMPDIR": str(root)}, check=False)
    try:
        return done.returncode, json.loads(done.stdout)
    except ValueError:
        raise AssertionError(done.stdout + done.stderr) from None


def _checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in report["doctor"]["checks"]}


def _scratch_namespaces(cluster: Cluster, source: str) -> list[dict[str, Any]]:
    found = cluster.get(f"/api/v1/namespaces?labelSelector={DOCTOR_LABEL}%3Dtrue,railguard.dev%2Fdoctor-of%3D{source}")
    assert found is not None
    return list(found["items"])


def _live(cluster: Cluster, source: str) -> list[str]:
    return [n["metadata"]["name"] for n in _scratch_namespaces(cluster, source)
            if not n["metadata"].get("deletionTimestamp")]


def _workspace(root: Path, cluster: Cluster, prefix: str, staging_user: str = "admin") -> None:
    (root / "app.py").write_text("print('app')\n")
    (root / "migrate.py").write_text("print('migrate')\n")
    staging = cluster.write_kubeconfig(root / "staging.kubeconfig", user=staging_user)
    production = cluster.write_kubeconfig(root / "production.kubeconfig", user="admin")
    (root / "railguard.toml").write_text(SPEC.format(prefix=prefix, staging=staging, production=production,
                                                     image=IMAGE))


@pytest.mark.timeout(300)
def test_doctor_runs_the_release_and_the_deployment_in_a_scratch_namespace(tmp_path: Path,
                                                                             k8s_cluster: Cluster) -> None:
    prefix = "docns"
    _workspace(tmp_path, k8s_cluster, prefix)
    # A crashed run's leftover: its doctor process (this host, a pid that cannot exist) is gone.
    leftover = f"{prefix}-staging-doctor-dead00"
    k8s_cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": leftover, "labels": {DOCTOR_LABEL: "true", "railguard.dev/doctor-of": f"{prefix}-staging",
                                     "app.kubernetes.io/managed-by": "railguard"},
        "annotations": {"railguard.dev/doctor-owner": f"{os.uname().nodename}/4194999"}}})
    try:
        code, report = _doctor(tmp_path, "idempotent-release", "honest-health", "graceful-shutdown",
                               "port-binding", "migrations-forward", "rollback-drill")
        checks = _checks(report)
        assert checks["idempotent-release"]["status"] == "pass", checks["idempotent-release"]
        evidence = "\n".join(checks["idempotent-release"]["findings"][0]["evidence"])
        assert "Job/web-release-r1: ok" in evidence and "Job/web-release-r2: ok" in evidence, evidence
        assert f"scratch namespace {prefix}-staging-doctor-" in evidence
        assert f"deleted leftover scratch namespace(s) of an earlier run: {leftover}" in evidence
        assert checks["honest-health"]["status"] == "pass", checks["honest-health"]
        health = checks["honest-health"]["findings"]
        assert any(f["status"] == "pass" and "Deployment/web, Service/web: ok" in "\n".join(f["evidence"])
                   for f in health), health
        for local in ("graceful-shutdown", "port-binding", "migrations-forward"):
            assert checks[local]["status"] == "skipped", checks[local]
            assert "not applicable on Kubernetes" in checks[local]["summary"], checks[local]
        drill = checks["rollback-drill"]  # never deployed: nothing to roll back to
        assert drill["status"] == "skipped" and "no previous release" in drill["summary"], drill
        assert code == 0, report
        # The scratch namespace is gone (or going) and so is the leftover; the environment's own was never made.
        teardown = report["doctor"]["teardown"]
        assert len(teardown) == 1 and teardown[0].startswith(f"deleted scratch namespace {prefix}-staging-doctor-")
        assert _live(k8s_cluster, f"{prefix}-staging") == []
        assert k8s_cluster.get(f"/api/v1/namespaces/{prefix}-staging") is None
        # Nothing lingers: the namespace controller removes them (bounded wait).
        wait_until(lambda: not _scratch_namespaces(k8s_cluster, f"{prefix}-staging"), 120,
                   "the doctor's scratch namespaces to be deleted")
    finally:
        for ns in _scratch_namespaces(k8s_cluster, f"{prefix}-staging"):
            k8s_cluster.delete_namespace(ns["metadata"]["name"], wait=False)


@pytest.mark.timeout(300)
def test_env_isolation_reads_namespaces_and_finds_staging_credentials_that_write_production(
        tmp_path: Path, k8s_cluster: Cluster) -> None:
    prefix = "dociso"
    staging_ns = k8s_cluster.create_namespace(f"{prefix}-staging")
    production_ns = k8s_cluster.create_namespace(f"{prefix}-production")
    try:
        # Each environment's user is bound in its own namespace only (the Role `railguard k8s rbac` prints).
        for manifest in rbac.manifests(staging_ns, "staging", users=["railguard-staging"]):
            k8s_cluster.apply(manifest)
        for manifest in rbac.manifests(production_ns, "production", users=["railguard-prod"]):
            k8s_cluster.apply(manifest)
        _workspace(tmp_path, k8s_cluster, prefix, staging_user="railguard-staging")
        spec = tmp_path / "railguard.toml"
        production_kubeconfig = k8s_cluster.write_kubeconfig(tmp_path / "production.kubeconfig", user="railguard-prod")
        assert production_kubeconfig.exists()
        # The environments' isolation objects, as an apply makes them (the provider's own manifests).
        from railguard.providers.kubernetes.labels import Target
        from railguard.providers.kubernetes.manifests import environment_manifests

        for env, ns in (("staging", staging_ns), ("production", production_ns)):
            for manifest in environment_manifests("doc", env, Target(namespace=ns)):
                k8s_cluster.apply(manifest, manager="railguard")

        code, report = _doctor(tmp_path, "env-isolation")
        findings = _checks(report)["env-isolation"]["findings"]
        by = {(f["subject"], f["status"]): f for f in findings}
        assert ("staging", "pass") in by and ("production", "pass") in by, findings
        assert ("staging/production", "pass") in by and ("production/staging", "pass") in by, findings
        assert "metadata service" in by[("staging", "pass")]["summary"], findings
        assert code == 0, report

        # A policy as older Railguard versions made it (ingress only): the pods reach the cloud metadata service.
        k8s_cluster.apply({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {
            "name": "railguard-isolation", "namespace": staging_ns}, "spec": {
                "podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [{"podSelector": {}}]}]}},
            manager="railguard")
        code, report = _doctor(tmp_path, "env-isolation")
        by = {(f["subject"], f["status"]): f for f in _checks(report)["env-isolation"]["findings"]}
        assert "cloud metadata service" in by[("staging", "fail")]["summary"], report
        assert code == 2, report
        for manifest in environment_manifests("doc", "staging", Target(namespace=staging_ns)):
            k8s_cluster.apply(manifest, manager="railguard")

        # Someone binds the staging user in production too: a finding, by the API server's own answer.
        k8s_cluster.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                           "metadata": {"name": "staging-too", "namespace": production_ns},
                           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "railguard"},
                           "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io",
                                         "name": "railguard-staging"}]})
        # ... and the production ServiceAccount mounts a token again.
        k8s_cluster.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {
            "name": "railguard-workload", "namespace": production_ns}, "automountServiceAccountToken": True},
            manager="someone-else")
        code, report = _doctor(tmp_path, "env-isolation")
        findings = _checks(report)["env-isolation"]["findings"]
        by = {(f["subject"], f["status"]): f for f in findings}
        found = by.get(("staging/production", "fail"))
        assert found is not None, findings
        assert f"can write production's namespace {production_ns}" in found["summary"]
        assert "SelfSubjectAccessReview" in found["evidence"][0] and "patch deployments" in found["evidence"][0]
        assert ("production", "fail") in by and "mounts an API token" in by[("production", "fail")]["summary"]
        assert ("production/staging", "pass") in by, findings
        assert code == 2, report

        # Two environments in one namespace: a finding (validation lets the doctor run to report it).
        spec.write_text(spec.read_text().replace(f'namespace = "{production_ns}"', f'namespace = "{staging_ns}"'))
        code, report = _doctor(tmp_path, "env-isolation")
        findings = _checks(report)["env-isolation"]["findings"]
        assert any(f["status"] == "fail" and f"share namespace {staging_ns}" in f["summary"] for f in findings), report
        assert code == 2
        # The same kubeconfig too: validation refuses the spec (spec.namespace_shared), the doctor still reports it.
        spec.write_text(spec.read_text().replace(str(production_kubeconfig), str(tmp_path / "staging.kubeconfig")))
        code, report = _doctor(tmp_path, "env-isolation")
        findings = _checks(report)["env-isolation"]["findings"]
        assert any(f["status"] == "fail" and f"share namespace {staging_ns}" in f["summary"] for f in findings), report
        assert code == 2
    finally:
        k8s_cluster.delete_namespace(staging_ns, wait=False)
        k8s_cluster.delete_namespace(production_ns, wait=False)


def _start_doctor(root: Path, *checks: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAILGUARD_HOME", "RAILGUARD_SPEC")}
    return subprocess.Popen([sys.executable, "-m", "railguard", "doctor", "--env", "staging", "--json",
                             "--check", ",".join(checks)], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**env, "TMPDIR": str(root)})


@pytest.mark.timeout(300)
def test_a_failed_rollout_is_a_finding_with_the_pods_reasons_and_an_interrupt_deletes_the_namespace(
        tmp_path: Path, k8s_cluster: Cluster) -> None:
    prefix = "docfail"
    _workspace(tmp_path, k8s_cluster, prefix)
    scratch = f"{prefix}-staging-doctor-*"
    assert k8s_cluster.agent is not None
    # The Deployment's pods (release 1 in scratch) crash-loop; the release Job's pods run normally.
    k8s_cluster.agent.behave(scratch, {"railguard.dev/release": "1"}, "crashloop")
    try:
        code, report = _doctor(tmp_path, "honest-health")
        check = _checks(report)["honest-health"]
        assert check["status"] == "fail" and code == 2, check
        failed = next(f for f in check["findings"] if f["status"] == "fail")
        assert "did not become Available" in failed["summary"], failed
        assert "CrashLoopBackOff" in "\n".join(failed["evidence"]), failed
        assert _live(k8s_cluster, f"{prefix}-staging") == []

        # Interrupted while it waits for a Deployment that never becomes ready: the namespace still goes.
        k8s_cluster.agent.behave(scratch, {"railguard.dev/release": "1"}, "never-ready")
        proc = _start_doctor(tmp_path, "honest-health")
        try:
            def waiting() -> str | None:
                for name in _live(k8s_cluster, f"{prefix}-staging"):
                    if k8s_cluster.get(f"/apis/apps/v1/namespaces/{name}/deployments/web") is not None:
                        return name
                return None

            name = wait_until(waiting, 120, "the doctor's scratch Deployment")
            proc.send_signal(15)
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 130, out + err
        report = json.loads(out)
        assert report["doctor"]["interrupted"] == "SIGTERM"
        assert report["doctor"]["teardown"] == [f"deleted scratch namespace {name} on cluster {k8s_cluster.server}"]
        assert _live(k8s_cluster, f"{prefix}-staging") == []
    finally:
        k8s_cluster.agent.clear(scratch)
        for ns in _scratch_namespaces(k8s_cluster, f"{prefix}-staging"):
            k8s_cluster.delete_namespace(ns["metadata"]["name"], wait=False)


def test_an_unreachable_cluster_skips_the_cluster_checks_with_the_reason(tmp_path: Path) -> None:
    """No cluster answers: nothing is passed, each cluster check says why it could not run (no cluster needed)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "gone",
        "clusters": [{"name": "gone", "cluster": {"server": f"https://127.0.0.1:{port}",
                                                  "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}]}))
    (tmp_path / "app.py").write_text("print('app')\n")
    (tmp_path / "migrate.py").write_text("print('migrate')\n")
    (tmp_path / "railguard.toml").write_text(SPEC.format(prefix="gone", staging=kubeconfig, production=kubeconfig,
                                                         image=IMAGE))
    code, report = _doctor(tmp_path, "idempotent-release", "honest-health", "env-isolation")
    checks = _checks(report)
    for check in ("idempotent-release", "honest-health"):
        assert checks[check]["status"] == "skipped", checks[check]
        first = checks[check]["findings"][0]
        assert "could not make the scratch namespace" in first["summary"] and "cannot be reached" in first["summary"]
        assert "create namespaces" in first["remediation"], first
    isolation = checks["env-isolation"]
    assert isolation["status"] == "warn" and not any(f["status"] == "pass" for f in isolation["findings"]), isolation
    assert any("could not be read" in f["summary"] for f in isolation["findings"]), isolation
    assert code == 0 and report["doctor"]["teardown"] == [], report


@pytest.mark.timeout(400)
def test_the_rollback_drill_rolls_previous_current_and_back_in_a_scratch_namespace(tmp_path: Path,
                                                                                    k8s_cluster: Cluster) -> None:
    from ..conftest import stop_daemon

    prefix = "docdrill"
    _workspace(tmp_path, k8s_cluster, prefix)
    spec = tmp_path / "railguard.toml"
    text = spec.read_text()
    spec.write_text(text.replace("replicas = 1\n", 'replicas = 1\nenv = { VERSION = "1" }\n'))
    env = {k: v for k, v in os.environ.items() if k not in ("RAILGUARD_HOME", "RAILGUARD_SPEC")}
    assert k8s_cluster.agent is not None
    try:
        done = subprocess.run([sys.executable, "-m", "railguard", "deploy", "--env", "staging", "--yes", "--json"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=180, env=env, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        spec.write_text(text.replace("replicas = 1\n", 'replicas = 1\nenv = { VERSION = "2" }\n'))
        code, report = _doctor(tmp_path, "rollback-drill")
        [finding] = _checks(report)["rollback-drill"]["findings"]
        assert finding["status"] == "pass", finding
        evidence = "\n".join(finding["evidence"])
        for release in (11, 12, 13):  # previous, current, the rollback: each Job and Deployment went through
            assert f"Job/web-release-r{release}, Deployment/web, Service/web: ok" in evidence, evidence
        assert "rollback on release 1's pod template" in finding["summary"], finding
        assert code == 0, report

        # The rollback's release command fails in the scratch namespace (its pod exits 1): the drill fails there.
        k8s_cluster.agent.behave(f"{prefix}-staging-doctor-*", {"railguard.dev/release": "13"}, "fail")
        code, report = _doctor(tmp_path, "rollback-drill")
        [finding] = _checks(report)["rollback-drill"]["findings"]
        assert finding["status"] == "fail", finding
        assert finding["summary"].startswith("roll back to release 1's manifests failed: its release Job failed"), \
            finding
        assert "Job/web-release-r11, Deployment/web, Service/web: ok" in "\n".join(finding["evidence"]), finding
        assert code != 0
        wait_until(lambda: _live(k8s_cluster, f"{prefix}-staging") == [], 60, "the scratch namespaces deleted")
    finally:
        k8s_cluster.agent.clear(f"{prefix}-staging-doctor-*")
        stop_daemon(tmp_path)
        for ns in _scratch_namespaces(k8s_cluster, f"{prefix}-staging"):
            k8s_cluster.delete_namespace(ns["metadata"]["name"], wait=False)
        k8s_cluster.delete_namespace(f"{prefix}-staging", wait=False)


@pytest.mark.timeout(400)
def test_a_protected_environments_scratch_namespace_gets_placeholder_secrets(tmp_path: Path,
                                                                              k8s_cluster: Cluster) -> None:
    """The rollback drill re-applies the previous release, which pins real secret versions: on a protected
    environment the scratch namespace's Secret holds placeholders, never the values (the working tree's code and
    image run beside it, unreviewed), and the check says so."""
    import base64
    import time

    from ..conftest import stop_daemon

    prefix = "docsec"
    real = "real-api-key-5d2e"
    _workspace(tmp_path, k8s_cluster, prefix)
    spec = tmp_path / "railguard.toml"
    text = spec.read_text().replace("replicas = 1\n", 'replicas = 1\nsecrets = ["API_KEY"]\n')
    spec.write_text(text)
    env = {k: v for k, v in os.environ.items() if k not in ("RAILGUARD_HOME", "RAILGUARD_SPEC")}
    seen: set[str] = set()
    try:
        for argv, stdin in ((["secret", "set", "API_KEY", "--env", "staging"], real),
                            (["deploy", "--env", "staging", "--yes", "--json"], None)):
            done = subprocess.run([sys.executable, "-m", "railguard", *argv], cwd=tmp_path, input=stdin,
                                  capture_output=True, text=True, timeout=180, env=env, check=False)
            assert done.returncode == 0, done.stdout + done.stderr
        # Staging is protected from now on (the deploy above made release 1, with API_KEY version 1).
        spec.write_text(text.replace('[environments.staging]\ntarget = "kubernetes"',
                                     '[environments.staging]\ntarget = "kubernetes"\nprotected = true'))
        running = _start_doctor(tmp_path, "rollback-drill")
        query = "/api/v1/secrets?labelSelector=app.kubernetes.io%2Fname%3Ddoc"
        while running.poll() is None:  # every Secret of a scratch namespace, while the doctor runs
            for item in (k8s_cluster.get(query) or {}).get("items", []):
                if item["metadata"]["namespace"].startswith(f"{prefix}-staging-doctor-"):
                    seen |= {base64.b64decode(v).decode() for v in (item.get("data") or {}).values()}
            time.sleep(0.1)
        out, err = running.communicate(timeout=30)
        assert real not in out + err
        findings = json.loads(out)["doctor"]["checks"][0]["findings"]
        assert seen == {"railguard-doctor-placeholder"}, (seen - {real}, findings)
        drill = next(f for f in findings if f.get("subject") == "web")
        assert drill["status"] == "pass" and "secrets: placeholders (protected environment)" in drill["evidence"], \
            findings
        assert any(f["summary"].startswith("secrets: placeholder values for API_KEY") for f in findings), findings
    finally:
        stop_daemon(tmp_path)
        for ns in _scratch_namespaces(k8s_cluster, f"{prefix}-staging"):
            k8s_cluster.delete_namespace(ns["metadata"]["name"], wait=False)
        k8s_cluster.delete_namespace(f"{prefix}-staging", wait=False)
