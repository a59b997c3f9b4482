"""The namespace's NetworkPolicy and the pods' hardening, as manifests (pure: the test cluster has no network plugin,
so a NetworkPolicy is admitted but never enforced there; what it would enforce is read from the manifest).

The app is hostile: its pods must not reach the cloud metadata service (the node's credentials) nor the ranges the
spec denies, other namespaces must not reach them (but the Ingress controller's, when named), and every pod
Railguard makes must pass Pod Security's "restricted" profile, which the namespaces Railguard creates enforce.
"""

from __future__ import annotations

from typing import Any

from railguard.model.resources import desired_resources
from railguard.model.specfile import parse_spec
from railguard.providers.kubernetes import artifacts, commands
from railguard.providers.kubernetes.labels import Target
from railguard.providers.kubernetes.manifests import ArtifactMount, isolation_spec, service_manifests
from railguard.providers.kubernetes.scratch import egress_reaches, ingress_denied

DIGEST = "sha256:" + "ab" * 32
SPEC = """
[app]
name = "shop"

[environments.prod]
target = "kubernetes"

[environments.prod.kubernetes]
namespace = "shop-prod"
{extra}

[services.web]
run = ["python", "app.py"]
release = ["python", "migrate.py"]
secrets = ["API_KEY"]

[services.web.health]
http = "/healthz"
"""


def _parse(extra: str = "") -> tuple[Any, list[Any]]:
    return parse_spec(SPEC.format(extra=extra))


def _target(extra: str = "") -> Target:
    spec, diagnostics = _parse(extra)
    assert spec is not None and not [d for d in diagnostics if d.is_error], diagnostics
    web = next(r for r in desired_resources(spec, "prod", DIGEST) if r.kind == "service")
    return Target.of(web.config["kubernetes"])


def test_the_pods_cannot_reach_the_metadata_service_but_reach_the_internet() -> None:
    policy = isolation_spec(_target())
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert not egress_reaches(policy, "169.254.169.254", 80)  # EC2/GCE/Azure metadata: node credentials
    assert not egress_reaches(policy, "169.254.170.2", 80)  # ECS task credentials
    assert egress_reaches(policy, "93.184.216.34", 443)  # the internet, an external database
    assert egress_reaches(policy, "10.20.30.40", 5432)  # nothing denied beyond link-local unless the spec says so
    assert egress_reaches(policy, "2606:4700::1111", 443) and not egress_reaches(policy, "fe80::1", 80)
    rules = policy["egress"]
    assert {"to": [{"podSelector": {}}]} in rules  # the namespace's own pods
    dns = [r for r in rules if {"protocol": "UDP", "port": 53} in (r.get("ports") or [])]
    assert dns == [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}},
                           {"ipBlock": {"cidr": "169.254.20.10/32"}}],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}], rules  # DNS
    assert egress_reaches(policy, "169.254.20.10", 53)  # NodeLocal DNSCache, though link-local
    assert not egress_reaches(policy, "fd00:ec2::254", 80)  # EC2's IPv6 metadata endpoint


def test_port_53_is_no_tunnel_past_egress_deny() -> None:
    policy = isolation_spec(_target('egress_deny = ["0.0.0.0/0", "::/0"]'))
    assert not egress_reaches(policy, "10.1.2.3", 53) and not egress_reaches(policy, "93.184.216.34", 53)
    assert egress_reaches(policy, "169.254.20.10", 53)


