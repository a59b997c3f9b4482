"""Confirmations a person types are checked for every principal; a same-user caller without a terminal cannot
revoke the people who approve.

Pure engine and daemon routing over a real store on disk (the fake provider), no daemon process.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from railguard.daemon.api import route
from railguard.daemon.service import Daemon
from railguard.engine import guard, planner
from railguard.engine.observe import observe_into
from railguard.model.diagnostics import RailguardError
from railguard.model.plans import Plan
from railguard.model.principals import Principal, Role
from railguard.model.resources import desired_resources
from railguard.model.specfile import parse_spec
from railguard.providers.fake import FakeProvider
from railguard.state import tokens
from railguard.state.store import Store

from .conftest import BASE_SPEC


def _plan(store: Store) -> Plan:
    spec, _ = parse_spec(BASE_SPEC)
    assert spec is not None
    provider = FakeProvider()
    observe_into(store, provider, "staging")
    computed = planner.plan("staging", desired_resources(spec, "staging"), store.inventory("staging"),
                            store.serial("staging"))
    return store.save_plan(computed.model_copy(update={"requested_by": "token:bot"}))


@pytest.mark.parametrize("kind", ["token", "user"])
def test_a_wrong_short_hash_is_refused_for_every_principal(tmp_path: Path, kind: str) -> None:
    store = Store.open(tmp_path)
    plan = _plan(store)
    lead = Principal(id=f"{kind}:lead", role=Role.approver, kind=kind, tty=True)
    with pytest.raises(RailguardError) as exc:
        guard.approve(store, plan, "saved", lead, confirmed=[], typed="deadbeef", reason="")
    assert exc.value.diagnostics[0].code in ("approval.wrong_hash", "auth.needs_terminal")
    assert guard.approve(store, plan, "saved", lead, confirmed=[], typed=guard.short_hash(plan), reason="")


def test_revoking_an_approver_as_the_local_user_needs_a_terminal(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "state", provider=FakeProvider())
    store = daemon.store()
    tokens.create(store, "lead", Role.approver, None, "user:root", None)
    tokens.create(store, "bot", Role.agent, None, "user:root", None)
    headless = Principal(id="user:root", role=Role.admin, kind="user", tty=False)
    with pytest.raises(RailguardError) as exc:
        route(daemon, "POST", ["v1", "tokens", "lead", "revoke"], {}, {}, headless)
    assert exc.value.diagnostics[0].code == "auth.needs_terminal"
    assert not next(t for t in tokens.listing(store) if t.name == "lead").revoked_at
    # An agent's token may be revoked without one (that only takes power away from an agent).
    assert route(daemon, "POST", ["v1", "tokens", "bot", "revoke"], {}, {}, headless)["token"].revoked_at
    at_terminal = headless.model_copy(update={"tty": True})
    assert route(daemon, "POST", ["v1", "tokens", "lead", "revoke"], {}, {}, at_terminal)["token"].revoked_at
