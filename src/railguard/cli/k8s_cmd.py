"""``railguard k8s``: commands about Kubernetes environments that need no daemon (docs/kubernetes.md).

``railguard k8s rbac --env NAME`` prints the ServiceAccount, Role and RoleBinding that give Railguard
exactly the verbs it uses in the environment's namespace (:data:`railguard.providers.kubernetes.rbac.REQUIRED`),
as YAML to pipe into ``kubectl apply -f -`` (or ``--json``). It reads the spec only: a cluster
administrator can run it without access to Railguard's state.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer

from railguard.cli.common import ADMIN, EnvOpt, JsonOpt, SpecOpt, add, pick_env
from railguard.cli.output import emit_json, guarded
from railguard.engine.workspace import Workspace
from railguard.model.diagnostics import RailguardError, error
from railguard.providers.kubernetes import rbac as rbac_objects

app = typer.Typer(name="k8s", help="Kubernetes environments: the RBAC Railguard needs.", no_args_is_help=True)


def namespace_of(env_spec: Any, env: str) -> str:
    """The namespace of a Kubernetes environment; a diagnostic for any other target."""
    target = str(getattr(getattr(env_spec, "target", None), "value", getattr(env_spec, "target", "local")) or "local")
    settings = getattr(env_spec, "kubernetes", None)
    namespace = getattr(settings, "namespace", None)
    if target != "kubernetes" or not namespace:
        raise RailguardError(error(
            "kubernetes.wrong_target", f"Environment '{env}' is not a Kubernetes environment",
            f"Its target is '{target}'; `railguard k8s` commands apply to environments with "
            "`target = \"kubernetes\"` and a `[environments.NAME.kubernetes]` namespace.",
            f"Set `target = \"kubernetes\"` and `namespace` under `[environments.{env}.kubernetes]`, or name a "
            "Kubernetes environment with --env.", address=f"environments.{env}.target"))
    return str(namespace)


@guarded()
def rbac(
    env: EnvOpt = None,
    spec: SpecOpt = None,
    user: Annotated[Optional[list[str]], typer.Option("--user", help="Also bind this Kubernetes user (repeatable).")
                    ] = None,
    group: Annotated[Optional[list[str]], typer.Option("--group", help="Also bind this group (repeatable).")] = None,
    cluster_role: Annotated[bool, typer.Option(
        "--cluster-role", help="Also print the optional ClusterRole for namespace create/delete/list.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Print the ServiceAccount, Role and RoleBinding Railguard needs in an environment's namespace."""
    ws = Workspace.locate(spec)
    parsed, _ = ws.load_valid()
    name = pick_env(parsed, env)
    namespace = namespace_of(parsed.environments[name], name)
    documents = rbac_objects.manifests(namespace, name, user, group)
    if cluster_role:
        documents.append(rbac_objects.cluster_role(name))
    if as_json:
        emit_json({"ok": True, "diagnostics": [], "env": name, "namespace": namespace,
                   "required": [{"apiGroup": g, "resource": r, "verbs": list(v)} for g, r, v in rbac_objects.REQUIRED],
                   "cluster_scoped": [{"apiGroup": g, "resource": r, "verbs": list(v)}
                                      for g, r, v in rbac_objects.CLUSTER_SCOPED],
                   "note": rbac_objects.NOTE, "manifests": documents})
        raise typer.Exit(0)
    sys.stdout.write(rbac_objects.to_yaml(documents, f"Railguard's RBAC for environment '{name}' (namespace "
                                                     f"{namespace}). {rbac_objects.NOTE}"))
    sys.stdout.flush()


def register(root: typer.Typer) -> None:
    add(app, rbac, ADMIN, "railguard k8s rbac --env staging | kubectl apply -f -",
        "railguard k8s rbac --env production --user railguard-prod --json")
    root.add_typer(app, name="k8s", rich_help_panel=ADMIN)
