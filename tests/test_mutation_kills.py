"""Pure, fast tests written against the mutants bench/mutation.py found surviving (issue 18, item 2).

Each test pins one behaviour of a guardrail or planning module exactly (codes, fields, boundaries,
message parts a reviewer relies on), so a one-token change in that module turns the suite red. They
go through the modules' public functions; the store is a real SQLite file in a temporary folder.
docs/benchmarks.md lists the mutation score and the survivors that remain, each explained.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from railguard.engine import planner
from railguard.engine.rollback import pick_target
from railguard.model.api import ReleaseStatus
from railguard.model.diagnostics import RailguardError, error
from railguard.model.plans import Action, Change, Effect, FieldDiff, Plan, Risk, Verdict
from railguard.model.principals import Principal, Role
from railguard.model.resources import LiveStatus, ObservedResource, Resource, make_resource
from railguard.model.sensitivity import REDACTED
from railguard.policy.guardrails import APPROVERS, Facts, active_freeze, evaluate
from railguard.secrets.redaction import Redactor
from railguard.state import approvals, audit
from railguard.state.locks import Holder, current_identity
from railguard.state.store import Store

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    opened = Store.open(tmp_path / "state")
    yield opened
    opened.close()


# -- redaction ----------------------------------------------------------------------------------------------
def test_redactor_replaces_every_form_of_a_value_longest_first() -> None:
    redact = Redactor()
    redact.update([("SHORT", "abcd"), ("LONG", "abcd-efgh"), ("TINY", "abc"), ("ODD", 'p"a ss/w\\d')])
    assert redact("x abcd-efgh y abcd z abc") == "x (sensitive:LONG) y (sensitive:SHORT) z abc"
    assert redact(json.dumps({"v": 'p"a ss/w\\d'})) == '{"v": "(sensitive:ODD)"}'
    assert redact("https://h/?q=p%22a%20ss%2Fw%5Cd") == "https://h/?q=(sensitive:ODD)"
    assert redact("nothing here") == "nothing here"
    assert redact("abcd abcd") == "(sensitive:SHORT) (sensitive:SHORT)"


def test_redactor_update_replaces_the_known_values() -> None:
    redact = Redactor()
    assert redact("before any update") == "before any update"
    redact.update([("A", "first-value")])
    redact.update([("B", "second-value")])
    assert redact("first-value second-value") == "first-value (sensitive:B)"
    redact.update([])
    assert redact("second-value") == "second-value"


# -- approvals ------------------------------------------------------------------------------------------------
def test_an_approval_is_recorded_with_every_field(store: Store) -> None:
    got = approvals.record(store, "plan-1", "sha256:h", "approved", "token:lead", "looks fine", ["a", "b"], 60)
    assert got.id.startswith("appr-") and len(got.id) == len("appr-") + 12
    fields = ("plan_id", "plan_hash", "decision", "principal", "reason", "confirmed", "expired")
    assert {k: got.model_dump(mode="json")[k] for k in fields} \
        == {"plan_id": "plan-1", "plan_hash": "sha256:h", "decision": "approved", "principal": "token:lead",
            "reason": "looks fine", "confirmed": ["a", "b"], "expired": False}
    expires = datetime.fromisoformat(got.expires_at)
    assert timedelta(seconds=50) < expires - datetime.now(UTC) <= timedelta(seconds=60)
    assert approvals.for_plan(store, "plan-2") == []


def test_a_standing_approval_is_for_this_hash_unexpired_and_not_rejected(store: Store) -> None:
    approvals.record(store, "plan-1", "sha256:old", "approved", "token:a", "", [], 60)
    assert approvals.standing(store, "plan-1", "sha256:new") is None
    first = approvals.record(store, "plan-1", "sha256:new", "approved", "token:a", "", [], 60)
    assert approvals.standing(store, "plan-1", "sha256:new") == first
    second = approvals.record(store, "plan-1", "sha256:new", "approved", "token:b", "", [], 60)
    assert approvals.standing(store, "plan-1", "sha256:new") == second  # the newest one stands
    approvals.record(store, "plan-2", "sha256:x", "approved", "token:a", "", [], -1)
    assert approvals.for_plan(store, "plan-2")[0].expired is True
    assert approvals.standing(store, "plan-2", "sha256:x") is None
    assert approvals.rejected(store, "plan-1") is None
    no = approvals.record(store, "plan-1", "sha256:new", "rejected", "token:c", "no", [], 60)
    assert approvals.standing(store, "plan-1", "sha256:new") is None
    assert approvals.rejected(store, "plan-1") == no
    with pytest.raises(RailguardError) as refused:  # a rejection is final: the approval lifecycle refuses it
        approvals.record(store, "plan-1", "sha256:new", "approved", "token:d", "", [], 60)
    assert refused.value.diagnostics[0].code == "state.illegal_transition"
    assert approvals.standing(store, "plan-1", "sha256:new") is None


def test_approval_requests_are_events_of_the_plan(store: Store) -> None:
    store.add_event("staging", approvals.REQUEST_EVENT, "asked", address="plan-1",
                    data={"by": "token:bot", "reason": "urgent"})
    store.add_event("staging", approvals.REQUEST_EVENT, "again", address="plan-1", data={"by": "token:bot2"})
    store.add_event("staging", approvals.REQUEST_EVENT, "other", address="plan-2", data={"by": "x"})
    store.add_event("staging", "plan.created", "not a request", address="plan-1", data={"by": "y"})
    found = approvals.requests(store, "plan-1")
    assert [(r.by, r.reason, r.message) for r in found] == [("token:bot", "urgent", "asked"),
                                                                    ("token:bot2", "", "again")]
    assert all(r.at for r in found)


# -- audit ----------------------------------------------------------------------------------------------------
def _chain(store: Store, anchor: Path | None, n: int = 3) -> None:
    for i in range(n):
        audit.append(store, anchor, principal=f"user:{i}", action="apply", outcome="ok", env="staging" if i else "prod",
                     plan_id=f"plan-{i}", plan_hash=f"sha256:{i}", detail={"i": i})


def test_audit_entries_are_chained_from_genesis_and_anchored(store: Store, tmp_path: Path) -> None:
    anchor = tmp_path / "keys" / "sub" / "audit.anchor"
    _chain(store, anchor)
    rows = audit.entries(store)
    assert [r.principal for r in rows] == ["user:0", "user:1", "user:2"]
    assert rows[0].prev_hash == audit.GENESIS and rows[1].prev_hash == rows[0].hash
    assert rows[2].detail == {"i": 2} and rows[2].plan_hash == "sha256:2" and rows[2].outcome == "ok"
    pinned = json.loads(anchor.read_text())
    assert {k: pinned[k] for k in ("count", "hash", "keyed_from")} == {"count": 3, "hash": rows[2].hash,
                                                                       "keyed_from": 1} and pinned["mac"]
    assert anchor.parent.stat().st_mode & 0o777 == 0o700  # beside the secret key: private
    assert [r.principal for r in audit.entries(store, limit=2)] == ["user:1", "user:2"]
    assert [r.principal for r in audit.entries(store, env="prod")] == ["user:0"]
    assert audit.verify(store, anchor).model_dump() == {"ok": True, "entries": 3, "problems": []}
    assert audit.verify(store, None).model_dump() == {"ok": True, "entries": 3, "problems": []}


def test_audit_entries_shows_the_newest_two_hundred_by_default(store: Store) -> None:
    _chain(store, None, 201)
    shown = audit.entries(store)
    assert len(shown) == 200 and shown[0].principal == "user:1" and shown[-1].principal == "user:200"


@pytest.mark.parametrize("column", ["at", "principal", "action", "env", "plan_id", "plan_hash", "outcome", "detail"])
def test_audit_verify_notices_an_edit_of_each_hashed_column(store: Store, column: str) -> None:
    _chain(store, None)
    with store.transaction() as db:
        db.execute(f"UPDATE audit SET {column} = ? WHERE id = 2", ('{"i": 9}' if column == "detail" else "edited",))
    assert audit.verify(store, None).model_dump() == {"ok": False, "entries": 3,
                                         "problems": ["entry 2: its content was edited after it was written"]}


def test_audit_verify_notices_removed_and_cut_entries(store: Store, tmp_path: Path) -> None:
    anchor = tmp_path / "audit.anchor"
    _chain(store, anchor)
    with store.transaction() as db:
        db.execute("DELETE FROM audit WHERE id = 2")
    assert audit.verify(store, anchor).problems == [
        "entry 3: the entry before it was changed or deleted",
        "the log ends at entry 2 but 3 were written: entries were removed"]
    assert audit.verify(store, None).problems == ["entry 3: the entry before it was changed or deleted"]
    with store.transaction() as db:
        db.execute("DELETE FROM audit WHERE id = 3")
    assert audit.verify(store, anchor).model_dump() == {"ok": False, "entries": 1, "problems": [
        "the log ends at entry 1 but 3 were written: entries were removed"]}


def test_audit_verify_notices_a_replaced_last_entry(store: Store, tmp_path: Path) -> None:
    anchor = tmp_path / "audit.anchor"
    _chain(store, anchor, 2)
    pinned = anchor.read_text()
    with store.transaction() as db:
        db.execute("DELETE FROM audit WHERE id = 2")
    audit.append(store, None, principal="user:forger", action="apply", outcome="ok")  # same count, other hash
    anchor.write_text(pinned)
    assert audit.verify(store, anchor).problems == [
        "the log ends at entry 2 but 2 were written: entries were removed"]
    (tmp_path / "gone").mkdir()
    # Every append writes the anchor, so entries without one mean it was deleted (with the chain rewritten, maybe).
    assert "is missing" in audit.verify(store, tmp_path / "gone" / "missing").problems[0]


def test_audit_details_pass_the_redactor(store: Store) -> None:
    store.add_redactor(lambda text: text.replace("hunter22", "(sensitive:PW)"))
    audit.append(store, None, principal="user:a", action="approve", outcome="ok", detail={"reason": "pw hunter22"})
    assert audit.entries(store)[0].detail == {"reason": "pw (sensitive:PW)"}
    assert audit.verify(store, None).ok is True


# -- the rollback target --------------------------------------------------------------------------------------
def _release(store: Store, services: dict[str, Any], status: str) -> int:
    number = store.add_release("staging", None, None, {"services": services, "desired": []})
    if status != "pending":
        store.finish_release("staging", number, ReleaseStatus(status))
    return number


def test_rollback_target_is_the_newest_earlier_release_that_differs(store: Store) -> None:
    with pytest.raises(RailguardError) as empty:
        pick_target(store, "staging", None)
    diag = empty.value.diagnostics[0]
    assert (diag.code, diag.address, diag.summary) == ("rollback.no_target", "staging",
                                                       "There is no earlier healthy release")
    assert diag.detail == ("Environment 'staging' has no superseded release that differs from the live one, so "
                           "there is nothing to roll back to.")
    one = _release(store, {"web": {"fingerprint": "a"}}, "live")
    two = _release(store, {"web": {"fingerprint": "b"}}, "live")
    _release(store, {"web": {"fingerprint": "x"}}, "failed")
    three = _release(store, {"web": {"fingerprint": "b"}}, "live")  # same services as two: not a target
    assert pick_target(store, "staging", None).number == one
    four = _release(store, {"web": {"fingerprint": "c"}}, "live")
    assert pick_target(store, "staging", None).number == three
    assert pick_target(store, "staging", two).number == two
    assert pick_target(store, "staging", four).number == four


@pytest.mark.parametrize("status", ["failed", "pending", None])
def test_rollback_to_a_release_that_never_ran_is_refused(store: Store, status: str | None) -> None:
    _release(store, {"web": {"fingerprint": "a"}}, "live")
    number = _release(store, {"web": {"fingerprint": "b"}}, status) if status else 99
    with pytest.raises(RailguardError) as exc:
        pick_target(store, "staging", number)
    diag = exc.value.diagnostics[0]
    assert diag.code == "rollback.no_target" and diag.address == f"staging/release.{number}"
    assert diag.summary == f"Release {number} cannot be rolled back to"
    assert diag.detail == ("Environment 'staging' has " + (
        f"release {number} with status {status}; only releases that ran healthy can be restored." if status
        else "no release 99."))


def test_rollback_reaches_past_the_newest_fifty_releases(store: Store) -> None:
    first = _release(store, {"web": {"fingerprint": "first"}}, "live")
    for i in range(60):
        _release(store, {"web": {"fingerprint": str(i)}}, "live")
    assert pick_target(store, "staging", first).number == first


def test_rollback_without_a_live_release_takes_the_newest_superseded(store: Store) -> None:
    _release(store, {"web": {"fingerprint": "a"}}, "live")
    two = _release(store, {"web": {"fingerprint": "b"}}, "live")
    three = _release(store, {"web": {"fingerprint": "c"}}, "live")
    with store.transaction() as db:  # nothing live any more (no lifecycle move does this: a damaged state)
        db.execute("UPDATE releases SET status = 'failed' WHERE env = 'staging' AND number = ?", (three,))
    assert pick_target(store, "staging", None).number == two


# -- locks ------------------------------------------------------------------------------------------------------
def test_current_identity_is_this_process_on_this_host() -> None:
    pid, started, host = current_identity()
    assert (pid, host) == (os.getpid(), socket.gethostname())
    assert started == psutil.Process(os.getpid()).create_time()


def test_lock_holder_liveness() -> None:
    pid, started, host = current_identity()
    holder = Holder(pid, started, host, "apply", "now")
    assert holder.alive() is True
    assert Holder(pid, started + 0.4, host, "apply", "now").alive() is True
    assert Holder(pid, started - 0.4, host, "apply", "now").alive() is True
    assert Holder(pid, started + 0.6, host, "apply", "now").alive() is False  # the pid was reused
    assert Holder(pid, started - 0.6, host, "apply", "now").alive() is False
    assert Holder(pid, started + 0.5, host, "apply", "now").alive() is False  # exactly 0.5 s apart: not the same
    assert Holder(pid, 0.0, "another-host", "apply", "now").alive() is True  # cannot be proven gone
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert Holder(child.pid, 0.0, host, "apply", "now").alive() is False  # exited and reaped


def test_a_zombie_holder_is_not_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    started = psutil.Process(child.pid).create_time()
    child.kill()
    try:
        proc = psutil.Process(child.pid)
        while proc.status() != psutil.STATUS_ZOMBIE:  # killed, not reaped yet: a zombie
            time.sleep(0.01)
        assert Holder(child.pid, started, socket.gethostname(), "apply", "now").alive() is False
    finally:
        child.wait()


# -- the plan hash --------------------------------------------------------------------------------------------
def _plan(**fields: Any) -> Plan:
    base: dict[str, Any] = {"env": "staging", "base_serial": 1, "desired_digest": "sha256:d", "changes": [],
                            "desired": []}
    return Plan(**{**base, **fields})


def test_sealing_fills_id_time_and_the_content_hash() -> None:
    plan = _plan()
    sealed = plan.sealed("plan-1", "2026-01-01T00:00:00Z")
    assert (sealed.id, sealed.created_at, sealed.hash) == ("plan-1", "2026-01-01T00:00:00Z", plan.content_hash())
    assert sealed.hash.startswith("sha256:") and len(sealed.hash) == len("sha256:") + 64
    assert sealed.content_hash() == plan.content_hash()  # id, time and hash are outside the hash
    assert plan.sealed("plan-2", "later").hash == sealed.hash
    change = Change(address="staging/edge", kind="edge", action=Action.create, reason="r", risk=Risk.safe)
    verdict = Verdict(rule="guard.freeze", effect=Effect.deny, message="m")
    for other in (_plan(env="production"), _plan(base_serial=2), _plan(desired_digest="sha256:e"),
                  _plan(changes=[change]), _plan(requested_by="token:x"), _plan(verdicts=[verdict]),
                  _plan(format=1), _plan(format=3), _plan(diagnostics=[error("spec.invalid_value", "s", "d", "r")]),
                  _plan(desired=[make_resource("staging", "edge", "edge", {"port": 1}, [])])):
        assert other.content_hash() != plan.content_hash()


# -- guardrails -------------------------------------------------------------------------------------------------
def _env_resource(**config: Any) -> Resource:
    body = {"protected": False, "promote_from": None, "soak_ms": 0, "max_disruptive_changes": 5, "freezes": [],
            "policies": [], **config}
    return make_resource("production", "environment", "environment", body, [])


def _change(address: str, action: Action, risk: Risk, kind: str = "service", diff: list[FieldDiff] | None = None,
            reason: str = "because") -> Change:
    return Change(address=address, kind=kind, action=action, reason=reason, risk=risk,  # type: ignore[arg-type]
                  diff=diff or [])


def _service(name: str, source: str = "sha256:src") -> Resource:
    return make_resource("production", "service", name, {"source": source}, [])


def _facts(role: Role = Role.deployer, in_state: bool = False, soaked: Any = None, now: datetime = NOW) -> Facts:
    return Facts(principal=Principal(id=f"token:{role.value}", role=role, kind="token"), now=now,
                 protected_in_state=in_state, soaked=soaked or (lambda service, source: None))


def _verdicts(changes: list[Change], facts: Facts | None = None, desired: list[Resource] | None = None,
              **env: Any) -> list[Verdict]:
    plan = Plan(env="production", id="plan-9", base_serial=0, desired_digest="sha256:d", changes=changes,
                desired=[_env_resource(**env), *(desired or [])])
    return evaluate(plan, facts or _facts())


def test_unprotected_environments_get_no_protection_verdicts() -> None:
    changes = [_change("production/service.web", Action.delete, Risk.destructive),
               _change("production/service.api", Action.replace, Risk.disruptive)]
    assert _verdicts(changes, _facts(Role.agent)) == []


def test_protected_deletes_and_risky_changes_need_an_approver() -> None:
    changes = [_change("production/service.old", Action.delete, Risk.destructive),
               _change("production/service.web", Action.replace, Risk.disruptive, reason="run changed"),
               _change("production/service.api", Action.update, Risk.safe),
               _change("production/service.ok", Action.noop, Risk.destructive),
               _change("production/environment", Action.update, Risk.disruptive, kind="environment")]
    found = _verdicts(changes, protected=True)
    assert [(v.rule, v.address) for v in found] == [("guard.protected_delete", "production/service.old"),
                                                    ("guard.protected_env", "production/service.web")]
    delete, risky = found
    assert delete.effect is Effect.require_approval and delete.approvers == APPROVERS == ["approver", "admin"]
    assert delete.confirm == "production/service.old"
    assert delete.message == "production/service.old is deleted in protected 'production'"
    assert delete.remediation == "An approver runs `railguard approve plan-9 --confirm production/service.old`."
    assert risky.effect is Effect.require_approval and risky.approvers == APPROVERS and risky.confirm is None
    assert risky.message == "disruptive change in protected 'production': run changed"
    assert risky.remediation == "An approver runs `railguard approve plan-9`."


def test_protection_kept_in_state_covers_a_spec_that_drops_it() -> None:
    env_change = _change("production/environment", Action.update, Risk.disruptive, kind="environment")
    found = _verdicts([env_change], _facts(in_state=True))
    assert [(v.rule, v.effect, v.address, v.approvers) for v in found] == [
        ("guard.protection_in_state", Effect.require_approval, "production/environment", APPROVERS)]
    assert found[0].message == ("'production' is protected in state and protection is switched off; "
                                "the spec alone cannot lift it")
    assert found[0].remediation == "An approver runs `railguard approve plan-9`."
    kept = _verdicts([env_change], _facts(in_state=True), protected=True)
    assert kept[0].message == ("'production' is protected in state and protection settings or policies change; "
                               "the spec alone cannot lift it")
    web = _change("production/service.web", Action.replace, Risk.disruptive)
    assert [v.rule for v in _verdicts([web], _facts(in_state=True))] == ["guard.protected_env"]


def test_an_agent_changing_a_protected_environment_needs_a_human() -> None:
    change = _change("production/service.api", Action.update, Risk.safe)
    found = _verdicts([change], _facts(Role.agent), protected=True)
    assert [(v.rule, v.effect, v.address, v.approvers) for v in found] == [
        ("guard.agent_in_protected", Effect.require_approval, None, APPROVERS)]
    assert found[0].message == "an agent (token:agent) changes protected 'production'"
    assert found[0].remediation == "A human approver runs `railguard approve plan-9`."
    assert _verdicts([change], _facts(Role.deployer), protected=True) == []
    assert _verdicts([_change("x", Action.noop, Risk.safe)], _facts(Role.agent), protected=True) == []


@pytest.mark.parametrize(("path", "before", "after", "found"), [
    ("replicas", 2, 0, "replicas drop to 0"),
    ("drain_timeout_ms", 5000, 1000, "drain is shortened"),
    ("health", {"mode": "http"}, None, "the health check is removed"),
    ("health.mode", "http", None, "the health check is removed"),
    ("health.interval_ms", 1000, 2000, "health interval_ms is loosened"),
    ("health.timeout_ms", 1000, 2000, "health timeout_ms is loosened"),
    ("health.start_period_ms", 1000, 2000, "health start_period_ms is loosened"),
    ("health.unhealthy_threshold", 2, 3, "health unhealthy_threshold is loosened"),
    ("health.healthy_threshold", 3, 2, "health healthy_threshold is loosened"),
    ("health.http", "/a", "/b", "the health check's http changes (health.http)"),
    ("health.mode", "http", "tcp", "the health check's kind changes (health.mode)"),
    ("stop_timeout_ms", 10000, 0, "stop is shortened (stop_timeout)"),
    ("replicas", 1, 30, "replicas scale from 1 to 30, more than x3 (replicas)"),
])
def test_weakened_safety_in_a_protected_environment_needs_approval(path: str, before: Any, after: Any,
                                                                   found: str) -> None:
    change = _change("production/service.web", Action.update, Risk.safe, diff=[FieldDiff(path=path, before=before,
                                                                                          after=after)])
    verdicts = _verdicts([change], protected=True)
    assert [(v.rule, v.effect, v.address, v.approvers) for v in verdicts] == [
        ("guard.weakening", Effect.require_approval, "production/service.web", APPROVERS)]
    assert verdicts[0].message == f"safety is weakened in protected 'production': {found}"
    assert verdicts[0].remediation == "An approver runs `railguard approve plan-9`."
    assert _verdicts([change]) == []  # only in protected environments


@pytest.mark.parametrize(("path", "before", "after"), [
    ("replicas", 2, 1), ("drain_timeout_ms", 1000, 5000), ("drain_timeout_ms", 1000, 1000),
    ("health.interval_ms", 2000, 1000), ("health.interval_ms", 1000, 1000), ("health.healthy_threshold", 2, 3),
    ("health.http", None, "/b"), ("health.interval_ms", None, 1000), ("replicas", 1, 3), ("stop_timeout_ms", 1, 2),
    ("health.interval_ms", 1000, "2s"),
    ("drain_timeout_ms", "5s", 1), ("health", None, {"mode": "http"}), ("env.X", "1", "2"),
])
def test_tightened_or_unrelated_changes_are_not_weakening(path: str, before: Any, after: Any) -> None:
    change = _change("production/service.web", Action.update, Risk.safe, diff=[FieldDiff(path=path, before=before,
                                                                                          after=after)])
    assert _verdicts([change], protected=True) == []


def test_weakening_lists_every_finding_once_for_service_updates_and_replaces() -> None:
    diff = [FieldDiff(path="health.interval_ms", before=1, after=2), FieldDiff(path="replicas", before=1, after=0),
            FieldDiff(path="health.timeout_ms", before=1, after=2), FieldDiff(path="replicas", before=3, after=0)]
    found = _verdicts([_change("production/service.web", Action.update, Risk.safe, diff=diff)], protected=True)
    assert found[0].message.endswith(": health interval_ms is loosened, health timeout_ms is loosened, "
                                     "replicas drop to 0")
    replaced = _change("production/service.web", Action.replace, Risk.safe, diff=diff)
    assert _verdicts([replaced], protected=True)[0].message == found[0].message
    edge = _change("production/edge", Action.update, Risk.safe, kind="edge", diff=diff)
    created = _change("production/service.web", Action.create, Risk.safe, diff=diff)
    assert _verdicts([edge, created], protected=True) == []


@pytest.mark.parametrize(("path", "before", "after", "found"), [
    ("bind", "127.0.0.1", "0.0.0.0", "the edge listens more widely: 127.0.0.1 -> 0.0.0.0 (edge_bind)"),
    ("bind", "10.0.0.5", "::", "the edge listens more widely: 10.0.0.5 -> :: (edge_bind)"),
    ("routes", [{"host": None, "path": "/", "service": "web"}],
     [{"host": None, "path": "/", "service": "web"}, {"host": "admin.example.com", "path": "/", "service": "web"}],
     "routes are exposed on new hosts: admin.example.com (routes.host)"),
])
def test_a_wider_edge_in_a_protected_environment_needs_approval(path: str, before: Any, after: Any,
                                                                found: str) -> None:
    edge = _change("production/edge", Action.update, Risk.safe, kind="edge",
                   diff=[FieldDiff(path=path, before=before, after=after)])
    verdicts = _verdicts([edge], protected=True)
    assert [v.message for v in verdicts] == [f"safety is weakened in protected 'production': {found}"]
    narrower = _change("production/edge", Action.update, Risk.safe, kind="edge",
                       diff=[FieldDiff(path=path, before=after, after=before)])
    assert _verdicts([narrower], protected=True) == []


def test_an_artifact_that_did_not_soak_is_denied_in_a_protected_environment() -> None:
    asked: list[tuple[str, str]] = []

    def soaked(service: str, source: str) -> str | None:
        asked.append((service, source))
        return None if service == "api" else "it never ran in 'staging'"

    changes = [_change("production/service.upd", Action.update, Risk.safe),
               _change("production/service.web", Action.replace, Risk.disruptive),
               _change("production/service.api", Action.create, Risk.safe),
               _change("production/service.new", Action.create, Risk.safe)]
    desired = [_service("web"), _service("api", source=""), _service("upd")]
    found = _verdicts(changes, _facts(soaked=soaked), desired, protected=True, promote_from="staging")
    promotion = [v for v in found if v.rule == "guard.promotion"]
    assert [(v.effect, v.address) for v in promotion] == [(Effect.deny, "production/service.web")]
    assert promotion[0].message == "this artifact of web has not run healthy in 'staging': it never ran in 'staging'"
    assert promotion[0].remediation == ("Deploy it to staging first and let it run healthy there for the soak time "
                                        "(`soak` in [environments.production], default 10m), then run "
                                        "`railguard promote --from staging --to production`.")
    assert asked == [("web", "sha256:src"), ("api", "")]
    assert [v for v in _verdicts(changes, _facts(soaked=soaked), desired, protected=True)
            if v.rule == "guard.promotion"] == []  # no promote_from
    assert [v for v in _verdicts(changes, _facts(soaked=soaked), desired, promote_from="staging")
            if v.rule == "guard.promotion"] == []  # not protected
    assert [v for v in _verdicts([_change("production/edge", Action.create, Risk.safe, kind="edge")],
                                 _facts(soaked=soaked), [make_resource("production", "edge", "edge", {}, [])],
                                 protected=True, promote_from="staging") if v.rule == "guard.promotion"] == []


def test_blast_radius_counts_risky_changes_against_the_limit() -> None:
    risky = [_change(f"production/service.s{i}", Action.replace, Risk.disruptive) for i in range(3)]
    safe = [_change(f"production/service.t{i}", Action.update, Risk.safe) for i in range(5)]
    noop = [_change(f"production/service.n{i}", Action.noop, Risk.destructive) for i in range(5)]
    assert _verdicts(risky + safe + noop, max_disruptive_changes=3) == []
    found = _verdicts(risky + safe + noop, max_disruptive_changes=2)
    assert [(v.rule, v.effect, v.address, v.approvers) for v in found] == [
        ("guard.blast_radius", Effect.require_approval, None, APPROVERS)]
    assert found[0].message == "3 disruptive or destructive changes in one plan (limit 2)"
    assert found[0].remediation == "Split the change into smaller plans, or have `railguard approve plan-9` run."
    plan = Plan(env="production", base_serial=0, desired_digest="d", changes=risky * 2, desired=[])
    assert [v.rule for v in evaluate(plan, _facts())] == ["guard.blast_radius"]  # default limit 5


def test_a_freeze_denies_changes_to_a_protected_environment_while_it_lasts() -> None:
    freeze = {"start": "2026-06-01T12:00:00+00:00", "end": "2026-06-02T00:00:00+00:00", "reason": "launch"}
    assert active_freeze({"freezes": [freeze]}, NOW) == freeze
    assert active_freeze({"freezes": [freeze]}, NOW - timedelta(seconds=1)) is None
    assert active_freeze({"freezes": [freeze]}, datetime(2026, 6, 2, tzinfo=UTC)) is None
    assert active_freeze({}, NOW) is None
    change = _change("production/service.web", Action.update, Risk.safe)
    found = _verdicts([change], protected=True, freezes=[freeze])
    assert [(v.rule, v.effect, v.address) for v in found] == [("guard.freeze", Effect.deny, None)]
    assert found[0].message == "'production' is frozen until 2026-06-02T00:00:00+00:00: launch"
    assert found[0].remediation == ("Wait for the freeze to end, or remove it from the spec (itself a change that "
                                    "needs approval in a protected environment).")
    assert _verdicts([change], freezes=[freeze]) == []
    assert _verdicts([_change("x", Action.noop, Risk.safe)], protected=True, freezes=[freeze]) == []


def _rule(expression: str, effect: str = "require_approval") -> dict[str, Any]:
    return {"name": "mine", "expression": expression, "effect": effect, "message": "say why", "environments": None}


def test_user_rules_see_the_change_the_environment_and_the_principal() -> None:
    expression = ('change.address == "production/service.web" && change.kind == "service" && change.name == "web"'
                  ' && change.action == "replace" && change.risk == "disruptive" && change.reason == "run changed"'
                  ' && "run" in change.paths && env.name == "production" && env.protected == false'
                  ' && principal.id == "token:agent" && principal.role == "agent" && principal.kind == "token"')
    web = _change("production/service.web", Action.replace, Risk.disruptive, reason="run changed",
                  diff=[FieldDiff(path="run", before=["a"], after=["b"])])
    edge = _change("production/edge", Action.update, Risk.safe, kind="edge")
    found = _verdicts([web, edge], _facts(Role.agent), policies=[_rule(expression)])
    assert [(v.rule, v.effect, v.address, v.approvers, v.message) for v in found] == [
        ("policy:mine", Effect.require_approval, "production/service.web", APPROVERS, "say why")]
    assert found[0].remediation == "An approver runs `railguard approve plan-9`."
    by_kind = _verdicts([edge], policies=[_rule('change.name == "edge" && change.kind == "edge"', "deny")])
    assert [(v.rule, v.effect, v.approvers, v.remediation) for v in by_kind] == [
        ("policy:mine", Effect.deny, [], "say why")]
    assert _verdicts([web], _facts(Role.deployer), policies=[_rule(expression)]) == []
    assert [v.effect for v in _verdicts([web], policies=[_rule("true", "warn")])] == [Effect.warn]
    assert _verdicts([_change("x", Action.noop, Risk.safe)], policies=[_rule("true")]) == []


def test_a_user_rule_that_breaks_at_run_time_denies() -> None:
    found = _verdicts([_change("production/service.web", Action.update, Risk.safe),
                       _change("production/service.api", Action.update, Risk.safe)],
                      policies=[_rule("change.nope == 1")])
    assert [(v.rule, v.effect, v.address) for v in found] == [("policy:mine", Effect.deny, "production/service.web"),
                                                              ("policy:mine", Effect.deny, "production/service.api")]
    assert found[0].message.startswith("the rule could not be evaluated: ")
    assert found[0].remediation == "Fix the rule in the spec, then plan again."


def test_verdicts_come_in_rule_order() -> None:
    freeze = {"start": "2020-01-01T00:00:00+00:00", "end": "2030-01-01T00:00:00+00:00", "reason": "r"}
    changes = [_change("production/service.web", Action.replace, Risk.disruptive),
               _change("production/service.old", Action.delete, Risk.destructive),
               _change("production/environment", Action.update, Risk.safe, kind="environment"),
               _change("production/service.api", Action.update, Risk.safe,
                       diff=[FieldDiff(path="replicas", before=1, after=0)])]
    found = _verdicts(changes, _facts(Role.agent, in_state=True, soaked=lambda s, d: "no"), [_service("web")],
                      promote_from="staging", max_disruptive_changes=1, freezes=[freeze], policies=[_rule("true")])
    assert [v.rule for v in found] == [
        "guard.protected_env", "guard.protected_delete", "guard.protection_in_state", "guard.agent_in_protected",
        "guard.weakening", "guard.promotion", "guard.blast_radius", "guard.freeze",
        "policy:mine", "policy:mine", "policy:mine", "policy:mine"]


# -- the planner ------------------------------------------------------------------------------------------------
def _observed(resource: Resource, config: dict[str, Any], status: LiveStatus = LiveStatus.running) -> ObservedResource:
    return ObservedResource(address=resource.address, kind=resource.kind, fingerprint="sha256:old", config=config,
                            depends_on=resource.depends_on, status=status)


def _one(want: Resource, have: ObservedResource | None) -> Change:
    return planner.plan(want.env, [want], [have] if have else [], 0).changes[0]


SERVICE = {"run": ["a"], "replicas": 2, "env": {"DB_PASSWORD": "pw", "MODE": "x"}, "health": {"http": "/h"},
           "routes": [{"host": None, "path": "/"}], "secrets": []}


@pytest.mark.parametrize(("edit", "action", "risk", "reason"), [
    ({"run": ["b"]}, Action.replace, Risk.disruptive,
     "run changed; new replicas are started beside the old ones and traffic switches once they are healthy"),
    ({"env": {"DB_PASSWORD": "x"}, "secrets": ["A"]}, Action.replace, Risk.disruptive, "env, secrets changed; "),
    ({"run": ["b"], "replicas": 0}, Action.replace, Risk.destructive,
     "run changed and replicas drop to 0: the service stops serving"),
    ({"replicas": 0}, Action.update, Risk.destructive, "replicas drop to 0: the service stops serving"),
    ({"replicas": 1}, Action.update, Risk.disruptive, "replicas shrink from 2 to 1"),
    ({"replicas": 3}, Action.update, Risk.safe, "replicas changed; applied in place without restarting replicas"),
    ({"health": None}, Action.update, Risk.disruptive,
     "the health check is removed: failures will no longer be detected"),
    ({"health": {"http": "/other"}}, Action.update, Risk.safe, "health changed; "),
    ({"routes": []}, Action.update, Risk.disruptive,
     "routes are removed: their traffic will no longer reach the service"),
    ({"routes": [{"host": None, "path": "/"}, {"host": None, "path": "/b"}]}, Action.update, Risk.safe,
     "routes changed; "),
    ({"drain_timeout_ms": 1, "replicas": 4}, Action.update, Risk.safe, "drain_timeout_ms, replicas changed; "),
])
def test_service_changes_are_classified_by_what_changes(edit: dict[str, Any], action: Action, risk: Risk,
                                                        reason: str) -> None:
    want = make_resource("staging", "service", "web", {**SERVICE, **edit}, [])
    change = _one(want, _observed(want, SERVICE))
    assert (change.action, change.risk) == (action, risk)
    assert change.reason.startswith(reason)
    assert (change.before_fingerprint, change.after_fingerprint) == ("sha256:old", want.fingerprint)


@pytest.mark.parametrize(("before", "edit", "risk"), [
    (0, {"run": ["b"], "replicas": 0}, Risk.disruptive), (1, {"run": ["b"], "replicas": 0}, Risk.destructive),
    (0, {"replicas": 0, "health": None}, Risk.disruptive), (0, {"replicas": 0, "drain_timeout_ms": 9}, Risk.safe),
    (1, {"replicas": 0}, Risk.destructive),
])
def test_replicas_dropping_to_zero_is_destructive_only_when_some_ran(before: int, edit: dict[str, Any],
                                                                     risk: Risk) -> None:
    have = {**SERVICE, "replicas": before}
    want = make_resource("staging", "service", "web", {**have, **edit}, [])
    change = _one(want, _observed(want, have))
    assert change.risk is risk, change.reason
    assert (change.before_fingerprint, change.after_fingerprint) == ("sha256:old", want.fingerprint)


def test_a_service_from_nothing_and_one_missing_are_created() -> None:
    want = make_resource("staging", "service", "web", SERVICE, [])
    fresh = _one(want, None)
    assert (fresh.action, fresh.risk, fresh.reason, fresh.before_fingerprint, fresh.after_fingerprint) == (
        Action.create, Risk.safe, "not live yet", None, want.fingerprint)
    # Plan format 2: a create stores no diff; its fields are implied by the desired config, redacted alike.
    created = planner.plan(want.env, [want], [], 0)
    assert (created.format, fresh.diff) == (2, [])
    implied = {d.path: (d.before, d.after) for d in created.diffs()(fresh)}
    assert implied["env.DB_PASSWORD"] == (None, REDACTED) and implied["env.MODE"] == (None, "x")
    assert implied == {d.path: (d.before, d.after) for d in planner.diff_configs(None, SERVICE)}
    drift = _one(want, _observed(want, SERVICE, LiveStatus.missing))
    assert (drift.action, drift.before_fingerprint) == (Action.create, "sha256:old")
    assert drift.reason == "recorded as applied but nothing runs (drift); it is started again"


def test_matching_fingerprints_are_no_ops_and_gone_resources_deleted() -> None:
    want = make_resource("staging", "service", "web", SERVICE, [])
    same = ObservedResource(address=want.address, kind="service", fingerprint=want.fingerprint, config=SERVICE,
                            status=LiveStatus.degraded)
    noop = _one(want, same)
    assert (noop.action, noop.risk, noop.diff) == (Action.noop, Risk.safe, [])
    assert noop.reason == f"live config matches the spec (fingerprint {want.fingerprint[7:19]}, status degraded)"
    assert (noop.before_fingerprint, noop.after_fingerprint) == (want.fingerprint, want.fingerprint)
    gone = ObservedResource(address="staging/service.old", kind="service", fingerprint="sha256:o",
                            config={"replicas": 1, "env": {"API_TOKEN": "t"}})
    plan = planner.plan("staging", [want], [same, gone], 4)
    delete = plan.changes[1]
    assert (delete.address, delete.action, delete.risk, delete.before_fingerprint, delete.after_fingerprint) == (
        "staging/service.old", Action.delete, Risk.destructive, "sha256:o", None)
    assert delete.reason == "no longer in the spec; its processes are stopped and its routes removed"
    assert [(d.path, d.before, d.after) for d in delete.diff] == [("env.API_TOKEN", REDACTED, None),
                                                                  ("replicas", 1, None)]
    assert (plan.env, plan.base_serial, plan.diagnostics) == ("staging", 4, [])


def test_edge_and_environment_changes() -> None:
    edge = make_resource("staging", "edge", "edge", {"port": 8080, "routes": [{"path": "/"}]}, [])
    moved = _one(edge, _observed(edge, {"port": 9090, "routes": [{"path": "/"}]}))
    assert (moved.action, moved.risk) == (Action.replace, Risk.disruptive)
    assert moved.reason == "edge port changes from 9090 to 8080: clients of the old port lose access"
    fewer = _one(edge, _observed(edge, {"port": 8080, "routes": [{"path": "/"}, {"path": "/b"}]}))
    assert (fewer.action, fewer.risk, fewer.reason) == (Action.update, Risk.disruptive,
                                                        "routes are removed from the edge")
    more = _one(edge, _observed(edge, {"port": 8080, "routes": []}))
    assert (more.action, more.risk, more.reason) == (Action.update, Risk.safe, "routes are added to the edge")
    env = make_resource("staging", "environment", "environment", {"protected": False, "soak_ms": 1}, [])
    lifted = _one(env, _observed(env, {"protected": True, "soak_ms": 1}))
    assert (lifted.action, lifted.risk) == (Action.update, Risk.disruptive)
    assert lifted.reason == "protection is removed: later changes will no longer need approval"
    other = _one(env, _observed(env, {"protected": False, "soak_ms": 2, "policies": []}))
    assert (other.action, other.risk, other.reason) == (Action.update, Risk.safe,
                                                        "environment settings changed (policies, soak_ms)")
    tighter = _one(env, _observed(env, {"protected": None, "soak_ms": 1}))
    assert tighter.risk is Risk.safe
    still = make_resource("staging", "environment", "environment", {"protected": True, "soak_ms": 1}, [])
    kept = _one(still, _observed(still, {"protected": True, "soak_ms": 2}))
    assert (kept.action, kept.risk, kept.reason) == (Action.update, Risk.safe, "environment settings changed (soak_ms)")


def test_diffs_flatten_nested_config_and_redact_secret_variables() -> None:
    assert planner.flatten({"a": {"b": {"c": 1}, "d": []}, "e": {}, "f": 2}) == {"a.b.c": 1, "a.d": [], "e": {},
                                                                                  "f": 2}
    diff = planner.diff_configs({"env": {"API_KEY": "k1", "MODE": "a"}, "x": 1},
                                {"env": {"API_KEY": "k2", "MODE": "b", "TOKEN": None}, "x": 1})
    assert [(d.path, d.before, d.after) for d in diff] == [("env.API_KEY", REDACTED, REDACTED),
                                                           ("env.MODE", "a", "b")]
    assert [(d.path, d.before, d.after) for d in planner.diff_configs({"API_KEY": "k"}, None)] == [
        ("API_KEY", "k", None)]  # only variables under env are judged by name


def test_dependency_problems_are_diagnostics() -> None:
    a = make_resource("staging", "service", "a", {}, ["staging/service.b"])
    b = make_resource("staging", "service", "b", {}, ["staging/service.a"])
    c = make_resource("staging", "service", "c", {}, ["staging/service.ghost"])
    plan = planner.plan("staging", [a, b, c], [], 0)
    assert [(d.code, d.address) for d in plan.diagnostics] == [
        ("spec.unknown_service", "staging/service.c"), ("spec.dependency_cycle", "staging/service.a")]
    unknown, cycle = plan.diagnostics
    assert unknown.summary == "staging/service.c depends on staging/service.ghost, which does not exist"
    assert cycle.extra["cycle"] == ["staging/service.a", "staging/service.b"]
    assert "staging/service.a -> staging/service.b -> staging/service.a" in cycle.detail
    assert unknown.remediation == "Fix depends_on in the spec, then run `railguard plan` again."
    assert cycle.summary == "Resources depend on each other in a cycle"
    assert cycle.remediation == "Break the cycle in depends_on, then run `railguard plan` again."
    assert plan.errored and [c.address for c in plan.changes] == [
        "staging/service.c", "staging/service.a", "staging/service.b"]
