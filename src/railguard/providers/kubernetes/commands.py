"""``railguard exec`` on Kubernetes: a one-off command as a Job made from the release's pod template.

Why: a one-off command (a migration, a data fix) must run with the exact context of one release — its image or
artifact init container, its variables, its secret versions, the environment's token-less ServiceAccount — and a
cluster has no process Railguard could start beside the pods. So the command is a Job ``<service>-exec-<id>``
whose pod is the release's Deployment pod (from :func:`railguard.providers.kubernetes.manifests.service_manifests`)
with the command as the container's, no probes, no ports, ``restartPolicy: Never``, ``backoffLimit: 0``,
``activeDeadlineSeconds`` as a backstop and ``ttlSecondsAfterFinished``; labelled as the release's objects plus
``railguard.dev/exec=<id>``. Railguard waits for the pod's container to terminate and reports its exit code from the
pod's status; the output comes from the pod log API when the cluster's log endpoint answers (that API makes the API
server dial the node's kubelet), otherwise the output says so. Either way the Job is deleted once its result is read
(``ttlSecondsAfterFinished`` is alpha on v1.20 and dropped unless its feature gate is on; it covers a daemon that
died meanwhile on newer clusters); a kill (``signal``) deletes it at once, its pod with it.

The command's stdin is not passed (no attach through the API server): an attached run gets a note on its stderr,
then the output. ``RAILGUARD_KUBE_POD_LOGS=off`` in the daemon's environment never calls the log API (a cluster
whose nodes must not be dialled, as in Railguard's tests). Guardrails are the engine's, as on the local runtime
(:mod:`railguard.engine.commands`: approval in a protected environment, audit, redaction by the daemon). Called
by :class:`railguard.providers.kubernetes.provider.KubernetesProvider` (``start_command``, and ``apply_change`` for
an approved ``command`` change).
"""

from __future__ import annotations

import os
import secrets
import signal as signals
import time
from typing import Any

from railguard.model.diagnostics import RailguardError, error
from railguard.model.plans import Change
from railguard.providers.kubernetes.cluster import Cluster
from railguard.providers.kubernetes.labels import ENVIRONMENT, SERVICE
from railguard.providers.kubernetes.manifests import Manifest, ServiceManifests
from railguard.providers.kubernetes.rollout import BAD_WAITING, describe_pod

EXEC = "railguard.dev/exec"
EXEC_OF = "railguard.dev/exec-of"  # the service: never railguard.dev/service, which the Service selects (no traffic)
POD_LOGS = "RAILGUARD_KUBE_POD_LOGS"
LOG_BYTES = 1_000_000
DEADLINE_S = 3600  # the Job's own limit, beyond any wait of the daemon's (which deletes it on its timeout)
TTL_S = 600
POLL_S = 0.5
NOT_STARTED = 127  # as a local command that could not be started
APPROVED_TIMEOUT_S = 3600.0  # an approved command's limit (as on the local runtime)
OUTPUT_LINES = 200  # of an approved command's output, kept in the journal


def job_manifest(made: ServiceManifests, argv: list[str], exec_id: str) -> Manifest:
    """The Job running ``argv`` in the pod of ``made``'s Deployment (pure)."""
    deployment = made.deployment
    meta = deployment["metadata"]
    service = meta["labels"][SERVICE]
    # Not the service's label: the Service would send requests to the pod, a deploy would retire the Job.
    owned = {k: v for k, v in deployment["spec"]["template"]["metadata"]["labels"].items() if k != SERVICE}
    owned |= {EXEC: exec_id, EXEC_OF: service}
    pod = dict(deployment["spec"]["template"]["spec"])
    container = {k: v for k, v in pod["containers"][0].items()
                 if k not in ("readinessProbe", "livenessProbe", "startupProbe", "lifecycle", "ports")}
    # Kubernetes expands $(VAR) in a command from the container's variables: the user's argv is taken literally.
    container["command"] = [a.replace("$(", "$$(") for a in argv]
    container.pop("args", None)
    pod["containers"] = [container]
    pod["restartPolicy"] = "Never"
    pod.pop("terminationGracePeriodSeconds", None)
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": f"{service}-exec-{exec_id}", "namespace": meta["namespace"],
                         "labels": owned},
            "spec": {"backoffLimit": 0, "activeDeadlineSeconds": DEADLINE_S, "ttlSecondsAfterFinished": TTL_S,
                     "template": {"metadata": {"labels": owned}, "spec": pod}}}


def new_id() -> str:
    return secrets.token_hex(4)


def logs_enabled() -> bool:
    return os.environ.get(POD_LOGS, "on").strip().lower() not in ("off", "0", "false", "no")


