"""The daemon's behaviour: what each API call does, and the background loops.

One :class:`Daemon` per state folder. It boots by asking its provider to re-adopt
what runs (the local provider verifies pid + start time of every replica and the
edge) and settling any operation a previous daemon left in flight; then it serves
the API, runs operations one at a time on a runner thread, gives the provider a
background ``tick`` (health checks, expired rollback windows, crash restarts) whose
events it records, and garbage-collects old history at boot and hourly
(:mod:`railguard.daemon.housekeeping`). It holds a :class:`~railguard.providers.base.Provider`
from :mod:`railguard.providers.registry`, never a concrete runtime. Every store access uses
a connection of the calling thread. Called by :mod:`railguard.daemon.api`.
"""

from __future__ import annotations

import logging
import os
import pwd
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from railguard.daemon import housekeeping
from railguard.daemon.execs import ExecSessions
from railguard.daemon.governance import Governance
from railguard.daemon.intrusions import KERNEL_CODE, Attempt, Intrusions
from railguard.daemon.kernelaudit import KernelAudit, Refusal
from railguard.daemon.mode import Mode
from railguard.daemon.observation import Observer
from railguard.daemon.secrets_ops import MANAGED_BY, Secrets
from railguard.engine import gcpause, guard, usecases
from railguard.engine.guard import short_hash
from railguard.engine.observe import state_protected
from railguard.engine.recovery import recover
from railguard.engine.workspace import Workspace
from railguard.model.api import (
    IN_FLIGHT,
    Approval,
    ApprovalRecord,
    DaemonEdge,
    DaemonHealth,
    DeployAnswer,
    EnvironmentStatus,
    GcResult,
    Health,
    Logs,
    Operation,
    OperationStatus,
    PlanAnswer,
    PlanDetail,
    PlanFiles,
    PlanOverview,
    PlanStatus,
    SourceFile,
)
from railguard.model.diagnostics import RailguardError, error
from railguard.model.plans import Plan
from railguard.model.principals import Permission, Principal
from railguard.model.spec import NAME_PATTERN
from railguard.providers.base import DescribeRequest, HealthRequest, LogsRequest, Provider, ShutdownRequest, TickRequest
from railguard.providers.listeners import holders
from railguard.providers.registry import open_provider, watch_process_users
from railguard.secrets.keys import key_dir, state_id
from railguard.sources.store import SnapshotStore
from railguard.state import approvals, operations
from railguard.state.store import Store

log = logging.getLogger("railguard.daemon")
NAME_RE = re.compile(NAME_PATTERN.strip("^$"))


# How long a queued job waits for the API to finish answering its submit before it runs anyway
# (a client that went away must not hold the environment).
ANSWER_WAIT_S = 10.0
# How often the daemon thaws its frozen heap for one full collection (engine/gcpause.refreeze: ~0.1-0.2 s with
# 200 services, so rare; only reference cycles among frozen objects wait this long to be freed).
REFREEZE_S = 3600.0
MAX_OPERATION_WAIT_S = 30.0  # the longest one long-poll of an operation holds its request (and thread)


@dataclass
class Job:
    op_id: str
    env: str
    run: Callable[[Store], Any]
    # Set once the submit's answer is written: the job never starts (and a fault or crash in it never
    # strikes) before the caller holds the operation id.
    answered: threading.Event = field(default_factory=threading.Event)


