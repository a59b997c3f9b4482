"""Daemon answers shaped into the bounded briefs a model reads: services, plans, operations.

The daemon's records are complete (a plan carries every frozen desired resource; an operation its
whole journal); a model needs the decision-relevant part, in a stable shape. These functions are
pure: they take the daemon's JSON and return what the output schemas in
:mod:`railguard.mcp.outputs` describe. Used by the tool modules.
"""

from __future__ import annotations

from typing import Any

from railguard.model.api import Health, ReleaseStatus, ReplicaHealth

MAX_DIFF = 10
MAX_STEPS = 30
# Problems first: the worst health sorts first (unknown, unlisted, with degraded).
STATUS_ORDER = {Health.degraded: 0, Health.missing: 1, Health.progressing: 2, Health.healthy: 4}


def service_brief(entry: dict[str, Any]) -> dict[str, Any]:
    replicas = entry.get("replicas") or []
    health = [str(r.get("health")) for r in replicas]
    return {"name": entry["name"], "address": entry["address"], "status": entry["status"],
            "release": entry.get("release"), "replicas": len(replicas),
            "healthy": sum(1 for h in health if h == ReplicaHealth.healthy),
            # Restarts in the decaying window (10 min) when the daemon reports it: an old kill is not news forever.
            "restarts": sum(int(r.get("recent_restarts", r.get("restarts")) or 0) for r in replicas),
            "restarts_total": sum(int(r.get("restarts") or 0) for r in replicas), "health": health,
            "last_exit": [str(r["last_exit"]) for r in replicas if r.get("last_exit")],
            "requests": _minute(entry.get("requests") or []),
            "warm": [int(w["release"]) for w in entry.get("warm") or []]}


def _minute(windows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last minute of what the edge saw of the live release: requests, 5xx ratio, p99."""
    found = next((w for w in windows if w.get("window") == "1m"), None)
    if found is None:
        return None
    return {k: found.get(k) for k in ("requests", "rate", "status_5xx", "error_ratio", "p99_ms")}


def problems_first(services: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(services, key=lambda s: (STATUS_ORDER.get(s["status"], 0) if s["restarts"] == 0 else -1,
                                           s["name"]))


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > 200:
        return value[:200] + "…"
    if isinstance(value, list | dict) and len(str(value)) > 200:
        return str(value)[:200] + "…"
    return value


def change_brief(change: dict[str, Any]) -> dict[str, Any]:
    diff = change.get("diff") or []
    return {"address": change["address"], "action": change["action"], "risk": change["risk"],
            "reason": change["reason"],
            "diff": [{"path": d["path"], "before": _short(d.get("before")), "after": _short(d.get("after"))}
                     for d in diff[:MAX_DIFF]],
            **({"diff_more": len(diff) - MAX_DIFF} if len(diff) > MAX_DIFF else {})}


def plan_brief(plan: dict[str, Any], status: str | None = None, proposed: bool = False) -> dict[str, Any]:
    summary = plan.get("summary") or {}
    return {"id": plan["id"], "env": plan["env"], "status": status, "hash": plan["hash"],
            "short_hash": plan.get("short_hash") or plan["hash"].removeprefix("sha256:")[:8],
            "base_serial": plan["base_serial"], "errored": bool(summary.get("errored")),
            "applyable": bool(summary.get("applyable")), "max_risk": str(summary.get("max_risk", "safe")),
            "decision": str(summary.get("decision", "allow")), "counts": dict(summary.get("counts") or {}),
            "requested_by": plan.get("requested_by") or "", "proposed": proposed}


def actionable(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in plan.get("changes") or [] if c.get("action") != "no-op"]


def verdicts(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v.get(k) for k in ("rule", "effect", "address", "message", "approvers", "confirm", "remediation")}
            for v in plan.get("verdicts") or []]


def promote_from(plan: dict[str, Any]) -> str | None:
    """The environment a protected environment's artifacts must come from (from the frozen desired state)."""
    for resource in plan.get("desired") or []:
        if resource.get("kind") == "environment":
            found = (resource.get("config") or {}).get("promote_from")
            return str(found) if found else None
    return None


def failed_step(record: dict[str, Any]) -> str | None:
    fails = [e["step"] for e in record.get("journal") or [] if e.get("phase") == "fail"]
    return fails[0] if fails else None


def operation_brief(record: dict[str, Any]) -> dict[str, Any]:
    journal = record.get("journal") or []
    steps = [{"step": e["step"], "phase": e["phase"], "at": e.get("at")} for e in journal[-MAX_STEPS:]]
    return {"id": record["id"], "env": record["env"], "kind": record["kind"], "status": record["status"],
            "plan_id": record.get("plan_id"), "principal": record.get("principal"),
            "created_at": record.get("created_at"), "updated_at": record.get("updated_at"),
            "failed_step": failed_step(record), "steps": steps, "steps_total": len(journal)}


def release_brief(release: dict[str, Any]) -> dict[str, Any]:
    source = release.get("source") or {}
    return {"number": release["number"], "status": release["status"], "created_at": release.get("created_at"),
            "live_at": release.get("live_at"), "ended_at": release.get("ended_at"),
            "plan_id": release.get("plan_id"), "operation_id": release.get("operation_id"),
            "rollback_of": release.get("rollback_of"), "git_commit": source.get("git_commit"),
            "services": {name: (entry.get("source") or "")[:19] for name, entry in
                         (release.get("services") or {}).items()}}


def last_good(releases: list[dict[str, Any]], before: int | None = None) -> dict[str, Any] | None:
    """The newest release that ran healthy (live or superseded), optionally older than ``before``."""
    for release in releases:  # newest first
        if ReleaseStatus(release["status"]).ran_healthy and (before is None or release["number"] < before):
            return release
    return None
