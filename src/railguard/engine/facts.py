"""Per-request facts: what one request learns about the workspace, gathered once and passed down.

pyinfra's model (``pyinfra/api/facts.py``): gather facts, then act, and never gather the same
fact twice in one operation. A :class:`Facts` lives for one request (the use cases in
:mod:`railguard.engine.usecases` make one per call); each fact is keyed by name and gathered the
first time it is asked for: the parsed spec, the source snapshot (itself cached across requests by
tree state, see :mod:`railguard.sources.snapshot`), the secret versions and the desired resources
of an environment and their digest. Facts about the *live* state (observation, the serial, the
saved plan's status) are not kept here: they can move while a job waits for the lock, so the job
reads them again under it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar, cast

from railguard.engine import capture
from railguard.engine.execute import Context
from railguard.engine.workspace import Workspace
from railguard.model.diagnostics import Diagnostic, RailguardError, error
from railguard.model.plans import PlanSource
from railguard.model.resources import Resource, desired_digest, desired_resources
from railguard.model.spec import Spec
from railguard.sources.snapshot import SourceSnapshot, git_state
from railguard.state import secretstore
from railguard.state.store import Store

T = TypeVar("T")


class Facts:
    """The facts of one request about ``ws``; ``spec`` seeds an already parsed spec."""

    def __init__(self, ws: Workspace, spec: Spec | None = None) -> None:
        self.ws = ws
        self._known: dict[Hashable, object] = {}
        if spec is not None:
            self._known["spec"] = (spec, [])

    def get(self, key: Hashable, gather: Callable[[], T]) -> T:
        """The fact named ``key``, gathered by ``gather`` the first time only (errors are not kept)."""
        if key not in self._known:
            self._known[key] = gather()
        return cast(T, self._known[key])

    def parsed(self) -> tuple[Spec, list[Diagnostic]]:
        """The valid spec and its warnings; raises with every error found."""
        return self.get("spec", self.ws.load_valid)

    @property
    def spec(self) -> Spec:
        return self.parsed()[0]

    def source_root(self) -> Path:
        return (self.ws.root / self.spec.app.source).resolve()

    def source(self) -> SourceSnapshot:
        """The app source's files and digest (no git facts)."""
        return self.get("source", self._snapshot)

    def plan_source(self) -> PlanSource:
        """Store the source snapshot and the spec text for a plan (first, so the desired resources carry the
        digest of exactly what was stored)."""
        def gather() -> PlanSource:
            stored, recorded = capture.store(self.ws, self.spec, self.source())
            self._known["source"] = stored
            return recorded

        return self.get("source-plan", gather)

    def promoted_source(self, digest: str) -> PlanSource:
        """What a promotion plan records: the snapshot the source environment's release runs (stored by its plan)."""
        return capture.promoted(self.ws, self.source_root(), digest)

    def source_warnings(self) -> list[Diagnostic]:
        snap = self.source()
        return capture.warnings(snap.left_out, snap.root)

    def source_record(self) -> dict[str, Any]:
        """What a release records about its source: the digest, file count and git commit."""
        def gather() -> dict[str, Any]:
            snap = self.source()
            commit, dirty = git_state(snap.root)
            return {"digest": snap.digest, "git_commit": commit, "git_dirty": dirty, "files": len(snap.files)}

        return self.get("source-record", gather)

    def context(self) -> Context:
        return Context(source_root=self.source_root(), spec_root=self.ws.root,
                       backups_keep=self.spec.retention.backups_keep, app=self.spec.app.name,
                       users={n: e.user for n, e in self.spec.environments.items() if e.user})

    def versions(self, store: Store, env: str) -> dict[str, int]:
        """The secret versions of ``env`` (they are part of each service's desired config)."""
        return self.get(("versions", env), lambda: secretstore.versions(store, env))

    def desired(self, env: str, versions: dict[str, int] | None = None,
                overrides: dict[str, str] | None = None) -> list[Resource]:
        """The desired resources of ``env``, with the app source's digest as it is now."""
        key = ("desired", env, tuple(sorted((versions or {}).items())), tuple(sorted((overrides or {}).items())))
        return self.get(key, lambda: desired_resources(self.spec, env, self.source().digest, versions, overrides))

    def desired_digest(self, env: str, versions: dict[str, int] | None = None) -> str:
        return self.get(("desired_digest", env, tuple(sorted((versions or {}).items()))),
                        lambda: desired_digest(self.desired(env, versions)))

    def _snapshot(self) -> SourceSnapshot:
        source_root = self.source_root()
        if not source_root.is_dir():
            raise RailguardError(error(
                "spec.invalid_value", "The app source folder does not exist",
                f"[app].source points at {source_root}, which is not a folder.",
                "Fix app.source in the spec (it is relative to the spec file), then run `railguard validate`.",
                address="app.source",
            ))
        if os.geteuid() == 0 and (owner := source_root.stat().st_uid) != (spec_owner := self.ws.root.stat().st_uid):
            # Root reads every file: a spec an agent wrote could point the snapshot at a folder only root may
            # read, and the release it becomes is readable by the app's own user.
            raise RailguardError(error(
                "source.not_owned", "The app source belongs to another user than the spec's folder",
                f"[app].source points at {source_root}, owned by uid {owner}, and the spec's folder {self.ws.root} "
                f"by uid {spec_owner}. Railguard runs as root: it would copy into the release, for the app to read, "
                "files that only their owner may read.",
                "Point app.source at a folder of the spec's owner (or give it to them with chown), then run "
                "`railguard plan` again.", address="app.source",
            ))
        return capture.take(source_root, self.ws, self.spec)
