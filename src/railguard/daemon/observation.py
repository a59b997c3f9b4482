"""The daemon's observation loop: request metrics, verification after switches, crash loops, incidents.

A thread of its own (every ``INTERVAL_S``), so a slow pass never delays an operation or the API:
1. the provider's ``traffic`` (what the edge saw of each request) goes into :class:`RequestMetrics`;
2. each environment's live units (``describe``) show switches: a service whose live release changed
   starts a verification :class:`~railguard.daemon.verification.Watch` against the release it replaced;
3. a failed verdict opens an incident with the evidence (metrics, log tail, restarts) and, with
   ``on_regression = "rollback"`` while the previous release is warm, submits a rollback operation
   (journaled like any other, by the principal ``railguard:verification``) and marks the bad source;
4. replicas restarting repeatedly outside a window open a ``crash_loop`` incident (a decaying window);
5. failed applies, live services that stay unhealthy, drift (what runs is not what was applied) and a
   broken audit chain open incidents too (:mod:`railguard.daemon.watchers`);
6. every ``FLUSH_S`` the request metrics that changed go to the state database in one batch
   (:mod:`railguard.state.requestmetrics`); :meth:`Observer.start` restores them, so a restarted daemon
   shows (and judges with) the figures it had.
Settings come from the spec the daemon serves. Started by :class:`railguard.daemon.service.Daemon`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from railguard.daemon import housekeeping
from railguard.daemon.alerts import Deliverer
from railguard.daemon.canary import Canaries
from railguard.daemon.incidents import Incidents, after_rollback, alert_only
from railguard.daemon.metrics import RING_S, Counts, RequestMetrics
from railguard.daemon.verification import Verdict, Watch, judge
from railguard.daemon.watchers import Watchers
from railguard.engine.workspace import Workspace
from railguard.model.api import Evidence, IncidentKind, IncidentState, OperationStatus
from railguard.model.diagnostics import RailguardError
from railguard.model.errors import TemporaryError
from railguard.model.principals import Principal, Role
from railguard.model.spec import Alerts, Spec
from railguard.model.verifychecks import effective_verify_ms
from railguard.providers.base import DescribeRequest, LogsRequest, ServiceUnit, TrafficRequest
from railguard.sources import asuser
from railguard.state import incidents as incident_store
from railguard.state import requestmetrics

if TYPE_CHECKING:
    from railguard.daemon.service import Daemon

log = logging.getLogger("railguard.daemon")
INTERVAL_S = 0.5
DESCRIBE_S = 2.0
CRASH_WINDOW_S = 60.0  # restarts older than this no longer count (the count decays)
CRASH_LOOP = 3  # restarts within the window that make a crash loop of a live release
PRUNE_S = 60.0
FLUSH_S = 2.0  # request metrics reach the store in batches this far apart (and when the daemon stops)
VERIFIER = Principal(id="railguard:verification", role=Role.deployer, kind="daemon")


@dataclass
class Pending:
    """A failed verdict whose rollback still has to be submitted (another operation may hold the env)."""

    watch: Watch
    incident: str
    until: float  # give up (the previous release is no longer warm) after this


class Observer:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.metrics = RequestMetrics()
        self.deliverer = Deliverer(daemon.home, daemon.store, command_user=self.alert_command_user)
        self.incidents = Incidents(daemon.store, self.deliverer, self.alerts)
        self.watchers = Watchers(daemon, self.incidents)  # failed rollouts, health regressions, audit
        self.canaries = Canaries(self)  # canary steps: analysed, advanced or aborted
        self.watches: dict[tuple[str, str], Watch] = {}
        self.pending: dict[tuple[str, str], Pending] = {}
        self.seen: dict[tuple[str, str], int | None] = {}  # the live release last seen per service
        self.restarts: dict[str, int] = {}  # replica -> restart count last seen
        self.crashes: dict[tuple[str, str], deque[float]] = {}  # restart times within the window
        self.mitigating: dict[str, str] = {}  # operation -> incident it mitigates
        self._spec: tuple[tuple[str, int, int], Spec] | None = None
        self._thread: threading.Thread | None = None
        self._next_prune = time.monotonic() + PRUNE_S
        self._described = 0.0  # wall clock of the last look at the live units
        self._flushed = 0.0
        self._flush_lock = threading.Lock()
        self.passes = 0

    # -- settings --------------------------------------------------------------------------------
    def spec(self) -> Spec | None:
        path = housekeeping.served_spec(self.daemon.store())
        if path is None:
            return None
        try:
            stat = Path(path).stat()
            key = (path, stat.st_mtime_ns, stat.st_size)
            if self._spec is None or self._spec[0] != key:
                self._spec = (key, Workspace(Path(path), self.daemon.home).load_valid()[0])
            return self._spec[1]
        except (OSError, RailguardError):
            return self._spec[1] if self._spec is not None else None

    def alerts(self) -> Alerts | None:
        spec = self.spec()
        return spec.alerts if spec is not None else None

    def alert_command_user(self) -> asuser.Identity:
        """Who a root daemon runs the ``[alerts]`` command as: the owner of the served spec's folder (whose hook it
        is; :func:`railguard.sources.asuser.owner_of`), ``nobody`` when there is no served spec."""
        path = housekeeping.served_spec(self.daemon.store())
        return asuser.owner_of(Path(path).parent) if path is not None else asuser.nobody()

    def service_view(self, env: str, service: str, release: int | None) -> dict[str, Any]:
        """The status fields observation adds to one service: its request windows, verification time left."""
        series = self.metrics.series(env, service, release)
        watch = self.watches.get((env, service))
        left = (round(max(0.0, watch.started + watch.verify_s - time.time()), 1)
                if watch is not None and watch.release == release else None)
        return {"requests": series.windows(time.time()) if series is not None else [], "verifying_s": left}

    # -- loop ------------------------------------------------------------------------------------
    def start(self) -> None:
        try:
            self.metrics.restore(requestmetrics.load(self.daemon.store(), int(time.time()) - RING_S))
        except Exception:  # figures from before are a convenience; observation starts anyway
            log.exception("could not restore the request metrics")
        self.deliverer.start()
        self._thread = threading.Thread(target=self._loop, name="railguard-observe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.deliverer.stop()
        self.persist()

    def persist(self) -> None:
        """Write the request metrics that changed since the last batch (one transaction)."""
        with self._flush_lock:
            changed, gone = self.metrics.changes()
            if not changed and not gone:
                return
            try:
                requestmetrics.save(self.daemon.store(), changed, gone, int(time.time()) - RING_S)
            except Exception:  # the figures stay in memory; the next batch writes the series again
                log.exception("could not store the request metrics")
                self.metrics.unsaved(changed, gone)

    def _loop(self) -> None:
        while not self.daemon.stopping.wait(INTERVAL_S):
            try:
                self.step()
            except Exception:  # a bad pass must not end observation
                log.exception("observation pass failed")

    def step(self, now: float | None = None) -> None:
        """One pass: the edge's new requests always; the rest every DESCRIBE_S, or every pass while verifying."""
        now = time.time() if now is None else now
        for batch in self.daemon.provider.traffic(TrafficRequest()).batches:
            self.metrics.record(batch.env, batch.service, batch.release, batch.at, batch.status, batch.duration_ms)
        if now - self._flushed >= FLUSH_S:
            self._flushed = now
            self.persist()
        self.canaries.settle()
        # The live units cost a lock and a process check per replica, and the store a query: an idle daemon with
        # many services stays cheap, a release being verified is looked at every pass.
        if not (self.watches or self.pending or self.mitigating or self.canaries.runs
                or now - self._described >= DESCRIBE_S):
            return
        spec = self.spec()
        since, self._described = self._described, now
        for env in sorted(set(self.daemon.provider.summary().edges)):
            units = self.daemon.provider.describe(DescribeRequest(env=env))
            for unit in units.services:
                self._service(env, unit, spec, now, since)
        self.canaries.clusters(spec, now)
        self._follow_rollbacks()
        self.watchers.operations()
        self.watchers.drift(now, set(self.canaries.runs))
        self.watchers.audit()
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + PRUNE_S
            self.metrics.prune(now)
        self.passes += 1

    # -- one service -----------------------------------------------------------------------------
    def _service(self, env: str, unit: ServiceUnit, spec: Spec | None, now: float, since: float) -> None:
        key = (env, unit.name)
        before = self.seen.get(key)
        self.seen[key] = unit.release
        warm = sorted((w.release for w in unit.warm), reverse=True)
        if unit.release is not None and unit.release != before and (before is not None or warm):
            # It switched after the previous look: the window starts then, so no early request is missed.
            self._switched(key, unit, before if before is not None else warm[0], spec, max(since, now - DESCRIBE_S))
        restarts = self._restarts(key, unit, now)
        watch = self.watches.get(key)
        if watch is not None and watch.release == unit.release:
            previous = self._previous_counts(watch)
            current = self.metrics.since(env, unit.name, watch.release, watch.started, now)
            verdict = judge(watch, now, current, previous, sum(r.restarts for r in unit.replicas),
                            {r.name: r.health.value for r in unit.replicas})
            if verdict is not None:
                del self.watches[key]
                self._verdict(watch, verdict, unit)
        elif watch is not None:
            del self.watches[key]  # replaced again before its verdict
        elif restarts >= CRASH_LOOP and unit.release is not None:
            self._crash_loop(env, unit, restarts)
        if key in self.pending:
            self._try_rollback(key, unit, now)
        self.watchers.health(env, unit, key in self.watches or key in self.pending, now)
        self.canaries.step(env, unit, spec, now)

    def _switched(self, key: tuple[str, str], unit: ServiceUnit, previous: int | None, spec: Spec | None,
                  now: float) -> None:
        env, name = key
        if spec is None or env not in spec.environments or name not in spec.services or unit.release is None:
            return
        service = spec.resolved_service(env, name)
        verify_s = effective_verify_ms(spec, env, name) / 1000
        if verify_s <= 0:
            return
        # Back to an older release (a rollback re-routes its warm replicas): watched, but never rolled "back"
        # to the newer release it just left.
        back = previous is not None and unit.release < previous
        self.watches[key] = Watch(env=env, service=name, release=unit.release, previous=previous, started=now,
                                  verify_s=verify_s, thresholds=service.thresholds,
                                  on_regression="alert" if back else service.on_regression)
        self.crashes.pop(key, None)

    def _previous_counts(self, watch: Watch) -> Counts:
        if watch.previous is None:
            return Counts()
        series = self.metrics.series(watch.env, watch.service, watch.previous)
        return series.since if series is not None else Counts()

    def _restarts(self, key: tuple[str, str], unit: ServiceUnit, now: float) -> int:
        """Restarts of the service's replicas within the decaying window."""
        times = self.crashes.setdefault(key, deque(maxlen=100))
        for replica in unit.replicas:
            count = replica.restarts
            if count > self.restarts.get(replica.name, 0):
                times.extend([now] * (count - self.restarts.get(replica.name, 0)))
            self.restarts[replica.name] = count
        while times and times[0] < now - CRASH_WINDOW_S:
            times.popleft()
        return len(times)

    # -- verdicts --------------------------------------------------------------------------------
    def _evidence(self, watch: Watch, unit: ServiceUnit) -> list[Evidence]:
        found = [Evidence(kind="release", summary=f"release {watch.release} of {watch.service} went live "
                          f"{time.time() - watch.started:.1f} s before the verdict; previous release "
                          f"{watch.previous}"),
                 Evidence(kind="exit", summary="replicas of the release: " + ", ".join(
                     f"{r.name} {r.health.value} ({r.restarts} restarts)" for r in unit.replicas))]
        try:
            logs = self.daemon.provider.logs(LogsRequest(env=watch.env, service=watch.service,
                                                         release=watch.release, lines=20))
            lines = [line for f in logs.files for line in f.lines][-20:]
            if lines:
                found.append(Evidence(kind="log", summary=f"the last log lines of release {watch.release}",
                                      lines=lines))
        except Exception:  # evidence is best effort; the verdict stands without the log
            log.exception("could not read logs for the incident")
        return found

    def _verdict(self, watch: Watch, verdict: Verdict, unit: ServiceUnit) -> None:
        store = self.daemon.store()
        if verdict.passed:
            store.add_event(watch.env, "release.verified", verdict.summary,
                            address=f"{watch.env}/service.{watch.service}", data={"release": watch.release})
            return
        evidence = verdict.evidence + self._evidence(watch, unit)
        rollback = watch.on_regression == "rollback" and watch.previous is not None and any(
            w.release == watch.previous for w in unit.warm)
        incident = self.incidents.open(IncidentKind.verification_failed, watch.env, verdict.summary,
                                       service=watch.service, release=watch.release, evidence=evidence)
        store.add_event(watch.env, "release.verification_failed", verdict.summary,
                        address=f"{watch.env}/service.{watch.service}",
                        data={"release": watch.release, "check": verdict.check, "incident": incident.id})
        if rollback:
            self.pending[(watch.env, watch.service)] = Pending(watch, incident.id, time.time() + 30.0)
            self._try_rollback((watch.env, watch.service), unit, time.time())
        else:
            self.incidents.move(incident.id, None, "note",
                                "no automatic rollback: " + ("on_regression = \"alert\"" if watch.on_regression
                                                             == "alert" else "the previous release is not warm"),
                                next_actions=alert_only(watch.env, watch.service, incident.id))

    def _try_rollback(self, key: tuple[str, str], unit: ServiceUnit, now: float) -> None:
        pending = self.pending[key]
        watch = pending.watch
        spec_path = housekeeping.served_spec(self.daemon.store())
        if spec_path is None or now > pending.until:
            del self.pending[key]
            self.incidents.move(pending.incident, None, "note", "the automatic rollback could not be submitted in "
                                "time", next_actions=alert_only(watch.env, watch.service, pending.incident))
            return
        try:
            op_id = self.daemon.submit_rollback(spec_path, watch.env, None, VERIFIER)
        except TemporaryError:
            return  # another operation (the rollout's drain) holds the environment: next pass
        except RailguardError as exc:
            del self.pending[key]
            self.incidents.move(pending.incident, None, "note", "the automatic rollback was refused: "
                                + exc.diagnostics[0].summary,
                                next_actions=alert_only(watch.env, watch.service, pending.incident))
            return
        self.daemon.answered()  # nobody waits for an answer: the job may start now
        del self.pending[key]
        self.mitigating[op_id] = pending.incident
        release = self.daemon.store().release(watch.env, watch.release)
        entry = release.services.get(watch.service) if release is not None else None
        if entry is not None:
            incident_store.mark_bad(self.daemon.store(), watch.env, watch.service, entry.fingerprint,
                                    watch.release, pending.incident)
        self.incidents.move(pending.incident, None, "rollback",
                            f"automatic rollback {op_id} submitted (on_regression = \"rollback\"): traffic goes "
                            f"back to release {watch.previous}", operation=op_id,
                            next_actions=after_rollback(watch.env, watch.service, watch.release, pending.incident))

    def _follow_rollbacks(self) -> None:
        store = self.daemon.store()
        for op_id, incident_id in list(self.mitigating.items()):
            status = store.operation_status(op_id)
            if status is None or status.in_flight:
                continue
            del self.mitigating[op_id]
            if status is OperationStatus.succeeded:
                self.incidents.move(incident_id, IncidentState.mitigated, "mitigated",
                                    f"rollback {op_id} succeeded: traffic is on the previous release")
            else:
                self.incidents.move(incident_id, None, "note", f"rollback {op_id} {status.value}")

    def _crash_loop(self, env: str, unit: ServiceUnit, restarts: int) -> None:
        summary = (f"{env}/{unit.name} release {unit.release} is crash-looping: {restarts} restarts in the last "
                   f"{CRASH_WINDOW_S:.0f} s")
        found = incident_store.unresolved(self.daemon.store(),
                                          incident_store.dedup_key(IncidentKind.crash_loop, env, unit.name,
                                                                   unit.release))
        if found is not None and found.state is IncidentState.open:
            return  # already open: one entry per crash loop, not per pass
        evidence = [Evidence(kind="exit", summary="replicas: " + ", ".join(
            f"{r.name} {r.health.value} ({r.restarts} restarts)" for r in unit.replicas))]
        opened = self.incidents.open(IncidentKind.crash_loop, env, summary, service=unit.name,
                                     release=unit.release, evidence=evidence)
        self.incidents.move(opened.id, None, "note", "next steps: roll back, or read the logs and fix the cause",
                            next_actions=alert_only(env, unit.name, opened.id))