class KubeCommand:
    """A one-off command running as a Job: wait for its exit code, kill it (delete the Job), read its output."""

    def __init__(self, cluster: Cluster, job: str, stdio: tuple[int, int, int] | None) -> None:
        self.cluster, self.job = cluster, job
        self.code: int | None = None
        self.text = ""
        self._next = 0.0
        # An attached caller's terminal: written once the command ended (the descriptors are the daemon's copies).
        self._out = os.dup(stdio[1]) if stdio is not None else None
        self._err = os.dup(stdio[2]) if stdio is not None else None
        self._say(f"railguard: running as Job {job} in namespace '{cluster.namespace}' of cluster {cluster.name}; "
                  "its stdin is not connected (no attach through the API server)\n")

    @property
    def pid(self) -> int:
        return 0  # no local process: the command runs in the cluster

    def _say(self, text: str, out: bool = False) -> None:
        fd = self._out if out else self._err
        if fd is not None and text:
            try:
                os.write(fd, text.encode())
            except OSError:
                pass

    def wait(self, timeout: float | None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.code is None:
            now = time.monotonic()
            if now >= self._next:  # the API is asked every POLL_S, however often the caller polls
                self._next = now + POLL_S
                self._look()
                if self.code is not None:
                    break
            if deadline is not None and time.monotonic() >= deadline:
                return None
            pause = self._next - time.monotonic()
            if deadline is not None:
                pause = min(pause, deadline - time.monotonic())
            time.sleep(max(0.01, pause))
        return self.code

    def _look(self) -> None:
        try:
            # The Job first: a pod's termination is written before the Job controller marks the Job Failed, so
            # pods listed after a Failed Job always show the exit code (listed before, a race reads -9).
            job = self.cluster.get("Job", self.job)
            pods = self.cluster.list("Pod", labels={"job-name": self.job})
        except RailguardError as exc:
            self._end(NOT_STARTED, f"railguard: the cluster could not be read: {exc.diagnostics[0].summary}\n")
            return
        if job is None:
            self._end(-int(signals.SIGKILL), f"railguard: Job {self.job} is gone (deleted before it ended)\n")
            return
        for pod in pods:
            status = pod.get("status") or {}
            for c in status.get("containerStatuses") or []:
                terminated = (c.get("state") or {}).get("terminated")
                if terminated is not None:
                    self._end(int(terminated.get("exitCode", 1)), self._logs(pod))
                    return
                waiting = ((c.get("state") or {}).get("waiting") or {}).get("reason")
                if waiting in BAD_WAITING:
                    self._end(NOT_STARTED, f"railguard: the command could not start: {describe_pod(pod)}\n")
                    return
            if status.get("phase") == "Failed":  # an init container (the artifact's fetch) failed: never ran
                self._end(NOT_STARTED, f"railguard: the command could not start: {describe_pod(pod)}\n")
                return
        failed = next((c for c in (job.get("status") or {}).get("conditions") or []
                       if c.get("type") == "Failed" and c.get("status") == "True"), None)
        if failed is not None:
            self._end(-int(signals.SIGKILL), f"railguard: Job {self.job} failed: {failed.get('reason')}: "
                      f"{failed.get('message', '')}\n")

    def _logs(self, pod: dict[str, Any]) -> str:
        name = pod["metadata"]["name"]
        if not logs_enabled():
            return (f"railguard: the output of pod {name} was not read: pod logs are off on this daemon "
                    f"({POD_LOGS}=off)\n")
        try:
            answer = self.cluster.http.get(f"/api/v1/namespaces/{self.cluster.namespace}/pods/{name}/log",
                                           params={"limitBytes": str(LOG_BYTES)})
            if answer.status_code == 200:
                return answer.text
            reason = f"HTTP {answer.status_code}: {answer.text.strip()[:200]}"
        except Exception as exc:  # any transport problem: the exit code stands without the output
            reason = f"{type(exc).__name__}: {exc}"
        return (f"railguard: the output of pod {name} could not be read: the cluster's log endpoint was not "
                f"reachable ({reason})\n")

    def _end(self, code: int, text: str) -> None:
        self.code, self.text = code, text
        self._say(text, out=not text.startswith("railguard: "))  # the output to stdout, a note of ours to stderr
        self._close()
        try:
            self.cluster.delete("Job", self.job)  # its pod with it; ttlSecondsAfterFinished is a backstop only
        except RailguardError:
            pass

    def _close(self) -> None:
        for fd in (self._out, self._err):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._out = self._err = None

    def signal(self, signum: int) -> None:
        """A signal that would end a process ends it: the Job and its pod are deleted (no signal reaches a pod
        through the API); a terminal's resize (SIGWINCH) is ignored."""
        if self.code is not None or signum == int(signals.SIGWINCH):
            return
        try:
            self.cluster.delete("Job", self.job)
        finally:
            self.code = -int(signum)
            self.text = self.text or f"railguard: Job {self.job} deleted (signal {signum})\n"
            self._say(self.text)
            self._close()

    def output(self) -> str:
        return self.text


def start(cluster: Cluster, made: ServiceManifests, argv: list[str], address: str,
          stdio: tuple[int, int, int] | None, check: Any) -> KubeCommand:
    """Create the Job (and the release's Secret if it is gone), after the manifests' checks; the command object."""
    if not argv:
        raise RailguardError(error("exec.not_found", "No command to run", "The command line is empty.",
                                   "Pass the command after `--`.", address=address))
    job = job_manifest(made, argv, new_id())
    sent = [m for m in (made.secret, job) if m is not None]
    check(cluster, sent, address)
    mine = job["metadata"]["labels"]
    for stale in cluster.list("Job", labels={EXEC_OF: mine[EXEC_OF], ENVIRONMENT: mine[ENVIRONMENT]}):
        if any(
                c.get("status") == "True" and c.get("type") in ("Complete", "Failed")
                for c in (stale.get("status") or {}).get("conditions") or []):
            cluster.delete("Job", stale["metadata"]["name"])  # a finished one a stopped daemon did not delete
    for manifest in sent:
        cluster.apply(manifest)
    return KubeCommand(cluster, job["metadata"]["name"], stdio)


def command_of(change: Change) -> tuple[list[str], int]:
    """The argv and release a ``command`` change carries in its diff (covered by the plan's hash)."""
    found = {d.path: d.after for d in change.diff}
    argv, release = found.get("command"), found.get("release")
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv) and isinstance(release, int)):
        raise ValueError(f"{change.address}: a command change without its command and release")
    return [str(a) for a in argv], release
