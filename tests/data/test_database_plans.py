"""Databases as planned resources (pure logic): validation with remediation, a create is safe, a delete is
destructive and needs the address typed back, and a protected environment never deletes one implicitly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from railguard.engine import planner
from railguard.engine.restore import require_confirmed
from railguard.model.diagnostics import RailguardError
from railguard.model.plans import Action, Effect, Plan, Risk
from railguard.model.principals import Principal, Role
from railguard.model.resources import ObservedResource, desired_resources
from railguard.model.specfile import parse_spec
from railguard.policy.guardrails import Facts, evaluate

SPEC = """
[app]
name = "notes"

[environments.staging]
edge_port = 18080

[environments.production]
edge_port = 18443
protected = true
{databases}
[services.web]
run = ["python", "app.py"]
{uses}
"""
MAIN = '[databases.main]\nengine = "postgres"\n'
ME = Principal(id="alice", role=Role.deployer, kind="user")


def _spec(databases: str = MAIN, uses: str = 'databases = ["main"]'):  # type: ignore[no-untyped-def]
    return parse_spec(SPEC.format(databases=databases, uses=uses))


def _plan(env: str, databases: str, uses: str, live: list[ObservedResource]) -> Plan:
    spec, problems = _spec(databases, uses)
    assert spec is not None, problems
    return planner.plan(env, desired_resources(spec, env, "sha256:abc"), live, 0).model_copy(update={"id": "p-1"})


def _verdicts(plan: Plan) -> list[tuple[str, Effect]]:
    facts = Facts(principal=ME, now=datetime.now(UTC), protected_in_state=False, soaked=lambda name, digest: None)
    return [(v.rule, v.effect) for v in evaluate(plan, facts)]


def _live(env: str) -> list[ObservedResource]:
    created = _plan(env, MAIN, 'databases = ["main"]', [])
    db = next(r for r in created.desired if r.kind == "database")
    return [ObservedResource(address=db.address, kind="database", fingerprint=db.fingerprint, config=db.config)]


def test_spec_errors_name_the_database_and_say_how_to_fix_it() -> None:
    spec, problems = _spec(MAIN, 'databases = ["mian"]')
    assert problems and problems[0].code == "spec.unknown_database"
    assert "mian" in problems[0].summary and "[databases.mian]" in problems[0].remediation
    spec, problems = _spec('[databases.main]\nengine = "mysql"\n')
    assert problems and "postgres" in problems[0].detail + problems[0].summary
    spec, problems = _spec(MAIN, 'databases = ["main"]\nenv = { DATABASE_URL = "x" }')
    assert "spec.database_variable" in [p.code for p in problems]


def test_a_database_is_created_safely_before_the_services_that_use_it_and_its_url_variable_is_planned() -> None:
    plan = _plan("staging", MAIN, 'databases = ["main"]', [])
    order = [c.address for c in plan.changes]
    assert order.index("staging/database.main") < order.index("staging/service.web")
    create = next(c for c in plan.changes if c.address == "staging/database.main")
    assert (create.action, create.risk) == (Action.create, Risk.safe)
    web = next(r for r in plan.desired if r.kind == "service")
    assert web.config["databases"] == {"main": "DATABASE_URL"} and "staging/database.main" in web.depends_on
    # A service without databases keeps the config (and fingerprint) it always had.
    bare = _plan("staging", "", "", [])
    assert "databases" not in next(r for r in bare.desired if r.kind == "service").config


def test_removing_a_database_is_destructive_needs_the_address_and_is_denied_where_protected() -> None:
    plan = _plan("staging", "", "", _live("staging"))
    gone = next(c for c in plan.changes if c.address == "staging/database.main")
    assert (gone.action, gone.risk) == (Action.delete, Risk.destructive) and "every row" in gone.reason
    with pytest.raises(RailguardError) as refused:
        require_confirmed(plan, [], protected=False)
    assert refused.value.diagnostics[0].code == "database.delete_unconfirmed"
    require_confirmed(plan, ["staging/database.main"], protected=False)

    implicit = _plan("production", "", "", _live("production"))
    assert ("guard.database_kept", Effect.deny) in _verdicts(implicit)
    denied = next(v for v in evaluate(implicit, Facts(ME, datetime.now(UTC), False, lambda n, d: None))
                  if v.rule == "guard.database_kept")
    assert "delete = true" in denied.remediation and "--confirm production/database.main" in denied.remediation

    explicit = _plan("production", '[databases.main]\nengine = "postgres"\ndelete = true\n', "", _live("production"))
    verdicts = _verdicts(explicit)
    assert ("guard.database_kept", Effect.deny) not in verdicts
    assert ("guard.protected_delete", Effect.require_approval) in verdicts