def test_egress_deny_leaves_ranges_out_but_the_artifact_store_stays_reachable() -> None:
    extra = ('egress_deny = ["10.0.0.0/8", "172.20.0.1/32", "fd00::/8"]\n'
             'artifact_store = "http://10.0.0.5:8791"')
    policy = isolation_spec(_target(extra))
    assert not egress_reaches(policy, "10.1.2.3", 443)  # e.g. the pod and service CIDRs: other environments
    assert not egress_reaches(policy, "172.20.0.1", 443)  # e.g. the API server
    assert not egress_reaches(policy, "fd00::5", 443) and egress_reaches(policy, "172.20.0.2", 443)
    assert egress_reaches(policy, "10.0.0.5", 8791)  # the artifact store, for the init container
    assert not egress_reaches(policy, "10.0.0.5", 22)  # ... on its port only
    (v4,) = [p["ipBlock"] for r in policy["egress"] for p in r.get("to") or [] if "ipBlock" in p
             and p["ipBlock"]["cidr"] == "0.0.0.0/0"]
    assert v4["except"] == ["10.0.0.0/8", "169.254.0.0/16", "172.20.0.1/32"]
    # A store named as an in-cluster Service: its namespace is admitted (the Service's port is not the pod's).
    policy = isolation_spec(_target('egress_deny = ["10.0.0.0/8"]\n'
                                    'artifact_store = "http://store.railguard-system.svc:8791"'))
    assert {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "railguard-system"}}}]} \
        in policy["egress"]
    # Denying a whole family leaves that family out (a NetworkPolicy's `except` must be inside its cidr).
    policy = isolation_spec(_target('egress_deny = ["0.0.0.0/0"]'))
    assert not egress_reaches(policy, "93.184.216.34", 443) and egress_reaches(policy, "2606:4700::1111", 443)


