"""The local provider: the embedded runtime behind the provider protocol.

Runs each service as replica processes on this machine behind one Caddy edge. A
service change is a blue-green rollout (build the artifact, run the release command,
start new replicas on fresh ports, hold the readiness gate, switch the edge in one
atomic config change, drain the old replicas, keep them warm for an instant
rollback). Anything that fails before the switch leaves traffic on the old replicas.
Everything it runs is recorded in ``runtime.json`` so a restarted daemon re-adopts
it (:meth:`LocalProvider.adopt`). Constructed by :mod:`railguard.providers.registry`
and driven by the daemon (and by the doctor, on a scratch state folder) only through
the protocol in :mod:`railguard.providers.base`.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil

from railguard.model.api import KeptRelease
from railguard.model.diagnostics import Diagnostic, error
from railguard.model.plans import Action
from railguard.model.resources import LiveStatus, ObservedResource, service_address
from railguard.providers.base import (
    LATEST,
    AdoptResponse,
    ApplyRequest,
    ApplyResponse,
    Health,
    HealthRequest,
    HealthResponse,
    ObserveRequest,
    ObserveResponse,
    Progress,
    ProviderEvent,
    ReplicaHealth,
    SecretSource,
    ShutdownRequest,
    TickRequest,
    TickResponse,
)
from railguard.providers.listeners import Listener, holders, loopback_listeners
from railguard.providers.local import artifacts, isolation
from railguard.providers.local.accesslog import AccessReader
from railguard.providers.local.canary import Canaries
from railguard.providers.local.commands import Commands
from railguard.providers.local.databases import restore_change
from railguard.providers.local.dbservers import RESTARTED_EVENT, DatabaseServers, SecretWriter
from railguard.providers.local.edge import CaddyEdge, EdgeError, PortInUse
from railguard.providers.local.health import CheckResult
from railguard.providers.local.ownership import user_of
from railguard.providers.local.processes import ReplicaRecord, ReplicaSpec, Supervisor, allocate_port, is_alive
from railguard.providers.local.processes import stop as stop_process
from railguard.providers.local.replicas import (
    Failure,
    check,
    gate,
    instance_id,
)
from railguard.providers.local.replicas import stop_all as stop_replicas
from railguard.providers.local.rollout import _stepper
from railguard.providers.local.runtime import CANARY, LIVE, PENDING, WARM, Replica, ReplicaSet, RuntimeState
from railguard.providers.local.traffic import Traffic
from railguard.providers.local.views import Views, service_health

log = logging.getLogger(__name__)
PORT_HELD_EVENT = "replica.port_held"  # a replica's port held by another process (the daemon records it as security)
EDGE_PORT_HELD_EVENT = "edge.port_held"  # the edge's own port held by another process when Caddy was restarted
EDGE_RESTARTED_EVENT = "edge.restarted"  # a Caddy that had died, restarted by the daemon
EDGE_FAILED_EVENT = "edge.restart_failed"  # ...or not (yet): tried again after the backoff
EDGE_BACKOFF_S, EDGE_BACKOFF_MAX_S = 0.5, 30.0  # restarts of a Caddy that died: first wait, longest wait

REMEDIATION = {
    "rollout.build_failed": "Fix the build (see log_tail), then plan and apply again. Traffic is unchanged.",
    "rollout.release_failed": "Fix the release command (see log_tail); it must succeed and be safe to run twice. "
                              "Traffic is unchanged.",
    "rollout.start_failed": "Fix `run` in the spec (argv, no shell), then `railguard plan` and apply again.",
    "rollout.user_taken": "Remove `user` from the environment in the spec (Railguard then creates and keeps "
                          "rg-<app>-<environment>), or name a new account of this environment's own. Traffic is "
                          "unchanged.",
    "rollout.data_dir_taken": "Point the environment's data_dir at a new or empty folder of its own (or remove it to "
                              "use the default), or hand that folder to the environment on purpose with the chown "
                              "the detail names. Traffic is unchanged.",
    "rollout.crashed": "Read log_tail for the crash, fix it, then plan and apply again. Traffic is unchanged.",
    "rollout.ignores_port": "Make the app listen on the port given in $PORT (or `port_env`). Traffic is unchanged.",
    "rollout.port_taken": "Another process (named in the detail, with its OS user) listens on the port allocated to "
                          "the replica; nothing was routed to it. Stop that process (a security incident names its "
                          "environment when it is one), then plan and apply again. Traffic is unchanged.",
    "rollout.unhealthy": "Check the health endpoint and log_tail; raise start_timeout if the app is just slow.",
    "rollout.artifact_missing": "Roll back to a release whose artifact still exists (`railguard releases`), "
                                "or deploy the current source with `railguard plan` and apply.",
    "artifact.tampered": "Something rewrote files of a built artifact (see changes). Find what wrote them, then "
                         "`railguard gc` or delete the artifact folder and deploy again; it is rebuilt from reviewed "
                         "source. Traffic is unchanged.",
    "artifact.write_refused": "Releases are read-only: write data under $RAILGUARD_DATA_DIR (the environment's "
                              "data folder), e.g. the SQLite file, uploads, Flask's instance folder. Traffic is "
                              "unchanged.",
    "data.loss_detected": "Keep the data (migrate in place instead of dropping), or acknowledge the loss in a new "
                          "plan: `railguard plan --env ENV --allow-data-loss TABLE...`. Nothing ran on the real data.",
    "data.rehearsal_failed": "Fix the release command (see its rehearsal log); it must succeed on a copy of the "
                             "real data and again on a second run. Nothing ran on the real data.",
    "data.rehearsal_reached_real_database": "Make the release command use the database URL it is given "
                                            "($DATABASE_URL or the variable the spec names), never a database "
                                            "name or URL of its own; then plan and apply again. Nothing ran on "
                                            "the real data.",
    "restore.backup_missing": "List what can be restored with `railguard backups --env ENV`.",
    "restore.checksum_mismatch": "The copy was altered after it was taken; restore another backup "
                                 "(`railguard backups --env ENV`).",
    "rollout.static_missing": "Make the build produce the folder (e.g. build = [\"python\", \"manage.py\", "
                              "\"collectstatic\", \"--noinput\"]) or fix `folder`, then plan and apply again. "
                              "Traffic is unchanged.",
    "rollout.static_outside": "Keep the static folder and every link in it inside the app source (copy files "
                              "instead of linking them), then plan and apply again. Traffic is unchanged.",
    "database.start_failed": "Read the server's log line above (and the log file in extra.log): free the port, the "
                             "disk or the data folder it names, then plan and apply again. The services that use "
                             "the database were not started.",
    "database.missing": "Add the database to the spec ([databases.<name>]) and apply it before the services "
                        "that use it.",
    "edge.port_in_use": "Stop the program using the port or choose another edge_port, then plan and apply again.",
    "edge.failed": "Check `railguard daemon status` and the edge logs in the state folder's edge/<env>/ (caddy.log, "
                   "caddy.out).",
}


class LocalProvider(Canaries, Views, Commands, Traffic):
    kind = "local"

    def __init__(self, home: Path, secrets: SecretSource | None = None, supervisor: Supervisor | None = None,
                 store_secret: SecretWriter | None = None) -> None:
        self.home = home
        # One Caddy per environment: a config change (every switch) re-binds a Caddy's listeners and closes its
        # idle keep-alive connections, so staging's deploys must never touch production's listener.
        self.edges: dict[str, CaddyEdge] = {}
        self.supervisor = supervisor or Supervisor()
        self.state = RuntimeState(home / "runtime.json")
        self.health_results: dict[str, tuple[CheckResult, int, float]] = {}  # name -> (last, fails in a row, at)
        self.restarts_seen: dict[str, int] = {}  # replica name -> restarts already reported as events
        self._restarts_total = 0  # the supervisor's restart total when ``restarts_seen`` was last brought up to date
        self.notices: list[ProviderEvent] = []  # found during a change (a tampered artifact), sent on the next tick
        self.refused: set[str] = set()  # replicas kept down because their artifact was tampered with (one event each)
        self._access: dict[str, AccessReader] = {}  # env -> its edge's access log, read by ``traffic``
        self._access_since = time.time()  # lines stamped before this provider existed were another daemon's
        self.supervisor.on_restart = self._restarted
        self.supervisor.before_start = self._artifact_refused
        self.supervisor.on_exit = self._replica_exited
        self._readmitting: set[str] = set()  # replicas whose restart is being gated right now (one thread each)
        self._flagged: set[tuple[str, int, int]] = set()  # (replica, port, holder uid) already reported
        self._edge_retry: dict[str, tuple[float, float, str]] = {}  # env -> (next try, backoff, last failure)
        # Secret values come from the daemon when a process starts; they are never written to runtime.json.
        self.secret_values: SecretSource = secrets or (lambda env, versions: {})
        self.isolation = isolation.detect(home)
        self.databases = DatabaseServers(home, self.secret_values, store_secret, self.isolation.isolated)

    # -- lifecycle -----------------------------------------------------------------------------
    def adopt(self) -> AdoptResponse:
        """Take over what a previous daemon left running, then supervise it; the notes go to the events."""
        notes = self._adopt()
        self.supervisor.run_in_thread()
        return AdoptResponse(notes=notes)

    def _adopt(self) -> list[str]:
        notes: list[str] = self.databases.adopt()  # first: the replicas adopted next connect to them
        unproven: list[Replica] = []
        if self.isolation.isolated:
            isolation.protect_home(self.home)
        with self.state.lock:
            for env, runtime in self.state.envs.items():
                for rs in list(runtime.sets):
                    if rs.role == PENDING:  # not recorded as routed: it goes, once the edge routes the live set
                        unproven += rs.replicas
                        runtime.sets.remove(rs)
                        notes.append(f"{env}/{rs.service}: stopped unproven replicas of release {rs.release}")
                        continue
                    for replica in rs.replicas:
                        alive = is_alive(replica.record)
                        if not alive and replica.spec.port is not None:  # it ended while no daemon ran: its port
                            replica.spec = self._fresh_spec(rs.config, replica.spec)  # may be anyone's now
                            replica.routed = False
                        if replica.secret_names:  # runtime.json holds names only: restore the pinned values
                            values = {**self.secret_values(env, replica.secret_versions or
                                                           {n: LATEST for n in replica.secret_names}),
                                      **self._adopted_database_env(env, rs.config, replica)}
                            replica.spec = replace(replica.spec, env={**replica.spec.env, **values})
                        replica.record = self.supervisor.add(replica.spec, replica.record)
                        notes.append(f"{replica.spec.name}: {'adopted pid' if alive else 'restarted as pid'} "
                                     f"{replica.record.pid}")
            notes += self._kill_orphans()
            self.state.save()
            unproven_routes = [r.spec.name for r in self._replicas() if not r.routed]
            with_edge = [env for env, runtime in self.state.envs.items() if runtime.edge is not None]
            for env in with_edge:
                self.edge(env).start()  # adopts a Caddy that kept serving while no daemon ran
                self._sync_edge(env)
        # Stopped only now: a daemon killed mid-switch may have routed them already; the edge just moved back.
        stop_replicas(unproven)
        for name in unproven_routes:  # restarted (or left unproven by the previous daemon): gated before routed
            self._gate_restarted(name)
        return notes

    def _database_env(self, env: str, config: dict[str, Any], data_dir: Path | None = None) -> dict[str, str]:
        return self.databases.env_for(env, config, data_dir or self.home / "data" / env)

    def _adopted_database_env(self, env: str, config: dict[str, Any], replica: Replica) -> dict[str, str]:
        try:
            return self._database_env(env, config, Path(replica.spec.env.get("RAILGUARD_DATA_DIR", "")) or None)
        except Failure:  # its database is gone: the replica runs on without the URL, and its health says so
            return {}

    def edge(self, env: str) -> CaddyEdge:
        found = self.edges.get(env)
        if found is None:
            found = self.edges[env] = CaddyEdge(self.home / "edge" / env, self._edge_user())
        return found

    def _edge_user(self) -> isolation.RunAs | None:
        """Caddy's own user when the runtime isolates (it never runs with the daemon's authority then)."""
        return isolation.ensure_user(isolation.EDGE_USER) if self.isolation.isolated else None

    def _known_pids(self) -> set[int]:
        return {r.record.pid for rt in self.state.envs.values() for s in rt.sets for r in s.replicas}

    def _kill_orphans(self) -> list[str]:
        mine, known, notes = instance_id(self.home), self._known_pids(), []
        # A known replica's own processes (gunicorn's workers, uvicorn --workers) carry the mark too and share its
        # process group: they are no orphans, and killing "their" group killed the replica at every daemon start.
        groups = {r.record.pgid for rt in self.state.envs.values() for s in rt.sets for r in s.replicas}
        for proc in psutil.process_iter(["pid"]):
            try:
                if proc.pid in known or proc.environ().get("RAILGUARD_INSTANCE") != mine:
                    continue
                group = os.getpgid(proc.pid)
                if group in groups or any(parent.pid in known for parent in proc.parents()):
                    continue
                os.killpg(group, signal.SIGKILL)
                notes.append(f"killed orphan pid {proc.pid} ({' '.join(proc.cmdline())[:80]})")
            except (psutil.Error, OSError):
                continue
        return notes

    def _artifact_refused(self, spec: ReplicaSpec) -> str | None:
        """Why a crashed replica must not start again: its artifact no longer matches its manifest."""
        try:
            artifacts.verify(artifacts.at(spec.cwd.parent, ""))
        except artifacts.ArtifactTampered as exc:
            note = f"{spec.name} was not restarted: {exc}"
            with self.state.lock:
                if spec.name not in self.refused:
                    self.refused.add(spec.name)
                    self.notices.append(ProviderEvent(kind="artifact.tampered", env=spec.name.split(".", 1)[0],
                                                      message=note))
            return str(exc)
        return None

    def _restarted(self, name: str, record: ReplicaRecord) -> None:
        with self.state.lock:
            for replica in self._replicas():
                if replica.spec.name == name:
                    replica.record = record
            self.state.save()
        self._gate_restarted(name)

    # -- routes of replicas that ended: see docs/guardrails.md ("Ports and routes") ------------------------------
    def _find(self, name: str) -> tuple[str, ReplicaSet, Replica] | None:
        for env, runtime in self.state.envs.items():
            for rs in runtime.sets:
                for replica in rs.replicas:
                    if replica.spec.name == name:
                        return env, rs, replica
        return None

    @staticmethod
    def _fresh_spec(config: dict[str, Any], spec: ReplicaSpec) -> ReplicaSpec:
        """``spec`` on a newly allocated port (as a new replica's): its old port may be held by anyone now."""
        port = allocate_port()
        env = dict(spec.env)
        env[config.get("port_env") or "PORT"] = str(port)
        return replace(spec, port=port, env=env)

    def _replica_exited(self, name: str, spec: ReplicaSpec) -> ReplicaSpec | None:
        """The supervisor saw ``name`` end: out of the routes at once, restarted on a fresh port (see on_exit)."""
        if spec.port is None:
            return None
        with self.state.lock:
            found = self._find(name)
            if found is None:
                return None
            env, rs, replica = found
            fresh = self._fresh_spec(rs.config, replica.spec)
            routed, replica.routed, replica.spec = replica.routed, False, fresh
            self.health_results.pop(name, None)
            self.state.save()
            if routed and rs.role in (LIVE, CANARY) and self.state.env(env).edge is not None:
                self.edge(env).withdraw(env, {spec.port})
        return fresh

    def _gate_restarted(self, name: str) -> None:
        """Hold a restarted replica's readiness gate (with the port ownership check) on its own thread; route it
        only once it passed."""
        with self.state.lock:
            found = self._find(name)
            if found is None or found[2].routed or name in self._readmitting:
                return
            self._readmitting.add(name)
        threading.Thread(target=self._readmit, args=(name,), name=f"railguard-gate-{name}", daemon=True).start()

    def _readmit(self, name: str) -> None:
        try:
            with self.state.lock:
                found = self._find(name)
                if found is None or found[2].routed:
                    return
                env, rs, replica = found
                proving = Replica(replica.spec, replica.record)
            try:
                gate([proving], rs.config)
            except Failure as exc:
                log.warning("restarted replica %s not routed: %s", name, exc.cause)
                if exc.code == "rollout.port_taken" and isinstance(exc.extra.get("holder_uid"), int):
                    self._port_held(env, name, int(exc.extra["port"]), int(exc.extra["holder_uid"]), exc.cause)
                return  # the monitor looks again at every interval (or the supervisor restarts it)
            self._admit(name, proving.record)
        finally:
            with self.state.lock:
                self._readmitting.discard(name)

    def _admit(self, name: str, record: ReplicaRecord) -> None:
        with self.state.lock:
            found = self._find(name)
            if found is None or found[2].record.pid != record.pid or found[2].routed:
                return
            env, rs, replica = found
            replica.routed = True
            self.health_results[name] = (CheckResult(True, "passed the readiness gate"), 0, time.monotonic())
            self.state.save()
            if rs.role in (LIVE, CANARY):
                try:
                    self._sync_edge(env)
                except EdgeError as exc:  # the edge is down: its supervisor routes it with the rest when back
                    log.warning("routing restarted replica %s failed: %s", name, exc)

    def _port_held(self, env: str, name: str, port: int, uid: int, reason: str) -> None:
        """Report a foreign listener on replica ``name``'s port once (per holder): the daemon records it against
        the holder's environment (the uid is the kernel's word), this environment's timeline names it too."""
        with self.state.lock:
            if (name, port, uid) in self._flagged:
                return
            self._flagged.add((name, port, uid))
            self.notices.append(ProviderEvent(
                kind=PORT_HELD_EVENT, env=env, message=f"{name}: {reason}; not routed there",
                data={"uid": uid, "port": port, "replica": name, "victim_env": env}))

    def _replicas(self) -> Iterator[Replica]:
        for runtime in self.state.envs.values():
            for rs in runtime.sets:
                yield from rs.replicas

    def tick(self, request: TickRequest) -> TickResponse:
        """Health checks due, expired rollback windows, crash restarts the supervisor carried out, dead edges."""
        self.monitor()
        events = [ProviderEvent(kind="release.warm_stopped", env=env, message=note)
                  for env, note in self._expire_warm(request.now, request.stop_timeout)]
        events += self._supervise_edges()
        with self.state.lock:
            events += self.notices
            self.notices = []
        events += [ProviderEvent(kind=RESTARTED_EVENT, env=env, message=note)
                   for env, note in self.databases.tick()]
        # Restart counts only grow: while the supervisor's total is where it was, no replica's count moved (a
        # look at every replica, each under the supervisor's lock, twice a second, found nothing 99.9% of the time).
        total = self.supervisor.restarted_total
        if total == self._restarts_total:
            return TickResponse(events=events)
        self._restarts_total = total
        for name, record in self.supervisor.records().items():
            count = self.restarts(name)
            if count != self.restarts_seen.get(name, 0):
                self.restarts_seen[name] = count
                events.append(ProviderEvent(
                    kind="replica.restarted", env=name.split(".", 1)[0],
                    message=f"{name} {self._last_exit(name) or 'crashed'}; restarted as pid {record.pid} "
                            f"(restart #{count})"))
        return TickResponse(events=events)

    def _supervise_edges(self, now: float | None = None) -> list[ProviderEvent]:
        """Restart the Caddy of an environment with an edge that is not running (it crashed, was killed), with a
        bounded backoff, and route it again (tried again until that succeeds). Its port held by another process:
        reported (naming the holder's user; the daemon records it against its environment) and tried again after
        the backoff."""
        now = time.monotonic() if now is None else now
        events: list[ProviderEvent] = []
        with self.state.lock:
            envs = [env for env, runtime in self.state.envs.items() if runtime.edge is not None]
        for env in envs:
            edge = self.edge(env)
            # A running Caddy is left alone unless it is one this supervisor restarted and could not route yet (its
            # port was held): a config changed behind Railguard's back is drift, for the observer to report.
            if env not in self._edge_retry and edge.running():
                continue
            due, delay, last = self._edge_retry.get(env, (0.0, EDGE_BACKOFF_S, ""))
            if now < due:
                continue
            self._edge_retry[env] = (now + delay, min(delay * 2, EDGE_BACKOFF_MAX_S), last)
            with self.state.lock:
                runtime = self.state.env(env)
                if runtime.edge is None:  # deleted meanwhile
                    continue
                port = int(runtime.edge["config"]["port"])
                try:
                    edge.start()
                    self._sync_edge(env)
                except PortInUse as exc:
                    holder = next(iter(holders(port)), None)
                    # Said once per holder (Caddy's own words for the refusal vary from one try to the next).
                    key = f"held {port} by {holder.uid if holder is not None else '?'}"
                    if key != last:
                        why = f"port {port} is held by another process: {exc}"
                        data: dict[str, str | int] = {"port": port, "victim_env": env}
                        if holder is not None:
                            data["uid"] = holder.uid
                            why += f" (OS user {user_of(holder.uid)}, uid {holder.uid})"
                        events.append(ProviderEvent(kind=EDGE_PORT_HELD_EVENT, env=env, data=data,
                                                    message=f"the edge of {env} is down and could not be restarted: "
                                                            f"{why}; retrying"))
                    self._edge_retry[env] = (*self._edge_retry[env][:2], key)
                    continue
                except EdgeError as exc:
                    why = str(exc).splitlines()[0]
                    if why != last:
                        events.append(ProviderEvent(kind=EDGE_FAILED_EVENT, env=env,
                                                    message=f"the edge of {env} is down and could not be restarted: "
                                                            f"{why}; retrying"))
                    self._edge_retry[env] = (*self._edge_retry[env][:2], why)
                    continue
            self._edge_retry.pop(env, None)
            events.append(ProviderEvent(kind=EDGE_RESTARTED_EVENT, env=env,
                                        message=f"the edge of {env} was not running (Caddy exited, not by "
                                                f"Railguard); restarted as pid {edge.pid()} and routed again"))
        return events

    def _expire_warm(self, now: float | None, stop_timeout: float | None) -> list[tuple[str, str]]:
        """Stop warm replica sets whose rollback window has passed: (env, note) for each."""
        now = time.time() if now is None else now
        expired: list[tuple[str, ReplicaSet]] = []
        with self.state.lock:
            for env, runtime in self.state.envs.items():
                for rs in list(runtime.sets):
                    if rs.role == WARM and (rs.warm_until or 0) <= now:
                        runtime.sets.remove(rs)
                        expired.append((env, rs))
            if expired:
                self.state.save()
        for _, rs in expired:
            self._retire(rs, stop_timeout)
        return [(env, f"{rs.service} release {rs.release}: rollback window over, warm replicas stopped")
                for env, rs in expired]

    def shutdown(self, request: ShutdownRequest) -> None:
        """Stop supervising; with ``everything``, also stop every replica and edge."""
        self.supervisor.shutdown_thread()
        if request.everything:
            self._stop_everything(request.stop_timeout)

    def _stop_everything(self, stop_timeout: float | None) -> None:
        """Stop every replica of every environment at once (in parallel), forget them, stop the edges."""
        with self.state.lock:
            replicas = [r for runtime in self.state.envs.values() for rs in runtime.sets for r in rs.replicas]
            for runtime in self.state.envs.values():
                runtime.sets.clear()
                runtime.edge = None
            self.state.save()
        for replica in replicas:
            self.supervisor.forget(replica.spec.name)
        stop_replicas(replicas, stop_timeout)
        for edge in self.edges.values():
            edge.stop()
        # Edges of environments not touched this run (a Caddy or its upstream resolver may outlive the other).
        edges = self.home / "edge"
        for folder in {p.parent for name in ("*/caddy.pid", "*/resolver.pid") for p in edges.glob(name)}:
            CaddyEdge(folder, self._edge_user()).stop()
        self.databases.stop_all()  # last: no replica is left to lose its connection

    def prune_artifacts(self, kept: list[KeptRelease], dry_run: bool = False) -> list[str]:
        """Delete artifacts no kept release (``desired`` of each) and no running replica set uses; return their ids.

        The caller holds the state lock, so no rollout builds or starts an artifact meanwhile.
        """
        keep = artifacts.referenced([r for release in kept for r in release.desired])
        with self.state.lock:  # live, warm and pending sets run from their folders whatever the records say
            keep |= {Path(rs.artifact).name for runtime in self.state.envs.values() for rs in runtime.sets}
        return artifacts.prune(self.home / "artifacts", keep, dry_run)

    def _retire(self, rs: ReplicaSet, stop_timeout: float | None = None) -> None:
        for replica in rs.replicas:
            self.supervisor.remove(replica.spec.name, stop_timeout)

    def monitor(self) -> None:
        """One pass of health checks on live (and canary) replicas, each at its configured interval.

        Each check first proves the listener on the replica's port is the replica's own, from one read of the
        kernel's listener table for the whole pass; a foreign listener takes the replica out of the routes, is
        reported against its holder, and the replica is restarted on a fresh port."""
        now = time.monotonic()
        with self.state.lock:
            targets = [(env, rs.config, Replica(r.spec, r.record), r.routed) for env, rt in self.state.envs.items()
                       for rs in rt.sets if rs.role in (LIVE, CANARY) for r in rs.replicas]
        table: dict[int, list[Listener]] | None = None
        for env, config, replica, routed in targets:
            interval = (config["health"] or {}).get("interval_ms", 5000) / 1000
            last = self.health_results.get(replica.spec.name)
            if last is not None and now - last[2] < interval:
                continue
            if not routed and (replica.spec.name in self._readmitting or not self.supervisor.alive(replica.record)):
                continue  # its restart's gate runs (or it is down): that decides
            if replica.spec.port is None and (config["health"] or {}).get("mode") != "exec":
                # Process-only: the check is whether it runs, which the supervisor's pass (≤ one tick old, one poll
                # for all) already knows; reading /proc for each of 200 replicas at once was a burst every 5 s.
                result = CheckResult(self.supervisor.alive(replica.record), "process is running")
            else:
                if table is None:
                    table = loopback_listeners()  # once per pass, only when a check is due
                result = check(config, replica, table)
            fails = 0 if result.ok else (last[1] + 1 if last else 1)
            self.health_results[replica.spec.name] = (result, fails, now)
            if result.conclusive and result.holder is not None and replica.spec.port is not None:
                self._foreign(env, replica, result)
            elif result.ok and not routed:  # proven again (its gate had failed): back in the routes
                self._admit(replica.spec.name, replica.record)

    def _foreign(self, env: str, replica: Replica, result: CheckResult) -> None:
        """A replica's port is held by another process: out of the routes now, reported, restarted elsewhere."""
        name, port = replica.spec.name, replica.spec.port
        assert port is not None and result.holder is not None
        self._port_held(env, name, port, result.holder, result.detail)
        with self.state.lock:
            found = self._find(name)
            if found is None or found[2].record.pid != replica.record.pid:
                return
            _, rs, live = found
            was, live.routed = live.routed, False
            self.state.save()
            if was and self.state.env(env).edge is not None:
                self.edge(env).withdraw(env, {port})
        if is_alive(replica.record):  # it does not hold its port: a restart gives it a fresh one (see on_exit)
            threading.Thread(target=stop_process, args=(replica.record, replica.spec.stop_timeout), daemon=True,
                             name=f"railguard-stop-{name}").start()

    def replica_health(self, config: dict[str, Any], replica: Replica) -> ReplicaHealth:
        found = self.health_results.get(replica.spec.name)
        if not self.supervisor.alive(replica.record):
            return ReplicaHealth.down
        if found is None:
            return ReplicaHealth.unknown
        threshold = (config["health"] or {}).get("unhealthy_threshold", 3)
        if found[1] == 0:
            return ReplicaHealth.healthy
        return ReplicaHealth.unhealthy if found[1] >= threshold else ReplicaHealth.failing

    # -- observe ---------------------------------------------------------------------------------
    def observe(self, request: ObserveRequest) -> ObserveResponse:
        with self.state.lock:
            runtime = self.state.env(request.env)
            found = [self._observed_service(request.env, rs) for rs in runtime.sets if rs.role == LIVE]
            if runtime.edge is not None:
                edge = self.edge(request.env)
                serving = edge.serves(request.env, fresh=request.fresh)
                found.append(ObservedResource(
                    address=f"{request.env}/edge", kind="edge", fingerprint=runtime.edge["fingerprint"],
                    config=runtime.edge["config"], depends_on=runtime.edge["depends_on"],
                    status=LiveStatus.running if serving else LiveStatus.missing,
                    message="" if serving else "the edge does not serve this environment"))
        found += self.databases.observe(request.env)
        return ObserveResponse(resources=sorted(found, key=lambda r: r.address))

    def _observed_service(self, env: str, rs: ReplicaSet) -> ObservedResource:
        alive = sum(1 for r in rs.replicas if self.supervisor.alive(r.record))
        total = len(rs.replicas)
        status = (LiveStatus.running if alive == total else LiveStatus.missing if alive == 0
                  else LiveStatus.degraded)
        return ObservedResource(address=service_address(env, rs.service), kind="service",
                                fingerprint=rs.fingerprint, config=rs.config, depends_on=rs.depends_on,
                                status=status, release=rs.release, message=f"{alive}/{total} replicas running")

    def health(self, request: HealthRequest) -> HealthResponse:
        env, _, name = request.address.partition("/service.")
        with self.state.lock:
            live = self.state.env(env).live(name)
        if live is None:
            return HealthResponse(address=request.address, health=Health.missing)
        if request.fresh:
            results = [check(live.config, r) for r in live.replicas]
            ok = bool(results) and all(r.ok for r in results)
            return HealthResponse(address=request.address, health=Health.healthy if ok else Health.degraded,
                                  message="; ".join(r.detail for r in results))
        states = [self.replica_health(live.config, r) for r in live.replicas]
        health = service_health(states)
        # What the failing checks saw, e.g. "port 41234 is held by another user: rg-app-staging (uid 998)".
        seen = [f"{r.spec.name}: {found[0].detail}" for r in live.replicas
                if (found := self.health_results.get(r.spec.name)) is not None and not found[0].ok]
        return HealthResponse(address=request.address, health=health,
                              message="" if health is Health.healthy else "; ".join([", ".join(states), *seen]))

    # -- apply -----------------------------------------------------------------------------------
    def apply_change(self, request: ApplyRequest, progress: Progress | None = None) -> ApplyResponse:
        step = _stepper(progress)
        change = request.change
        try:
            if change.kind == "edge":
                return self._apply_edge(request, step)
            if change.action is Action.command:
                return self._approved_command(request, progress)
            if change.kind == "database" and change.action is not Action.restore:
                return ApplyResponse(ok=True, observed=self.databases.apply(request, step))
            if change.kind == "database":
                named = {"databases": {request.desired.name: ""}} if request.desired else {}
                restore_change(request, home=self.home, data_dir=self._data_dir(request), step=step,
                               postgres=self.databases.postgres_of(request.env, named))
                return ApplyResponse(ok=True, observed=None)
            if change.action is Action.delete:
                return self._delete_service(request, step)
            if change.action is Action.update:
                return self._update_service(request, step)
            return self._rollout(request, step)
        except Failure as exc:
            if exc.code == "rollout.port_taken" and isinstance(exc.extra.get("holder_uid"), int):
                self._port_held(request.env, str(exc.extra.get("replica")), int(exc.extra["port"]),
                                int(exc.extra["holder_uid"]), exc.cause)
            if exc.code == "artifact.tampered":
                with self.state.lock:
                    self.notices.append(ProviderEvent(kind="artifact.tampered", env=request.env,
                                                      message=f"{change.address}: start refused: {exc.cause}"))
            return self._failed(request, exc.code, exc.summary, exc.cause, exc.extra)
        except artifacts.ArtifactError as exc:
            code = "rollout.artifact_missing" if exc.missing else "rollout.build_failed"
            return self._failed(request, code, "The artifact could not be built" if not exc.missing
                                else "The release's artifact is gone", str(exc), {"log_tail": exc.log_tail})
        except EdgeError as exc:
            code = "edge.port_in_use" if isinstance(exc, PortInUse) else "edge.failed"
            return self._failed(request, code, "The edge rejected the change", str(exc), {})

    def _failed(self, request: ApplyRequest, code: str, summary: str, cause: str,
                extra: dict[str, Any]) -> ApplyResponse:
        runtime = self.state.env(request.env)
        name = request.change.address.split("/service.")[-1]
        if request.change.kind == "database":
            live = None
        observed = (self._observed_service(request.env, live)
                    if (live := runtime.live(name)) is not None else None)
        return ApplyResponse(ok=False, observed=observed, diagnostics=[self._diagnostic(request, code, summary,
                                                                                         cause, extra)])

    @staticmethod
    def _diagnostic(request: ApplyRequest, code: str, summary: str, cause: str, extra: dict[str, Any]) -> Diagnostic:
        remediation = REMEDIATION[code]
        if code == "data.loss_detected" and extra.get("allow_exact"):  # the exact command, not placeholders
            remediation = remediation.replace(
                "`railguard plan --env ENV --allow-data-loss TABLE...`",
                f"`railguard plan --env {request.env} --allow-data-loss {' '.join(extra['allow_exact'])}`")
        return error(code, summary, f"{request.change.action.value} {request.change.address} failed: {cause}.",
                     remediation, address=request.change.address, extra=extra)
