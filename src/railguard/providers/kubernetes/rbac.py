"""What Railguard may do in an environment's namespace: the one list of verbs, and the RBAC objects granting it.

:data:`REQUIRED` is the single declaration of every (API group, resource, verbs) the Kubernetes provider
uses in a namespace — observe (list/watch the labelled objects), plan (server-side dry-run apply: the
same verbs as the apply itself), apply (server-side apply needs ``patch``, and ``create`` for an object
that does not exist yet), rollout waits, rollback and pruning. The provider checks its calls against it,
and ``railguard k8s rbac --env NAME`` (:mod:`railguard.cli.k8s_cmd`) prints :func:`manifests`: a
ServiceAccount, a Role with exactly these rules and a RoleBinding, for the environment's namespace.

``namespaces get`` is granted by the namespaced Role: for ``GET /api/v1/namespaces/<ns>`` the API server
authorizes in namespace ``<ns>`` itself, so a Role there allows reading that one namespace (the provider
checks it exists). What a Role cannot grant (creating or deleting namespaces, e.g. the doctor's scratch
namespace) is in :data:`CLUSTER_SCOPED`, printed as a note and an optional ClusterRole.
"""

from __future__ import annotations

import json
from typing import Any

ALL = ("get", "list", "watch", "create", "update", "patch", "delete")
READ = ("get", "list", "watch")

# (apiGroup, resource, verbs): everything Railguard does inside an environment's namespace.
REQUIRED: list[tuple[str, str, tuple[str, ...]]] = [
    ("apps", "deployments", ALL),  # a service; rollback re-applies the previous release's Deployment
    ("apps", "replicasets", READ),  # rollout progress and status
    ("", "pods", (*READ, "delete")),  # status, crash reasons; delete: a stuck pod of a failed rollout
    ("", "services", ALL),
    ("networking.k8s.io", "ingresses", ALL),  # routes
    ("batch", "jobs", ALL),  # the release command, before the Deployment changes
    ("", "secrets", ALL),  # the service's secrets and the artifact token, referenced by name
    ("", "configmaps", ALL),  # the edge's routing table
    ("", "serviceaccounts", ALL),  # each environment's pods run under their own, without a token
    ("networking.k8s.io", "networkpolicies", ALL),  # no traffic from other environments' namespaces
    ("", "events", READ),  # status, diagnose
    ("", "namespaces", ("get",)),  # the environment's own namespace exists (see the module's note)
]

# What no Role can grant: only needed by whoever creates namespaces (the doctor's scratch environment).
CLUSTER_SCOPED: list[tuple[str, str, tuple[str, ...]]] = [
    ("", "namespaces", ("create", "delete", "list")),
]

NAME = "railguard"
MANAGED_BY = {"app.kubernetes.io/managed-by": "railguard"}


def rules() -> list[dict[str, Any]]:
    """:data:`REQUIRED` as Role rules (one rule per resource, so a review reads it line by line)."""
    return [{"apiGroups": [group], "resources": [resource], "verbs": list(verbs)}
            for group, resource, verbs in REQUIRED]


def manifests(namespace: str, env: str, users: list[str] | None = None,
              groups: list[str] | None = None) -> list[dict[str, Any]]:
    """ServiceAccount, Role and RoleBinding granting :data:`REQUIRED` in ``namespace``.

    The binding's subjects are the ServiceAccount ``railguard`` (for a Railguard that authenticates with its
    token) plus any ``users``/``groups`` named (how a kubeconfig user of Railguard is bound).
    """
    labels = {**MANAGED_BY, "railguard.dev/environment": env}
    meta = {"name": NAME, "namespace": namespace, "labels": labels}
    subjects: list[dict[str, Any]] = [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}]
    subjects += [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": u} for u in users or []]
    subjects += [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": g} for g in groups or []]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": dict(meta), "automountServiceAccountToken": False},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": dict(meta), "rules": rules()},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": dict(meta),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
         "subjects": subjects},
    ]


def cluster_role(env: str) -> dict[str, Any]:
    """The optional ClusterRole for :data:`CLUSTER_SCOPED` (bind it only where Railguard creates namespaces)."""
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": f"{NAME}-namespaces", "labels": {**MANAGED_BY, "railguard.dev/environment": env}},
            "rules": [{"apiGroups": [g], "resources": [r], "verbs": list(v)} for g, r, v in CLUSTER_SCOPED]}


NOTE = ("Not in the Role (a Role cannot grant cluster-scoped verbs): creating, deleting and listing namespaces. "
        "Railguard needs them only where it creates namespaces itself (the doctor's scratch environment); create "
        "each environment's namespace beforehand, or bind the ClusterRole `railguard-namespaces` (printed with "
        "--cluster-role) to the same subjects with a ClusterRoleBinding.")


def to_yaml(documents: list[dict[str, Any]], comment: str | None = None) -> str:
    """Documents as YAML (``---`` separated) without a YAML library: every scalar is JSON, which YAML reads."""
    lines: list[str] = [f"# {line}" for line in _wrap(comment)] if comment else []
    for doc in documents:
        lines.append("---")
        lines += _yaml(doc, 0)
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int = 110) -> list[str]:
    out, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*out, line] if line else out


def _scalar(value: Any) -> str:
    return json.dumps(value)


def _yaml(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, dict):
        out: list[str] = []
        for key, item in value.items():
            if isinstance(item, list) and item and not any(isinstance(i, (dict, list)) for i in item):
                out.append(f"{pad}{key}: {json.dumps(item)}")  # a flow sequence: one rule reads on one line
            elif isinstance(item, (dict, list)) and item:
                out.append(f"{pad}{key}:")
                out += _yaml(item, indent + 2) if isinstance(item, dict) else _yaml(item, indent)
            else:
                out.append(f"{pad}{key}: {_scalar(item) if not isinstance(item, (dict, list)) else _empty(item)}")
        return out
    if isinstance(value, list):
        out = []
        for item in value:
            if isinstance(item, dict) and item:
                inner = _yaml(item, indent + 2)
                out.append(f"{pad}- {inner[0].lstrip()}")
                out += inner[1:]
            elif isinstance(item, list) and item:
                out.append(f"{pad}-")
                out += _yaml(item, indent + 2)
            else:
                out.append(f"{pad}- {_scalar(item) if not isinstance(item, (dict, list)) else _empty(item)}")
        return out
    return [f"{pad}{_scalar(value)}"]


def _empty(value: dict[str, Any] | list[Any]) -> str:
    return "{}" if isinstance(value, dict) else "[]"
