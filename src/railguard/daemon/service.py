"""The daemon's behaviour: what each API call does, and the background loops.

One :class:`Daemon` per state folder. It boots by re-adopting what runs (the local
provider verifies pid + start time of every replica and the edge) and settling any
operation a previous daemon left in flight; then it serves the API, runs operations
one at a time on a runner thread, supervises replicas, watches their health and
stops warm replicas whose rollback window passed. Every store access uses a
connection of the calling thread. Called by :mod:`railguard.daemon.api`.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from railguard.daemon.governance import Governance
from railguard.daemon.secrets_ops import Secrets
from railguard.engine import guard
from railguard.engine.apply import apply_plan, verify_plan
from railguard.engine.execute import Context
from railguard.engine.guard import short_hash
from railguard.engine.plan import desired_for, make_plan_with
from railguard.engine.recovery import recover
from railguard.engine.rollback import check_rollback, rollback, rollback_plan
from railguard.engine.workspace import Workspace, require_env
from railguard.model.diagnostics import RailguardError, error
from railguard.model.principals import Permission, Principal
from railguard.model.resources import desired_digest
from railguard.model.spec import NAME_PATTERN
from railguard.providers.local.processes import Supervisor, tail
from railguard.providers.local.provider import LocalProvider
from railguard.secrets.keys import key_dir, state_id
from railguard.sources.snapshot import snapshot
from railguard.state import approvals, secretstore
from railguard.state.store import Store

log = logging.getLogger("railguard.daemon")
NAME_RE = re.compile(NAME_PATTERN.strip("^$"))


# How long a queued job waits for the API to finish answering its submit before it runs anyway
# (a client that went away must not hold the environment).
ANSWER_WAIT_S = 10.0


@dataclass
class Job:
    op_id: str
    env: str
    run: Callable[[Store], Any]
    # Set once the submit's answer is written: the job never starts (and a fault or crash in it never
    # strikes) before the caller holds the operation id.
    answered: threading.Event = field(default_factory=threading.Event)


class Daemon(Governance):
    def __init__(self, home: Path, require_token: bool = False) -> None:
        self.home = home
        self.require_token = require_token
        self.secrets = Secrets(home)
        self.anchor = key_dir() / f"{state_id(home)}.audit-head"
        self.started_at = time.time()
        self.supervisor = Supervisor()
        self.provider = LocalProvider(home, self.supervisor)
        self.provider.secret_values = lambda env, names: self.secrets.values_for(self.store(), env, names)
        self._local = threading.local()
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._busy: dict[str, str] = {}
        self._busy_lock = threading.Lock()
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.on_stop: Callable[[], None] | None = None  # set by the server: stop serving

    # -- plumbing ------------------------------------------------------------------------------
    def store(self) -> Store:
        found: Store | None = getattr(self._local, "store", None)
        if found is None:
            found = Store.open(self.home)
            found.add_redactor(self.secrets.redactor)
            self._local.store = found
        return found

    def boot(self) -> None:
        store = self.store()
        self.secrets.refresh(store)
        for note in self.provider.adopt():
            store.add_event(None, "daemon.adopted", note)
        recover(store, self.provider)
        store.add_event(None, "daemon.started", f"daemon started (pid {os.getpid()})")
        self.supervisor.run_in_thread()
        for target, name in ((self._runner, "railguard-runner"), (self._loop, "railguard-loop")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def request_shutdown(self, everything: bool = False) -> None:
        """Stop soon, from another thread: the caller (an API request) still gets its answer."""
        def stop() -> None:
            self.shutdown(everything)
            if self.on_stop is not None:
                self.on_stop()

        threading.Thread(target=stop, name="railguard-stop", daemon=True).start()

    def shutdown(self, everything: bool = False) -> None:
        """Stop serving. Apps and the edge keep running unless ``everything``."""
        self.stopping.set()
        self._jobs.put(None)
        self.supervisor.shutdown_thread()
        if everything:
            self.provider.stop_everything()

    def _loop(self) -> None:
        restarts_seen: dict[str, int] = {}
        while not self.stopping.wait(0.5):
            try:
                self.provider.monitor()
                for note in self.provider.tick():
                    self.store().add_event(None, "release.warm_stopped", note)
                for name, record in self.supervisor.records().items():
                    count = self.supervisor.restarts(name)
                    if count != restarts_seen.get(name, 0):
                        restarts_seen[name] = count
                        env = name.split(".", 1)[0]
                        self.store().add_event(env, "replica.restarted",
                                               f"{name} crashed and was restarted (pid {record.pid}, "
                                               f"restart #{count})")
            except Exception:  # noqa: BLE001 - the loop must survive a bad pass
                log.exception("background pass failed")

    def _runner(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                self._run_job(job)
            except Exception:  # noqa: BLE001 - even a broken store must not end the runner thread
                log.exception("operation %s could not be settled", job.op_id)

    def _queue(self, job: Job) -> None:
        """Queue ``job``; it starts once :meth:`answered` is called by the thread that submitted it."""
        pending: list[threading.Event] = getattr(self._local, "unanswered", [])
        pending.append(job.answered)
        self._local.unanswered = pending
        self._jobs.put(job)

    def answered(self) -> None:
        """The API wrote its answer on this thread: the jobs this request queued may start."""
        for event in getattr(self._local, "unanswered", []):
            event.set()
        self._local.unanswered = []

    def _run_job(self, job: Job) -> None:
        job.answered.wait(ANSWER_WAIT_S)
        store = self.store()
        try:
            job.run(store)
        except RailguardError as exc:
            store.finish_operation(job.op_id, "failed",
                                   {"diagnostics": [d.model_dump(mode="json") for d in exc.diagnostics]})
        except Exception as exc:  # noqa: BLE001 - an operation bug must not kill the runner
            log.exception("operation %s crashed", job.op_id)
            diag = error("internal.error", "The operation hit an internal error", f"{type(exc).__name__}: {exc}",
                         "Check `railguard status`; report the bug with the daemon log.")
            store.finish_operation(job.op_id, "failed", {"diagnostics": [diag.model_dump(mode="json")]})
        finally:
            with self._busy_lock:
                if self._busy.get(job.env) == job.op_id:  # a newer operation may hold it already
                    del self._busy[job.env]

    def _claim(self, env: str, create: Callable[[], str]) -> str:
        """Create the operation (``create``) only if no other runs in ``env``; return its id."""
        with self._busy_lock:
            current = self._busy.get(env)
            # The runner releases its claim just after the operation's final status is stored; an
            # operation that already ended does not block the next one (the CLI may be that fast).
            if current is not None and (self.store().operation(current) or {}).get("status") not in (
                    "queued", "running"):
                del self._busy[env]
            if env in self._busy:
                raise RailguardError(error(
                    "operation.busy", f"An operation is already running in '{env}'",
                    f"Operation {self._busy[env]} is in progress; two operations at once could fight over the "
                    "same replicas and edge.",
                    f"Wait for it with `railguard operations {self._busy[env]}`, then try again.",
                    address=env, extra={"operation": self._busy[env]}))
            op_id = create()
            self._busy[env] = op_id
            return op_id

    @staticmethod
    def _ctx(ws: Workspace, source: str) -> Context:
        return Context(source_root=(ws.root / source).resolve(), spec_root=ws.root)

    # -- API ----------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "home": str(self.home), "started_at": self.started_at,
                "edges": {env: {"running": edge.running(), "pid": edge.pid()}
                          for env, edge in self.provider.edges.items()},
                "replicas": len(self.supervisor.records())}

    def plan(self, spec_path: str, env: str, principal: Principal,
             source_overrides: dict[str, str] | None = None, text: str | None = None) -> dict[str, Any]:
        """Plan the spec at ``spec_path``, or a proposed ``text`` read as if it were that file."""
        ws = Workspace(Path(spec_path), self.home, text)
        plan = make_plan_with(ws, env, self.store(), self.provider, principal, source_overrides)
        return plan.model_dump(mode="json") | {"summary": plan.summary(), "short_hash": short_hash(plan)}

    def plan_record(self, plan_id: str) -> dict[str, Any]:
        store = self.store()
        plan, _, status = store.load_plan(plan_id)
        return {"plan": plan.model_dump(mode="json") | {"summary": plan.summary(), "short_hash": short_hash(plan)},
                "status": status, "approvals": approvals.for_plan(store, plan_id),
                "approval": guard.approval_state(store, plan, status)}

    def request_approval(self, plan_id: str, principal: Principal, reason: str) -> dict[str, Any]:
        store = self.store()
        plan, _, status = store.load_plan(plan_id)
        return guard.request_approval(store, plan, status, principal, reason)

    def promote(self, spec_path: str, source: str, target: str, principal: Principal) -> dict[str, Any]:
        live = next((r for r in self.store().releases(source, limit=1_000_000) if r["status"] == "live"), None)
        if live is None:
            raise RailguardError(error(
                "rollback.no_target", f"Nothing runs in '{source}' to promote",
                f"'{source}' has no live release, so there is no proven artifact to send to '{target}'.",
                f"Deploy to {source} first (`railguard deploy --env {source}`)."))
        overrides = {name: entry["source"] for name, entry in live["services"].items() if entry.get("source")}
        return self.plan(spec_path, target, principal, overrides)

    def decide(self, plan_id: str, decision: str, principal: Principal, *, confirmed: list[str],
               typed: str | None, reason: str) -> dict[str, Any]:
        store = self.store()
        plan, _, status = store.load_plan(plan_id)
        if decision == "reject" and not reason:
            raise RailguardError(error("daemon.bad_request", "A rejection needs a reason",
                                       "Whoever asked for the plan will read the reason.",
                                       f"Run `railguard reject {plan_id} --reason \"...\"`."))
        record = guard.approve(store, plan, status, principal, confirmed=confirmed, typed=typed, reason=reason,
                               decision="approved" if decision == "approve" else "rejected")
        if decision == "reject":
            store.mark_plan(plan_id, "rejected")
        store.add_event(plan.env, f"plan.{record['decision']}", f"plan {plan_id} {record['decision']} by "
                        f"{principal.id}" + (f": {reason}" if reason else ""), data={"plan": plan_id})
        return record

    def submit_apply(self, spec_path: str, plan_id: str, principal: Principal) -> str:
        ws = Workspace(Path(spec_path), self.home)
        spec, _ = ws.load_valid()
        store = self.store()
        plan, _, _ = store.load_plan(plan_id)
        guard.require(principal, Permission.apply, plan.env)  # before anything about the plan is revealed
        require_env(spec, plan.env)
        current = desired_digest(desired_for(ws, spec, plan.env, secretstore.versions(store, plan.env)))
        verify_plan(store, plan_id, current)  # fail fast, before queueing; re-checked under the lock
        guard.check_apply(store, plan, principal)
        source = _source_facts(ws, spec.app.source)
        op_id = self._claim(plan.env, lambda: store.create_operation(plan.env, "apply", plan_id, principal.id,
                                                                       status="queued"))
        ctx = self._ctx(ws, spec.app.source)
        self._queue(Job(op_id, plan.env, lambda s: apply_plan(
            s, plan_id, self.provider, principal.id, current, ctx, source, op_id=op_id,
            check=lambda p: guard.check_apply(s, p, principal))))
        return op_id

    def submit_rollback(self, spec_path: str, env: str, to: int | None, principal: Principal) -> str:
        ws = Workspace(Path(spec_path), self.home)
        spec, _ = ws.load_valid()
        require_env(spec, env)
        store = self.store()
        # Fail fast, before queueing: nothing to roll back to, or a rollback that needs review.
        check_rollback(store, rollback_plan(store, env, self.provider, to)[1], principal)
        op_id = self._claim(env, lambda: store.create_operation(env, "rollback", None, principal.id,
                                                                status="queued"))
        ctx = self._ctx(ws, spec.app.source)
        self._queue(Job(op_id, env, lambda s: rollback(s, env, self.provider, principal, ctx, to, op_id=op_id)))
        return op_id

    def operation(self, op_id: str) -> dict[str, Any]:
        record = self.store().operation(op_id)
        if record is None:
            raise RailguardError(error("operation.not_found", f"No operation '{op_id}'",
                                       "The state has no operation with that id.",
                                       "List operations with `railguard operations`.", address=op_id))
        return record

    def status(self, env: str, spec_path: str | None) -> dict[str, Any]:
        from railguard.daemon.status import describe

        return describe(self, env, spec_path)

    def logs(self, env: str, service: str, release: int | None, lines: int,
             offsets: dict[str, int] | None) -> dict[str, Any]:
        for value, what in ((env, "environment"), (service, "service")):
            if not NAME_RE.fullmatch(value):  # names only: never a path that walks out of logs/<env>/
                raise RailguardError(error("daemon.bad_request", f"'{value}' is not a {what} name",
                                           "Names are lowercase letters, digits and '-'.",
                                           "Pass the name as written in railguard.toml."))
        folder = self.home / "logs" / env / service
        files = sorted(folder.glob("*.log")) if folder.is_dir() else []
        if release is not None:
            files = [f for f in files if f".r{release}." in f.name]
        out: dict[str, Any] = {"files": [], "offsets": {}}
        for path in files:
            size = path.stat().st_size
            if offsets is None:
                chunk = tail(path, lines)
            else:
                start = offsets.get(path.name, size)
                start = 0 if start > size else start  # rotated: read the new file from its start
                with path.open("rb") as handle:
                    handle.seek(start)
                    chunk = handle.read(256 * 1024).decode("utf-8", errors="replace").splitlines()
            out["files"].append({"name": path.stem, "lines": chunk})
            out["offsets"][path.name] = size
        return out


def _source_facts(ws: Workspace, source: str) -> dict[str, Any]:
    snap = snapshot((ws.root / source).resolve())
    return {"digest": snap.digest, "git_commit": snap.git_commit, "git_dirty": snap.git_dirty,
            "files": len(snap.files)}

