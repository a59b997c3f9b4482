"""Plans that put data at stake (pure logic): acknowledged loss is destructive and needs approval where
protected; a restore is destructive, approved with the address typed in protected environments and applied
only with the address typed back elsewhere; the rollback schema rule."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from railguard.data import sqlite
from railguard.engine import planner, schemacheck
from railguard.engine.restore import acknowledge, require_confirmed
from railguard.model.api import Release, ReleaseService, ReleaseStatus
from railguard.model.data import DatabaseSchema, ReleaseData, TableSchema
from railguard.model.diagnostics import RailguardError
from railguard.model.plans import Action, Change, Effect, Risk
from railguard.model.principals import Principal, Role
from railguard.model.resources import desired_resources
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

[services.web]
run = ["python", "app.py"]
release = ["python", "migrate.py"]
"""
ME = Principal(id="alice", role=Role.deployer, kind="user")


def _plan(env: str):  # type: ignore[no-untyped-def]
    spec, problems = parse_spec(SPEC)
    assert spec is not None, problems
    return planner.plan(env, desired_resources(spec, env, "sha256:abc"), [], 0).model_copy(update={"id": "plan-1"})


def _facts() -> Facts:
    return Facts(principal=ME, now=datetime.now(UTC), protected_in_state=False, soaked=lambda name, digest: None)


def test_acknowledged_loss_makes_the_release_change_destructive_and_protected_ones_need_approval() -> None:
    plain = _plan("production")
    acked = acknowledge(plain, ["notes"])
    web = next(c for c in acked.changes if c.address == "production/service.web")
    assert web.risk is Risk.destructive and "notes" in web.reason and acked.allow_data_loss == ["notes"]
    assert acked.content_hash() != plain.content_hash()  # the acknowledgement is part of what is reviewed
    assert plain.content_hash() == plain.model_copy(update={"allow_data_loss": []}).content_hash()
    verdicts = [v for v in evaluate(acked, _facts()) if v.address == "production/service.web"]
    assert any(v.effect is Effect.require_approval and "destructive" in v.message for v in verdicts)
    assert acknowledge(plain, []) is plain


def _restore(env: str):  # type: ignore[no-untyped-def]
    change = Change(address=f"{env}/database.notes", kind="database", action=Action.restore, risk=Risk.destructive,
                    reason="overwrite notes.db with a snapshot")
    return _plan(env).model_copy(update={"changes": [change]})


def test_a_restore_is_confirmed_by_typing_its_address() -> None:
    protected = _restore("production")
    verdicts = evaluate(protected, _facts())
    assert [(v.rule, v.confirm) for v in verdicts if v.address == "production/database.notes"] == [
        ("guard.protected_delete", "production/database.notes")]
    require_confirmed(protected, [], protected=True)  # the approver typed it
    plain = _restore("staging")
    with pytest.raises(RailguardError) as refused:
        require_confirmed(plain, ["staging/database.other"], protected=False)
    assert refused.value.diagnostics[0].code == "restore.unconfirmed"
    require_confirmed(plain, ["staging/database.notes"], protected=False)
    assert plain.counts()["restore"] == 1 and "restore" not in _plan("staging").counts()


def _release(*columns: str) -> Release:
    schema = DatabaseSchema(tables={"notes": TableSchema(columns=[(c, "TEXT") for c in columns])})
    return Release(number=4, created_at="2026-12-02T07:00:00Z", status=ReleaseStatus.superseded,
                   data=ReleaseData(schemas={"notes.db": schema}))


def test_the_rollback_schema_rule_refuses_with_both_options_and_notes_the_expand_case() -> None:
    target = _release("id", "title", "body")
    live_dropped = {"notes.db": DatabaseSchema(tables={"notes": TableSchema(columns=[("id", "TEXT"),
                                                                                      ("title", "TEXT")])})}
    with pytest.raises(RailguardError) as refused:
        schemacheck.check("staging", target, live_dropped)
    diagnostic = refused.value.diagnostics[0]
    assert diagnostic.code == "rollback.schema_changed" and "notes.body" in diagnostic.detail
    assert "railguard deploy" in diagnostic.remediation and "railguard restore --env staging --release 4" in \
        diagnostic.remediation
    live_added = {"notes.db": DatabaseSchema(tables={"notes": TableSchema(
        columns=[("id", "TEXT"), ("title", "TEXT"), ("body", "TEXT"), ("tags", "TEXT")])})}
    note = schemacheck.check("staging", target, live_added)
    assert note is not None and "expand" in note and "notes.tags" in note
    assert schemacheck.check("staging", target, dict(target.data.schemas)) is None  # type: ignore[union-attr]
    assert schemacheck.check("staging", _release(), {}) is None  # nothing known: nothing to refuse


