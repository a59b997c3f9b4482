"""The daemon's canary controller: analyse each step of a canary rollout, then advance it or abort it.

A rollout of a service whose spec says ``strategy = "canary"`` leaves the new release beside the live one with
the first step's share of the requests (the provider's ``canary``; providers/local/canary.py). Each observation
pass (:class:`railguard.daemon.observation.Observer`) hands every service with a canary here: the step is judged
like the verification window (:func:`railguard.daemon.verification.judge`: restarts, flapping health, 5xx ratio and
p99 latency of the canary against the stable release over the same seconds). A failed check aborts: every
request back on the stable release, the canary stopped, an incident with the evidence, the source marked
known-bad. A clean step advances once its ``pause`` is over (never by itself with ``pause = "manual"``:
``railguard promote-step`` does); the step to 100 % promotes the canary to the live release, whose verification
window then starts as after any switch. Each step is an event (``canary.step``, ``canary.aborted``) in the
environment's history.

Each step is also kept in the state database (:mod:`railguard.state.canaries`): a restarted daemon resumes
the step where it was (the pause counts from the step's start, the analysis reads the persisted metrics
since then; a ``canary.resumed`` event says so) rather than restart it. An abort records the release as
``aborted`` and the one before it as live again (at once, or when the deploy that started the canary ends).

Each move is made once: promote-step, abort and the controller's own steps take one lock per canary and move
from the share the runtime has (never one a pass remembered); a step asked from a share the canary has left —
a second promote-step before the analysis began the step the first one made, a retry with ``from_weight`` —
moves nothing (``canary.step_moved``). An abort writes its step record before the runtime moves, so a daemon
killed in between leaves a canary the store says runs and the runtime has not: :meth:`Canaries._ended` records
how it ended from the live release (promoted, or aborted: the release records move as an abort's do).

Kubernetes environments have no edge of the daemon's, so no request metrics: :meth:`Canaries.clusters` (each
observation pass) judges their steps on the canary pods' restarts and health, and advances them on the pause
(providers/kubernetes/canary.py: the share is a replica ratio there).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from railguard.daemon.incidents import action
from railguard.daemon.verification import Verdict, Watch, judge
from railguard.engine.execute import maybe_fault
from railguard.model.api import CanaryStatus, Evidence, IncidentKind
from railguard.model.diagnostics import RailguardError, error
from railguard.model.durations import parse_ms
from railguard.model.spec import Spec
from railguard.providers.base import DescribeRequest, ServiceUnit
from railguard.state import canaries as canary_store
from railguard.state import incidents as incident_store
from railguard.state.canaries import ABORTED, RUNNING

if TYPE_CHECKING:
    from railguard.daemon.observation import Observer

log = logging.getLogger("railguard.daemon")
STEP_EVENT = "canary.step"
PROMOTED_EVENT = "canary.promoted"
ABORTED_EVENT = "canary.aborted"
RESUMED_EVENT = "canary.resumed"
RELEASE_ABORTED_EVENT = "release.aborted"
UNREACHABLE_PAUSE_S = 30.0
CLUSTER_EVERY_S = 2.0


@dataclass
class Run:
    """One canary in progress: its release, the step it is at, and the analysis of that step."""

    watch: Watch
    steps: list[int]
    pause: str
    weight: int
    operation: str | None = None  # the deploy that started the canary: its journal records each step
    last: str = "analysing"


class Canaries:
    def __init__(self, observer: Observer) -> None:
        self.observer = observer
        self.runs: dict[tuple[str, str], Run] = {}
        self.stored: set[tuple[str, str]] | None = None  # canaries a previous daemon was running (read once)
        self.aborting = True  # an aborted release waiting for its deploy to end (True: look once at boot)
        self.unreachable: dict[str, float] = {}  # Kubernetes environment -> not asked again before then
        self.looked_at = 0.0  # when the Kubernetes environments' services were last described
        # One mover per canary at a time: promote-step, abort and the controller's own steps read the share the
        # runtime has, decide, and move it; two of them interleaved would move twice from the same step.
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _moving(self, env: str, service: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((env, service), threading.Lock())

    def clusters(self, spec: Spec | None, now: float) -> None:
        """The canary steps of environments on a Kubernetes namespace (the observation pass describes only those
        with a local edge); a cluster that cannot be read is left alone for a while, its canary stays where it is."""
        if now - self.looked_at < CLUSTER_EVERY_S:  # a few API reads per environment: not every pass
            return
        self.looked_at = now
        summary = self.observer.daemon.provider.summary()
        for env in summary.clusters:
            if env in summary.edges or self.unreachable.get(env, 0.0) > now:
                continue
            try:
                units = self.observer.daemon.provider.describe(DescribeRequest(env=env)).services
            except (RailguardError, OSError) as exc:
                self.unreachable[env] = now + UNREACHABLE_PAUSE_S
                log.warning("canaries of %s not looked at: %s", env, exc)
                continue
            self.unreachable.pop(env, None)
            for unit in units:
                self.step(env, unit, spec, now)

    def _known(self, env: str) -> bool:
        # Never describe (create) an unknown environment: a local one has an edge, a cluster's is bound to it.
        summary = self.observer.daemon.provider.summary()
        return env in summary.edges or env in summary.clusters

    def _store_run(self, key: tuple[str, str], run: Run, stable: int | None) -> None:
        try:
            canary_store.save(self.observer.daemon.store(), canary_store.CanaryRun(
                env=key[0], service=key[1], release=run.watch.release, stable=stable, weight=run.weight,
                step_started=run.watch.started, operation=run.operation, analysis=run.last))
        except Exception:  # the canary goes on; only a restart would begin its step again
            log.exception("could not record the canary step of %s/%s", *key)

    # -- one pass ----------------------------------------------------------------------------------
    def step(self, env: str, unit: ServiceUnit, spec: Spec | None, now: float) -> None:
        key = (env, unit.name)
        canary = unit.canary
        if self.stored is None:
            self.stored = {(r.env, r.service) for r in canary_store.listed(self.observer.daemon.store(), RUNNING)}
        if canary is None:
            if self.runs.pop(key, None) is not None or key in self.stored:  # it ended (promoted, aborted)
                self.stored.discard(key)
                stored = canary_store.get(self.observer.daemon.store(), env, unit.name)
                if stored is not None and stored.state == RUNNING:
                    self._ended(stored, unit)
            return
        run = self.runs.get(key)
        if run is None or run.watch.release != canary.release or run.weight != canary.weight:
            run = self._begin(env, unit, spec, now)
            if run is None:
                return
        metrics = self.observer.metrics
        current = metrics.since(env, unit.name, canary.release, run.watch.started, now)
        stable = (metrics.since(env, unit.name, unit.release, run.watch.started, now)
                  if unit.release is not None else None)
        verdict = judge(run.watch, now, current, stable if stable is not None else current,
                        sum(r.restarts for r in canary.replicas), {r.name: r.health.value for r in canary.replicas})
        if verdict is None:
            return
        if not verdict.passed:
            self._abort(key, run, verdict, unit)
        else:
            run.last = verdict.summary
            self._store_run(key, run, unit.release)
            try:
                self.advance(env, unit.name, by="railguard:canary", expect=run.weight)
            except RailguardError as exc:  # moved meanwhile (promote-step, abort): the next pass sees where it is
                log.info("canary step of %s/%s not moved: %s", env, unit.name, exc.diagnostics[0].summary)

    def _ended(self, stored: canary_store.CanaryRun, unit: ServiceUnit) -> None:
        """A canary the store says runs is gone from the runtime, and no move recorded its end (a daemon killed
        between the runtime's move and its record). The live release says how it ended: it is the canary's release
        (promoted: nothing more to record than the event), or the canary was removed (aborted: its release record
        moves as an abort's does, so no record says a release is live that serves nothing)."""
        store = self.observer.daemon.store()
        if unit.release == stored.release:
            canary_store.delete(store, stored.env, stored.service)
            store.add_event(stored.env, PROMOTED_EVENT, f"{stored.env}/{stored.service}: release {stored.release} "
                            "was found promoted (its canary's end was not recorded): it is the live release",
                            address=f"{stored.env}/service.{stored.service}",
                            data={"release": stored.release, "recovered": True})
            return
        canary_store.save(store, canary_store.CanaryRun(
            env=stored.env, service=stored.service, release=stored.release, stable=stored.stable, weight=0,
            step_started=time.time(), operation=stored.operation, state=ABORTED,
            analysis=f"found gone at {stored.weight}% (its abort was not recorded)"))
        # No canary.aborted event here: a canary whose start failed ends the same way, and its deploy's record says
        # so (settle() then finds the release failed, not live, and moves nothing); a live one is aborted there.
        self.aborting = True
        self.settle()

    def _begin(self, env: str, unit: ServiceUnit, spec: Spec | None, now: float) -> Run | None:
        canary = unit.canary
        if canary is None or spec is None or env not in spec.environments or unit.name not in spec.services:
            return None
        service = spec.resolved_service(env, unit.name)
        pause_s = math.inf if service.pause == "manual" else parse_ms(service.pause) / 1000
        store = self.observer.daemon.store()
        key = (env, unit.name)
        stored = canary_store.get(store, env, unit.name) if self.stored is None or key in self.stored else None
        resumed = (stored is not None and stored.state == RUNNING and stored.release == canary.release
                   and stored.weight == canary.weight and stored.step_started <= now)
        watch = Watch(env=env, service=unit.name, release=canary.release, previous=unit.release,
                      started=stored.step_started if resumed and stored is not None else now,
                      verify_s=pause_s, thresholds=service.thresholds, on_regression="rollback")
        run = Run(watch=watch, steps=list(service.steps), pause=service.pause, weight=canary.weight,
                  operation=canary.operation or (stored.operation if stored is not None else None))
        if resumed and stored is not None:
            run.last = stored.analysis or run.last
        self.runs[key] = run
        if self.stored is not None:
            self.stored.discard(key)
        self._store_run(key, run, unit.release)
        if resumed:
            # A restarted daemon: the step goes on where it was (its pause counts from its start; the analysis
            # reads the persisted request metrics since then), it does not start again.
            store.add_event(env, RESUMED_EVENT, f"{env}/{unit.name} release {canary.release}: canary step at "
                            f"{canary.weight}% resumed after a daemon restart, {now - watch.started:.0f} s into it",
                            address=f"{env}/service.{unit.name}",
                            data={"release": canary.release, "weight": canary.weight,
                                  "step_started": watch.started})
            self._journal(run, env, unit.name, {"weight": canary.weight, "release": canary.release,
                                                "resumed": True})
            return run
        store.add_event(
            env, STEP_EVENT, f"{env}/{unit.name} release {canary.release} takes {canary.weight}% of the requests "
            f"beside release {unit.release} (steps {service.steps}, pause {service.pause})",
            address=f"{env}/service.{unit.name}",
            data={"release": canary.release, "weight": canary.weight, "stable": unit.release})
        self._journal(run, env, unit.name, {"weight": canary.weight, "release": canary.release,
                                            "stable": unit.release})
        return run

    def _journal(self, run: Run | None, env: str, service: str, detail: dict[str, object]) -> None:
        """One line in the journal of the operation that started the canary (``railguard operations ID``)."""
        if run is not None and run.operation is not None:
            self.observer.daemon.store().journal(run.operation, f"{env}/service.{service}: canary step", "end", detail)

    # -- decisions ---------------------------------------------------------------------------------
    def position(self, env: str, service: str) -> tuple[int, int]:
        """The canary's release and its share now (``canary.none`` when there is none)."""
        release = self._canary_release(env, service)
        return (release if release is not None else 0), self._weight(env, service)

    def following(self, env: str, service: str, current: int) -> int:
        """The share of the step after ``current``."""
        run = self.runs.get((env, service))
        steps = run.steps if run is not None else self._spec_steps(env, service)
        return next((s for s in steps if s > current), 100)

    def _spec_steps(self, env: str, service: str) -> list[int]:
        # A step asked for before the observation pass has seen the canary (right after the deploy): the served
        # spec's steps, so a protected environment's plan names the real next step, not the final one.
        spec = self.observer.spec()
        if spec is None or env not in spec.environments or service not in spec.services:
            return [100]
        return list(spec.resolved_service(env, service).steps)

    def advance(self, env: str, service: str, by: str, to: int | None = None, plan_id: str | None = None,
                expect: int | None = None) -> int:
        """Move the canary to its next step (``railguard promote-step`` or a clean step), or to ``to`` (an approved
        plan's step); returns the new share.

        The step moved from is the share the runtime has now, read under this canary's lock, never a share a
        previous pass remembered (that moved the same step twice, or a step the analysis never saw). ``expect``:
        the share the caller saw (a retried request, the controller's analysed step); the canary elsewhere means
        this move was made already, or another one was: nothing moves (``canary.step_moved``)."""
        with self._moving(env, service):
            run = self.runs.get((env, service))
            current = self._weight(env, service)
            if expect is not None and current != expect:
                raise _moved(env, service, expect, current)
            if expect is None and to is None and run is not None and run.weight != current:
                # Moved by someone else since the controller began its step, and that new step has not begun:
                # a second promote-step right after a first one (a double click, two agents, a retry) moves nothing.
                raise _moved(env, service, run.weight, current, pending=True)
            following = to if to is not None else self.following(env, service, current)
            self.observer.daemon.provider.set_canary_weight(env, service, following)
            self._journal(run, env, service, {"weight": following, "from": current, "by": by,
                                              **({"plan": plan_id} if plan_id else {}),
                                              **({"analysis": run.last} if run is not None else {})})
            self.observer.daemon.store().add_event(
                env, STEP_EVENT if following < 100 else PROMOTED_EVENT,
                f"{env}/{service}: canary moved from {current}% to {following}% of the requests ({by})"
                + (": it is the live release now" if following == 100 else ""),
                address=f"{env}/service.{service}", data={"weight": following, "by": by})
            if following == 100:
                self.runs.pop((env, service), None)
                canary_store.delete(self.observer.daemon.store(), env, service)
            return following

    def _weight(self, env: str, service: str) -> int:
        if self._known(env):
            for unit in self.observer.daemon.provider.describe(DescribeRequest(env=env)).services:
                if unit.name == service and unit.canary is not None:
                    return unit.canary.weight
        raise RailguardError(error(
            "canary.none", f"'{service}' in '{env}' has no canary in progress",
            "Only a release started by a canary rollout (strategy = \"canary\") has a share of the traffic to move.",
            f"See `railguard status --env {env}`."))

    def abort(self, env: str, service: str, by: str) -> None:
        """Every request back on the stable release and the canary stopped (``railguard abort``)."""
        with self._moving(env, service):
            self._abort_now(env, service, by)

    def _abort_now(self, env: str, service: str, by: str) -> None:
        run = self.runs.get((env, service))
        unit = self._unit(env, service)
        running = unit.canary.release if unit is not None and unit.canary is not None else None
        if run is not None and running is not None and run.watch.release != running:
            run = None  # the watch of an earlier canary that ended (failed, replaced): this abort is of this one
        release = running if running is not None else (run.watch.release if run is not None else None)
        store = self.observer.daemon.store()
        ahead = unit is not None and unit.canary is not None and canary_store.get(store, env, service) is None
        if ahead and unit is not None and unit.canary is not None:
            # Written before the runtime moves: a daemon killed between the two finds a canary the store says runs
            # and the runtime has not, and records its end (:meth:`_ended`) instead of forgetting it.
            canary_store.save(store, canary_store.CanaryRun(
                env=env, service=service, release=unit.canary.release, stable=unit.release,
                weight=unit.canary.weight, step_started=time.time(), operation=unit.canary.operation,
                analysis="aborting"))
        try:
            self.observer.daemon.provider.abort_canary(env, service)
        except BaseException:
            if ahead:  # nothing moved: no record of a canary this abort did not end
                canary_store.delete(store, env, service)
            raise
        maybe_fault("canary-aborted", "begin")  # crash walks: the canary gone, its abort not recorded yet
        self.runs.pop((env, service), None)
        self._journal(run, env, service, {"weight": 0, "aborted": True, "by": by,
                                          **({"analysis": run.last} if run is not None else {})})
        store.add_event(env, ABORTED_EVENT, f"{env}/{service}: canary aborted ({by}); "
                        "the stable release serves every request",
                        address=f"{env}/service.{service}", data={"by": by, "release": release})
        if release is not None:
            canary_store.save(store, canary_store.CanaryRun(
                env=env, service=service, release=release, stable=run.watch.previous if run is not None else None,
                weight=0, step_started=time.time(), operation=run.operation if run is not None else None,
                analysis=f"aborted by {by}" + (f": {run.last}" if run is not None else ""), state=ABORTED))
            self.aborting = True
            self.settle()

    def settle(self) -> None:
        """Move the records of aborted canaries' releases (each pass while one waits for its deploy to end)."""
        if not self.aborting:
            return
        store = self.observer.daemon.store()
        waiting = False
        for row in canary_store.listed(store, ABORTED):
            outcome, restored = canary_store.abort_release(store, row.env, row.release)
            if outcome == "pending":
                waiting = True
                continue
            canary_store.delete(store, row.env, row.service)
            if outcome == "aborted":
                store.add_event(row.env, RELEASE_ABORTED_EVENT, f"release {row.release} aborted (its canary of "
                                f"{row.service} was): " + (f"release {restored} is live again" if restored
                                                           is not None else "no release before it"),
                                address=f"{row.env}/release.{row.release}",
                                data={"release": row.release, "service": row.service, "live": restored})
        self.aborting = waiting

    def _canary_release(self, env: str, service: str) -> int | None:
        unit = self._unit(env, service)
        return unit.canary.release if unit is not None and unit.canary is not None else None

    def _unit(self, env: str, service: str) -> ServiceUnit | None:
        if self._known(env):
            for unit in self.observer.daemon.provider.describe(DescribeRequest(env=env)).services:
                if unit.name == service:
                    return unit
        return None

    def _abort(self, key: tuple[str, str], run: Run, verdict: Verdict, unit: ServiceUnit) -> None:
        env, name = key
        watch = run.watch
        summary = f"canary at {run.weight}%: {verdict.summary}"
        evidence = verdict.evidence + [Evidence(kind="exit", summary="replicas of the canary: " + ", ".join(
            f"{r.name} {r.health.value} ({r.restarts} restarts)" for r in (unit.canary.replicas if unit.canary
                                                                           else [])))]
        run.last = summary
        try:
            self.abort(env, name, by="railguard:canary")
        except (RailguardError, OSError) as exc:  # the next pass tries again; the incident says so meanwhile
            log.warning("canary abort of %s/%s failed: %s", env, name, exc)
            summary += f" (abort failed: {exc})"
        incident = self.observer.incidents.open(
            IncidentKind.verification_failed, env, summary, service=name, release=watch.release, evidence=evidence,
            next_actions=[
                action("read_logs", f"railguard logs {name} --env {env} --release {watch.release}",
                       f"See why release {watch.release} failed its canary step.", env=env, service=name,
                       release=watch.release),
                action("plan", f"railguard plan --env {env}", "Change the code or config first, then plan: the "
                       "aborted source is refused until it changes.", env=env)])
        release = self.observer.daemon.store().release(env, watch.release)
        entry = release.services.get(name) if release is not None else None
        if entry is not None:
            incident_store.mark_bad(self.observer.daemon.store(), env, name, entry.fingerprint, watch.release,
                                    incident.id)

    # -- status ------------------------------------------------------------------------------------
    def view(self, env: str, unit: ServiceUnit, now: float | None = None) -> CanaryStatus | None:
        canary = unit.canary
        if canary is None:
            return None
        run = self.runs.get((env, unit.name))
        now = time.time() if now is None else now
        counts = (self.observer.metrics.since(env, unit.name, canary.release, run.watch.started, now)
                  if run is not None else None)
        return CanaryStatus(
            release=canary.release, weight=canary.weight, stable=unit.release,
            steps=run.steps if run is not None else [], pause=run.pause if run is not None else "",
            step_s=round(now - run.watch.started, 1) if run is not None else 0.0,
            requests=counts.total if counts is not None else 0,
            status_5xx=counts.classes[4] if counts is not None else 0,
            analysis=run.last if run is not None else "starting")


def _moved(env: str, service: str, expected: int, current: int, pending: bool = False) -> RailguardError:
    """``canary.step_moved``: a step asked from a share the canary has left; nothing moved."""
    detail = (f"The canary of {env}/{service} was asked to move on from {expected}% of the requests, and it is at "
              f"{current}% now: " + ("it moved moments ago and the analysis has not begun that step yet, so this "
                                     "request (a second promote-step, a retry) moved nothing."
                                     if pending else "that step was made already, or the canary moved since; "
                                     "nothing moved."))
    return RailguardError(error(
        "canary.step_moved", f"The canary of {env}/{service} is at {current}% now, not {expected}%", detail,
        f"See the step with `railguard status --env {env}`; to move it on from {current}%, run `railguard "
        f"promote-step {service} --env {env} --from {current}`.", address=f"{env}/service.{service}",
        extra={"expected": expected, "weight": current}))
