"""Attempts against the control plane that the daemon itself sees, recorded as ``security.refused``.

The app is untrusted code (docs/guardrails.md). In an isolated install most of what it tries is refused
by the kernel (file modes, ``/proc``, ``SO_REUSEPORT``) and never reaches the daemon; what a process
prints about it is the app's word and proves nothing. What the daemon does see, from the kernel or
from its own checks, and records here:

- a connection to its API socket from an OS user other than its own or root (``SO_PEERCRED``, given by
  the kernel, not the caller): refused before any request is answered; the uid names the environment
  whose user it is, and the request line (never a header value) says what was tried;
- a request refused for its credentials: an unknown, revoked or expired token, no token in token-only
  mode, or a token used beyond its role or environments;
- a syscall of an environment's user that the kernel refused (a file, ``/proc``, a port), as the kernel's audit
  subsystem reports it (:mod:`railguard.daemon.kernelaudit`, an isolated daemon running as root): one record per
  kind of attempt (user, syscall, errno, target; a ``/proc/<pid>`` counted as one), the repeats counted.

Each becomes an event ``security.refused`` (on the environment's timeline when one is known), a signed
audit entry, and, for an environment's own user, an incident (kind ``security_refused``). Recording
is rate-limited (a burst, then one per 30 s per source; 15 a minute per OS user; 30 a minute overall) and
done on one background thread with a bounded queue, so a process that floods the socket can flood neither the
store nor the accept loop: what is left out is counted and reported with the next record. The overall budget
cannot be spent by one app to hide another's attempt: an OS user's first records of a minute pass even when it
is spent (OS users are the kernel's word and few; a token name in a request is the caller's and is not exempt).
Called by :mod:`railguard.daemon.api`.
"""

from __future__ import annotations

import logging
import pwd
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("railguard.daemon")

EVENT = "security.refused"
KERNEL_CODE = "kernel.refused"  # the code of an attempt the kernel refused (not a diagnostic: nobody asked us)
PORT_CODE = "runtime.port_held"  # a process listening on a port the runtime allocated to another environment
BURST = 5  # records a source (an OS user, a principal) may make at once...
PER_SOURCE_S = 30.0  # ...then one more per this many seconds
PER_MINUTE = 30  # records per minute, all sources together
PER_USER_MINUTE = 15  # records per minute of one OS user ("os:" principals), whatever it tries
FAIR_SHARE = 2  # an OS user's first records of a minute pass even when the overall budget is spent
_QUEUE = 64
_SOURCES = 512  # sources remembered for the rate limit (the oldest are forgotten)
_USERS_TTL_S = 30.0
ATTRIBUTION_TRIES, ATTRIBUTION_WAIT_S = 6, 0.5  # an OS user not (yet) known as an environment's: asked again


@dataclass
class Attempt:
    """One refused attempt, as recorded."""

    source: str  # "uid:992" or a principal id
    principal: str  # who, as the audit names it: "os:rg-app-staging" or "token:mallory"
    env: str | None
    what: str  # the request line or action tried
    code: str  # the refusal's diagnostic code
    detail: dict[str, Any] = field(default_factory=dict)  # uid, pid, user: kernel-given facts
    suppressed: int = 0  # attempts of the same source left out since its last record
    audited: bool = False  # the API already wrote the audit entry of this refusal


