"""Restores and acknowledged data loss: the plans that let a user go on, reviewed, after data was at stake.

``railguard restore --env E --release N`` (or ``--backup ID``) becomes a saved plan whose changes are
``restore database.<name>`` (risk destructive): reviewed like any plan, approved in a protected
environment (the approver types the address), and in any other environment applied only with the
address typed back (``--confirm``). ``--release N`` means the data as release N left it: the snapshot
taken right before the next release command. ``railguard plan --allow-data-loss TABLE...`` makes a plan
whose service changes acknowledge the loss a rehearsal found (risk destructive). Called by
:mod:`railguard.engine.usecases`.
"""

from __future__ import annotations

from railguard.engine.facts import Facts
from railguard.engine.workspace import require_env
from railguard.model.api import Release
from railguard.model.canonical import digest
from railguard.model.data import Backup
from railguard.model.diagnostics import RailguardError, error
from railguard.model.plans import Action, Change, FieldDiff, Plan, Risk
from railguard.model.resources import Resource
from railguard.state import datarecords
from railguard.state.store import Store, new_id


def acknowledge(plan: Plan, allow: list[str]) -> Plan:
    """The plan with the acknowledged tables recorded and every change that runs a release command destructive."""
    if not allow:
        return plan
    desired = {r.address: r for r in plan.desired}
    changes = []
    for change in plan.changes:
        resource = desired.get(change.address)
        runs_release = (resource is not None and resource.kind == "service" and bool(resource.config.get("release"))
                        and change.action in (Action.create, Action.replace))
        if runs_release:
            change = change.model_copy(update={
                "risk": Risk.destructive,
                "reason": f"{change.reason}; its release command may lose data in {', '.join(allow)} "
                          "(acknowledged with --allow-data-loss)"})
        changes.append(change)
    return plan.model_copy(update={"changes": changes, "allow_data_loss": sorted(set(allow))})


def _missing(env: str, what: str) -> RailguardError:
    return RailguardError(error(
        "restore.backup_missing", "There is no such backup", f"Environment '{env}' has {what}.",
        f"List the snapshots with `railguard backups --env {env}`.", address=env))


def pick_backup(store: Store, env: str, release: int | None, backup_id: str | None) -> tuple[Backup, str]:
    """The backup to restore and a sentence saying which data it holds."""
    found = datarecords.backups(store, env)
    if backup_id is not None:
        for rel, backup in found:
            if backup.id == backup_id:
                return backup, f"snapshot {backup.id}, taken before release {rel.number}'s release command"
        raise _missing(env, f"no backup {backup_id}")
    if release is None:
        raise RailguardError(error(
            "restore.backup_missing", "Say what to restore", "Give --release N or --backup ID.",
            f"List the snapshots with `railguard backups --env {env}`.", address=env))
    if store.release(env, release) is None:
        raise _missing(env, f"no release {release}")
    later: list[tuple[Release, Backup]] = sorted(((r, b) for r, b in found if r.number > release),
                                                 key=lambda pair: pair[0].number)
    if not later:
        raise _missing(env, f"no snapshot of the data as release {release} left it (no release command ran after it "
                            "with a database to snapshot)")
    rel, backup = later[0]
    return backup, f"the data as release {release} left it (snapshot {backup.id}, taken before release " \
                   f"{rel.number}'s release command)"


def restore_plan(facts: Facts, store: Store, env: str, release: int | None, backup_id: str | None,
                 databases: list[str] | None = None) -> Plan:
    """An unsaved plan restoring ``backup`` into ``env``'s databases (all of them, or the named ones)."""
    spec = facts.spec
    require_env(spec, env)
    backup, which = pick_backup(store, env, release, backup_id)
    files = [f for f in backup.files if not databases or f.database in databases]
    if not files:
        raise _missing(env, f"no database named {', '.join(databases or [])} in {backup.id}")
    versions = facts.versions(store, env)
    restored = {f"{env}/database.{f.database}" for f in files}
    # A managed database's own resource gives way to its restore (one resource per address in a plan).
    desired = [r for r in facts.desired(env, versions) if r.address not in restored]
    data_dir = spec.environments[env].data_dir
    changes: list[Change] = []
    for entry in files:
        address = f"{env}/database.{entry.database}"
        config = {"backup": backup.id, "path": entry.path, "sha256": entry.sha256, "data_dir": data_dir}
        desired.append(Resource(address=address, env=env, kind="database", name=entry.database, config=config,
                                fingerprint=digest(config)))
        rows = ", ".join(f"{t}={n}" for t, n in sorted(entry.tables.items())) or "no tables"
        changes.append(Change(
            address=address, kind="database", action=Action.restore, risk=Risk.destructive,
            reason=f"overwrite {entry.database if entry.engine == 'postgres' else entry.path} with {which}; every "
            f"change since is lost (rows then: {rows})",
            diff=[FieldDiff(path="backup", before=None, after=backup.id)]))
    return Plan(env=env, base_serial=store.serial(env), desired_digest=facts.desired_digest(env, versions),
                changes=changes, desired=desired, requested_by="", id=new_id("plan"))


def require_confirmed(plan: Plan, confirm: list[str], protected: bool) -> None:
    """Outside a protected environment (where the approver types it) a restore, or the deletion of a database,
    runs only with its address typed."""
    if protected:
        return
    unconfirmed = [c.address for c in plan.actionable if c.action is Action.restore and c.address not in confirm]
    if unconfirmed:
        raise RailguardError(error(
            "restore.unconfirmed", f"Restoring {', '.join(unconfirmed)} needs the address typed back",
            "A restore overwrites the database with a snapshot: every change made since is lost.",
            f"Apply it with `railguard apply {plan.id} --confirm {' --confirm '.join(unconfirmed)}`.",
            address=unconfirmed[0], extra={"confirm": unconfirmed}))
    deleted = [c.address for c in plan.actionable if c.kind == "database" and c.address not in confirm
               and c.action in (Action.delete, Action.replace)]
    if deleted:
        raise RailguardError(error(
            "database.delete_unconfirmed", f"Deleting {', '.join(deleted)} needs the address typed back",
            "The plan deletes a database (or replaces it with an empty one): every row in it is lost.",
            f"Apply it with `railguard apply {plan.id} --confirm {' --confirm '.join(deleted)}`, or keep the "
            "database in the spec.", address=deleted[0], extra={"confirm": deleted}))
