"""The local provider's canary verbs: move a canary's share of the requests, promote it, or abort it.

A mixin of :class:`railguard.providers.local.provider.LocalProvider`. A rollout with ``canary_percent``
(:meth:`railguard.providers.local.rollout.Rollouts._start_canary`) leaves the new release's set beside the live
one with the role ``canary`` and a ``weight``; the edge's routes then list both sets in proportion
(:mod:`railguard.providers.local.weights`) through the resolver, so none of these verbs reloads Caddy. Called by
whoever drives the steps (the daemon's canary controller, ``railguard promote-step`` / ``railguard abort``).
"""

from __future__ import annotations

import time

from railguard.model.diagnostics import RailguardError, error
from railguard.providers.local.edge import EdgeError
from railguard.providers.local.rollout import Rollouts
from railguard.providers.local.runtime import CANARY, LIVE, WARM, EnvRuntime, ReplicaSet


def _no_canary(env: str, service: str) -> RailguardError:
    return RailguardError(error(
        "canary.none", f"'{service}' in '{env}' has no canary in progress",
        "Only a release started by a canary rollout (strategy = \"canary\") has a share of the traffic to move.",
        f"See `railguard status --env {env}`; a canary starts with `railguard apply` of a service whose strategy is "
        "\"canary\"."))


class Canaries(Rollouts):
    def canary(self, env: str, service: str) -> ReplicaSet | None:
        """The service's canary set, if a canary is in progress."""
        with self.state.lock:  # never creates the environment's record (a typo in a request must change nothing)
            runtime = self.state.envs.get(env)
            return next(iter(runtime.of(service, CANARY)), None) if runtime is not None else None

    def set_canary_weight(self, env: str, service: str, percent: int) -> None:
        """Send ``percent`` of the service's requests to its canary; 100 promotes it (the stable set goes warm)."""
        if not 1 <= percent <= 100:
            raise ValueError(f"a canary's share is 1..100 percent, not {percent}")
        with self.state.lock:
            canary = self.canary(env, service)
            if canary is None:
                raise _no_canary(env, service)
            runtime = self.state.env(env)
            stable = runtime.live(service)
            before = (canary.role, canary.weight, stable.role if stable else None,
                      stable.warm_until if stable else None)
            if percent == 100:
                if stable is not None:
                    stable.role = WARM
                    stable.warm_until = time.time() + canary.config.get("rollback_window_ms", 0) / 1000
                canary.role, canary.weight = LIVE, None
            else:
                canary.weight = percent
            try:
                self._sync_edge(env)  # traffic first: the record never says a share moved before it did
            except EdgeError:
                canary.role, canary.weight = before[0], before[1]
                if stable is not None:
                    stable.role, stable.warm_until = str(before[2]), before[3]
                raise
            self.state.save()
        if percent == 100 and stable is not None:
            self._retire_stable(env, runtime, stable, canary)

    def _retire_stable(self, env: str, runtime: EnvRuntime, stable: ReplicaSet, promoted: ReplicaSet) -> None:
        self._drain(env, [r.address for r in stable.replicas], promoted.config["drain_timeout_ms"] / 1000)
        if not promoted.config.get("rollback_window_ms"):
            with self.state.lock:
                owned = stable in runtime.sets
                if owned:
                    runtime.sets.remove(stable)
                    self.state.save()
            if owned:
                self._retire(stable)

    def abort_canary(self, env: str, service: str) -> None:
        """Every request back on the stable set, then the canary drained and stopped."""
        with self.state.lock:
            canary = self.canary(env, service)
            if canary is None:
                raise _no_canary(env, service)
            runtime = self.state.env(env)
            runtime.sets.remove(canary)
            try:
                self._sync_edge(env)
            except EdgeError:
                runtime.sets.append(canary)
                raise
            self.state.save()
        self._drain(env, [r.address for r in canary.replicas], canary.config["drain_timeout_ms"] / 1000)
        self._retire(canary)
