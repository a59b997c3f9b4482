"""Checks ``env-parity`` and ``env-isolation``: environments agree on names and share nothing.

env-parity: every environment gives each service the same variable and secret names (values may
differ: that is what per-environment overrides declare; a name only some environments have is a
warning); every variable the code reads (found with Python's ``ast``, see
:mod:`railguard.doctor.codescan`) or ``.env.example`` lists is declared in every environment:
a required read (``os.environ["X"]``) of an undeclared name fails, an optional one warns.
env-isolation: no two environments share an edge port, a routed host, a data folder, or a database
location, and none points at another's edge or data. Static: starts nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from itertools import combinations
from pathlib import Path

from railguard.data.libpq import NAMES as LIBPQ_NAMES
from railguard.data.sqlite import is_sqlite
from railguard.doctor.codescan import EnvRead, env_example_names, scan
from railguard.doctor.context import Context
from railguard.doctor.isolation import data_like, edge_ports_in, sqlite_path
from railguard.doctor.report import Finding, Status
from railguard.model.checks import RESERVED_PREFIX, RESERVED_VARIABLES
from railguard.model.sensitivity import looks_secret
from railguard.providers.registry import isolation_level
from railguard.sources.snapshot import list_files

PROVIDED = {*RESERVED_VARIABLES, "LANG", "VIRTUAL_ENV"}


def _names(ctx: Context, env: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name in ctx.spec.services:
        service = ctx.spec.resolved_service(env, name)
        out[name] = set(service.env) | set(service.secrets)
    return out


def _provided(ctx: Context, env: str) -> set[str]:
    names = set(PROVIDED)
    for name in ctx.spec.services:
        service = ctx.spec.resolved_service(env, name)
        names |= set(service.env) | set(service.secrets) | {service.port_env}
        # A database the service uses arrives in its env_var (Microblog's DATABASE_URL was reported undeclared),
        # and a Postgres one in libpq's own variables too.
        used = [ctx.spec.databases[d] for d in service.databases if d in ctx.spec.databases]
        names |= {db.env_var for db in used}
        if any(db.engine == "postgres" for db in used):
            names |= set(LIBPQ_NAMES)
    return names


def _snippet(services: list[str], var: str) -> str:
    service = services[0] if len(services) == 1 else "<service>"
    if looks_secret(var):
        return f"[services.{service}]\nsecrets = [\"{var}\"]   # values never live in the spec"
    return f"[services.{service}]\nenv = {{ {var} = \"...\" }}"


def parity(ctx: Context) -> list[Finding]:
    envs = list(ctx.spec.environments)
    per_env = {e: _names(ctx, e) for e in envs}
    findings: list[Finding] = []
    for service in sorted(ctx.spec.services):
        union = set().union(*(per_env[e][service] for e in envs))
        for var in sorted(union):
            having = [e for e in envs if var in per_env[e][service]]
            if len(having) != len(envs):
                missing = [e for e in envs if e not in having]
                findings.append(Finding(
                    status=Status.warn, subject=service,
                    summary=f"{var} is set only in {', '.join(having)}, not in {', '.join(missing)}",
                    evidence=[f"{e}: {service} has {', '.join(sorted(per_env[e][service])) or 'no variables'}"
                              for e in envs],
                    remediation=f"Declare {var} for every environment in [services.{service}] (env or secrets) "
                                "and override only its value per environment."))
    code = scan(ctx.source_root, ctx.files)
    reads: dict[str, list[EnvRead]] = {}
    for read in code.reads:
        if not read.name.startswith(RESERVED_PREFIX):
            reads.setdefault(read.name, []).append(read)
    provided = {e: _provided(ctx, e) for e in envs}
    services = sorted(ctx.spec.services)
    for var, where in sorted(reads.items()):
        lacking = [e for e in envs if var not in provided[e]]
        if not lacking:
            continue
        required = [r for r in where if r.required]
        shown = required or where
        how = "os.environ[...] (KeyError when unset)" if required else "with a default (silently used when unset)"
        findings.append(Finding(
            status=Status.fail if required else Status.warn, subject=var,
            summary=f"the code reads {var} but {_lack(lacking)} declare it",
            evidence=[f"{r.where}: reads {var} " + ("os.environ[...]" if r.required else "optionally")
                      for r in shown[:5]] + [f"read {how}; a replica sees only the variables the spec declares"],
            remediation=f"Declare it (for every environment):\n{_snippet(services, var)}"))
    example, listed = env_example_names(ctx.source_root)
    for var in listed:
        lacking = [e for e in envs if var not in provided[e]]
        if lacking and var not in reads:
            findings.append(Finding(
                status=Status.warn, subject=var, summary=f"{example} lists {var}, which {_lack(lacking)} declare",
                evidence=[f"{example}: {var}=...", f"not in the spec for {', '.join(lacking)}"],
                remediation=f"Declare it, or remove it from {example} if the app no longer uses it:\n"
                            f"{_snippet(services, var)}"))
    if not findings:
        findings.append(Finding(
            status=Status.passed,
            summary=f"{len(envs)} environment(s) declare the same names; the code's {len(reads)} variable(s) are all "
                    "declared",
            evidence=[f"ast scan of {code.files} Python file(s): reads {', '.join(sorted(reads)) or 'nothing'}",
                      f"{example or '.env.example'}: " + (", ".join(listed) if example else "none")]))
    if code.unparsable:
        findings.append(Finding(status=Status.warn, summary=f"{len(code.unparsable)} Python file(s) do not parse",
                                evidence=code.unparsable[:10],
                                remediation="Fix the syntax errors; these files were not scanned."))
    return findings


def _hosts(ctx: Context, env: str) -> set[str]:
    return {r.host for n in ctx.spec.services for r in ctx.spec.resolved_service(env, n).routes if r.host}


def _nested(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _shipped_databases(ctx: Context) -> list[str]:
    """SQLite files inside the app source: copied into every artifact, so every environment running the
    release (and every replica) reads and writes the same copy, and a rollback swaps the data with the code."""
    try:
        files = list_files(ctx.source_root)
    except (OSError, ValueError):
        return []
    return [rel for rel in files if is_sqlite(ctx.source_root / rel)]


def _lack(envs: list[str]) -> str:
    """"staging does not", "staging and production do not"."""
    return f"{envs[0]} does not" if len(envs) == 1 else f"{', '.join(envs[:-1])} and {envs[-1]} do not"


def workload(ctx: Context) -> list[Finding]:
    """Per environment: does its code run as its own OS user (isolated) or as the daemon's (shared-user)?"""
    level, reason = isolation_level(ctx.real_home)
    findings = []
    for env in ctx.spec.environments:
        user = ctx.spec.environments[env].user or f"rg-{ctx.spec.app.name}-{env}"
        if level == "isolated":
            findings.append(Finding(status=Status.passed, subject=env, summary=f"{env}: isolated (runs as {user})",
                                    evidence=[reason]))
        else:
            findings.append(Finding(
                status=Status.warn, subject=env, summary=f"{env}: shared-user: {reason}", evidence=[reason],
                remediation=_isolation_remedy(reason)))
    if level == "isolated":
        findings.append(_scratch(ctx))
        findings.append(_kernel_witness())
    return findings


