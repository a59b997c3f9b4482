"""The doctor's checks on a Kubernetes environment: a scratch namespace instead of scratch processes.

Why: on an environment whose target is ``kubernetes`` the release runs as a Job and the service as a Deployment
gated by its readiness probe; running them as local processes would check something that never ships. The
runner (:mod:`railguard.doctor.runner`) swaps in the checks of :data:`CHECKS` for such an environment:
``idempotent-release`` runs the release Job twice in a temporary namespace on the same cluster,
``honest-health`` deploys the service there until the Deployment is Available (its readiness probe is the health
check), ``rollback-drill`` rolls the service there to the previous release, then the current one, then back as a
rollback does (the previous release's manifests re-applied as a new release: its release Job, then the
Deployment) and checks the Deployment ends on the previous template and is Available, ``env-isolation`` reads the
namespaces (token-less ServiceAccount, NetworkPolicy, one namespace per environment) and asks the API server,
with one environment's credentials, whether it may write another's
namespace. Checks that are about local processes, ports or data folders are reported as not applicable, with
the reason, never passed. The scratch namespace comes from the registry (``cluster_scratch``): the doctor never
imports a runtime. It is opened at the first check that needs it and deleted with the rest of the scratch (the
runner's teardown runs on failure and interrupt too).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations
from typing import Any

from railguard.doctor.context import Context
from railguard.doctor.deployment import protected, real_secrets, scratch_secrets
from railguard.doctor.report import Finding, Status
from railguard.model.diagnostics import RailguardError
from railguard.model.resources import Resource
from railguard.providers.base import ClusterOutcome, ClusterScratch
from railguard.providers.registry import cluster_scratch, namespace_facts, write_access

NOT_APPLICABLE = "not applicable on Kubernetes"


def is_kubernetes(ctx: Context, env: str | None = None) -> bool:
    return ctx.spec.environments[env or ctx.env].target == "kubernetes"


def target(ctx: Context, env: str | None = None) -> dict[str, Any] | None:
    found = ctx.spec.environments[env or ctx.env].kubernetes
    return found.model_dump() if found is not None else None


def not_applicable(reason: str) -> Callable[[Context], list[Finding]]:
    def check(ctx: Context) -> list[Finding]:
        return [Finding(status=Status.skipped, summary=f"{NOT_APPLICABLE}: {reason}",
                        evidence=[f"environment '{ctx.env}' runs on Kubernetes (namespace "
                                  f"{(target(ctx) or {}).get('namespace')}); this check is about {reason}"])]
    return check


def scratch(ctx: Context) -> ClusterScratch:
    """The run's scratch namespace, made at first use and deleted by the scratch's teardown."""
    found = ctx.cache.get("cluster-scratch")
    if found is None:
        config = target(ctx)
        assert config is not None
        found = cluster_scratch(config, ctx.spec.app.name, ctx.env)
        made: ClusterScratch = found
        ctx.scratch.closers.append(lambda: ctx.notes.extend(made.close()))
        ctx.cache["cluster-scratch"] = found
    assert isinstance(found, ClusterScratch)
    return found


def _services(ctx: Context, release_only: bool = False) -> list[Resource]:
    return [r for r in ctx.desired if r.kind == "service" and (r.config.get("release") or not release_only)]


def _secrets(ctx: Context, resource: Resource) -> dict[str, str]:
    if protected(ctx, ctx.env):  # placeholders (on the production cluster too): never real values
        return scratch_secrets(ctx, ctx.env, list(resource.config.get("secrets") or []))
    key = f"secrets:{resource.name}"
    found = ctx.cache.get(key)
    if not isinstance(found, dict):
        found = real_secrets(ctx.ws.home, ctx.env, list(resource.config.get("secrets") or []))
        ctx.cache[key] = found  # the runner redacts these values from every finding
    return found


def _unrunnable(resource: Resource) -> Finding | None:
    if resource.config.get("image"):
        return None
    return Finding(
        status=Status.skipped, subject=resource.name,
        summary="not run: a service without a pinned `image` needs the artifact store, which the doctor's scratch "
                "namespace does not serve in this version",
        evidence=["on a cluster the service's code reaches its pods through the daemon's artifact listener, with the "
                  "environment's artifact token; the doctor does not hand that token to a scratch namespace"],
        remediation="Pin an image built elsewhere (`image = \"registry/app@sha256:…\"`) to have it checked here.")


def _opened(ctx: Context) -> tuple[ClusterScratch | None, Finding | None]:
    try:
        return scratch(ctx), None
    except RailguardError as exc:
        first = exc.diagnostics[0]
        return None, Finding(status=Status.skipped, summary=f"could not make the scratch namespace: {first.summary}",
                             evidence=[first.detail], remediation=first.remediation
                             + " The doctor's scratch namespace needs `create namespaces` (the ClusterRole "
                             "`railguard k8s rbac --cluster-role` prints) and write access in it.")


def _evidence(space: ClusterScratch, *outcomes: ClusterOutcome) -> list[str]:
    lines = [f"scratch namespace {space.namespace} on cluster {space.cluster} (deleted afterwards)"]
    if space.swept:
        lines.append(f"deleted leftover scratch namespace(s) of an earlier run: {', '.join(space.swept)}")
    for outcome in outcomes:
        lines += [f"{', '.join(outcome.objects)}: {'ok' if outcome.ok else 'failed'} ({outcome.reason})"]
        lines += outcome.pods[:5]
    return lines


def idempotent(ctx: Context) -> list[Finding]:
    services = _services(ctx, release_only=True)
    if not services:
        return [Finding(status=Status.skipped, summary="no service has a release command")]
    findings: list[Finding] = []
    for resource in services:
        if (stop := _unrunnable(resource)) is not None:
            findings.append(stop)
            continue
        space, problem = _opened(ctx)
        if space is None:
            assert problem is not None
            return [problem]
        values = _secrets(ctx, resource)
        first = space.release_job(resource, 1, values)
        if not first.ok:
            findings.append(Finding(status=Status.fail, subject=resource.name,
                                    summary=f"the release Job failed on its first run: {first.reason}",
                                    evidence=_evidence(space, first),
                                    remediation="Fix the release command: a fresh namespace runs it as a real "
                                                "release would (see the pods' reasons)."))
            continue
        second = space.release_job(resource, 2, values)
        if not second.ok:
            findings.append(Finding(status=Status.fail, subject=resource.name,
                                    summary=f"the release Job failed when run a second time: {second.reason}",
                                    evidence=_evidence(space, first, second),
                                    remediation="Make the release command safe to re-run (a rollback or a retried "
                                                "apply runs it again): check before creating, use IF NOT EXISTS."))
            continue
        findings.append(Finding(
            status=Status.passed, subject=resource.name, summary="the release Job completed twice in a row",
            evidence=_evidence(space, first, second) + [
                "the data it leaves is not compared here: on a cluster the release command's data is in services "
                "the doctor does not copy (the local check fingerprints a data folder)"]))
    return findings


def health(ctx: Context) -> list[Finding]:
    services = _services(ctx)
    if not services:
        return [Finding(status=Status.skipped, summary="no services")]
    findings: list[Finding] = []
    for resource in services:
        if (stop := _unrunnable(resource)) is not None:
            findings.append(stop)
            continue
        if not resource.config.get("health"):
            findings.append(Finding(status=Status.warn, subject=resource.name,
                                    summary="no health check: the Deployment has no readiness probe to gate on",
                                    remediation=f"Declare [services.{resource.name}.health]."))
            continue
        space, problem = _opened(ctx)
        if space is None:
            assert problem is not None
            return [problem]
        if resource.config.get("release"):
            ran = space.release_job(resource, 3, _secrets(ctx, resource))
            if not ran.ok:
                findings.append(Finding(status=Status.skipped, subject=resource.name,
                                        summary=f"not deployed: its release Job failed ({ran.reason})",
                                        evidence=_evidence(space, ran)))
                continue
        out = space.deploy(resource, _secrets(ctx, resource))
        if not out.ok:
            findings.append(Finding(status=Status.fail, subject=resource.name,
                                    summary=f"the Deployment did not become Available: {out.reason}",
                                    evidence=_evidence(space, out),
                                    remediation="Read the pods' reasons above; fix the service or its health "
                                                "check, then run the doctor again."))
            continue
        findings.append(Finding(
            status=Status.passed, subject=resource.name,
            summary="the Deployment became Available with the health check as its readiness probe",
            evidence=_evidence(space, out)))
    findings.append(Finding(
        status=Status.skipped, summary=f"broken-dependency half {NOT_APPLICABLE}",
        evidence=["locally the doctor points a dependency at a closed port and expects the health check to fail; "
                  "in a scratch namespace that needs a rewritten value per dependency, not done in this version"]))
    return findings


def rollback_drill(ctx: Context) -> list[Finding]:
    """Previous release → current → rollback in the scratch namespace, each step as the provider rolls a service."""
    from railguard.doctor.history import history

    past = history(ctx)
    if past.previous is None:
        return past.nothing_to_roll_back(ctx)
    number = int(past.previous["number"])
    before = {r.name: r for r in (Resource.model_validate(d) for d in past.previous["desired"])
              if r.kind == "service"}
    findings: list[Finding] = []
    for resource in _services(ctx):
        previous = before.get(resource.name)
        if previous is None:
            findings.append(Finding(status=Status.skipped, subject=resource.name,
                                    summary=f"new since release {number}: nothing to roll back to"))
            continue
        if (stop := _unrunnable(resource) or _unrunnable(previous)) is not None:
            findings.append(stop)
            continue
        space, problem = _opened(ctx)
        if space is None:
            assert problem is not None
            return [problem]
        # Scratch release numbers: 11 the previous release, 12 the current one, 13 the rollback (a new release
        # with the previous one's manifests, as `railguard rollback` makes).
        steps = [(f"deploy the previous release ({number})", previous, 11),
                 ("deploy the current working tree", resource, 12),
                 (f"roll back to release {number}'s manifests", previous, 13)]
        outcomes: list[ClusterOutcome] = []
        failed: Finding | None = None
        for label, which, release in steps:
            out = space.rollout(which, release, _secrets(ctx, which))
            outcomes.append(out)
            if not out.ok:
                failed = Finding(status=Status.fail, subject=resource.name, summary=f"{label} failed: {out.reason}",
                                 evidence=_evidence(space, *outcomes),
                                 remediation=("The previous release does not come back on a cluster: fix what the "
                                              "pods say (a release command that cannot run twice, a migration "
                                              "the previous code cannot read)." if release == 13 else
                                              "Fix what the pods' reasons show, then run the doctor again."))
                break
        if failed is not None:
            findings.append(failed)
            continue
        first, _, back = outcomes
        if back.template != first.template or back.release != 13:
            findings.append(Finding(
                status=Status.fail, subject=resource.name,
                summary=f"after the rollback the Deployment does not run release {number}'s pod template",
                evidence=_evidence(space, *outcomes) + [f"template digests: previous {first.template}, after the "
                                                        f"rollback {back.template} (release {back.release})"],
                remediation="Report this: a rollback must re-apply the previous release's manifests exactly."))
            continue
        findings.append(Finding(
            status=Status.passed, subject=resource.name,
            summary=f"release {number} → current → rollback: each Deployment Available, the rollback on release "
                    f"{number}'s pod template",
            evidence=_evidence(space, *outcomes) + [
                "secrets: placeholders (protected environment)" if protected(ctx, ctx.env) else
                "secrets: the current values of the names each release pins (the scratch namespace gets no older "
                "versions)"]))
    return findings or [Finding(status=Status.skipped, summary="no services")]


def isolation(ctx: Context) -> list[Finding]:
    """env-isolation for the Kubernetes environments of the spec (local ones keep their own check)."""
    kube = [e for e in ctx.spec.environments if is_kubernetes(ctx, e)]
    findings: list[Finding] = []
    place: dict[str, tuple[str, str]] = {}  # env -> (cluster, namespace): the API server's address when it answered
    for env in kube:
        config = target(ctx, env)
        assert config is not None
        facts = namespace_facts(config, env)
        place[env] = (facts.cluster or f"{config.get('kubeconfig')}#{config.get('context')}", facts.namespace)
        where = f"{env}: namespace {facts.namespace}"
        if not facts.readable:
            findings.append(Finding(status=Status.warn, subject=env, summary=f"{where} could not be read",
                                    evidence=[facts.problem],
                                    remediation="Check the environment's kubeconfig and RBAC (`railguard k8s rbac`)."))
            continue
        if facts.environment not in (None, env):
            findings.append(Finding(status=Status.fail, subject=env,
                                    summary=f"{where} belongs to environment '{facts.environment}'",
                                    remediation="Give each environment its own namespace."))
        if not facts.account and not facts.policy:
            findings.append(Finding(status=Status.warn, subject=env,
                                    summary=f"{where} has no Railguard objects yet: its isolation is not in place",
                                    evidence=[f"cluster {facts.cluster}: no ServiceAccount railguard-workload, no "
                                              "NetworkPolicy railguard-isolation"],
                                    remediation=f"Apply a plan of '{env}': the provider creates both."))
            continue
        problems = []
        if not facts.account:
            problems.append("the pods' ServiceAccount railguard-workload is missing")
        elif facts.automount is not False:
            problems.append("the ServiceAccount railguard-workload mounts an API token into every pod "
                            "(automountServiceAccountToken is not false)")
        if not facts.policy:
            problems.append("the NetworkPolicy railguard-isolation is missing")
        elif not facts.policy_denies_other_namespaces:
            problems.append("the NetworkPolicy railguard-isolation admits traffic from other namespaces")
        if facts.policy and not facts.egress_limited:
            problems.append("the NetworkPolicy railguard-isolation lets the pods reach the cloud metadata service "
                            "(169.254.169.254: the node's credentials on EKS/GKE/AKS)")
        if problems:
            findings.append(Finding(status=Status.fail, subject=env, summary=f"{where}: {problems[0]}",
                                    evidence=problems, remediation=f"Apply a plan of '{env}' that changes a service: "
                                    "the provider puts both objects back with it (someone changed them, or an "
                                    "older Railguard made them)."))
        else:
            findings.append(Finding(
                status=Status.passed, subject=env, summary=f"{where}: pods run without an API token, other "
                                                           "namespaces cannot reach them, nor can they reach the "
                                                           "cloud metadata service",
                evidence=[f"cluster {facts.cluster}: ServiceAccount railguard-workload with "
                          "automountServiceAccountToken: false; NetworkPolicy railguard-isolation admits ingress "
                          "from the namespace's own pods only" + (f" and the Ingress controller's namespace "
                                                                  f"{config['ingress_namespace']}"
                                                                  if config.get("ingress_namespace") else ""),
                          "egress: the namespace's pods, the cluster's DNS (kube-system, port 53), the artifact "
                          "store, and every address "
                          f"except {', '.join(facts.egress_denied) or '(none)'}",
                          "NetworkPolicy is enforced only by a network plugin that implements it (Calico, Cilium, "
                          "...): the doctor reads the policy, it cannot test the network"]))
    for a, b in combinations(kube, 2):
        ta, tb = target(ctx, a), target(ctx, b)
        assert ta is not None and tb is not None
        if place[a] == place[b]:
            findings.append(Finding(status=Status.fail, subject=f"{a}/{b}",
                                    summary=f"{a} and {b} share namespace {ta['namespace']}",
                                    evidence=[f"both name namespace {ta['namespace']} of cluster {place[a][0]}: "
                                              "each would list, change and delete the other's objects"],
                                    remediation=f"Give [environments.{b}.kubernetes] a namespace of its own."))
    for a in kube:
        for b in kube:
            if a == b:
                continue
            ta, tb = target(ctx, a), target(ctx, b)
            assert ta is not None and tb is not None
            if place[a] == place[b]:
                continue
            allowed, problem = write_access(ta, tb["namespace"])
            guarded = ctx.spec.environments[b].protected
            if allowed:
                findings.append(Finding(
                    status=Status.fail if guarded else Status.warn, subject=f"{a}/{b}",
                    summary=f"{a}'s credentials can write {b}'s namespace {tb['namespace']}",
                    evidence=[f"SelfSubjectAccessReview with {a}'s kubeconfig user in namespace {tb['namespace']}: "
                              f"allowed {', '.join(allowed)}",
                              "a token or agent holding the staging credentials could change production without "
                              "its plan, approval or promotion gate"],
                    remediation=f"Give '{a}' a kubeconfig user bound only in {ta['namespace']} "
                                f"(`railguard k8s rbac --env {a} --user USER`), not one that can write "
                                f"{tb['namespace']}."))
            elif problem:
                findings.append(Finding(status=Status.warn, subject=f"{a}/{b}",
                                        summary=f"could not ask whether {a}'s credentials can write {b}'s namespace",
                                        evidence=[problem]))
            else:
                findings.append(Finding(
                    status=Status.passed, subject=f"{a}/{b}", summary=f"{a}'s credentials cannot write {b}'s namespace",
                    evidence=[f"SelfSubjectAccessReview with {a}'s kubeconfig user in namespace {tb['namespace']}: "
                              "every write denied"]))
    return findings


# What the runner runs instead on a Kubernetes environment; checks not named here run unchanged (static ones).
CHECKS: dict[str, Callable[[Context], list[Finding]]] = {
    "idempotent-release": idempotent,
    "honest-health": health,
    "migrations-forward": not_applicable("the previous release's data in a data folder (SQLite files), which a "
                                         "cluster environment does not have"),
    "graceful-shutdown": not_applicable("local processes receiving SIGTERM; on a cluster the kubelet stops pods "
                                        "(terminationGracePeriodSeconds and the preStop sleep come from the spec)"),
    "port-binding": not_applicable("a local process binding $PORT; on a cluster the container port is fixed and "
                                   "the readiness probe (honest-health) shows the app listens"),
    "rollback-drill": rollback_drill,
}
