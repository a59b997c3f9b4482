"""Request bodies of the daemon API are validated by the contract's request models.

Unknown fields and wrong types are a ``daemon.bad_request`` diagnostic (a 422), never a 500 or a
silent default, and the message never echoes the input (it may be a secret value). Drives the real
router of a daemon over a state folder on disk; no daemon process is needed for a refused request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from railguard.daemon.api import respond, route
from railguard.daemon.service import Daemon
from railguard.model.api import IncidentKind, IncidentState
from railguard.model.diagnostics import RailguardError
from railguard.model.principals import Principal, Role
from railguard.state import incidents, tokens

ADMIN = Principal(id="user:test", role=Role.admin)
SECRET = "s3cret-value-that-must-not-echo"


def _refusal(tmp_path: Path, parts: list[str], body: dict[str, Any]) -> str:
    daemon = Daemon(tmp_path / "state")
    spec = str(tmp_path / "railguard.toml")
    with pytest.raises(RailguardError) as exc:
        route(daemon, "POST", ["v1", *parts], {}, {**body, "spec": spec} if "spec" in body else body, ADMIN)
    assert [d.code for d in exc.value.diagnostics] == ["daemon.bad_request"]
    text = exc.value.diagnostics[0].detail
    assert SECRET not in text
    return text


@pytest.mark.parametrize(("parts", "body", "names"), [
    (["plans"], {"spec": "", "env": "staging", "surprise": 1}, "surprise"),
    (["plans"], {"spec": "", "env": 7}, "env"),
    (["operations"], {"spec": "", "kind": "destroy"}, "kind"),
    (["operations"], {"spec": "", "kind": "rollback", "env": "staging", "to": "latest"}, "to"),
    (["promote"], {"spec": "", "from": "staging", "to": "production", "force": True}, "force"),
    (["plans", "plan-1", "approve"], {"confirm": "staging/service.web"}, "confirm"),
    (["plans", "plan-1", "request-approval"], {"reason": "x" * 2001}, "reason"),
    (["secrets"], {"env": "staging", "name": "API_KEY", "value": 12345, "note": SECRET}, "note"),
    (["tokens"], {"name": "ci", "role": "agent", "envs": "staging"}, "envs"),
    (["shutdown"], {"everything": True, "now": SECRET}, "now"),
])
def test_bad_request_bodies_are_diagnostics(tmp_path: Path, parts: list[str], body: dict[str, Any],
                                            names: str) -> None:
    assert f"'{names}" in _refusal(tmp_path, parts, body)


def test_secret_value_of_wrong_type_is_not_echoed(tmp_path: Path) -> None:
    detail = _refusal(tmp_path, ["secrets"], {"env": "staging", "name": ["API_KEY"], "value": SECRET})
    assert "'name'" in detail


def test_a_plan_answer_carries_every_field_of_the_plan() -> None:
    """A field added to Plan and forgotten here would silently drop from the wire (answers ignore unknown keys)."""
    from railguard.model.api import PlanAnswer
    from railguard.model.plans import Plan

    assert set(Plan.model_fields) <= set(PlanAnswer.model_fields)


def test_a_follower_is_answered_the_moment_a_step_is_journaled(tmp_path: Path) -> None:
    """``GET /v1/operations/ID?after=N&wait=S`` (the CLI's follow) holds the request until the journal grows past N
    or the operation ends, and the journal's writer wakes it: no poll interval between a step and its report."""
    import threading

    from railguard.model.api import OperationStatus

    daemon = Daemon(tmp_path / "state")
    op_id = daemon.store().create_operation("staging", "rollback", None, ADMIN.id)
    answers: list[Any] = []
    waiter = threading.Thread(target=lambda: answers.append(
        route(daemon, "GET", ["v1", "operations", op_id], {"after": "0", "wait": "25"}, {}, ADMIN)), daemon=True)
    waiter.start()
    try:
        waiter.join(timeout=0.3)
        assert waiter.is_alive()  # nothing happened yet: it waits
        daemon.store().journal(op_id, "switch", "begin")
        waiter.join(timeout=20)  # well inside the request's 25 s: only the wake-up can end it this soon
        assert not waiter.is_alive()
        assert [(s.step, s.phase) for s in answers[0]["operation"].journal] == [("switch", "begin")]
        # Past the last entry of an operation that ended: answered at once, whatever the wait asked for.
        daemon.store().finish_operation(op_id, OperationStatus.succeeded)
        ended = route(daemon, "GET", ["v1", "operations", op_id], {"after": "1", "wait": "25"}, {}, ADMIN)
        assert ended["operation"].status is OperationStatus.succeeded
        with pytest.raises(RailguardError) as bad:
            route(daemon, "GET", ["v1", "operations", op_id], {"after": "0", "wait": "-1"}, {}, ADMIN)
        assert bad.value.diagnostics[0].code == "daemon.bad_request"
    finally:
        daemon.store().journal(op_id, "end", "end")  # wakes a waiter still waiting (after a failed assert)
        waiter.join(timeout=5)


@pytest.mark.parametrize("kind", [IncidentKind.security_refused, IncidentKind.verification_failed])
def test_an_agent_may_not_acknowledge_an_incident_about_its_own_code_an_approver_may(tmp_path: Path,
                                                                                     kind: IncidentKind) -> None:
    daemon = Daemon(tmp_path / "state")
    try:
        store = daemon.store()
        found, _ = incidents.open_or_add(store, kind, "staging", "about the code", service="web", release=3)
        if kind is IncidentKind.verification_failed:  # a failed release marks its source known-bad
            incidents.mark_bad(store, "staging", "web", "f" * 64, 3, found.id)
        agent, _ = tokens.create(store, "claude", Role.agent, None, "user:test", None)
        approver, _ = tokens.create(store, "boss", Role.approver, None, "user:test", None)
        body = json.dumps({"reason": "fine"}).encode()
        status, answer = respond(daemon, "POST", f"/v1/incidents/{found.id}/ack", agent, body, None)
        problem = json.loads(answer)["diagnostics"][0]
        assert status == 403 and problem["code"] == "auth.forbidden" and "'approve'" in problem["detail"]
        assert incidents.get(store, found.id).state is not IncidentState.resolved  # type: ignore[union-attr]
        if kind is IncidentKind.verification_failed:
            assert incidents.known_bad(store, "staging")  # the mark stays
        status, answer = respond(daemon, "POST", f"/v1/incidents/{found.id}/ack", approver, body, None)
        assert status == 200 and json.loads(answer)["incident"]["state"] == "resolved"
        assert incidents.known_bad(store, "staging") == {}
    finally:
        daemon.store().close()


def test_an_agent_still_acknowledges_an_incident_that_marks_nothing(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path / "state")
    try:
        store = daemon.store()
        found, _ = incidents.open_or_add(store, IncidentKind.drift, "staging", "drifted")
        agent, _ = tokens.create(store, "claude", Role.agent, None, "user:test", None)
        status, _ = respond(daemon, "POST", f"/v1/incidents/{found.id}/ack", agent, b"{}", None)
        assert status == 200
    finally:
        daemon.store().close()


def test_a_short_follower_counts_steps_not_build_output(tmp_path: Path) -> None:
    """``?steps=N`` (MCP): the journal in short, and ``after`` counts what ``journal_total`` counts, so build output
    does not end a follower's wait and a step does."""
    from railguard.model.api import OperationStatus

    daemon = Daemon(tmp_path / "state")
    store = daemon.store()
    op_id = store.create_operation("staging", "rollback", None, ADMIN.id)
    for i in range(5):
        store.journal(op_id, f"step {i}", "begin")
        store.journal(op_id, f"step {i}", "output", {"line": "built"})
    short = route(daemon, "GET", ["v1", "operations", op_id], {"steps": "2"}, {}, ADMIN)["operation"]
    assert short.journal_total == 5 and [s.step for s in short.journal] == ["step 3", "step 4"]
    listed = route(daemon, "GET", ["v1", "operations"], {"env": "staging", "steps": "1"}, {}, ADMIN)["operations"]
    assert [(o.journal_total, [s.step for s in o.journal]) for o in listed] == [(5, ["step 4"])]
    assert route(daemon, "GET", ["v1", "operations", op_id], {}, {}, ADMIN)["operation"].journal_total is None
    # 10 entries but 5 steps: asked after 5 steps, more output is no news (the wait runs out), a step is.
    store.journal(op_id, "step 4", "output", {"line": "more"})
    waited = route(daemon, "GET", ["v1", "operations", op_id], {"after": "5", "wait": "0.3", "steps": "2"}, {}, ADMIN)
    assert waited["operation"].journal_total == 5
    store.journal(op_id, "step 5", "begin")
    store.finish_operation(op_id, OperationStatus.succeeded)
    ended = route(daemon, "GET", ["v1", "operations", op_id], {"after": "5", "wait": "25", "steps": "2"}, {}, ADMIN)
    assert ended["operation"].journal_total == 6 and ended["operation"].journal[-1].step == "step 5"


def test_where_a_plan_stands_is_answered_without_its_body(tmp_path: Path) -> None:
    """``GET /v1/plans/ID?view=state``: status, approvals and the plan's hash (a reader that holds the body checks it
    against this); the body is parsed once for readers, and an edited row is parsed again (and refused)."""
    from railguard.model.plans import Plan

    daemon = Daemon(tmp_path / "state")
    store = daemon.store()
    plan = store.save_plan(Plan(env="staging", base_serial=0, changes=[], desired=[], desired_digest="d"))
    state = route(daemon, "GET", ["v1", "plans", plan.id], {"view": "state"}, {}, ADMIN)
    assert "plan" not in state and state["hash"] == plan.hash and state["env"] == "staging"
    assert state["status"] == "saved" and state["approval"].plan_id == plan.id
    whole = route(daemon, "GET", ["v1", "plans", plan.id], {}, {}, ADMIN)
    assert whole["plan"].hash == plan.hash
    assert store.load_plan(plan.id, shared=True)[0] is store.load_plan(plan.id, shared=True)[0]
    with store.transaction() as db:  # edited outside Railguard, signature untouched
        db.execute("UPDATE plans SET body = ? WHERE id = ?", ('{"env": "staging"}', plan.id))
    with pytest.raises(RailguardError) as damaged:
        route(daemon, "GET", ["v1", "plans", plan.id], {"view": "state"}, {}, ADMIN)
    assert damaged.value.diagnostics[0].code == "plan.hash_mismatch"


def test_status_with_answers_each_read_as_its_own_route_does(tmp_path: Path) -> None:
    """``GET /v1/status?with=releases,events,operations,incidents`` (MCP ``get_status`` and ``diagnose``): the same
    rows as the routes of their own, for the same environment (releases in short), in the one answer; an
    environment the token may not read is refused for all of them, and an unknown read is a bad request."""
    daemon = Daemon(tmp_path / "state")
    try:
        store = daemon.store()
        for env in ("staging", "production"):
            number = store.add_release(env, None, None, {"services": {"web": {"fingerprint": "a" * 64}},
                                                         "source": {"digest": "b" * 64}})
            store.add_event(env, "deploy", f"released {number} to {env}")
            store.create_operation(env, "rollback", None, ADMIN.id)
            incidents.open_or_add(store, IncidentKind.drift, env, f"{env} drifted")
        scoped, _ = tokens.create(store, "staging-agent", Role.agent, ["staging"], "user:test", None)
        query = {"env": "staging", "with": "releases,events,operations,incidents", "events": "5", "steps": "1"}
        status, raw = respond(daemon, "GET", "/v1/status?" + "&".join(f"{k}={v}" for k, v in query.items()),
                              scoped, b"", None)
        answer = json.loads(raw)
        assert status == 200 and answer["status"]["env"] == "staging"

        def alone(path: str, **params: str) -> Any:
            code, body = respond(daemon, "GET", f"/v1/{path}?" + "&".join(f"{k}={v}" for k, v in params.items()),
                                 scoped, b"", None)
            assert code == 200
            return json.loads(body)[path]

        assert answer["events"] == alone("events", env="staging", limit="5")
        assert answer["operations"] == alone("operations", env="staging", steps="1")
        assert answer["incidents"] == alone("incidents", env="staging", open="1")
        assert [i["summary"] for i in answer["incidents"]] == ["staging drifted"]
        whole = alone("releases", env="staging")
        assert whole[0]["services"] and whole[0]["source"]  # the route of its own answers them whole
        assert answer["releases"] == [{k: v for k, v in r.items() if k not in ("services", "source", "data")}
                                      for r in whole]
        refused, raw = respond(daemon, "GET", "/v1/status?env=production&with=releases", scoped, b"", None)
        assert refused == 403 and "releases" not in json.loads(raw)
        bad, raw = respond(daemon, "GET", "/v1/status?env=staging&with=releases,secrets", scoped, b"", None)
        assert bad == 422 and json.loads(raw)["diagnostics"][0]["code"] == "daemon.bad_request"
    finally:
        daemon.store().close()
