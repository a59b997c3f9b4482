"""``railguard k8s``: commands about Kubernetes environments that need no daemon (docs/kubernetes.md).

``railguard k8s rbac --env NAME`` prints the ServiceAccount, Role and RoleBinding that give Railguard
exactly the verbs it uses in the environment's namespace (:data:`railguard.providers.kubernetes.rbac.REQUIRED`),
as YAML to pipe into ``kubectl apply -f -`` (or ``--json``). It reads the spec only: a cluster
administrator can run it without access to Railguard's state.

``railguard k8s trust PATH`` (``--forget``) and ``railguard k8s trusted`` go to the daemon: a kubeconfig the spec
names that runs a program or reads files is used only once a person trusted that exact file
(:mod:`railguard.providers.kubernetes.kubeconfig`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from railguard.cli.common import ADMIN, EnvOpt, JsonOpt, SpecOpt, add, connect, pick_env
from railguard.cli.output import emit_json, escape, finish, guarded, out
from railguard.engine.workspace import Workspace
from railguard.model.diagnostics import RailguardError, error
from railguard.providers.kubernetes import rbac as rbac_objects

app = typer.Typer(name="k8s", help="Kubernetes environments: the RBAC Railguard needs, trusted kubeconfigs.",
                  no_args_is_help=True)


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


@guarded()
def trust(
    path: Annotated[Path, typer.Argument(help="The kubeconfig file (its exact bytes are trusted).")],
    forget: Annotated[bool, typer.Option("--forget", help="Stop trusting it.")] = False,
    spec: SpecOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Trust a kubeconfig that runs a program (exec, auth-provider) or reads files, for specs that name it.

    Run it yourself on a terminal (or with an admin token): a spec, written by an agent, cannot make the
    daemon run a program or read a file through a kubeconfig nobody trusted. A changed file is untrusted again."""
    _, client = connect(spec)
    answer = client.call("POST", "/kubeconfigs", {"path": str(path.expanduser().absolute()), "forget": forget})
    record = answer["kubeconfig"]
    if as_json:
        finish(True, [], {"kubeconfig": record})
    if forget:
        out.print(f"{escape(record['path'])}: " + ("no longer trusted." if record["forgotten"] else "was not trusted."))
        raise typer.Exit(0)
    out.print(f"Trusted {escape(record['path'])} (SHA-256 {record['sha256'][:12]}…). When used, it:")
    for line in record["active"] or ["(runs nothing and reads no file: it did not need trust)"]:
        out.print(f"  {escape(line)}")


@guarded()
def trusted(spec: SpecOpt = None, as_json: JsonOpt = False) -> None:
    """List the kubeconfig files a person trusted, with what each runs and reads."""
    _, client = connect(spec)
    records = client.call("GET", "/kubeconfigs")["kubeconfigs"]
    if as_json:
        finish(True, [], {"kubeconfigs": records})
    if not records:
        out.print("No kubeconfig is trusted (inline-credential kubeconfigs and the daemon's own need none).")
    for record in records:
        out.print(f"{escape(record['path'])}  SHA-256 {record['sha256'][:12]}…  by {escape(str(record['by']))}")
        for line in record.get("active") or []:
            out.print(f"  {escape(line)}")


def register(root: typer.Typer) -> None:
    add(app, trust, ADMIN, "railguard k8s trust ~/.kube/eks.yaml", "railguard k8s trust ./kubeconfig --forget --json")
    add(app, trusted, ADMIN, "railguard k8s trusted --json")
    add(app, rbac, ADMIN, "railguard k8s rbac --env staging | kubectl apply -f -",
        "railguard k8s rbac --env production --user railguard-prod --json")
    root.add_typer(app, name="k8s", rich_help_panel=ADMIN)
