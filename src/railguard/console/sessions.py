"""Signed-in browser sessions of the console, kept in the console process's memory only.

A person signs in with a Railguard token; the session cookie carries a random session id,
never the token. The token stays in this process (never on disk, never in a page) and is sent
to the daemon as the bearer of every call the session makes, so the daemon checks each action
exactly as it checks the CLI's. Each session has its own CSRF token that every state-changing
form must echo. Sessions end on logout, after ``IDLE_S`` without a request, or ``MAX_S`` after
sign-in; an ended session id is remembered until it would have expired, so a replayed cookie is
reported as such. Used by :mod:`railguard.console.app`.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

from railguard.model.principals import Principal

IDLE_S = 30 * 60.0
MAX_S = 12 * 3600.0


@dataclass
class Session:
    id: str
    token: str
    principal: Principal
    csrf: str
    started: float
    seen: float
    flash: list[str] = field(default_factory=list)

    def csrf_ok(self, sent: str | None) -> bool:
        return bool(sent) and hmac.compare_digest(self.csrf, sent or "")


class Sessions:
    """The live sessions, plus the ids of ended ones (to tell a replayed cookie from garbage)."""

    def __init__(self, idle_s: float = IDLE_S, max_s: float = MAX_S) -> None:
        self.idle_s = idle_s
        self.max_s = max_s
        self._live: dict[str, Session] = {}
        self._ended: dict[str, tuple[float, str]] = {}  # id -> (forget at, why it ended)
        self._lock = threading.Lock()

    def start(self, token: str, principal: Principal, now: float | None = None) -> Session:
        now = time.monotonic() if now is None else now
        session = Session(id=secrets.token_urlsafe(32), token=token, principal=principal,
                          csrf=secrets.token_urlsafe(32), started=now, seen=now)
        with self._lock:
            self._live[session.id] = session
        return session

    def find(self, session_id: str | None, now: float | None = None) -> tuple[Session | None, str]:
        """The live session, or None and why: ``none`` (no cookie), ``ended``, ``expired``, ``unknown``."""
        if not session_id:
            return None, "none"
        now = time.monotonic() if now is None else now
        with self._lock:
            self._forget(now)
            session = self._live.get(session_id)
            if session is None:
                ended = self._ended.get(session_id)
                return None, ended[1] if ended else "unknown"
            if now - session.seen > self.idle_s or now - session.started > self.max_s:
                self._end(session, "expired", now)
                return None, "expired"
            session.seen = now
            return session, "live"

    def end(self, session: Session, why: str = "ended", now: float | None = None) -> None:
        with self._lock:
            self._end(session, why, time.monotonic() if now is None else now)

    def end_all_for(self, token: str) -> None:
        """A token the daemon refuses (revoked, expired) ends every session signed in with it."""
        now = time.monotonic()
        with self._lock:
            for session in [s for s in self._live.values() if s.token == token]:
                self._end(session, "expired", now)

    def _end(self, session: Session, why: str, now: float) -> None:
        self._live.pop(session.id, None)
        self._ended[session.id] = (now + self.max_s, why)

    def _forget(self, now: float) -> None:
        for key in [k for k, (until, _) in self._ended.items() if until < now]:
            del self._ended[key]