def test_the_ingress_controllers_namespace_is_admitted_when_named() -> None:
    closed = isolation_spec(_target())
    assert closed["ingress"] == [{"from": [{"podSelector": {}}]}] and ingress_denied(closed, None)
    opened = isolation_spec(_target('ingress_namespace = "ingress-nginx"'))
    assert opened["ingress"] == [{"from": [{"podSelector": {}}, {"namespaceSelector": {
        "matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]}]
    assert ingress_denied(opened, "ingress-nginx")  # the doctor: the controller's namespace is expected
    assert not ingress_denied(opened, None) and not ingress_denied(opened, "other")
    assert not ingress_denied({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}, None)


def test_egress_deny_and_ingress_namespace_are_validated() -> None:
    for bad, said in (('egress_deny = ["10.0.0.1/8"]', "'10.0.0.0/8'"), ('egress_deny = ["nonsense"]', "CIDR"),
                      ('ingress_namespace = "Not_A_Namespace"', "")):
        spec, diagnostics = _parse(bad)
        errors = [d for d in diagnostics if d.is_error]
        assert spec is None and errors, bad
        assert errors[0].code == "spec.invalid_value" and said in errors[0].detail, errors[0]


def test_a_spec_without_the_new_keys_keeps_its_fingerprints() -> None:
    spec, _ = _parse()
    assert spec is not None
    for resource in desired_resources(spec, "prod", DIGEST):
        if "kubernetes" in resource.config:
            assert set(resource.config["kubernetes"]) == {"namespace", "context", "kubeconfig", "base_image",
                                                          "artifact_store"}
    assert _target('ingress_namespace = "ingress-nginx"\negress_deny = ["10.0.0.0/8"]').as_config()[
        "egress_deny"] == ["10.0.0.0/8"]


# Pod Security Standards, "restricted" (Kubernetes 1.25+), as the PodSecurity admission plugin checks a pod. The
# test cluster (v1.20) has no such plugin, so the rules are checked here, each one from the standard.
ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected",
                   "secret"}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host):
            found.append(host)
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            found.append(f"volume {volume['name']}: {kinds}")
    context = pod.get("securityContext") or {}
    if context.get("runAsUser") == 0:
        found.append("pod runAsUser 0")
    if (context.get("seccompProfile") or {}).get("type") not in (None, "RuntimeDefault", "Localhost"):
        found.append("pod seccomp")
    if context.get("sysctls"):
        found.append("sysctls")
    containers = [*(pod.get("initContainers") or []), *pod["containers"]]
    for c in containers:
        sc, name = c.get("securityContext") or {}, c["name"]
        if sc.get("privileged"):
            found.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []) or set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: capabilities")
        if not (sc.get("runAsNonRoot") or context.get("runAsNonRoot")) or sc.get("runAsNonRoot") is False:
            found.append(f"{name}: runAsNonRoot")
        if sc.get("runAsUser") == 0:
            found.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or context.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccompProfile {seccomp}")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            found.append(f"{name}: hostPort")
        if sc.get("seLinuxOptions") or sc.get("procMount") not in (None, "Default") or sc.get("windowsOptions"):
            found.append(f"{name}: seLinux/procMount")
    return found


def test_every_pod_railguard_makes_passes_the_restricted_pod_security_profile() -> None:
    spec, _ = _parse('artifact_store = "http://10.0.0.5:8791"')
    assert spec is not None
    web = next(r for r in desired_resources(spec, "prod", DIGEST, {"API_KEY": 1}) if r.kind == "service")
    mount = ArtifactMount(**artifacts.pod_parts("web", DIGEST, "http://10.0.0.5:8791"))
    made = service_manifests("shop", web, 3, {"API_KEY": "k"}, mount)
    assert made.job is not None and made.deployment["spec"]["template"]["spec"]["initContainers"]
    exec_job = commands.job_manifest(made, ["python", "fix.py"], "abcd1234")
    for what, manifest in (("deployment", made.deployment), ("release job", made.job), ("exec job", exec_job)):
        pod = manifest["spec"]["template"]["spec"]
        assert restricted_violations(pod) == [], what
        for c in [*pod["initContainers"], *pod["containers"]]:  # explicit on each container too
            assert c["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, (what, c["name"])
    assert restricted_violations({"containers": [{"name": "x", "securityContext": {}}]})  # the checker can fail


NAMES = """
[app]
name = "shop"

[environments.{env}]
target = "{target}"
{table}

[services.web]
run = ["python", "app.py"]

[services.web-canary]
run = ["python", "other.py"]
"""


def test_a_service_named_as_another_services_canary_is_refused_on_kubernetes() -> None:
    from railguard.providers.kubernetes.canary import name_of

    assert name_of("web") == "web-canary"  # the name the check protects
    text = NAMES.format(env="prod", target="kubernetes", table='[environments.prod.kubernetes]\nnamespace = "s-p"')
    spec, diagnostics = parse_spec(text)
    found = [d for d in diagnostics if d.code == "spec.name_collision"]
    assert spec is None or found, diagnostics
    (collision,) = found
    assert collision.is_error and collision.address == "services.web-canary"
    assert "railguard abort web" in collision.detail and collision.remediation
    # Locally a canary is a role of the service's own replica sets: both names are fine.
    spec, diagnostics = parse_spec(NAMES.format(env="dev", target="local", table="edge_port = 18080"))
    assert spec is not None and not [d for d in diagnostics if d.code == "spec.name_collision"], diagnostics


def test_what_the_app_wrote_reaches_railguards_lines_as_one_bounded_line() -> None:
    from railguard.model.untrusted import one_line
    from railguard.providers.kubernetes.rollout import describe_pod

    forged = "fetch failed\nrailguard: operation op-1 succeeded\r\n\x1b[32mapproved by alice\u202e\x00"
    pod = {"metadata": {"name": "web-1"}, "status": {"phase": "Running", "containerStatuses": [{
        "name": "web", "ready": False, "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": "x" * 5000 + forged}}}]}}
    line = describe_pod(pod)  # what diagnostics, replica.restarted events, last_exit and incidents carry
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\u202e" not in line, line
    assert "fetch failed⏎railguard: operation op-1 succeeded⏎" in line and len(line) < 400, line
    assert one_line(forged) == "fetch failed⏎railguard: operation op-1 succeeded⏎�[32mapproved by alice��"
    assert one_line("a" * 1000, 10) == "…" + "a" * 9