class Intrusions:
    """Rate-limits, attributes and records refused attempts (see the module docstring)."""

    def __init__(self, record: Callable[[Attempt], None], users: Callable[[], dict[str, str]]) -> None:
        # record: writes the event, audit entry and incident (the daemon's store); users: OS user -> environment
        self._record = record
        self._users = users
        self._users_at = -_USERS_TTL_S
        self._users_map: dict[str, str] = {}
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[float, float]] = {}  # source -> (records it may still make, when counted)
        self._skipped: dict[str, int] = {}
        self._owner: dict[str, str] = {}  # source -> its principal (to keep a forgotten source's skipped count)
        self._orphaned: dict[str, int] = {}  # principal -> attempts left out by sources forgotten since
        self._minute: list[float] = []
        self._by_user: dict[str, list[float]] = {}  # "os:" principal -> times of its records this minute
        self._queue: queue.Queue[Attempt] = queue.Queue(_QUEUE)
        self._thread: threading.Thread | None = None
        # Called on the recording thread for each attempt before it is recorded (after the rate limit): the daemon
        # re-attributes a refused bind whose port another environment's process holds (see Daemon._attribute).
        self.attribute: Callable[[Attempt], None] | None = None

    # -- what the API reports ------------------------------------------------------------------
    def peer_refused(self, uid: int, pid: int, tried: str) -> None:
        """A process of ``uid`` connected to the API socket and was refused (before anything was answered)."""
        user = _user_name(uid)
        # The environment is looked up when recorded (the background thread): a replica that connects the moment
        # it starts may not be in the runtime's books yet.
        self._offer(Attempt(source=f"uid:{uid}", principal=f"os:{user}", env=None, what=tried,
                            code="auth.foreign_user", detail={"uid": uid, "pid": pid, "user": user}))

    def kernel_refused(self, uid: int, pid: int, syscall: str, errno: str, target: str, comm: str,
                       env: str | None = None) -> None:
        """The kernel refused ``syscall`` on ``target`` to a process of ``uid`` (its audit subsystem's word); ``env``:
        the environment the daemon started that uid's processes for (else looked up by user, like a peer)."""
        user = _user_name(uid)
        shown = clean(target, 300)
        # One source per kind of attempt: scanning every /proc/<pid>/environ is one attempt, not hundreds.
        kind = re.sub(r"^/proc/\d+", "/proc/<pid>", shown)
        self._offer(Attempt(source=f"kernel:{uid}:{syscall}:{errno}:{kind}", principal=f"os:{user}", env=env,
                            what=f"{syscall} {shown or '(no target)'}: {errno}", code=KERNEL_CODE,
                            detail={"uid": uid, "pid": pid, "user": user, "syscall": syscall, "errno": errno,
                                    "target": shown, "comm": clean(comm, 64)}), burst=1)

    def port_held(self, uid: int, port: int, victim_env: str | None, what: str) -> None:
        """A process of ``uid`` listens on a port the runtime gave a replica (or an edge) of ``victim_env``: found
        by the runtime's ownership check (the kernel's listener table), recorded against ``uid``'s environment."""
        user = _user_name(uid)
        self._offer(Attempt(source=f"port:{uid}:{port}", principal=f"os:{user}", env=None,
                            what=f"held 127.0.0.1:{port}, allocated to environment {victim_env}: {clean(what, 300)}",
                            code=PORT_CODE, detail={"uid": uid, "user": user, "port": port,
                                                    "victim_env": victim_env or ""}), burst=1)

    def request_refused(self, principal: str, what: str, code: str, env: str | None) -> None:
        """A request was refused for its credentials (401/403): bad, foreign or missing token, or no right."""
        self._offer(Attempt(source=principal, principal=principal, env=env, what=what, code=code, audited=True))

    def environment_of(self, user: str, tries: int = 1) -> str | None:
        """The environment whose processes run as ``user`` (None: not an environment's user), asking again up to
        ``tries`` times, ATTRIBUTION_WAIT_S apart, while it is not known."""
        for attempt in range(tries):
            if attempt:
                time.sleep(ATTRIBUTION_WAIT_S)
            found = self._environment_of(user)
            if found is not None:
                return found
        return None

    def _environment_of(self, user: str) -> str | None:
        now = time.monotonic()
        with self._lock:
            fresh = now - self._users_at < _USERS_TTL_S
        if not fresh or user not in self._users_map:
            try:
                found = self._users()
            except Exception:  # an unreadable store: the attempt is still recorded, without its environment
                log.exception("cannot map OS users to environments")
                found = {}
            with self._lock:
                self._users_map, self._users_at = found, now
        return self._users_map.get(user)

    # -- rate limit and hand-off ---------------------------------------------------------------
    def _offer(self, attempt: Attempt, burst: int = BURST) -> None:
        """Record ``attempt`` unless its source spent its burst (refilled one per PER_SOURCE_S), its OS user spent
        its minute, or the minute's overall budget is spent (an OS user's first FAIR_SHARE excepted); what is left
        out is counted onto the source's next record (or, once the source is forgotten, its principal's)."""
        key, principal = attempt.source, attempt.principal
        now = time.monotonic()
        with self._lock:
            self._minute = [t for t in self._minute if now - t < 60.0]
            for user in list(self._by_user):
                self._by_user[user] = [t for t in self._by_user[user] if now - t < 60.0]
                if not self._by_user[user]:
                    del self._by_user[user]
            os_user = principal.startswith("os:")
            mine = self._by_user.get(principal, []) if os_user else []
            level, since = self._tokens.get(key, (float(burst), now))
            level = min(float(burst), level + (now - since) / PER_SOURCE_S)
            spent = len(self._minute) >= PER_MINUTE and not (os_user and len(mine) < FAIR_SHARE)
            self._owner[key] = principal
            if level < 1.0 or spent or len(mine) >= PER_USER_MINUTE:
                self._tokens[key] = (level, now)
                self._skipped[key] = self._skipped.get(key, 0) + 1
                self._forget_oldest()
                return
            self._tokens[key] = (level - 1.0, now)
            attempt.suppressed = self._skipped.pop(key, 0) + self._orphaned.pop(principal, 0)
            self._minute.append(now)
            if os_user:
                self._by_user.setdefault(principal, []).append(now)
            self._forget_oldest()
            if self._thread is None:
                self._thread = threading.Thread(target=self._drain, name="railguard-intrusions", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait(attempt)
        except queue.Full:
            with self._lock:
                self._skipped[key] = self._skipped.get(key, 0) + 1 + attempt.suppressed

    def _forget_oldest(self) -> None:
        """Keep the rate limit's memory bounded (caller holds the lock); a forgotten source's skipped count moves to
        its principal, so it is still reported (with the principal's next record) rather than lost."""
        if len(self._tokens) <= _SOURCES:
            return
        for old in sorted(self._tokens, key=lambda k: self._tokens[k][1])[:len(self._tokens) - _SOURCES]:
            del self._tokens[old]
            owner = self._owner.pop(old, old)
            left = self._skipped.pop(old, 0)
            if left:
                self._orphaned[owner] = self._orphaned.get(owner, 0) + left
        if len(self._orphaned) > _SOURCES:  # principals named by callers (tokens) could be many: keep the largest
            for small in sorted(self._orphaned, key=self._orphaned.__getitem__)[:len(self._orphaned) - _SOURCES]:
                del self._orphaned[small]

    def _drain(self) -> None:
        while True:
            attempt = self._queue.get()
            try:
                user = attempt.detail.get("user")
                if attempt.env is None and isinstance(user, str):
                    attempt.env = self.environment_of(user, ATTRIBUTION_TRIES)
                if self.attribute is not None:
                    self.attribute(attempt)
                self._record(attempt)
            except Exception:  # a store that cannot take it must not end the thread
                log.exception("cannot record a refused attempt")
            finally:
                self._queue.task_done()

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until what was queued is recorded (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)


def message(attempt: Attempt) -> str:
    """The event's one line: who, which environment, what was tried, and what was left out."""
    where = f" (environment {attempt.env})" if attempt.env else ""
    more = f"; {attempt.suppressed} more attempt(s) of the same kind not recorded" if attempt.suppressed else ""
    return f"refused {attempt.principal}{where}: {attempt.what} [{attempt.code}]{more}"


def clean(text: str, limit: int = 200) -> str:
    """Untrusted text (a request line) as printable ASCII, cut to ``limit``: it ends up on terminals."""
    shown = "".join(c if 32 <= ord(c) < 127 else "?" for c in text)
    return shown[:limit] + ("..." if len(shown) > limit else "")


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