def _isolation_remedy(reason: str) -> str:
    """What to change for the reason isolation is off (a root user whose only problem is the interpreter was
    told to run the daemon as root)."""
    docs = " (docs/guardrails.md, workload isolation)."
    if "cannot be run by other users" in reason:
        return ("Give the artifacts a Python every user can run: install Railguard in a virtualenv made from a "
                "system Python (e.g. `/usr/bin/python3 -m venv /opt/railguard`), or make each folder down to this "
                "interpreter traversable and the interpreter executable by others (chmod o+x / o+rx)" + docs)
    if "not traversable by other users" in reason:
        return "Make the folder named above traversable by other users (`chmod o+x`), or keep the state folder " \
               "under one that is (e.g. /srv)" + docs
    if "useradd" in reason:
        return "Install useradd (Debian's passwd package) so each environment gets an OS user" + docs
    if "switched off" in reason:
        return "Unset RAILGUARD_ISOLATION (or set it to auto) where the daemon starts" + docs
    return ("Run the daemon as root on a state folder other users can traverse so each environment runs as its "
            "own user" + docs)


def _kernel_witness() -> Finding:
    """Whether what the kernel refuses environments' users can be recorded here (the daemon's kernel audit,
    railguard.daemon.kernelaudit, which makes the same checks when it starts)."""
    why = None
    if os.geteuid() != 0:
        why = "the daemon is not root"
    elif shutil.which("auditctl") is None:
        why = "auditctl is not installed (Debian package auditd)"
    else:
        try:
            done = subprocess.run(["auditctl", "-s"], capture_output=True, text=True, timeout=15, check=False)
            if done.returncode != 0:
                why = f"the kernel refuses audit requests: {(done.stderr or done.stdout).strip()[:200]}"
            elif re.search(r"^enabled 2", done.stdout, re.MULTILINE):
                why = "the audit configuration is locked (enabled 2) until reboot"
        except (OSError, subprocess.SubprocessError) as exc:
            why = f"auditctl cannot be run: {exc}"
    if why is None:
        return Finding(status=Status.passed, subject="kernel audit",
                       summary="kernel-refused attempts of environments' users can be recorded (Linux audit)",
                       evidence=["an isolated daemon running as root adds audit rules for each environment's user "
                                 "and records what the kernel refuses them as security.refused events"])
    return Finding(status=Status.warn, subject="kernel audit",
                   summary=f"kernel-refused attempts are not recorded ({why})",
                   evidence=["the kernel still refuses them (isolation holds); only the record is missing"],
                   remediation="Install Debian's auditd package (for auditctl; its daemon need not run) and run the "
                               "daemon as root on a kernel with audit (docs/guardrails.md, What is recorded).")


