"""The console's road to the daemon: the API client, acting as the signed-in person.

Each session gets a :class:`railguard.client.Client` that sends the session's token as its bearer,
so the daemon authenticates and authorizes every page and every decision exactly as it does for
the CLI (the console never widens anything). The console's own identity (the token in
``RAILGUARD_TOKEN`` when it started, or the OS user in same-user mode) is used for one thing only:
reporting refusals that happened before anyone was signed in (an ended session, a forged form),
so they reach the audit log. The console never starts the daemon. Beside the daemon the calls go
over its Unix socket; inside the daemon's process (``railguard daemon start --console``) through
an in-process transport that runs the very same request handling. Used by :mod:`railguard.console.app`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import httpx

from railguard.client import Client
from railguard.engine.workspace import Workspace
from railguard.model.api import (
    ApprovalRecord,
    AuditEntry,
    AuditVerification,
    RefusalReport,
    TokenInfo,
)
from railguard.model.diagnostics import RailguardError

log = logging.getLogger("railguard.console")


class Calls:
    """Typed calls the console needs beyond the client's own typed calls."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def decide(self, plan_id: str, decision: str, typed: str, reason: str, confirm: list[str]) -> ApprovalRecord:
        body: dict[str, Any] = {"typed": typed, "reason": reason, "confirm": confirm, "channel": "console"}
        return ApprovalRecord.model_validate(self.client.call("POST", f"plans/{plan_id}/{decision}", body)["approval"])

    def audit(self, limit: int) -> list[AuditEntry]:
        rows = self.client.call("GET", "audit", params={"limit": limit})["audit"]
        return [AuditEntry.model_validate(r) for r in rows]

    def audit_verify(self) -> AuditVerification:
        return AuditVerification.model_validate(self.client.call("GET", "audit/verify")["verify"])

    def tokens(self) -> list[TokenInfo]:
        return [TokenInfo.model_validate(r) for r in self.client.call("GET", "tokens")["tokens"]]

    def report_refusal(self, report: RefusalReport) -> None:
        self.client.call("POST", "audit/refusals", report.model_dump(mode="json"))


class Clients:
    """One client per token (sessions of the same token share it), plus the console's own."""

    def __init__(self, ws: Workspace, transport: httpx.BaseTransport | None = None) -> None:
        self.ws = ws
        self.transport = transport
        self._by_token: dict[str, Client] = {}
        self._lock = threading.Lock()
        self.own = Client(ws, autostart=False, transport=transport)

    def for_token(self, token: str) -> Client:
        with self._lock:
            client = self._by_token.get(token)
            if client is None:
                client = self._by_token[token] = Client(self.ws, autostart=False, token=token,
                                                        transport=self.transport)
            return client

    def drop(self, token: str) -> None:
        with self._lock:
            client = self._by_token.pop(token, None)
        if client is not None:
            client.close()

    def report(self, report: RefusalReport, token: str | None = None) -> bool:
        """Record a refusal in the audit log, as the session's person if any; False when the daemon refused."""
        try:
            Calls(self.for_token(token) if token else self.own).report_refusal(report)
            return True
        except RailguardError as exc:
            log.warning("could not record a refusal in the audit log: %s", exc.diagnostics[0].code)
            return False

    def close(self) -> None:
        with self._lock:
            clients, self._by_token = list(self._by_token.values()), {}
        for client in [*clients, self.own]:
            client.close()
