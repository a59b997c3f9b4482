"""Rollouts of the local provider: the blue-green replace, in-place updates, deletes and the edge.

A mixin of :class:`railguard.providers.local.provider.LocalProvider`, kept apart so each
file stays readable: the provider module handles adoption, supervision and observation;
this one carries out changes. Each sub-step reports to the engine's journal through
``step`` (build, release-command, start, gate, switch, drain, stop-old, scale-up, edge).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from railguard.model.plans import Action
from railguard.model.resources import ObservedResource, Resource
from railguard.providers.base import ApplyRequest, ApplyResponse, ObserveRequest, ObserveResponse, Progress
from railguard.providers.local import artifacts, buildas, static
from railguard.providers.local.databases import guarded_release
from railguard.providers.local.dbservers import DatabaseServers
from railguard.providers.local.edge import CaddyEdge, EdgeError, EdgeRoute
from railguard.providers.local.health import CheckResult
from railguard.providers.local.isolation import (
    FolderTaken,
    Level,
    UserTaken,
    claim_user,
    ensure_user,
    prepare_data,
    seal_artifact,
    user_name,
)
from railguard.providers.local.processes import Supervisor, is_alive
from railguard.providers.local.replicas import Failure, check, gate, pinned, replica_env, start_replicas
from railguard.providers.local.replicas import stop_all as stop_replicas
from railguard.providers.local.runtime import CANARY, LIVE, PENDING, WARM, EnvRuntime, Replica, ReplicaSet, RuntimeState
from railguard.providers.local.weights import weighted

CLAIM_S = 600.0  # how long a warm set claimed for an instant rollback is kept from expiring


class Rollouts:
    home: Path
    state: RuntimeState
    supervisor: Supervisor
    secret_values: Callable[[str, dict[str, int]], dict[str, str]]
    isolation: Level
    health_results: dict[str, tuple[CheckResult, int, float]]
    databases: DatabaseServers

    def edge(self, env: str) -> CaddyEdge:
        raise NotImplementedError

    def observe(self, request: ObserveRequest) -> ObserveResponse:
        raise NotImplementedError

    def _observed_service(self, env: str, rs: ReplicaSet) -> ObservedResource:
        raise NotImplementedError

    def _retire(self, rs: ReplicaSet, stop_timeout: float | None = None) -> None:
        raise NotImplementedError

    def _database_env(self, env: str, config: dict[str, Any], data_dir: Path | None = None) -> dict[str, str]:
        raise NotImplementedError

    def _run_as(self, request: ApplyRequest) -> str | None:
        """The OS user the environment's new processes run as (None: the daemon's own, shared-user)."""
        if not self.isolation.isolated:
            return None
        name = request.user or user_name(request.app, request.env, self.home)
        try:
            claim_user(self.home, request.env, name, named_by_spec=request.user is not None, app=request.app)
        except UserTaken as exc:
            raise Failure("rollout.user_taken", "The environment's OS user is not its to run as", str(exc),
                          {"user": name}) from exc
        return name

    def _build_user(self, request: ApplyRequest) -> str | None:
        """The OS user the app's build runs as (None: the daemon's own, shared-user); see buildas."""
        return buildas.build_user(request.app, self.home) if self.isolation.isolated else None

    def _data_dir(self, request: ApplyRequest, user: str | None = None) -> Path:
        default = self.home / "data" / request.env
        path = Path(request.data_dir) if request.data_dir else default
        try:
            prepare_data(path, None if user is None else ensure_user(user), adopt=path == default)
        except FolderTaken as exc:
            raise Failure("rollout.data_dir_taken", "The environment's data folder is not Railguard's to hand over",
                          str(exc), {"data_dir": str(path), "user": user}) from exc
        except OSError as exc:
            raise Failure("rollout.start_failed", "The environment's data folder or user could not be prepared",
                          str(exc), {"data_dir": str(path), "user": user}) from exc
        return path

    def _sealed(self, artifact: artifacts.Artifact, user: str | None) -> artifacts.Artifact:
        """An isolated environment's processes get a read-only artifact that no app user can change."""
        if user is not None:
            seal_artifact(artifact.path)
        return artifact

    def _rollout(self, request: ApplyRequest, step: _Step) -> ApplyResponse:
        desired = _need(request.desired)
        cfg, env, name = desired.config, request.env, desired.name
        runtime = self.state.env(env)
        release = request.release or 0
        new_set = self._warm_match(runtime, desired)
        if new_set is None:
            user = self._run_as(request)
            with step("build"), buildas.session(self.home / "artifacts", self._build_user(request)):
                artifact = self._sealed(artifacts.ensure(self.home / "artifacts", Path(request.source_root or "."),
                                                         cfg["source"] or "", cfg["build"], dict(cfg["env"]),
                                                         on_line=step.output("build")), user)
                if cfg.get("static"):  # part of the build's result: checked before anything runs
                    static.verify(artifact.src, cfg["static"])
            data_dir = self._data_dir(request, user)
            log_dir = self.home / "logs" / env / name
            if cfg["release"]:
                environ = replica_env(cfg, env=env, service=name, release=release, index=None, port=None,
                                      data_dir=data_dir, artifact=artifact, home=self.home,
                                      secrets={**self.secret_values(env, pinned(cfg)),
                                               **self._database_env(env, cfg, data_dir)}, user=user)
                guarded_release(request, home=self.home, service=name, config=cfg, environ=environ,
                                artifact=artifact, data_dir=data_dir, log_dir=log_dir, step=step, user=user,
                                postgres=self.databases.postgres_of(env, cfg))
            with step("start"):
                started = start_replicas(cfg["replicas"], 0, cfg, env=env, service=name, release=release,
                                         data_dir=data_dir, artifact=artifact, home=self.home, log_dir=log_dir,
                                         secrets={**self.secret_values(env, pinned(cfg)),
                                                  **self._database_env(env, cfg, data_dir)}, user=user,
                                         pinned=pinned(cfg))
                new_set = ReplicaSet(service=name, release=release, fingerprint=desired.fingerprint, config=cfg,
                                     depends_on=desired.depends_on, artifact=str(artifact.path), role=PENDING,
                                     replicas=started)
                with self.state.lock:
                    runtime.sets.append(new_set)
                    self.state.save()
            with step("gate"):
                try:
                    gate(started, cfg)
                except Failure:
                    self._abandon(runtime, new_set)
                    raise
            # The gate just proved them: status says healthy at once, not "progressing" until the first check.
            for replica in started:
                self.health_results[replica.spec.name] = (CheckResult(True, "passed the readiness gate"), 0,
                                                          time.monotonic())
        first = request.canary_percent or (cfg.get("canary") or {"steps": [100]})["steps"][0]
        if first < 100 and runtime.live(name) not in (None, new_set) and new_set.role == PENDING:
            new_set.operation = request.operation_id
            return self._start_canary(env, runtime, new_set, first, step)
        old = self._switch(env, runtime, new_set, desired, step)
        if old is not None:
            with step("drain"):
                self._drain(env, [r.address for r in old.replicas], cfg["drain_timeout_ms"] / 1000)
            if not cfg.get("rollback_window_ms"):
                with step("stop-old"):
                    with self.state.lock:  # the daemon's tick may have stopped it already: its window is 0s
                        owned = old in runtime.sets
                        if owned:
                            runtime.sets.remove(old)
                            self.state.save()
                    if owned:
                        self._retire(old)
        return ApplyResponse(ok=True, observed=self._observed_service(env, new_set))

    def _start_canary(self, env: str, runtime: EnvRuntime, new_set: ReplicaSet, percent: int,
                      step: _Step) -> ApplyResponse:
        """Route ``percent`` of the requests to the proven new set beside the live one (which stays live)."""
        with step("canary"), self.state.lock:
            for other in runtime.of(new_set.service, CANARY):  # a newer canary replaces an unfinished one
                runtime.sets.remove(other)
                self._retire(other)
            new_set.role, new_set.weight = CANARY, percent
            try:
                self._sync_edge(env)
            except EdgeError:
                self._abandon(runtime, new_set)
                raise
            for replica in new_set.replicas:
                replica.record = self.supervisor.add(replica.spec, replica.record)
            self.state.save()
        return ApplyResponse(ok=True, observed=self._observed_service(env, new_set))

    def _warm_match(self, runtime: EnvRuntime, desired: Resource) -> ReplicaSet | None:
        """A warm set running exactly this config can take traffic again at once (instant rollback).

        The health checks run outside the state lock, so the daemon's tick may expire the set meanwhile; the
        set is claimed under the lock (still there, still warm, its window pushed out while the switch runs)
        or not used at all. Without the claim, a set the tick had just stopped could be made live.
        """
        for rs in runtime.of(desired.name, WARM):
            if (rs.warm_until or 0) <= time.time():
                continue  # its window is over (the tick stops it soon): never brought back, whatever it still runs
            if rs.fingerprint == desired.fingerprint and rs.replicas and all(
                    is_alive(r.record) and check(rs.config, r).ok for r in rs.replicas):
                with self.state.lock:
                    if rs in runtime.sets and rs.role == WARM and (rs.warm_until or 0) > time.time():
                        # Kept warm at most this long if the switch then fails (the edge refused it).
                        rs.warm_until = time.time() + CLAIM_S
                        for replica in rs.replicas:  # each just passed its check, its port proven its own
                            replica.routed = True
                        self.state.save()
                        return rs
        return None

    def _abandon(self, runtime: EnvRuntime, rs: ReplicaSet) -> None:
        stop_replicas(rs.replicas)
        with self.state.lock:
            if rs in runtime.sets:
                runtime.sets.remove(rs)
            self.state.save()

    def _switch(self, env: str, runtime: EnvRuntime, new_set: ReplicaSet, desired: Resource,
                step: _Step) -> ReplicaSet | None:
        with step("switch"):
            with self.state.lock:
                old = runtime.live(new_set.service)
                before = (new_set.role, new_set.warm_until, old.role if old else None,
                          old.warm_until if old else None)
                if old is not None and old is not new_set:
                    old.role, old.warm_until = WARM, time.time() + desired.config.get("rollback_window_ms", 0) / 1000
                new_set.role, new_set.warm_until = LIVE, None
                try:
                    self._sync_edge(env)  # the edge first: the record never says "switched" before traffic is
                except EdgeError:
                    new_set.role, new_set.warm_until = before[0], before[1]
                    if old is not None and old is not new_set:
                        old.role, old.warm_until = str(before[2]), before[3]
                    if new_set.role == PENDING:
                        self._abandon(runtime, new_set)
                    raise
                if before[0] == PENDING:
                    for replica in new_set.replicas:
                        replica.record = self.supervisor.add(replica.spec, replica.record)
                new_set.config, new_set.fingerprint, new_set.depends_on = (desired.config, desired.fingerprint,
                                                                           desired.depends_on)
                self.state.save()
        return old if old is not new_set else None

    def _update_service(self, request: ApplyRequest, step: _Step) -> ApplyResponse:
        desired = _need(request.desired)
        cfg, env, name = desired.config, request.env, desired.name
        runtime = self.state.env(env)
        live = runtime.live(name)
        if live is None:
            return self._rollout(request, step)
        want, have = cfg["replicas"], len(live.replicas)
        removed: list[Replica] = []
        if want > have:
            with step("scale-up"):
                # More of the same set: the same user as its replicas (a set started shared stays shared).
                user = live.replicas[0].spec.user if live.replicas else self._run_as(request)
                artifact = self._sealed(artifacts.at(Path(live.artifact), cfg["source"] or ""), user)
                first = max((int(r.spec.name.rsplit(".", 1)[1]) for r in live.replicas), default=-1) + 1
                extra = start_replicas(want - have, first, cfg, env=env, service=name, release=live.release,
                                       data_dir=self._data_dir(request, user), artifact=artifact, home=self.home,
                                       log_dir=self.home / "logs" / env / name,
                                       secrets={**self.secret_values(env, pinned(cfg)),
                                                **self._database_env(env, cfg, self._data_dir(request, user))},
                                       user=user, pinned=pinned(cfg))
                try:
                    gate(extra, cfg)
                except Failure:
                    stop_replicas(extra)
                    raise
                live.replicas += [Replica(r.spec, self.supervisor.add(r.spec, r.record), r.secret_names,
                                          r.secret_versions)
                                  for r in extra]
        elif want < have:
            removed = live.replicas[want:]
            live.replicas = live.replicas[:want]
        with step("switch"):
            with self.state.lock:
                live.config, live.fingerprint, live.depends_on = cfg, desired.fingerprint, desired.depends_on
                self.state.save()
                self._sync_edge(env)
        if removed:
            with step("drain"):
                self._drain(env, [r.address for r in removed], cfg["drain_timeout_ms"] / 1000)
            for replica in removed:
                self.supervisor.remove(replica.spec.name)
        return ApplyResponse(ok=True, observed=self._observed_service(env, live))

    def _delete_service(self, request: ApplyRequest, step: _Step) -> ApplyResponse:
        env, name = request.env, request.change.address.split("/service.")[-1]
        runtime = self.state.env(env)
        with step("switch"):
            with self.state.lock:
                gone = runtime.of(name)
                runtime.sets = [s for s in runtime.sets if s.service != name]
                self.state.save()
                self._sync_edge(env)
        drain_s = max((rs.config["drain_timeout_ms"] for rs in gone), default=0) / 1000
        with step("drain"):
            self._drain(env, [r.address for rs in gone for r in rs.replicas], drain_s)
        with step("stop"):
            for rs in gone:
                self._retire(rs)
        return ApplyResponse(ok=True, observed=None)

    def _apply_edge(self, request: ApplyRequest, step: _Step) -> ApplyResponse:
        runtime = self.state.env(request.env)
        previous = runtime.edge
        with step("edge"):
            if request.change.action is Action.delete:
                edge = self.edge(request.env)
                with self.state.lock:  # under the lock: the edge supervisor never restarts what is being deleted
                    if edge.running():
                        edge.remove_environment(request.env)
                        edge.stop()
                    runtime.edge = None
                    self.state.save()
                return ApplyResponse(ok=True, observed=None)
            desired = _need(request.desired)
            with self.state.lock:
                runtime.edge = {"fingerprint": desired.fingerprint, "config": desired.config,
                                "depends_on": desired.depends_on}
                try:
                    self.edge(request.env).start()
                    self._sync_edge(request.env)
                except EdgeError:
                    runtime.edge = previous  # the edge kept its old config; so does our record
                    raise
                finally:
                    self.state.save()
        observed = {r.address: r for r in self.observe(ObserveRequest(env=request.env)).resources}
        return ApplyResponse(ok=True, observed=observed.get(request.change.address))

    def edge_routes(self, env: str) -> list[EdgeRoute]:
        runtime = self.state.env(env)
        if runtime.edge is None:
            return []
        routes = []
        for route in runtime.edge["config"]["routes"]:
            live = runtime.live(route["service"])
            # A replica whose process ended is left out until its restart proved its (fresh) port its own.
            upstreams = tuple(r.address for r in live.replicas if r.routed) if live else ()
            canary = next(iter(runtime.of(route["service"], CANARY)), None)
            if canary is not None:  # its share of the requests, as repeated entries in the resolver's answer
                upstreams = weighted(tuple(r.address for r in canary.replicas if r.routed), upstreams,
                                     canary.weight or 0)
            routes.append(EdgeRoute(route["host"], route["path"], upstreams))
        for entry in runtime.edge["config"].get("static", []):
            live = runtime.live(entry["service"])
            found = next((s for s in (live.config.get("static", []) if live else []) if s["path"] == entry["path"]),
                         None)
            served = ""  # nothing live yet: the route answers 404
            if live is not None and found is not None:
                served = str(static.folder(artifacts.Artifact(Path(live.artifact), "").src, found))
            routes.append(EdgeRoute(entry["host"], entry["path"], (), static=served, cache_s=entry["cache_s"]))
        return routes

    def _sync_edge(self, env: str) -> None:
        runtime = self.state.env(env)
        if runtime.edge is not None:
            config = runtime.edge["config"]
            self.edge(env).set_environment(env, config["port"], self.edge_routes(env), config.get("bind", "127.0.0.1"),
                                           config.get("https_port"), config.get("certificates", "internal"))

    def _drain(self, env: str, addresses: list[str], timeout: float) -> None:
        """Wait until the edge has no request in flight to ``addresses`` (bounded by ``timeout``)."""
        edge = self.edge(env)
        if not addresses or not edge.running():
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = edge.in_flight()
            if not any(busy.get(a, 0) for a in addresses):
                return
            time.sleep(0.05)


OUTPUT_LINES = 400  # journaled per step; the rest stays in the build log


class _Stepper:
    """Reports sub-steps (begin/end) and a step's output lines (phase ``output``) to the engine's journal."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress

    @contextmanager
    def __call__(self, name: str) -> Iterator[dict[str, Any]]:
        if self.progress:
            self.progress(name, "begin", {})
        detail: dict[str, Any] = {}  # what the step found, journaled with its end
        yield detail
        if self.progress:
            self.progress(name, "end", detail)

    def output(self, name: str) -> Callable[[str], None]:
        sent = [0]

        def line(text: str) -> None:
            if self.progress is None or sent[0] > OUTPUT_LINES:
                return
            sent[0] += 1
            self.progress(name, "output", {"line": text if sent[0] <= OUTPUT_LINES
                                            else f"... more output in the artifact's {artifacts.BUILD_LOG}"})

        return line


def _stepper(progress: Progress | None) -> _Stepper:
    return _Stepper(progress)


_Step = _Stepper


def _need(resource: Resource | None) -> Resource:
    assert resource is not None, "create/update/replace always carry the desired resource"
    return resource

