"""Alert delivery: each incident transition goes to the ``[alerts]`` of the served spec, off the daemon's path.

A webhook gets a JSON POST (timeout, retries with exponential backoff, an HMAC-SHA256 signature of the body in
``X-Railguard-Signature`` keyed by the state folder's alert key kept beside its secret key, outside the state
folder); a command gets the same JSON on stdin (timeout, no shell, a minimal environment; run by a root daemon as
the owner of the served spec's folder, never as root for a folder others may write). Deliveries run on one
background thread fed by a bounded queue, so a hook that hangs, fails or does not resolve never blocks an operation
or the observation loop; each attempt's outcome is recorded on the incident (``deliveries``). The same transition of
the same incident is delivered once per channel (dedup). Called by :mod:`railguard.daemon.incidents`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import queue
import secrets
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from railguard.model.api import AlertDelivery, Incident
from railguard.model.spec import Alerts
from railguard.secrets.keys import key_dir, state_id
from railguard.sources import asuser
from railguard.state import incidents
from railguard.state.store import Store, now

log = logging.getLogger("railguard.daemon")
SIGNATURE_HEADER = "X-Railguard-Signature"
TIMEOUT_S = 5.0
ATTEMPTS = 4
BACKOFF_S = 0.5  # then 1, 2 s
QUEUE_MAX = 1000


def alert_key_path(home: Path) -> Path:
    return key_dir() / f"{state_id(home)}.alert-key"


def alert_key(home: Path) -> bytes:
    """The webhook signing key (created on first use, 0600); receivers verify the signature with it."""
    path = alert_key_path(home)
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        value = secrets.token_hex(32).encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(value)
        return value


def sign(key: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def payload(incident: Incident, transition: str) -> bytes:
    return json.dumps({"event": f"incident.{transition}", "transition": transition,
                       "incident": incident.model_dump(mode="json")}, sort_keys=True).encode()


@dataclass(frozen=True)
class Job:
    incident: Incident
    transition: str
    alerts: Alerts


class Deliverer:
    def __init__(self, home: Path, store: Callable[[], Store], backoff_s: float = BACKOFF_S,
                 command_user: Callable[[], asuser.Identity] = asuser.nobody) -> None:
        """``command_user``: who the ``[alerts]`` command runs as when the daemon is root (the observer names the
        owner of the served spec's folder): the spec is an agent's text, so its command gets no more authority
        than the spec's owner has, and never root's."""
        self.home = home
        self.store = store
        self.backoff_s = backoff_s
        self.command_user = command_user
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=QUEUE_MAX)
        self._sent: set[tuple[str, str, str]] = set()  # (incident, transition, channel) already handed out
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="railguard-alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                pass

    def send(self, incident: Incident, transition: str, alerts: Alerts | None) -> None:
        """Queue ``transition`` of ``incident``; never blocks (a full queue drops it, with a log line)."""
        if alerts is None:
            return
        try:
            self._queue.put_nowait(Job(incident, transition, alerts))
        except queue.Full:
            log.warning("alert queue full: %s %s not delivered", incident.id, transition)

    def idle(self) -> bool:
        return self._queue.unfinished_tasks == 0

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                self._deliver(job)
            except Exception:  # a broken hook or store must not end delivery
                log.exception("alert delivery failed")
            finally:
                self._queue.task_done()

    def _deliver(self, job: Job) -> None:
        body = payload(job.incident, job.transition)
        channels: list[tuple[str, Callable[[bytes], None]]] = []
        if job.alerts.webhook:
            url = job.alerts.webhook
            channels.append(("webhook", lambda data: self._post(url, data)))
        if job.alerts.command:
            argv = list(job.alerts.command)
            channels.append(("command", lambda data: self._run_command(argv, data, self.command_user())))
        for channel, send in channels:
            key = (job.incident.id, job.transition, channel)
            if key in self._sent:
                continue
            if len(self._sent) > 10_000:  # bounded: old transitions are not delivered again anyway
                self._sent.clear()
            self._sent.add(key)
            attempts, last_error = 0, None
            for attempt in range(ATTEMPTS):
                attempts = attempt + 1
                try:
                    send(body)
                    last_error = None
                    break
                except Exception as exc:  # any failure of the hook is recorded, never raised
                    last_error = f"{type(exc).__name__}: {exc}"[:500]
                    time.sleep(self.backoff_s * 2 ** attempt if attempt < ATTEMPTS - 1 else 0)
            delivery = AlertDelivery(at=now(), channel=channel, transition=job.transition, ok=last_error is None,
                                     attempts=attempts, error=last_error)
            incidents.record_delivery(self.store(), job.incident.id, delivery)

    def _post(self, url: str, body: bytes) -> None:
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(alert_key(self.home), body),
                   "User-Agent": "railguard-alerts"}
        answer = httpx.post(url, content=body, headers=headers, timeout=TIMEOUT_S, follow_redirects=False)
        if answer.status_code >= 300:
            raise RuntimeError(f"the webhook answered HTTP {answer.status_code}")

    @staticmethod
    def _run_command(argv: list[str], body: bytes, who: asuser.Identity) -> None:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ")}
        argv, env = asuser.command_as(who, argv, env)  # as root: the spec's owner (or nobody), never root
        done = subprocess.run(argv, input=body, capture_output=True, timeout=TIMEOUT_S * 2, env=env, check=False,
                              start_new_session=True, cwd="/")
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip()[-300:]
            raise RuntimeError(f"the command exited with status {done.returncode}" + (f": {tail}" if tail else ""))