class Daemon(Governance, ExecSessions):
    def __init__(self, home: Path, require_token: bool = False, provider: Provider | None = None) -> None:
        self.home = home
        self.require_token = require_token
        self.mode = Mode(require_token=require_token)  # set from the state folder's record by lifecycle.run
        self.secrets = Secrets(home)
        self.anchor = key_dir() / f"{state_id(home)}.audit-head"
        self.started_at = time.time()
        # ``provider``: any implementation of the protocol (tests pass the fake); by default the registry's.
        self.provider: Provider = provider or open_provider(
            home, secrets=lambda env, versions: self.secrets.values_for(self.store(), env, versions),
            store_secret=lambda env, name, value: None if self.secrets.set(self.store(), env, name, value,
                                                                          MANAGED_BY) else None)
        self._local = threading.local()
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._busy: dict[str, str] = {}
        self._busy_lock = threading.Lock()
        self.work = threading.Lock()  # held while an operation runs, and by garbage collection
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.on_stop: Callable[[], None] | None = None  # set by the server: stop serving
        self.observer = Observer(self)  # request metrics, verification, incidents, alerts (its own thread)
        self.intrusions = Intrusions(self.record_intrusion, self.environment_users)  # refused attempts, recorded
        # What the kernel refuses environments' users, recorded too (isolated as root only; see kernelaudit).
        self.kernel_audit = KernelAudit(f"railguard-{state_id(home)[:16]}", self._kernel_refused)
        self.intrusions.attribute = self._attribute
        self._unwatch: Callable[[], None] | None = None

    # -- plumbing ------------------------------------------------------------------------------
    def store(self) -> Store:
        found: Store | None = getattr(self._local, "store", None)
        if found is None:
            found = Store.open(self.home)
            found.add_redactor(self.secrets.redactor)
            self._local.store = found
        return found

    def _kernel_refused(self, found: Refusal) -> None:
        self.intrusions.kernel_refused(found.uid, found.pid, found.syscall, found.errno, found.target, found.comm,
                                       found.env)

    def _attribute(self, attempt: Attempt) -> None:
        """A bind the kernel refused with EADDRINUSE names who holds the port (the kernel's listener table, read
        now). When another environment's process holds a port that is not one of its own environment's replicas'
        (it squats a port the runtime gave the refused process, e.g. a replica restarted after a crash), the
        attempt is the holder's: recorded against the holder's environment, the refused one named as its victim.
        A port that is the holder's own (the refused process tried another environment's port) stays the
        refused process's attempt, with the holder named."""
        detail = attempt.detail
        if attempt.code != KERNEL_CODE or detail.get("syscall") != "bind" or detail.get("errno") != "EADDRINUSE":
            return
        port_text = str(detail.get("target", "")).rpartition(":")[2]
        if not port_text.isdigit():
            return
        port = int(port_text)
        holder = next((h for h in holders(port) if h.uid != detail.get("uid")), None)
        if holder is None:
            return
        try:
            holder_user = pwd.getpwuid(holder.uid).pw_name
        except KeyError:
            holder_user = str(holder.uid)
        holder_env = self.intrusions.environment_of(holder_user)
        detail.update(holder_uid=holder.uid, holder_user=holder_user, holder_env=holder_env or "")
        if holder_env is None or holder_env == attempt.env or port in self._env_ports(holder_env):
            attempt.what += f" (the port is held by {holder_user}" + (f", environment {holder_env})" if holder_env
                                                                       else ")")
            return
        victim, victim_env = detail.get("user"), attempt.env
        detail.update(uid=holder.uid, user=holder_user, victim_uid=detail.get("uid", ""), victim_user=victim or "",
                      victim_env=victim_env or "")
        attempt.principal, attempt.env = f"os:{holder_user}", holder_env
        attempt.what = (f"held 127.0.0.1:{port}, which {victim} (environment {victim_env}) was then refused: "
                        f"bind EADDRINUSE")

    def _env_ports(self, env: str) -> set[int]:
        """The loopback ports of ``env``'s replicas (live and canary), as the runtime describes them."""
        try:
            found = self.provider.describe(DescribeRequest(env=env))
        except Exception:  # attribution must never stop the record
            log.exception("cannot describe %s for a port's attribution", env)
            return set()
        ports = set()
        for service in found.services:
            for replica in [*service.replicas, *(service.canary.replicas if service.canary else [])]:
                if replica.port is not None:
                    ports.add(replica.port)
        return ports

    def _start_kernel_audit(self) -> None:
        """Kernel audit rules for every environment user, from before any of their processes starts."""
        if self.provider.summary().isolation != "isolated":
            self.kernel_audit.state = ("kernel-refused attempts are not recorded (environments share the daemon's "
                                       "user: the kernel refuses them nothing)")
            return
        if not self.kernel_audit.start():
            return
        self._unwatch = watch_process_users(self.kernel_audit.watch)

    def _watch_running_users(self) -> None:
        if not self.kernel_audit.on:
            return
        try:
            users = self.environment_users()
        except Exception:  # an unreadable store must not stop the boot; new replicas are still covered
            log.exception("cannot list the environments' users for the kernel audit")
            return
        for user, env in users.items():  # adopted replicas started before this daemon
            try:
                self.kernel_audit.watch(pwd.getpwnam(user).pw_uid, env)
            except KeyError:
                continue

    def boot(self) -> None:
        store = self.store()
        self.secrets.refresh(store)
        self._start_kernel_audit()
        for note in self.provider.adopt().notes:  # and from now on the provider supervises what runs
            store.add_event(None, "daemon.adopted", note)
        recover(store, self.provider)
        self._watch_running_users()
        level = self.provider.summary()
        store.add_event(None, "daemon.started", f"daemon started (pid {os.getpid()}, {level.isolation}: "
                        f"{level.isolation_reason}"
                        + (", token-only" if self.require_token else "")
                        + (", shared user allowed" if self.mode.allow_shared_user else "") + ")")
        if level.isolation == "isolated":  # whether the kernel's refusals are witnessed, and if not, why
            store.add_event(None, "daemon.kernel_audit", self.kernel_audit.state)
        for target, name in ((self._runner, "railguard-runner"), (self._loop, "railguard-loop")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self.observer.start()
        from railguard.daemon import prometheus  # the optional listener imports its library only here

        if (address := prometheus.start(self)) is not None:
            store.add_event(None, "daemon.metrics", f"Prometheus metrics served on http://{address}/metrics")
        from railguard.daemon import artifact_server  # opt-in: pods' init containers fetch bundles here

        if (served := artifact_server.start(self.home)) is not None:
            host, port = served.server_address[:2]
            store.add_event(None, "daemon.artifacts", f"artifact bundles served on http://{host!s}:{port}/v1/artifacts/")

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
        self.observer.stop()
        self.provider.shutdown(ShutdownRequest(everything=everything))
        if self._unwatch is not None:
            self._unwatch()
        self.kernel_audit.stop()  # its rules are system-wide state: never left behind by a clean stop

    def _loop(self) -> None:
        next_gc = time.monotonic()  # the first pass right after boot
        next_refreeze = time.monotonic() + REFREEZE_S
        while not self.stopping.wait(0.5):
            try:
                if time.monotonic() >= next_gc:
                    next_gc = time.monotonic() + housekeeping.periodic(self.store(), self.provider, self.work,
                                                                       self.home)
                if time.monotonic() >= next_refreeze:  # cycles among frozen objects: one full walk per interval
                    next_refreeze = time.monotonic() + REFREEZE_S
                    gcpause.refreeze()
                gcpause.resettle()  # frozen again once the pauses of a plan or deploy are over
                for event in self.provider.tick(TickRequest()).events:
                    self.store().add_event(event.env, event.kind, event.message, data=dict(event.data) or None)
                    uid, port = event.data.get("uid"), event.data.get("port")
                    if event.kind.endswith(".port_held") and isinstance(uid, int) and isinstance(port, int):
                        self.intrusions.port_held(uid, port, event.env, event.message)
            except Exception:  # the loop must survive a bad pass
                log.exception("background pass failed")

    def _runner(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                self._run_job(job)
            except Exception:  # even a broken store must not end the runner thread
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
            with self.work:
                job.run(store)
        except RailguardError as exc:
            store.finish_operation(job.op_id, OperationStatus.failed,
                                   {"diagnostics": [d.model_dump(mode="json") for d in exc.diagnostics]})
        except Exception as exc:  # an operation bug must not kill the runner
            log.exception("operation %s crashed", job.op_id)
            diag = error("internal.error", "The operation hit an internal error", f"{type(exc).__name__}: {exc}",
                         "Check `railguard status`; report the bug with the daemon log.")
            store.finish_operation(job.op_id, OperationStatus.failed, {"diagnostics": [diag.model_dump(mode="json")]})
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
            if current is not None and self.store().operation_status(current) not in IN_FLIGHT:
                del self._busy[env]
            if env in self._busy:
                raise usecases.busy(env, self._busy[env])
            op_id = create()
            self._busy[env] = op_id
            return op_id

    def _enqueue(self, submitted: usecases.Submission, principal: Principal) -> str:
        """Record the operation as queued (once ``submitted.env`` is free) and hand its job to the runner."""
        store = self.store()
        op_id = self._claim(submitted.env, lambda: store.create_operation(
            submitted.env, submitted.kind, submitted.plan_id, principal.id, status=OperationStatus.queued))
        self._queue(Job(op_id, submitted.env, lambda runner_store: submitted.run(runner_store, op_id)))
        return op_id

    def _workspace(self, spec_path: str, text: str | None = None) -> Workspace:
        return Workspace(Path(spec_path), self.home, text)

    @staticmethod
    def _plan_answer(plan: Plan) -> PlanAnswer:
        return PlanAnswer.of(plan, short_hash(plan))

    # -- API ----------------------------------------------------------------------------------
    def protected_running(self) -> list[str]:
        """Environments protected in state that have live replicas now (stopping them needs a person).

        A store that cannot be read says nothing about protection: then any replica running counts as
        protected (a person decides), and with nothing running there is nothing to protect."""
        try:
            store = self.store()
            return [env for env in store.environment_names() if state_protected(store, env)
                    and self.provider.describe(DescribeRequest(env=env)).live_sets > 0]
        except RailguardError:
            return ["(unknown: the state store cannot be read)"] if self.provider.summary().replicas else []

    def health(self) -> DaemonHealth:
        summary = self.provider.summary()
        return DaemonHealth(pid=os.getpid(), home=str(self.home), started_at=self.started_at,
                            edges={env: DaemonEdge(running=edge.running, pid=edge.pid)
                                   for env, edge in summary.edges.items()},
                            replicas=summary.replicas, isolation=summary.isolation,
                            isolation_reason=summary.isolation_reason, require_token=self.require_token,
                            shared_user_allowed=self.mode.allow_shared_user, kernel_audit=self.kernel_audit.state)

    def status_health(self, env: str, address: str) -> Health:
        return self.provider.health(HealthRequest(env=env, address=address)).health

    def plan(self, spec_path: str, env: str, principal: Principal,
             source_overrides: dict[str, str] | None = None, text: str | None = None,
             allow_data_loss: list[str] | None = None) -> PlanAnswer:
        """Plan the spec at ``spec_path``, or a proposed ``text`` read as if it were that file."""
        return self._plan_answer(usecases.plan(self._workspace(spec_path, text), env, self.store(), self.provider,
                                               principal, source_overrides, allow_data_loss=allow_data_loss))

    def restore_plan(self, spec_path: str, env: str, principal: Principal, release: int | None,
                     backup: str | None, databases: list[str]) -> PlanAnswer:
        return self._plan_answer(usecases.restore_plan(self._workspace(spec_path), env, self.store(), principal,
                                                       release, backup, databases or None))

    def plan_overview(self, spec_path: str, env: str, principal: Principal, per_action: int,
                      text: str | None = None, allow_data_loss: list[str] | None = None) -> PlanOverview:
        """Plan as :meth:`plan` does, answering the summary and the first changes of each action only."""
        plan = usecases.plan(self._workspace(spec_path, text), env, self.store(), self.provider, principal,
                             allow_data_loss=allow_data_loss)
        return PlanOverview.of(plan, short_hash(plan), per_action)

    def plan_body(self, plan_id: str, principal: Principal) -> str:
        """A saved plan's JSON as stored, unparsed (large plans are streamed to the CLI from here)."""
        store = self.store()
        record = store.plan_record(plan_id)
        body = store.plan_body(plan_id)  # a plan that does not exist: plan.not_found
        if record is not None:
            guard.require(principal, Permission.read, record.env)
        return body

    def plan_record(self, plan_id: str) -> PlanDetail:
        store = self.store()
        plan, _, status = store.load_plan(plan_id, shared=True)  # read only: the parsed copy may be shared
        return PlanDetail(plan=self._plan_answer(plan), status=status, approvals=approvals.for_plan(store, plan_id),
                          approval=guard.approval_state(store, plan, status))

    def plan_files(self, plan_id: str, principal: Principal) -> PlanFiles:
        """The files of the plan's stored source snapshot (``railguard show PLAN --files``)."""
        plan, _, _ = self.store().load_plan(plan_id)
        guard.require(principal, Permission.read, plan.env)
        digest = plan.source.digest if plan.source else None
        manifest = SnapshotStore.of(self.home).manifest(digest) if digest else None
        files = [SourceFile(path=f.path, bytes=f.size, sha256=f.sha256, executable=f.executable)
                 for f in (manifest.files if manifest else ())]
        return PlanFiles(plan_id=plan_id, digest=digest, stored=manifest is not None, count=len(files),
                         bytes=sum(f.bytes for f in files), files=files)

    def request_approval(self, plan_id: str, principal: Principal, reason: str) -> Approval:
        store = self.store()
        plan, _, status = store.load_plan(plan_id)
        return guard.request_approval(store, plan, status, principal, reason)

    def promote(self, spec_path: str, source: str, target: str, principal: Principal) -> PlanAnswer:
        return self._plan_answer(usecases.promote(self._workspace(spec_path), source, target, self.store(),
                                                  self.provider, principal))

    def decide(self, plan_id: str, decision: str, principal: Principal, *, confirmed: list[str],
               typed: str | None, reason: str) -> ApprovalRecord:
        store = self.store()
        plan, _, status = store.load_plan(plan_id)
        if decision == "reject" and not reason:
            raise RailguardError(error("daemon.bad_request", "A rejection needs a reason",
                                       "Whoever asked for the plan will read the reason.",
                                       f"Run `railguard reject {plan_id} --reason \"...\"`."))
        record = guard.approve(store, plan, status, principal, confirmed=confirmed, typed=typed, reason=reason,
                               decision="approved" if decision == "approve" else "rejected")
        if decision == "reject":
            store.mark_plan(plan_id, PlanStatus.rejected)
        store.add_event(plan.env, f"plan.{record.decision}", f"plan {plan_id} {record.decision} by "
                        f"{principal.id}" + (f": {reason}" if reason else ""), data={"plan": plan_id})
        return record

    def deploy(self, spec_path: str, env: str | None, principal: Principal, allow_data_loss: list[str],
               apply: bool) -> DeployAnswer:
        """``railguard deploy``: plan, and with ``apply`` submit the plan when it is applyable, in one request (the
        submission checks the saved plan exactly as ``POST /v1/operations`` does)."""
        plan, edge_port = usecases.deploy_plan(self._workspace(spec_path), env, self.store(), self.provider,
                                               principal, apply, allow_data_loss)
        operation = None
        if apply and plan.applyable:
            operation = self.operation(self.submit_apply(spec_path, plan.id, principal))
        return DeployAnswer.model_construct(env=plan.env, plan=self._plan_answer(plan), operation=operation,
                                            edge_port=edge_port)

    def submit_apply(self, spec_path: str, plan_id: str, principal: Principal, confirm: list[str] | None = None) -> str:
        return self._enqueue(usecases.submit_apply(self._workspace(spec_path), plan_id, self.store(), self.provider,
                                                   principal, confirm), principal)

    def submit_rollback(self, spec_path: str, env: str, to: int | None, principal: Principal) -> str:
        return self._enqueue(usecases.rollback(self._workspace(spec_path), env, to, self.store(), self.provider,
                                               principal), principal)

    def gc(self, spec_path: str | None, dry_run: bool) -> GcResult:
        """``railguard gc``: one retention pass now, under the retention of ``spec_path`` (or the served spec)."""
        store = self.store()
        rules = housekeeping.policy(self.home, spec_path or housekeeping.served_spec(store))
        return housekeeping.collect(store, self.provider, self.work, rules, dry_run)

    def operation(self, op_id: str, steps: int | None = None) -> Operation:
        record = self.store().operation(op_id, steps)
        if record is None:
            raise RailguardError(error("operation.not_found", f"No operation '{op_id}'",
                                       "The state has no operation with that id.",
                                       "List operations with `railguard operations`.", address=op_id))
        return record

    def operation_after(self, op_id: str, after: int, wait_s: float, steps: int | None = None) -> Operation:
        """The operation once its journal has more than ``after`` entries or it ended, waiting up to ``wait_s``
        (a long-poll: the journal's writer wakes it at once, so a follower sees each step as it is written).
        With ``steps`` (the journal in short), ``after`` counts what ``journal_total`` counts."""
        deadline = time.monotonic() + max(0.0, min(wait_s, MAX_OPERATION_WAIT_S))
        while True:
            mark = operations.progress_mark()  # before the read: a move between the two is not missed
            record = self.operation(op_id, steps)
            left = deadline - time.monotonic()
            count = len(record.journal) if record.journal_total is None else record.journal_total
            if count > after or not record.status.in_flight or left <= 0 or self.stopping.is_set():
                return record
            operations.wait_for_progress(mark, left)

    def operation_end(self, op_id: str, wait_s: float) -> Operation:
        """The operation once it ended, waiting up to ``wait_s`` (a follower that prints only the final record,
        ``--json``: one request for the whole operation instead of one per step; each step that wakes it reads
        the operation's status only)."""
        deadline = time.monotonic() + max(0.0, min(wait_s, MAX_OPERATION_WAIT_S))
        store = self.store()
        while True:
            mark = operations.progress_mark()  # before the read: a move between the two is not missed
            status = store.operation_status(op_id)
            left = deadline - time.monotonic()
            if status is None or not status.in_flight or left <= 0 or self.stopping.is_set():
                return self.operation(op_id)
            operations.wait_for_progress(mark, left)

    def status(self, env: str, spec_path: str | None) -> EnvironmentStatus:
        from railguard.daemon.status import describe

        return describe(self, env, spec_path)

    def logs(self, env: str, service: str, release: int | None, lines: int,
             offsets: dict[str, int] | None) -> Logs:
        for value, what in ((env, "environment"), (service, "service")):
            if not NAME_RE.fullmatch(value):  # names only: never a path that walks out of logs/<env>/
                raise RailguardError(error("daemon.bad_request", f"'{value}' is not a {what} name",
                                           "Names are lowercase letters, digits and '-'.",
                                           "Pass the name as written in railguard.toml."))
        # Where logs live is the runtime's business (files here, a log API elsewhere): the provider reads them.
        answer = self.provider.logs(LogsRequest(env=env, service=service, release=release, lines=max(lines, 0),
                                                offsets=offsets))
        return Logs.model_validate(answer.model_dump())

