"""Pure parts of the Kubernetes canary, exec and rollback-drill code: no cluster needed.

The canary's pod count for a step (closest replica ratio, at least one pod, at most 3x the live count), the canary
Deployment made from the live one (its own name, selector and track label; none of the annotations observation
reads, so it is never a resource; what it promotes to), the exec Job made from the release's pod (the command
literally, no probes or ports, never the Service's labels) and the template digest the drill compares (the same
code and config at two release numbers digest alike; another config does not).
"""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from railguard.model.resources import Resource
from railguard.providers.kubernetes import canary, commands
from railguard.providers.kubernetes.labels import ADDRESS, CONFIG, FINGERPRINT, SERVICE, selector
from railguard.providers.kubernetes.manifests import service_manifests
from railguard.providers.kubernetes.scratch import template_digest

IMAGE = "registry.example/shop@sha256:" + "0123456789abcdef" * 4


def _service(version: str = "1", replicas: int = 3) -> Resource:
    config = {"run": ["python", "app.py"], "replicas": replicas, "listen": True, "port_env": "PORT",
              "env": {"VERSION": version}, "secrets": ["API_TOKEN"], "secret_versions": {"API_TOKEN": 2},
              "health": {"mode": "http", "http": "/healthz", "exec": None, "interval_ms": 1000, "timeout_ms": 1000,
                         "start_period_ms": 2000, "healthy_threshold": 1, "unhealthy_threshold": 3},
              "start_timeout_ms": 20000, "stop_timeout_ms": 2000, "drain_timeout_ms": 1000, "image": IMAGE,
              "kubernetes": {"namespace": "shop-staging"}}
    return Resource(address="staging/service.web", env="staging", kind="service", name="web", config=config,
                    depends_on=[], fingerprint=f"fp-{version}")


@pytest.mark.parametrize(("percent", "live", "pods"), [(25, 3, 1), (50, 3, 3), (10, 2, 1), (10, 10, 1), (90, 1, 3),
                                                        (1, 1, 1), (75, 2, 6), (50, 1, 1)])
def test_a_step_is_the_closest_replica_ratio_with_at_least_one_pod(percent: int, live: int, pods: int) -> None:
    assert canary.replicas_for(percent, live) == pods
    best = min(abs(Fraction(c, c + live) - Fraction(percent, 100)) for c in range(1, 3 * live + 1))
    assert abs(Fraction(pods, pods + live) - Fraction(percent, 100)) == best


def test_a_step_outside_1_to_99_percent_is_refused() -> None:
    for wrong in (0, 100, -5):
        with pytest.raises(ValueError):
            canary.replicas_for(wrong, 3)


def test_the_canary_deployment_is_the_new_template_beside_the_live_one_and_never_a_resource() -> None:
    main = service_manifests("shop", _service("2"), 2, {"API_TOKEN": "s3cret"}).deployment
    made = canary.manifest(main, 25, 3, "op-1", {"release": 1})
    assert made["metadata"]["name"] == "web-canary" and made["spec"]["replicas"] == 1
    assert made["spec"]["selector"]["matchLabels"] == selector("staging", "web") | {canary.TRACK: "canary"}
    labels = made["spec"]["template"]["metadata"]["labels"]
    assert labels[canary.TRACK] == "canary" and labels[SERVICE] == "web" and labels["railguard.dev/release"] == "2"
    notes = made["metadata"]["annotations"]
    assert not {ADDRESS, CONFIG, FINGERPRINT} & set(notes)  # observation never sees it
    assert json.loads(notes[canary.PROMOTES]) == main and notes[canary.WEIGHT] == "25"
    assert notes[canary.OPERATION] == "op-1" and json.loads(notes[canary.STABLE]) == {"release": 1}
    assert made["spec"]["template"]["spec"] == main["spec"]["template"]["spec"]  # the same pod as it will be
    assert "s3cret" not in json.dumps(made)  # secrets by reference only
    assert main["metadata"]["name"] == "web" and canary.TRACK not in main["spec"]["selector"]["matchLabels"]


def test_the_exec_job_is_the_release_pod_with_the_command_and_no_service_labels() -> None:
    made = service_manifests("shop", _service("1"), 4, {"API_TOKEN": "s3cret"})
    job = commands.job_manifest(made, ["sh", "-c", "echo $(HOME) $PORT"], "abcd1234")
    assert job["metadata"]["name"] == "web-exec-abcd1234" and job["spec"]["backoffLimit"] == 0
    assert job["spec"]["ttlSecondsAfterFinished"] > 0 and job["spec"]["activeDeadlineSeconds"] > 0
    pod = job["spec"]["template"]["spec"]
    live = made.deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == ["sh", "-c", "echo $$(HOME) $PORT"]
    assert container["env"] == live["containers"][0]["env"] and container["image"] == IMAGE
    assert not {"readinessProbe", "livenessProbe", "startupProbe", "lifecycle", "ports"} & set(container)
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert SERVICE not in labels and labels[commands.EXEC_OF] == "web" and labels[commands.EXEC] == "abcd1234"
        assert labels["railguard.dev/release"] == "4"
    assert "s3cret" not in json.dumps(job)


def test_the_drill_compares_templates_without_their_release_number() -> None:
    def template(version: str, release: int) -> dict[str, object]:
        return dict(service_manifests("shop", _service(version), release).deployment["spec"]["template"])

    assert template_digest(template("1", 11)) == template_digest(template("1", 13))
    assert template_digest(template("1", 11)) != template_digest(template("2", 12))
