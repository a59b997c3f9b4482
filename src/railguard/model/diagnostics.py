"""Diagnostics: the one error shape of Railguard.

Every problem a user or an agent can hit, from a typo in ``railguard.toml`` to a
stale plan, travels as a :class:`Diagnostic`. The CLI renders them, ``--json``
prints them, the MCP server returns them. Codes are stable and all declared in
:data:`CODES`; ``docs/diagnostics.md`` documents each one and a test keeps the two
in sync. Code that hits a problem either returns diagnostics or raises
:class:`RailguardError` carrying them; the CLI turns the latter into output and an
exit code, never a traceback.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Severity(StrEnum):
    error = "error"
    warning = "warning"
    info = "info"


# Every code the code base can emit, with the one-line meaning used in docs.
CODES: dict[str, str] = {
    # the spec file
    "spec.not_found": "The spec file does not exist.",
    "spec.unreadable": "The spec file could not be read.",
    "spec.toml_syntax": "The spec file is not valid TOML.",
    "spec.too_large": "The spec file is larger than Railguard reads.",
    "spec.unknown_key": "A key the spec schema does not define.",
    "spec.verify_window": "A service's `verify` window is longer than its environment's `rollback_window` while "
                          "`on_regression = \"rollback\"`.",
    "incident.not_found": "No incident has that id.",
    "plan.known_bad": "The plan deploys a service config that was rolled back because of an incident.",
    "spec.missing_key": "A required key is missing.",
    "spec.invalid_value": "A value has the wrong type or is out of range.",
    "spec.invalid_name": "A name is not a safe identifier.",
    "spec.invalid_duration": "A duration string could not be parsed.",
    "spec.unknown_service": "A reference names a service that does not exist.",
    "spec.dependency_cycle": "Services depend on each other in a cycle.",
    "spec.duplicate_route": "Two services claim the same host and path in one environment.",
    "spec.route_without_port": "A service with routes does not listen on a port.",
    "spec.static_outside": "A static folder is absolute or climbs out of the app source with `..`.",
    "spec.static_without_route": "A service declares static folders but has no route to serve them on.",
    "spec.privileged_port": "An edge or HTTPS port below 1024 that this user may not bind (not root, no "
                            "CAP_NET_BIND_SERVICE).",
    "spec.reserved_variable": "A variable name is reserved by Railguard.",
    "spec.env_secret_conflict": "The same name is both a plain variable and a secret.",
    "spec.secret_in_env": "A plain variable looks like it holds a secret.",
    "spec.edge_port_conflict": "Two environments use the same edge port.",
    "spec.health_timing": "Health check timings do not fit together.",
    "spec.unknown_environment": "The requested environment is not in the spec.",
    "spec.no_environments": "The spec defines no environment.",
    "spec.namespace_shared": "Two Kubernetes environments name the same namespace of the same cluster.",
    "spec.not_applicable": "A key the environment's target does not use (a local-only key on Kubernetes).",
    "spec.invalid_policy": "A policy rule does not compile, reads an unknown field, or is not boolean.",
    "spec.shared_resource": "Two environments share a host, data folder or database location.",
    "spec.data_dir_unsafe": "A data folder is inside the state folder, an artifact, a system folder, or contains the "
                            "state folder.",
    "spec.base_image_unpinned": "A protected Kubernetes environment runs services on a base image named by a tag.",
    "spec.name_collision": "On Kubernetes, a service is named as another service's canary Deployment "
                           "(<name>-canary).",
    "spec.user_reserved": "An environment names root or one of Railguard's own OS accounts as its user.",
    # the state folder
    "state.unwritable": "The state folder cannot be created or written.",
    "state.corrupt": "The state database is damaged or not a Railguard store.",
    "state.too_new": "The state database was written by a newer Railguard.",
    "state.locked": "Another process holds the state lock.",
    "state.stale_lock": "The state lock is held by a process that no longer exists.",
    "state.illegal_transition": "A status change its lifecycle does not allow (an operation finished twice, ...).",
    # the app source snapshot
    "source.too_large": "The source snapshot is over its size limit ([app].source_limit_mb).",
    "source.secret_excluded": "Files named like secrets (.env, *.pem, id_rsa...) were left out of the snapshot.",
    "source.output_excluded": "Railguard's own saved --json answers (plan.json) were left out of the snapshot.",
    "source.changed": "Info: the files a plan's source adds, removes or changes against the live release's.",
    "source.special_skipped": "FIFOs, sockets or devices in the source folder were skipped, never opened.",
    "source.link_skipped": "Symlinks leading out of the source folder (or to an excluded file) were skipped.",
    "source.unreadable": "A file of the source folder could not be read.",
    "source.not_owned": "As root, the app source is a folder of another user than the spec's folder's owner.",
    # plans and apply
    "plan.not_found": "No saved plan has that id.",
    "plan.hash_mismatch": "The saved plan does not match its content hash (tampered).",
    "plan.stale": "The live state moved since the plan was made.",
    "plan.spec_changed": "The spec on disk no longer matches a plan made from a proposed spec (or a plan saved before "
                         "plans carried their source).",
    "plan.errored": "The plan has errors and cannot be applied.",
    "plan.already_applied": "The plan was already applied.",
    "plan.proposed": "The plan was computed from proposed spec text, not the spec file on disk.",
    "apply.step_failed": "A change could not be applied by the provider.",
    # the local runtime
    "doctor.fixture_failed": "The doctor's data fixture ([doctor] fixture) could not be loaded.",
    "data.loss_detected": "A release command's rehearsal on a copy of the data lost tables, columns or rows.",
    "data.rehearsal_failed": "A release command failed in its rehearsal (once, or on a second run).",
    "data.rehearsal_reached_real_database": "A release command's rehearsal tried to connect to the real database "
                                            "(refused by the server).",
    "restore.backup_missing": "The backup to restore does not exist (never taken, or deleted by retention).",
    "restore.checksum_mismatch": "A backup's copy no longer matches the checksum taken with it.",
    "restore.unconfirmed": "A restore was applied without its database address typed back.",
    "rollback.schema_changed": "The live schema lost what the rollback target's code reads.",
    "spec.unknown_database": "A service uses a database the spec does not define (or deletes).",
    "spec.database_variable": "A service sets the variable its database's URL is injected as.",
    "database.start_failed": "A managed database's server did not start; the services that use it were not started.",
    "database.missing": "A service uses a database that was never applied in the environment.",
    "database.delete_unconfirmed": "A plan deleting (or emptying) a database was applied without its address typed.",
    "data.snapshot_failed": "The snapshot before a release command failed; the release command did not run.",
    "restore.failed": "A Postgres backup could not be written back into its database.",
    "rollout.build_failed": "The service's build command failed.",
    "rollout.static_missing": "A declared static folder is not in the artifact after the build.",
    "rollout.static_outside": "A static folder resolves outside the artifact, is not a folder, or holds a symlink "
                              "out of it.",
    "rollout.release_failed": "The release command (e.g. migrations) failed.",
    "rollout.start_failed": "A replica's command could not be started.",
    "rollout.data_dir_taken": "The data folder exists, is not empty and is not the environment's: not handed over.",
    "rollout.user_taken": "The OS user the spec names is an existing account or another environment's.",
    "exec.user_taken": "The OS user the spec names for a command is an existing account or another environment's.",
    "exec.data_dir": "The environment's data folder could not be prepared for a command.",
    "rollout.crashed": "A new replica exited before it became healthy.",
    "rollout.ignores_port": "A new replica listens on another port than the one in $PORT.",
    "rollout.port_taken": "Another process or OS user listens on the port allocated to a new replica.",
    "rollout.unhealthy": "A new replica did not pass its readiness gate in time.",
    "rollout.artifact_missing": "The release's artifact is gone and cannot be rebuilt faithfully.",
    "canary.step_failed": "A Kubernetes canary Deployment did not reach its step's replicas healthy.",
    "canary.promote_failed": "Promoting a Kubernetes canary failed; the previous release was put back.",
    "canary.none": "`promote-step` or `abort` named a service that has no canary in progress.",
    "canary.step_mismatch": "`promote-step --plan` named a plan that is not the canary's current step (another "
                            "release or share, already used, or not a plan of one canary step).",
    "canary.step_plan": "`apply` named a plan of a canary step; it is applied by `promote-step --plan`.",
    "canary.step_moved": "`promote-step` asked to move a canary from a share it has left (a doubled or retried "
                         "step, or `--from` another share); nothing moved.",
    "canary.in_progress": "A plan would change a service whose canary is in progress; promote or abort it first.",
    "artifact.tampered": "A built artifact or its dependency layer changed after it was built; start refused.",
    "artifact.write_refused": "A replica or release command tried to write into its read-only release.",
    # artifacts on Kubernetes: the daemon's artifact listener, bundles, `railguard k8s rbac`
    "artifact.bad_request": "The artifact listener was asked for something other than /v1/artifacts/<sha256>.",
    "artifact.token_required": "An artifact request carried no artifact token.",
    "artifact.forbidden": "An artifact request carried a token that is no environment's artifact token.",
    "artifact.unknown_digest": "No release of the token's environment names that artifact, or it is no longer stored.",
    "artifact.store_missing": "A service without an image runs in an environment that sets no artifact store.",
    "artifact.image_unpinned": "A service's image is not pinned by digest.",
    "artifact.bundle_failed": "A service's artifact bundle could not be made (its source snapshot is gone).",
    "artifact.deps_failed": "A service's dependencies cannot be installed as wheels for the pod's Python.",
    "kubernetes.wrong_target": "A Kubernetes command named an environment whose target is not kubernetes.",
    "edge.no_ca": "`railguard edge-ca`: the environment has no HTTPS (no `https_port`) or no certificate was "
                  "issued yet.",
    "edge.port_in_use": "The environment's edge port is taken by another program.",
    "edge.failed": "The Caddy edge could not be started or configured.",
    "rollback.no_target": "There is no release to roll back to.",
    "operation.interrupted": "The daemon stopped while the operation ran.",
    "operation.busy": "Another operation is running in the environment.",
    "operation.not_found": "No operation has that id.",
    "daemon.unavailable": "The daemon could not be reached or started.",
    "daemon.not_isolated": "The daemon refused to start without workload isolation.",
    "daemon.mode_unreadable": "The daemon's recorded mode is damaged.",
    "daemon.bad_request": "The daemon API received a request it does not understand.",
    "daemon.unsafe_socket_folder": "The private short folder for sockets exists but is not safely ours (another "
    "user's, a symlink, not a folder): refused, never used.",
    "daemon.socket_impostor": "The daemon's socket is served by a process of another OS user: refused before "
    "anything (a token) was sent.",
    # railguard doctor
    "doctor.unknown_check": "No doctor check has that id.",
    "doctor.check_failed": "A doctor check failed: the app is not fit to ship as it is.",
    "doctor.check_warning": "A doctor check found something to review.",
    "doctor.interrupted": "The doctor run was interrupted; its scratch environment was removed.",
    "doctor.no_scratch": "The doctor's scratch folder could not be created.",
    # init
    "init.exists": "A spec file already exists.",
    "init.no_app": "No app was detected in the folder.",
    "exec.no_release": "No release (live, or the one named) can run the one-off command.",
    "exec.not_found": "The one-off command is not installed in the release.",
    "exec.needs_approval": "A one-off command in a protected environment needs an approval.",
    "exec.detached": "The CLI could not hand its terminal to the one-off command.",
    "exec.failed": "An approved one-off command exited with a failure status.",
    # guardrails
    "auth.token_required": "The daemon runs in token-only mode and the request carried no token.",
    "auth.unknown_token": "The token is not known (mistyped, or from another state folder).",
    "auth.token_revoked": "The token was revoked.",
    "auth.token_expired": "The token expired.",
    "auth.token_exists": "A token with that name exists.",
    "auth.forbidden": "The principal's role or environment scope does not allow the request.",
    "auth.foreign_user": "A process of another OS user (an isolated app) connected to the daemon's socket: refused "
                         "and recorded as security.refused.",
    "auth.needs_terminal": "A power-widening action needs a confirmation typed on a terminal.",
    "policy.denied": "A policy verdict denies the plan.",
    "policy.approval_required": "The plan needs an approval it does not have.",
    "policy.frozen": "The environment is in a change freeze.",
    "approval.self": "The principal that requested a plan cannot approve it.",
    "approval.confirm_required": "Approving a delete in a protected environment needs its address typed back.",
    "approval.wrong_hash": "The short hash typed to confirm an approval is not the plan's.",
    "approval.not_applicable": "The plan cannot be approved (denied, applied or rejected).",
    "secret.key_unavailable": "The key that encrypts secrets cannot be loaded or does not match.",
    "secret.on_command_line": "A secret value was given as a command-line argument.",
    "secret.invalid": "The secret name or value cannot be used.",
    "secret.missing": "A service declares a secret that has no value in the environment.",
    "secret.shared_value": "Two environments use the same secret value.",
    "audit.tampered": "The audit log was edited, reordered or cut.",
    # the MCP server and what it reports
    "service.degraded": "A live service's replicas keep restarting or fail their health checks.",
    "mcp.invalid_arguments": "Arguments to a tool (or to `railguard mcp`) do not match what it accepts.",
    "mcp.input_too_large": "An argument is larger than the server accepts.",
    "mcp.unknown_tool": "No tool has that name.",
    "mcp.env_mismatch": "The plan or operation named belongs to another environment than the one given.",
    "mcp.token_required": "Serving MCP over HTTP needs a token.",
    "mcp.insecure_bind": "A non-loopback address was given without TLS.",
    "mcp.unauthorized": "An HTTP request did not carry the server's bearer token.",
    # the web console
    "console.bad_listen": "railguard console --listen is not HOST:PORT with a valid port.",
    "console.needs_tls": "The console was asked to serve beyond loopback without TLS.",
    "console.not_found": "A console page names an environment the spec does not declare.",
    "console.csrf": "A form post did not carry its session's CSRF token (a forged or stale form).",
    "console.bad_origin": "A form was posted from another site than the console.",
    "console.plan_changed": "The plan's hash differs from the one on the page the decision was made on.",
    "console.hash_not_typed": "The approver did not type the plan's short hash.",
    "console.session_none": "A change was posted without a session.",
    "console.session_ended": "A change was posted with the cookie of a session that signed out (a replay).",
    "console.session_expired": "A change was posted with the cookie of an expired session.",
    "console.session_unknown": "A change was posted with a session cookie the console does not know.",
    # the command line itself
    "cli.usage": "The command line does not parse: an unknown option, a missing argument or a bad value.",
    # Kubernetes environments (providers/kubernetes)
    "cluster.interrupted_settled": "Event: a daemon put back a Deployment an interrupted apply had marked, or removed "
                                   "what no live Deployment uses.",
    "cluster.config": "The kubeconfig of a Kubernetes environment is missing, unreadable, or has no such context.",
    "cluster.kubeconfig_untrusted": "A kubeconfig named by the spec runs a program or reads files and no person "
                                    "has trusted that exact file (`railguard k8s trust PATH`).",
    "cluster.unreachable": "The cluster's API server could not be reached (address, TLS or timeout).",
    "cluster.unauthorized": "The cluster refused Railguard's credentials (401: expired or wrong token or certificate).",
    "cluster.forbidden": "RBAC denies Railguard a verb on a resource in the environment's namespace (403).",
    "cluster.namespace_taken": "The namespace holds objects of another environment or app, or is being deleted.",
    "cluster.quota": "A ResourceQuota of the namespace refused an object.",
    "cluster.invalid_manifest": "A manifest has a field the server's schema does not know, or the server "
                                "refused it as invalid.",
    "cluster.conflict": "Another field manager owns fields Railguard would change (server-side apply conflict).",
    "cluster.release_failed": "The release Job (the release command) failed; the Deployment was not changed.",
    "cluster.rollout_failed": "A Deployment did not become available; its pods' reasons are listed and the "
                              "previous release's template was re-applied.",
    "cluster.server_diff": "Info in a plan: the fields a server-side dry-run says the apply would change on a "
                           "live object.",
    "cluster.api_error": "The API server answered an error Railguard has no better code for.",
    "cluster.annotation_unreadable": "Warning on observe: an object's Railguard config annotation is not readable "
                                     "JSON (edited on the cluster); reported as drift, put back by the next apply.",
    # catch-all for bugs: never for user mistakes
    "internal.error": "An unexpected internal error.",
}


class Diagnostic(BaseModel):
    """One problem, with everything needed to understand and fix it."""

    model_config = ConfigDict(frozen=True)

    code: str = Field(description="Stable code, documented in docs/diagnostics.md.")
    severity: Severity = Field(default=Severity.error)
    summary: str = Field(description="One-line headline.")
    detail: str = Field(description="Full sentences: what is wrong and why it matters.")
    address: str | None = Field(default=None, description="Resource address or spec key path.")
    file: str | None = Field(default=None, description="File the problem is in, when the input is a file.")
    line: int | None = Field(default=None, description="1-based line in `file`.")
    remediation: str = Field(description="What to do next, naming the command.")
    extra: dict[str, Any] = Field(default_factory=dict, description="Structured context (log tail, ...).")

    @field_validator("code")
    @classmethod
    def _known_code(cls, value: str) -> str:
        # An undeclared code is a programming error; catching it here keeps docs honest.
        if value not in CODES:
            raise ValueError(f"undeclared diagnostic code {value!r}")
        return value

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.error


class RailguardError(Exception):
    """Raised to abort an operation with one or more diagnostics."""

    def __init__(self, *diagnostics: Diagnostic) -> None:
        super().__init__("; ".join(f"{d.code}: {d.summary}" for d in diagnostics))
        self.diagnostics: tuple[Diagnostic, ...] = diagnostics


def error(code: str, summary: str, detail: str, remediation: str, **kwargs: Any) -> Diagnostic:
    """Shorthand for an error diagnostic."""
    return Diagnostic(code=code, summary=summary, detail=detail, remediation=remediation, **kwargs)


def warning(code: str, summary: str, detail: str, remediation: str, **kwargs: Any) -> Diagnostic:
    """Shorthand for a warning diagnostic."""
    return Diagnostic(
        code=code, severity=Severity.warning, summary=summary, detail=detail, remediation=remediation, **kwargs
    )


def has_errors(diagnostics: list[Diagnostic] | tuple[Diagnostic, ...]) -> bool:
    return any(d.is_error for d in diagnostics)