def _scratch(ctx: Context) -> Finding:
    """Whether the doctor's own scratch build and replicas run the app's code as a scratch user of their own."""
    user = ctx.scratch.user
    if user is not None:
        return Finding(
            status=Status.passed, subject="doctor",
            summary=f"the doctor's scratch runs are isolated: they run as {user}",
            evidence=["the scratch build runs as its own build user and the release command, replicas and drills "
                      f"as {user}, owner of the scratch data folders only: the app's code cannot read the state "
                      "folder or the keys from there"])
    uid = os.geteuid()
    who = "root" if uid == 0 else f"uid {uid}"
    return Finding(
        status=Status.warn if uid == 0 else Status.passed, subject="doctor",
        summary=f"the doctor's scratch build and replicas are not isolated: they run as {who}",
        evidence=["the environments' processes are isolated, but the checks that build and start the app in a "
                  "scratch folder (artifact, start, health) run it with the doctor's own authority"
                  + ("; a scratch user needs the scratch folder ($TMPDIR) and the Python the artifacts are made "
                     "from to be reachable by other users" if uid == 0 else "")],
        remediation=("Point TMPDIR at a folder other users can traverse (e.g. /tmp) so the scratch runs as its "
                     "own user, or run `railguard doctor` only on app code you have reviewed." if uid == 0 else ""))


def isolation(ctx: Context) -> list[Finding]:
    envs = list(ctx.spec.environments)
    findings: list[Finding] = workload(ctx)
    shipped = _shipped_databases(ctx)
    if shipped:
        findings.append(Finding(
            status=Status.fail, subject="artifact",
            summary=f"a database ships inside the release artifact: {shipped[0]}",
            evidence=[f"{rel}: a SQLite database in the app source ({ctx.source_root}), copied into each release's "
                      "artifact" for rel in shipped[:10]],
            remediation="Keep data out of the artifact: open the database under $RAILGUARD_DATA_DIR (each "
                        "environment's own data folder), and add the file to .railguardignore / .gitignore."))
    if len(envs) < 2:
        return findings + [Finding(status=Status.skipped, summary="only one environment: nothing to keep apart")]
    for a, b in combinations(envs, 2):
        problems: list[str] = []
        ea, eb = ctx.spec.environments[a], ctx.spec.environments[b]
        if ea.edge_port == eb.edge_port:
            problems.append(f"both use edge port {ea.edge_port}")
        shared_hosts = sorted(_hosts(ctx, a) & _hosts(ctx, b))
        if shared_hosts:
            problems.append(f"both route host(s) {', '.join(shared_hosts)}")
        da, db = ctx.data_dir(a), ctx.data_dir(b)
        if _nested(da, db):
            problems.append(f"their data folders overlap ({da} and {db})")
        problems += _shared_values(ctx, a, b) + _points_at(ctx, a, b) + _points_at(ctx, b, a)
        if problems:
            findings.append(Finding(
                status=Status.fail, subject=f"{a}/{b}", summary=f"{a} and {b} are not isolated: {problems[0]}",
                evidence=problems,
                remediation=f"Give each environment its own edge_port, hosts, data_dir and database: override "
                            f"the values under [environments.{b}.services.<name>].env."))
        else:
            findings.append(Finding(
                status=Status.passed, subject=f"{a}/{b}", summary=f"{a} and {b} share nothing",
                evidence=[f"edge ports {ea.edge_port}/{eb.edge_port}; data {da} / {db}; "
                          f"hosts {sorted(_hosts(ctx, a)) or 'any'} / {sorted(_hosts(ctx, b)) or 'any'}",
                          "secret values are not stored by Railguard yet, so they are not compared"]))
    return findings


def _shared_values(ctx: Context, a: str, b: str) -> list[str]:
    found = []
    for name in sorted(ctx.spec.services):
        va, vb = ctx.spec.resolved_service(a, name).env, ctx.spec.resolved_service(b, name).env
        for var in sorted(set(va) & set(vb)):
            if va[var] == vb[var] and data_like(var, va[var]):
                path = sqlite_path(va[var])
                why = " (a relative path resolves in the release's artifact folder, which environments running " \
                      "the same release share)" if path is not None and not path.startswith("/") else ""
                found.append(f"{name}: {var} is {va[var]!r} in both{why}")
    return found


def _points_at(ctx: Context, a: str, b: str) -> list[str]:
    """Values of environment ``a`` that name environment ``b``'s edge port or data folder."""
    found = []
    other_port, other_data = ctx.spec.environments[b].edge_port, str(ctx.data_dir(b))
    for name in sorted(ctx.spec.services):
        for var, value in sorted(ctx.spec.resolved_service(a, name).env.items()):
            if other_port in edge_ports_in(value) and other_port != ctx.spec.environments[a].edge_port:
                found.append(f"{a}'s {name}.{var} = {value!r} points at {b}'s edge (port {other_port})")
            if other_data in value and not str(ctx.data_dir(a)).startswith(other_data):
                found.append(f"{a}'s {name}.{var} = {value!r} points into {b}'s data folder")
    return found