def test_a_release_that_ran_no_release_command_is_checked_against_its_codes_recorded_schema() -> None:
    """flaskr: release 4 added post.likes (schema recorded), a deploy of the same code switched back to its warm
    replicas (release 6: no release command, no schema), a later release dropped the column: a rollback to 6 ran
    the check with "nothing known" and passed. Release 6 runs release 4's code, so 4's schema stands for it."""
    services = {"web": ReleaseService(fingerprint="fp-likes", source="sha256:likes")}
    four = _release("id", "title", "likes").model_copy(update={"services": services})
    six = Release(number=6, created_at="2026-12-02T07:10:00Z", status=ReleaseStatus.superseded, services=services)
    other = Release(number=5, created_at="2026-12-02T07:05:00Z", status=ReleaseStatus.superseded,
                    services={"web": ReleaseService(fingerprint="fp-old", source="sha256:old")},
                    data=ReleaseData(schemas={"notes.db": DatabaseSchema(tables={"notes": TableSchema(
                        columns=[("id", "TEXT"), ("title", "TEXT")])})}))
    live = {"notes.db": DatabaseSchema(tables={"notes": TableSchema(columns=[("id", "TEXT"), ("title", "TEXT")])})}
    known = schemacheck.with_known_schema(six, [six, other, four])
    assert known.number == 6 and known.data == four.data
    with pytest.raises(RailguardError) as refused:
        schemacheck.check("staging", known, live)
    assert "notes.likes" in refused.value.diagnostics[0].detail
    assert schemacheck.with_known_schema(four, [six, other, four]) is four  # a recorded schema is its own


def test_an_added_not_null_column_without_a_default_is_no_safe_expand(tmp_path: Path) -> None:
    """Django polls: AddField(featured, BooleanField(default=False)) leaves the column NOT NULL with no database
    default (Django keeps it in Python), so release 1's code, rolled back to "expand case: runs unchanged",
    failed every INSERT with 'NOT NULL constraint failed: polls_question.featured'. Real SQLite files."""
    path = tmp_path / "db.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE polls_question (id integer NOT NULL PRIMARY KEY AUTOINCREMENT, "
               "question_text varchar(200) NOT NULL)")
    db.commit()
    target = Release(number=1, created_at="2026-12-02T07:00:00Z", status=ReleaseStatus.superseded,
                     data=ReleaseData(schemas={"db.sqlite3": sqlite.schema(path)}))
    db.execute("ALTER TABLE polls_question ADD COLUMN note text NULL")  # nullable: old inserts still work
    db.execute("ALTER TABLE polls_question ADD COLUMN score integer NOT NULL DEFAULT 0")  # has a default
    db.commit()
    note = schemacheck.check("staging", target, {"db.sqlite3": sqlite.schema(path)})
    assert note is not None and "expand" in note
    db.executescript(  # what Django's migration does on SQLite: rebuild the table with the NOT NULL column
        "CREATE TABLE new (id integer NOT NULL PRIMARY KEY AUTOINCREMENT, question_text varchar(200) NOT NULL, "
        "note text NULL, score integer NOT NULL DEFAULT 0, featured bool NOT NULL); "
        "INSERT INTO new SELECT id, question_text, note, score, 0 FROM polls_question; "
        "DROP TABLE polls_question; ALTER TABLE new RENAME TO polls_question;")
    db.close()
    live = {"db.sqlite3": sqlite.schema(path)}
    assert live["db.sqlite3"].tables["polls_question"].required == ["question_text", "featured"]
    with pytest.raises(RailguardError) as refused:
        schemacheck.check("staging", target, live)
    diagnostic = refused.value.diagnostics[0]
    assert diagnostic.code == "rollback.schema_changed", diagnostic
    assert "polls_question.featured" in diagnostic.detail and "INSERT" in diagnostic.detail, diagnostic.detail
    assert "note" not in str(diagnostic.extra["blocking"]) and "score" not in str(diagnostic.extra["blocking"])
    assert "a default" in diagnostic.remediation
