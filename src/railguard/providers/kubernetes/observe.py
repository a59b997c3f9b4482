"""Live objects back to observed resources: what Railguard applied (its annotations), its status, and drift.

A service is its Deployment, the edge its ConfigMap; the config and fingerprint are the ones the annotations
recorded at apply time, so an unchanged spec plans as no-op. Drift is what someone else did: fields under
``spec`` (or ``data``/``rules``) owned by another field manager in ``managedFields``, or an object labelled
ours whose address the spec no longer has (the planner then plans its delete). Drifted fields are added to the
observed config under ``drift`` (``template_drift`` for the pod template, which the planner replaces: new
pods), so the fingerprint differs and the plan shows them and re-applies. Pure over
the dicts :mod:`.cluster` returns; called by :mod:`.provider`.
"""

from __future__ import annotations

import json
from typing import Any

from railguard.model.canonical import digest
from railguard.model.resources import LiveStatus, ObservedResource, ResourceKind
from railguard.providers.kubernetes.labels import ADDRESS, CONFIG, DEPENDS_ON, FIELD_MANAGER, FINGERPRINT, RELEASE

# Managers that write what Railguard does not own by design: the controllers' status and bookkeeping.
SYSTEM_MANAGERS = ("kube-controller-manager", "kube-scheduler", "kube-apiserver")
_OWN_ROOTS = ("f:spec", "f:data", "f:rules")
TEMPLATE = "spec.template."  # drift paths under the pod template


def _paths(fields: dict[str, Any], prefix: str = "") -> list[str]:
    found: list[str] = []
    for key, value in fields.items():
        if key == ".":
            continue
        name = key.split(":", 1)[-1] if key[:2] in ("f:", "k:", "v:") else key
        path = f"{prefix}.{name}" if prefix else name
        if isinstance(value, dict) and any(k != "." for k in value):
            found += _paths(value, path)
        else:
            found.append(path)
    return found


def _owned(entry: dict[str, Any]) -> list[str]:
    fields = entry.get("fieldsV1") or {}
    return _paths({k: v for k, v in fields.items() if k in _OWN_ROOTS})


def drift(obj: dict[str, Any]) -> dict[str, list[str]]:
    """Fields of ``obj``'s spec other field managers own and Railguard does not: {manager: [paths]}.

    A field both own was applied with the same value by both (shared ownership): agreement, not drift."""
    entries = obj.get("metadata", {}).get("managedFields") or []
    ours = {p for e in entries if e.get("manager") == FIELD_MANAGER for p in _owned(e)}
    found: dict[str, list[str]] = {}
    for entry in entries:
        manager = entry.get("manager", "")
        if manager == FIELD_MANAGER or manager in SYSTEM_MANAGERS or entry.get("subresource"):
            continue
        theirs = sorted(p for p in _owned(entry) if p not in ours)
        if theirs:
            found[manager] = theirs
    return found


def _status(deployment: dict[str, Any]) -> tuple[LiveStatus, str]:
    spec, status = deployment.get("spec", {}), deployment.get("status") or {}
    wanted = int(spec.get("replicas", 1))
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    progressing = conditions.get("Progressing", {})
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return LiveStatus.degraded, str(progressing.get("message", "progress deadline exceeded"))
    if wanted == 0:
        return LiveStatus.running, "scaled to 0"
    available = int(status.get("availableReplicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    current = int(status.get("observedGeneration") or 0) >= int(deployment["metadata"].get("generation") or 0)
    if current and available >= wanted and updated >= wanted:
        return LiveStatus.running, f"{available}/{wanted} available"
    if available == 0 and updated >= wanted and current:
        return LiveStatus.degraded, f"0/{wanted} available"
    return LiveStatus.progressing, f"{available}/{wanted} available, {updated} updated"


UNREADABLE = "annotation not readable"


def _config_of(notes: dict[str, str]) -> tuple[dict[str, Any], str]:
    """The desired config the object was applied with, and its fingerprint, from its annotations.

    Anyone who may edit the object can write junk there: that is drift ("annotation not readable"), reported
    and put back by the next apply, never a traceback.
    """
    try:
        config = json.loads(notes[CONFIG])
    except (ValueError, TypeError, RecursionError):
        config = None
    if isinstance(config, dict):
        return config, str(notes.get(FINGERPRINT, ""))
    config = {"drift": {"annotation": [f"{CONFIG}: {UNREADABLE}"]}}
    return config, digest(config)


def unreadable(resource: ObservedResource) -> bool:
    """Whether ``resource`` was observed from an object whose config annotation is junk."""
    drifted = resource.config.get("drift")
    return isinstance(drifted, dict) and any(UNREADABLE in p for p in drifted.get("annotation", []))


def observed(obj: dict[str, Any], kind: ResourceKind) -> ObservedResource | None:
    """The observed resource an object of ours stands for; None when it carries no Railguard annotations."""
    meta = obj.get("metadata", {})
    notes = meta.get("annotations") or {}
    if ADDRESS not in notes or CONFIG not in notes:
        return None
    config, fingerprint = _config_of(notes)
    changed = drift(obj)
    if changed:
        # A changed pod template is put back by new pods (a replace); other fields in place (an update).
        template = {m: [p for p in paths if p.startswith(TEMPLATE)] for m, paths in changed.items()}
        rest = {m: [p for p in paths if not p.startswith(TEMPLATE)] for m, paths in changed.items()}
        config = {**config, **({"drift": {m: p for m, p in rest.items() if p}} if any(rest.values()) else {}),
                  **({"template_drift": {m: p for m, p in template.items() if p}} if any(template.values())
                     else {})}
        fingerprint = digest(config)
    # A service is its Deployment (listed items carry no ``kind``: the caller says what it read).
    status, message = _status(obj) if kind == "service" else (LiveStatus.running, "")
    if changed:
        message = (message + "; " if message else "") + "changed by " + ", ".join(
            f"{m} ({', '.join(p[:3])})" for m, p in sorted(changed.items()))
    release = (meta.get("labels") or {}).get(RELEASE)
    depends = [d for d in notes.get(DEPENDS_ON, "").split(",") if d]
    return ObservedResource(address=notes[ADDRESS], kind=kind, fingerprint=fingerprint, config=config,
                            depends_on=depends, status=status, message=message,
                            release=int(release) if release and release.isdigit() else None)
