"""Check ``honest-health``: with a dependency broken, the health check must say so in time.

Per service with a health check: first a baseline (a scratch copy of the data, the release command,
then the app must pass its readiness gate), then the app is started once per declared dependency
with that dependency unreachable: its data folder (``RAILGUARD_DATA_DIR`` and every variable pointing
into it moved under a regular file, where nothing can be created or opened, even by root; SQLite databases
the runtime manages live there), each managed Postgres database (its variable and libpq's ``PG*`` pointed at a
closed loopback port instead of the scratch server) and each database-like variable (pointed at nothing: a
path under that file, or a closed loopback port). The
check must fail ``unhealthy_threshold`` times in a row (or the app must exit) before it would pass
the readiness gate; passing it is a ``fail``: the edge would route traffic to a replica that cannot
serve. ``depends_on`` services are stopped under a running scratch deployment instead, and the
dependent's health must go unhealthy within ``unhealthy_threshold × interval + timeout``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

from railguard.data import libpq
from railguard.doctor import pgscratch
from railguard.doctor.apps import Running, launch, prepare, ready_or_stop, release_or_stop
from railguard.doctor.codescan import entry_closure, scan
from railguard.doctor.context import STOP_S, CheckStop, Context, seconds
from railguard.doctor.deployment import Deployment, failure_evidence
from railguard.doctor.isolation import broken_value, data_like, edge_ports_in
from railguard.doctor.report import Finding, Status
from railguard.providers.base import CheckResult, Health, HealthResponse

POLL_S = 0.1
HONEST = ("Make the health endpoint check what the app needs to serve: open the database and run a trivial "
          "query (SELECT 1 / count the rows of a core table), reach required services, and answer 503 when any "
          "of it fails.")


# (what is broken for the run, the variable it is reached through or None for the data folder, the managed
# Postgres database broken or None)
Broken = tuple[str, str | None, str | None]


def _uses_data_folder(ctx: Context, name: str) -> bool:
    """Whether a service needs its data folder: a release command (without managed databases), a variable into
    it, a SQLite database the runtime manages (its file lives there), or its code reads RAILGUARD_DATA_DIR (the
    files its `run` command executes, or the whole source when that is unclear)."""
    cfg = ctx.configs[name]
    if any(db in ctx.spec.databases and ctx.spec.databases[db].engine == "sqlite" for db in cfg.get("databases") or {}):
        return True
    files = entry_closure(ctx.source_root, ctx.files, cfg["run"]) or ctx.files
    reads = {r.name for r in scan(ctx.source_root, files).reads}
    # A release command is a reason only without managed databases: with them, it migrates those.
    return (bool(cfg["release"]) and not cfg.get("databases")) or "RAILGUARD_DATA_DIR" in reads or \
        any(str(ctx.data_dir()) in v for v in cfg["env"].values())


def _postgres_used(ctx: Context, name: str) -> list[tuple[str, str]]:
    """The managed Postgres databases a service uses, with the variable each reaches it through."""
    managed = set(pgscratch.postgres_databases(ctx))
    return sorted((db, var) for db, var in (ctx.configs[name].get("databases") or {}).items() if db in managed)


def check(ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    for name in ctx.service_names():
        cfg = ctx.configs[name]
        health = cfg["health"]
        if health is None:
            findings.append(Finding(status=Status.skipped, subject=name,
                                    summary="no health check to judge (see the monitoring check)"))
            continue
        if health["mode"] == "tcp":
            findings.append(Finding(
                status=Status.warn, subject=name, summary="a TCP health check only proves the port is open",
                evidence=["health: tcp; it stays green whatever happens to the database"],
                remediation=f"Use an HTTP check on an endpoint that checks dependencies:\n[services.{name}.health]\n"
                            "http = \"/healthz\""))
            continue
        broken: list[Broken] = [("data folder", None, None)] if _uses_data_folder(ctx, name) else []
        broken += [(f"database {db}", var, db) for db, var in _postgres_used(ctx, name)]
        broken += [(var, var, None) for var, value in sorted(cfg["env"].items()) if data_like(var, value)]
        deps = next(r.depends_on for r in ctx.desired if r.kind == "service" and r.name == name)
        if not broken and not deps:
            findings.append(Finding(status=Status.skipped, subject=name,
                                    summary="declares no dependency to break (no data folder use, no database, "
                                            "no database variable, no depends_on)"))
            continue
        try:
            if broken:
                findings += _baseline_then_break(ctx, name, broken)
        except CheckStop as stop:
            findings.append(stop.finding)
    findings += _depends_on(ctx)
    return findings


def _baseline_then_break(ctx: Context, name: str, broken: list[Broken]) -> list[Finding]:
    data, _ = ctx.data_copy()
    prepared = prepare(ctx, name, data, serve=True)
    release_or_stop(ctx, prepared, data, "health-baseline")
    running = launch(ctx, prepared, data, "baseline")
    try:
        gate = ready_or_stop(running, name, "with its data (the baseline)")
    finally:
        running.stop(STOP_S)
    baseline = f"baseline: healthy with a copy of its data ({gate.last.detail if gate.last else 'ok'})"
    findings = []
    for label, var, database in broken:
        findings.append(_start_broken(ctx, name, (label, var, database), baseline))
    return findings


def _database_gone(ctx: Context, name: str, cfg: dict[str, Any], database: str, var: str) -> tuple[set[str], str]:
    """Point ``cfg`` at a closed port instead of the managed Postgres ``database``: the runtime no longer injects
    it (dropped from ``databases``), its variable and, when it was the service's one Postgres database, libpq's
    ``PG*`` name the closed port (left unset, libpq would try its defaults: a server on this machine's 5432).
    Returns the variables set and how, for the evidence."""
    url = f"postgresql://doctor@127.0.0.1:{ctx.scratch.closed_port()}/doctor"
    cfg["databases"] = {db: v for db, v in (cfg.get("databases") or {}).items() if db != database}
    values = {var: url}
    if len(_postgres_used(ctx, name)) == 1:
        values = libpq.add_to(values, [var])
    cfg["env"] = {**cfg["env"], **values}
    return set(values), f"{var}={url} (a closed port)" + (", PGHOST/PGPORT the same" if len(values) > 1 else "")


def _start_broken(ctx: Context, name: str, broken: Broken, baseline: str) -> Finding:
    label, var, database = broken
    blocked = ctx.scratch.blocked()
    cfg: dict[str, Any] = dict(ctx.configs[name])
    trusted: set[str] = {var} if var else set()
    if var is None:
        data = blocked / "data"
        how = f"RAILGUARD_DATA_DIR={data} (under a regular file: unreachable)"
    elif database is not None:
        data, _ = ctx.data_copy()
        trusted, how = _database_gone(ctx, name, cfg, database, var)
    else:
        data, _ = ctx.data_copy()
        value = broken_value(cfg["env"][var], blocked, ctx.scratch.closed_port())
        cfg["env"] = {**cfg["env"], var: value}
        how = f"{var}={value}"
    try:
        prepared = prepare(ctx, name, data, config=cfg, trusted=frozenset(trusted), serve=True)
    except CheckStop as stop:
        return stop.finding
    if var is not None:
        release_or_stop(ctx, prepare(ctx, name, data, serve=True), data, f"health-{var}")
    running = launch(ctx, prepared, data, f"broken-{label.replace(' ', '-')}")
    try:
        verdict, seen, took = _watch(running)
    finally:
        running.stop(STOP_S)
    health = ctx.configs[name]["health"]
    evidence = [baseline, f"started with its {label} unreachable: {how}",
                f"health checks seen in {took:.1f} s: {seen}"]
    if verdict == "green":
        return Finding(
            status=Status.fail, subject=name,
            summary=f"health stayed green with its {label} unreachable",
            evidence=evidence + [f"it passed {health['healthy_threshold']} check(s) in a row: the readiness gate "
                                 "would route traffic to it"], remediation=HONEST)
    what = {"red": f"went unhealthy ({health['unhealthy_threshold']} failures in a row)",
            "exited": "refused to run (exited)", "silent": "never answered within start_timeout"}[verdict]
    return Finding(status=Status.passed, subject=name, summary=f"with its {label} unreachable, it {what}",
                   evidence=evidence)


def _watch(running: Running) -> tuple[str, str, float]:
    """Poll a freshly started replica: "green" (would pass the gate), "red", "exited" or "silent"."""
    health = running.config["health"]
    started = time.monotonic()
    deadline = started + seconds(running.config["start_timeout_ms"])
    passes = fails = 0
    seen: Counter[str] = Counter()
    verdict = "silent"
    while time.monotonic() < deadline:
        if not running.alive():
            verdict = "exited"
            break
        result = running.check()
        answered = result.ok or not result.detail.startswith(("connection refused", "cannot connect"))
        if answered:
            seen[_short(result)] += 1
        passes, fails = (passes + 1, 0) if result.ok else ((0, fails + 1) if answered else (0, fails))
        if passes >= health["healthy_threshold"]:
            verdict = "green"
            break
        if fails >= health["unhealthy_threshold"]:
            verdict = "red"
            break
        time.sleep(POLL_S)
    shown = ", ".join(f"{what} ×{n}" for what, n in seen.items()) or "no answer"
    return verdict, shown, time.monotonic() - started


def _short(result: CheckResult) -> str:
    detail = result.detail
    if detail.startswith("HTTP ") and " in " in detail and result.ok:
        detail = detail.split(" in ")[0]
    return ("pass: " if result.ok else "fail: ") + detail[:80]


def _depends_on(ctx: Context) -> list[Finding]:
    needed = sorted({d.rsplit(".", 1)[-1] for r in ctx.desired if r.kind == "service" for d in r.depends_on})
    edge = ctx.spec.environments[ctx.env].edge_port
    findings: list[Finding] = []
    for dependency in needed:
        dependents = []
        for r in ctx.desired:
            if r.kind != "service" or f"{ctx.env}/service.{dependency}" not in r.depends_on or not r.config["health"]:
                continue
            if any(edge in edge_ports_in(v) for v in r.config["env"].values()):
                dependents.append(r.name)
            else:
                findings.append(Finding(
                    status=Status.skipped, subject=r.name,
                    summary=f"depends_on {dependency}, but no variable of {r.name} points at the edge (port {edge}), "
                            f"the only way to reach {dependency}: nothing to break"))
        if not dependents:
            continue
        try:
            findings += _stop_under(ctx, dependency, dependents)
        except CheckStop as stop:
            findings.append(stop.finding)
    return findings


def _stop_under(ctx: Context, dependency: str, dependents: list[str]) -> list[Finding]:
    data, _ = ctx.data_copy()
    deployment = Deployment(ctx, data, f"deps-{dependency}")
    try:
        record, problems = deployment.apply(ctx.desired)
        if record["status"] != "succeeded":
            return [Finding(status=Status.fail, subject=dependency,
                            summary=f"the scratch deployment failed: {problems[0].summary if problems else ''}",
                            evidence=failure_evidence(problems), remediation="Fix what the evidence shows.")]
        deployment.stop_service(dependency)
        return [_judge_running(name, dependency, ctx.configs[name], partial(deployment.check_now, name))
                for name in dependents if deployment.check_now(name).health is not Health.missing]
    finally:
        deployment.close()


def _judge_running(name: str, dependency: str, config: dict[str, Any],
                   check_now: Callable[[], HealthResponse]) -> Finding:
    health = config["health"]
    window = seconds(health["unhealthy_threshold"] * health["interval_ms"] + health["timeout_ms"]) + 0.5
    started = time.monotonic()
    fails = 0
    seen: Counter[str] = Counter()
    while time.monotonic() - started < window:
        answer = check_now()
        result = CheckResult(answer.health is Health.healthy, answer.message)
        seen[_short(result)] += 1
        fails = 0 if result.ok else fails + 1
        if fails >= health["unhealthy_threshold"]:
            took = time.monotonic() - started
            return Finding(status=Status.passed, subject=name,
                           summary=f"with {dependency} stopped, it went unhealthy in {took:.1f} s",
                           evidence=[f"stopped every replica of {dependency} under a scratch deployment",
                                     f"{name}'s health checks: " + ", ".join(f"{w} ×{n}" for w, n in seen.items())])
        time.sleep(min(POLL_S, health["interval_ms"] / 1000))
    return Finding(
        status=Status.fail, subject=name, summary=f"health stayed green with {dependency} (its depends_on) stopped",
        evidence=[f"stopped every replica of {dependency} under a scratch deployment",
                  f"{name}'s health checks for {window:.1f} s (unhealthy_threshold × interval + timeout): "
                  + ", ".join(f"{w} ×{n}" for w, n in seen.items())],
        remediation=HONEST)

