"""Benchmark: the wired Postgres path of the data guard, through Railguard's own code on a managed database.

A database resource is applied through the local provider's servers (:class:`DatabaseServers`: initdb, start,
its own OS user when root), filled with ``--mb`` of rows that do not compress to nothing, then each round runs
what a release does (:func:`railguard.providers.local.databases.guarded_release`: the snapshot (pg_dump -Fc),
the rehearsal (restore of that dump into a scratch database, an additive release command run twice, shapes
compared) and the release command) and a restore of the snapshot (:func:`railguard.data.snapshots.restore`:
checksums, drop, create, pg_restore). Times come from the journal steps themselves. For the snapshot target it
also times pg_dump's alternatives on the same data (compression off, directory format with 2 jobs), to say
what would bring a snapshot under 2 s. The table is the app role's and the release command gets the app's URL,
as a deployed app's would. Reports wall and CPU seconds per step (``cpu_seconds``). Figures go to
docs/benchmarks.md.

    python bench/postgres_guard.py --mb 100 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from railguard.data import snapshots
from railguard.data.postgres import ROLE, Cluster
from railguard.engine import planner
from railguard.model.plans import Action, Change, Risk
from railguard.model.resources import desired_resources
from railguard.model.specfile import parse_spec
from railguard.providers.base import ApplyRequest
from railguard.providers.local import artifacts
from railguard.providers.local.databases import backups_root, guarded_release
from railguard.providers.local.dbservers import DatabaseServers
from railguard.sources.snapshot import snapshot

SPEC = """
[app]
name = "bench"
[environments.staging]
edge_port = 18080
[databases.app]
engine = "postgres"
[services.web]
run = ["python", "app.py"]
release = ["python", "migrate.py"]
databases = ["app"]
"""
# An additive migration, as most releases run: a column added when missing (a second run changes nothing).
MIGRATE = """import os, subprocess
subprocess.run([os.environ["PSQL"], os.environ["DATABASE_URL"], "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                "ALTER TABLE items ADD COLUMN IF NOT EXISTS tags text"], check=True)
"""
TIMES: dict[str, float] = {}
CPU: dict[str, float] = {}
SERVER: list[int] = []  # the postmaster's pid, once started


def cpu_seconds() -> float:
    """CPU spent so far by this process, its finished children (pg_dump, pg_restore, psql, the release command)
    and the Postgres server (the postmaster, its reaped backends, and those still running): what a step costs
    whatever else the machine runs, unlike its wall time on 2 shared cores."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    if SERVER:
        try:
            server = psutil.Process(SERVER[0])
            found = server.cpu_times()
            total += found.user + found.system + found.children_user + found.children_system
            for child in server.children():
                try:
                    found = child.cpu_times()
                    total += found.user + found.system
                except psutil.Error:
                    pass  # ended between the listing and the read: counted in children_* from now on
        except psutil.Error:
            pass
    return total


@contextmanager
def step(name: str) -> Iterator[dict[str, Any]]:
    started, cpu = time.perf_counter(), cpu_seconds()
    detail: dict[str, Any] = {}
    yield detail
    TIMES[name] = time.perf_counter() - started
    CPU[name] = cpu_seconds() - cpu


def _servers(home: Path) -> tuple[DatabaseServers, Cluster]:
    store: dict[tuple[str, str], str] = {}
    servers = DatabaseServers(home, lambda env, names: {n: store[(env, n)] for n in names if (env, n) in store},
                              lambda env, name, value: store.__setitem__((env, name), value),
                              isolated=os.geteuid() == 0)
    spec, _ = parse_spec(SPEC)
    assert spec is not None
    desired = desired_resources(spec, "staging", "sha256:bench")
    for change in planner.plan("staging", desired, [], 0).changes:
        if change.kind == "database":
            resource = next(r for r in desired if r.address == change.address)
            servers.apply(ApplyRequest(env="staging", change=change, desired=resource, operation_id="bench",
                                       app="bench"), step)
    cluster = servers.cluster("staging", "app")
    pid = servers._pid(cluster)
    if pid is not None:
        SERVER.append(pid)
    return servers, cluster


def _fill(cluster: Cluster, mb: int) -> float:
    # ~1 kB per row of hex from random md5s: compresses about 2:1, like real text, unlike a repeated string.
    # Made by the app's own role (as its migrations would), so the release command may alter it.
    app = (ROLE, cluster.app_password) if cluster.app_password else None
    cluster.script("CREATE TABLE items (id int PRIMARY KEY, body text NOT NULL); "
                   "INSERT INTO items SELECT g, (SELECT string_agg(md5(random()::text || g || i), '') "
                   f"FROM generate_series(1, 31) i) FROM generate_series(1, {mb * 1000}) g;\n"
                   "VACUUM ANALYZE items;\n", "app", login=app)
    return int(cluster.sql("SELECT pg_database_size('app')").strip()) / 1e6


def _alternatives(cluster: Cluster, tmp: Path) -> dict[str, float]:
    """pg_dump variants on the same database: what a faster snapshot could use."""
    found: dict[str, float] = {}
    for label, args in (("-Fc -Z0 (what snapshots use)", ["-Fc", "-Z", "0"]), ("-Fc -Z1", ["-Fc", "-Z", "1"]),
                        ("-Fd -Z1 -j2", ["-Fd", "-Z", "1", "-j", "2"])):
        target = tmp / f"alt-{len(found)}"
        started = time.perf_counter()
        cluster._client("pg_dump", *args, "-d", "app", "-f", str(target))
        found[label] = time.perf_counter() - started
        size = sum(p.stat().st_size for p in target.rglob("*")) if target.is_dir() else target.stat().st_size
        found[label + " MB"] = size / 1e6
        shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink()
    return found


def _restores(cluster: Cluster, tmp: Path) -> dict[str, float]:
    """pg_restore variants of the snapshot's dump into a scratch database (what a rehearsal does first)."""
    dump = tmp / "alt.dump"
    cluster._client("pg_dump", "-Fc", "-Z", "0", "-d", "app", "-f", str(dump))
    found: dict[str, float] = {}
    for label, args, options in (("one job (a rehearsal copy: from the stream)", [], ""),
                                 ("-j 2 (what restores use)", ["-j", "2"], ""),
                                 ("--single-transaction, synchronous_commit=off", ["--single-transaction"],
                                  "-c synchronous_commit=off")):
        cluster.sql('DROP DATABASE IF EXISTS "alt" WITH (FORCE)')
        cluster.sql('CREATE DATABASE "alt" TEMPLATE template0')
        started = time.perf_counter()
        subprocess.run([str(cluster.bin / "pg_restore"), "-d", "alt", "--no-owner", "--exit-on-error", *args,
                        str(dump)], env={**cluster._client_env(), "PGOPTIONS": options}, check=True)
        found[label] = time.perf_counter() - started
    cluster.sql('DROP DATABASE IF EXISTS "alt" WITH (FORCE)')
    dump.unlink()
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="skip the pg_dump/pg_restore alternatives")
    args = parser.parse_args()
    print(f"{datetime.now(UTC).isoformat(timespec='minutes')}; {platform.node()}; {os.cpu_count()} cores; "
          f"{platform.processor() or platform.machine()}; Python {platform.python_version()}")
    tmp = Path(tempfile.mkdtemp(prefix="pgguard-", dir="/tmp"))
    os.chmod(tmp, 0o711)
    servers = None
    try:
        t = time.perf_counter()
        servers, cluster = _servers(tmp / "home")
        print(f"start-database (initdb + start, cold): {time.perf_counter() - t:.2f} s")
        size = _fill(cluster, args.mb)
        print(f"database: {size:.0f} MB")
        src = tmp / "src"
        src.mkdir()
        (src / "migrate.py").write_text(MIGRATE)
        art = artifacts.ensure(tmp / "home" / "artifacts", src, snapshot(src).digest, None, {})
        rows: list[dict[str, float]] = []
        for number in range(args.rounds):
            load = os.getloadavg()[0]
            TIMES.clear()
            CPU.clear()
            change = Change(address="staging/service.web", kind="service", action=Action.update,
                            risk=Risk.disruptive, reason="bench", before_fingerprint="a", after_fingerprint="b")
            request = ApplyRequest(env="staging", change=change, desired=None, operation_id="bench",
                                   release=number + 2)
            cluster.script("ALTER TABLE items DROP COLUMN IF EXISTS tags;", "app",  # each round migrates again
                           login=(ROLE, cluster.app_password) if cluster.app_password else None)
            guarded_release(request, home=tmp / "home", service="web",
                            config={"release": ["python", "migrate.py"], "start_timeout_ms": 600_000,
                                    "databases": {"app": "DATABASE_URL"}},
                            environ={"PATH": artifacts.base_path(art.bin_dirs), "DATABASE_URL": cluster.app_url("app"),
                                     "PSQL": str(cluster.bin / "psql")},
                            artifact=art, data_dir=tmp / "data", log_dir=tmp / "logs", step=step,
                            postgres={"app": cluster})
            root = backups_root(tmp / "home", "staging")
            backup = snapshots.listing(root)[0]
            started = time.perf_counter()
            snapshots.restore(root, backup, tmp / "data", None, {"app": cluster})
            restore_s = time.perf_counter() - started
            row = {"load": load, "snapshot": TIMES["snapshot"], "rehearse": TIMES["rehearse"],
                   "release": TIMES["release-command"], "restore": restore_s,
                   "dump MB": backup.files[0].size / 1e6, "cpu snapshot": CPU["snapshot"],
                   "cpu rehearse": CPU["rehearse"]}
            rows.append(row)
            print(f"round {number + 1}: load {load:.1f}; snapshot {row['snapshot']:.2f} s "
                  f"({row['dump MB']:.0f} MB dump); rehearsal {row['rehearse']:.2f} s; added "
                  f"{row['snapshot'] + row['rehearse']:.2f} s; release command {row['release']:.2f} s; "
                  f"restore {restore_s:.2f} s; CPU: snapshot {row['cpu snapshot']:.2f} s, rehearsal "
                  f"{row['cpu rehearse']:.2f} s, added {row['cpu snapshot'] + row['cpu rehearse']:.2f} s")
        for key in ("snapshot", "rehearse", "release", "restore", "cpu snapshot", "cpu rehearse"):
            print(f"median {key}: {statistics.median(r[key] for r in rows):.2f} s")
        print(f"median added per release: {statistics.median(r['snapshot'] + r['rehearse'] for r in rows):.2f} s")
        print("median CPU added per release: "
              f"{statistics.median(r['cpu snapshot'] + r['cpu rehearse'] for r in rows):.2f} s")
        for label, value in ({} if args.quick else _alternatives(cluster, tmp)).items():
            print(f"pg_dump {label}: {value:.2f}{'' if label.endswith('MB') else ' s'}")
        for label, value in ({} if args.quick else _restores(cluster, tmp)).items():
            print(f"pg_restore {label}: {value:.2f} s")
        print(f"load average at the end: {os.getloadavg()}")
    finally:
        if servers is not None:
            servers.stop_all()
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


if __name__ == "__main__":
    main()
