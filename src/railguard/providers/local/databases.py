"""The local provider's data guard: a snapshot before every release command, a rehearsal, and restores.

Before a release command runs for real in an environment that holds databases, the rollout calls
:func:`guarded_release`: it snapshots every database of the data folder (``<home>/backups/<env>/``),
rehearses the command twice on a scratch copy (once when its first run changed nothing there), and stops
with ``data.loss_detected`` (naming database, table, column and rows) unless the plan acknowledged that
loss. After the real run it records each database's schema. What it finds goes to the journal as step
details (``data``), which the engine records on the release. :func:`restore_change` carries out a
``restore database.<name>`` change. Called by :mod:`railguard.providers.local.rollout` and
:mod:`railguard.providers.local.provider`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from railguard.data import libpq, pgrehearsal, pgschema, rehearsal, snapshots, sqlite
from railguard.data.loss import Shapes
from railguard.data.postgres import Cluster, PostgresError
from railguard.model.data import DatabaseSchema
from railguard.providers.base import ApplyRequest
from railguard.providers.local.artifacts import Artifact
from railguard.providers.local.isolation import ensure_user, prepare_data
from railguard.providers.local.replicas import Failure, run_release_command

Step = Callable[[str], Any]


def backups_root(home: Path, env: str) -> Path:
    return home / "backups" / env


def schemas(data_dir: Path) -> dict[str, DatabaseSchema]:
    """Each database's schema, its path checked (the data folder is the app's: see data.sqlite)."""
    found = {}
    for rel in sqlite.databases(data_dir):
        try:
            found[rel] = sqlite.schema_in(data_dir, rel)
        except (FileNotFoundError, sqlite.UnsafeDatabase):
            continue  # gone, or a link planted since it was listed: no fingerprint for it
    return found


def _retarget(environ: dict[str, str], data_dir: Path, scratch: Path) -> dict[str, str]:
    """The release command's environment with every mention of the real data folder pointed at the copy,
    so a path the spec spelled out (DATABASE=/srv/data/app.db) cannot reach the real data."""
    real = str(data_dir)
    return {k: v.replace(real, str(scratch)) for k, v in environ.items()}


def guarded_release(request: ApplyRequest, *, home: Path, service: str, config: dict[str, Any],
                    environ: dict[str, str], artifact: Artifact, data_dir: Path, log_dir: Path,
                    step: Step, user: str | None = None, postgres: dict[str, Cluster] | None = None) -> None:
    """Snapshot, rehearse, then run the release command for real and record the schema it leaves.

    ``user``: the environment's OS user (isolation); the real run and the rehearsal run as it.
    ``postgres``: the service's Postgres databases by name; each is dumped (pg_dump, custom format) into the
    same snapshot as the SQLite files."""
    env, release = request.env, request.release or 0
    root = backups_root(home, env)
    backup = None
    used = dict(postgres or {})
    try:  # a database without tables in any of its schemas yet (a first deploy) has nothing to protect either
        postgres = {n: c for n, c in used.items() if pgrehearsal.has_tables(c, n)}
    except PostgresError as exc:
        raise Failure("data.snapshot_failed", "The database could not be read before the release command",
                      f"{exc}. The release command did not run", {}) from exc
    copies = snapshots.ScratchCopies()  # the rehearsal's Postgres copies, made from the snapshot's own stream
    if sqlite.databases(data_dir) or postgres:  # no database yet (a first deploy): nothing to protect
        with step("snapshot") as detail:
            try:
                backup = snapshots.take(data_dir, root, env, request.release, postgres, copies)
            except BaseException as exc:
                pgrehearsal.cleanup(postgres or {})  # a copy made (or half made) before the failure
                if not isinstance(exc, PostgresError):
                    raise
                raise Failure("data.snapshot_failed", "The snapshot before the release command failed",
                              f"{exc}. The release command did not run", {}) from exc
            except sqlite.UnsafeDatabase as exc:
                raise Failure("data.snapshot_failed", "A database of the data folder was refused by the snapshot",
                              f"{exc}. The release command did not run", {"data": str(data_dir)}) from exc
            if backup is not None:
                detail["data"] = {"backup": backup.model_dump(mode="json")}
                detail["seconds"] = backup.seconds
                detail["pruned"] = snapshots.prune(root, request.backups_keep)
                detail["note"] = (f"snapshot {backup.id}: {len(backup.files)} database(s), "
                                  f"{sum(f.size for f in backup.files)} bytes, {backup.seconds:.2f} s"
                                  + (f" (with the rehearsal's copy of {', '.join(sorted(copies.shapes))})"
                                     if copies.shapes else ""))
    if backup is not None:
        _rehearse(request, home=home, service=service, config=config, environ=environ, artifact=artifact,
                  data_dir=data_dir, log_dir=log_dir, step=step, backup_id=backup.id,
                  copies=snapshots.files(root, backup), postgres=(used, copies), user=user,
                  known=rehearsal.known_shapes(backup))
    with step("release-command") as detail:
        run_release_command(config, environ, artifact, log_dir / f"{env}.{service}.r{release}.release.log", user)
        found = schemas(data_dir)
        try:
            found |= {pgschema.key(name): pgschema.schema(cluster, name) for name, cluster in used.items()}
        except PostgresError:
            pass  # the command ran; without a fingerprint the rollback rule has nothing to refuse on for it
        detail["data"] = {"schemas": {k: v.model_dump(mode="json") for k, v in found.items()}}


def _rehearse(request: ApplyRequest, *, home: Path, service: str, config: dict[str, Any], environ: dict[str, str],
              artifact: Artifact, data_dir: Path, log_dir: Path, step: Step, backup_id: str,
              copies: dict[str, Path],
              postgres: tuple[dict[str, Cluster], snapshots.ScratchCopies],
              user: str | None = None, known: Shapes | None = None) -> None:
    env, release = request.env, request.release or 0
    scratch = home / "scratch" / "rehearsal" / f"{env}.{service}.r{release}"
    clusters, made = postgres
    pg_after: dict[str, pgrehearsal.Tables] = {}
    variables = config.get("databases") or {}

    def run(folder: Path, label: str) -> None:
        if user is not None:  # the scratch copy is the environment user's, as its data folder is
            for parent in (home / "scratch", home / "scratch" / "rehearsal", scratch):
                parent.mkdir(exist_ok=True)
                parent.chmod(0o711)
            prepare_data(folder, ensure_user(user), adopt=True)  # our scratch copy of the data
        run_release_command(config, _retarget(rehearsal_environ, data_dir, folder), artifact,
                            log_dir / f"{env}.{service}.r{release}.{label}.log", user)
        pg_after[label] = pgrehearsal.shapes(clusters)

    # What the failures can say of the real data. With a rehearsal role (every managed server), the rehearsal's
    # URLs name it, and the server lets it into the scratch copies only (pgrehearsal.fence), whatever database
    # the command names; the app's own password is another matter (its running replicas hold it).
    fenced = all(c.rehearse_password is not None for c in clusters.values())
    untouched = "The real data was not touched"
    if clusters and fenced:
        untouched = ("The real run did not start; the rehearsal connected as its own role, which the server lets "
                     "into the scratch copies only (a command that finds the app's own credentials, e.g. in a "
                     "running replica's environment or the data folder, is not kept from the real database)")
    elif any(c.app_password is not None for c in clusters.values()):  # refused: Cluster.rehearsal_url
        untouched = "The release command did not run, in its rehearsal or for real"
    elif clusters:
        untouched = ("The real run did not start; the rehearsal's database URLs pointed at scratch copies (on the "
                     "same server, with the real database's role: a command that connects to the real database by "
                     "itself is not kept from it)")
    with step("rehearse") as detail:
        try:
            # The rehearsal's URLs point at the copies the snapshot made from its own stream (on the same server, as
            # the rehearsal role: see untouched); what each copy held when made is the runs' starting point.
            if made.failed:
                name, why = sorted(made.failed.items())[0]
                raise PostgresError(f"{name}: {why}")
            for name, cluster in clusters.items():
                if name not in made.shapes:
                    # A database without tables yet (the snapshot skipped it) gets an empty copy too: the
                    # rehearsal's URL never names a real database, even one with nothing in it to lose.
                    pgrehearsal.wait_for_drop(cluster, pgrehearsal.scratch_name(name))
                    cluster._fresh(pgrehearsal.scratch_name(name), cluster.rehearser)
                    made.shapes[name] = {}
            urls = {name: cluster.rehearsal_url(pgrehearsal.scratch_name(name)) for name, cluster in clusters.items()}
            for cluster in {id(c): c for c in clusters.values() if c.rehearse_password is not None}.values():
                pgrehearsal.fence(cluster)  # again now: the app owns its database and may have granted CONNECT
            pg_before = {name: made.shapes[name] for name in clusters}
            rehearsal_environ = {**environ, **{variables[name]: url for name, url in urls.items()}}
            if len(urls) == 1 and libpq.NAMES[0] in environ:  # PG* named the real database: now its copy
                rehearsal_environ |= libpq.variables(next(iter(urls.values())))
            # A Postgres copy is compared by tables, columns and row counts, not byte for byte: with one, no
            # fingerprint says "the first run changed nothing", so the command always runs twice.
            found = rehearsal.rehearse(data_dir, scratch, run, list(request.allow_data_loss), copies, known,
                                       once_if_unchanged=not clusters)
            pg_losses = (pgrehearsal.losses(pg_before, pg_after.get("rehearsal", {}))
                         + pgrehearsal.losses(pg_after.get("rehearsal", {}),
                                              pg_after.get("rehearsal-second-run", {}), second_run=True))
            allowed = [loss for loss in pg_losses if rehearsal.allowed(loss, list(request.allow_data_loss))]
            found = found.model_copy(update={
                "losses": found.losses + [loss for loss in pg_losses if loss not in allowed],
                "acknowledged": found.acknowledged + allowed,
                "notes": found.notes + pgrehearsal.notes(pg_before, pg_after.get("rehearsal", {}),
                                                         pg_after.get("rehearsal-second-run", {}))})
        except PostgresError as exc:
            failed: Failure | None = Failure(
                "data.rehearsal_failed", "The rehearsal's scratch database could not be prepared",
                f"{exc}. {untouched}", {"backup": backup_id})
        except sqlite.UnsafeDatabase as exc:
            failed = Failure("data.rehearsal_failed", "A database of the rehearsal's copy was refused",
                             f"{exc}. The real run did not start", {"backup": backup_id})
        except rehearsal.SecondRunFailed as exc:
            failed = _reached(exc.__cause__, backup_id, "second run") or Failure(
                "data.rehearsal_failed", "The release command fails when it runs a second time",
                f"in its rehearsal on a copy of the data it succeeded once, then failed ({exc}); a retry of this "
                f"release would fail the same way. {untouched}",
                {"backup": backup_id, "log": str(log_dir / f"{env}.{service}.r{release}.rehearsal-second-run.log")})
        except Failure as exc:
            failed = _reached(exc, backup_id, "rehearsal") or Failure(
                "data.rehearsal_failed", "The release command failed in its rehearsal",
                             f"on a copy of the data: {exc.cause}. {untouched}",
                             {**exc.extra, "backup": backup_id})
        else:
            failed = None
            detail["data"] = {"rehearsal": found.model_dump(mode="json")}
            detail["seconds"] = found.seconds
            told = [f"{len(found.acknowledged)} acknowledged loss(es)"] if found.acknowledged else []
            said = [note for note in found.notes if note != rehearsal.SKIPPED][:4]
            detail["note"] = (f"rehearsed on a copy in {found.seconds:.2f} s: "
                              + ("; ".join(told + [loss.what for loss in found.losses] + said) or "nothing lost")
                              + (f" ({rehearsal.SKIPPED})" if found.second_run_skipped else ""))
        finally:
            pgrehearsal.cleanup(clusters)  # on a thread of its own: the verdict does not wait for the drop
    if failed is not None:
        raise failed
    if found.losses:
        tables = sorted({loss.table for loss in found.losses})
        raise Failure(
            "data.loss_detected", f"The release command would lose data: {found.losses[0].what}",
            f"its rehearsal on a copy of the data lost: {rehearsal.describe(found.losses)}. It did not run "
            f"on the real data (snapshot {backup_id} was taken)",
            {"losses": [loss.model_dump(mode="json") for loss in found.losses], "backup": backup_id,
             "allow": tables, "rehearsal_s": found.seconds,
             # What --allow-data-loss must name to go on: a dropped column as TABLE.COLUMN, else the table.
             "allow_exact": sorted({f"{loss.table}.{loss.column}" if loss.column else loss.table
                                    for loss in found.losses})})


def _reached(exc: BaseException | None, backup_id: str, run: str) -> Failure | None:
    """The rehearsal's command tried to open a real database (the server refused the rehearsal role: see
    pgrehearsal.fence): its own diagnostic, since retrying or fixing a migration is not the remedy."""
    if not isinstance(exc, Failure):
        return None
    lines = [str(line) for line in exc.extra.get("log_tail") or []]
    database = pgrehearsal.reached_real(lines)
    if database is None:
        return None
    return Failure(
        pgrehearsal.REACHED, f"The release command tried to connect to the real database '{database}' in its "
        "rehearsal",
        f"in its {run} it connected to '{database}' instead of the scratch copy its database URL names; the server "
        f"refused it (the rehearsal's role may connect to the scratch copies only: pg_hba.conf and the CONNECT "
        "privilege). The real data was not touched and the real run did not start",
        {**exc.extra, "backup": backup_id, "database": database})


def restore_change(request: ApplyRequest, *, home: Path, data_dir: Path, step: Step,
                   postgres: dict[str, Cluster] | None = None) -> None:
    """Carry out ``restore database.<name>``: verify the backup's checksums, then write it back."""
    desired = request.desired
    assert desired is not None, "a restore change always carries its database resource"
    backup_id = str(desired.config["backup"])
    root = backups_root(home, request.env)
    with step("restore") as detail:
        try:
            backup = snapshots.load(root, backup_id)
            done = snapshots.restore(root, backup, data_dir, [desired.name], postgres)
        except snapshots.BackupError as exc:
            raise Failure(exc.code, "The backup cannot be restored", str(exc), {"backup": backup_id}) from exc
        except PostgresError as exc:
            raise Failure("restore.failed", "The backup could not be written back", str(exc),
                          {"backup": backup_id}) from exc
        except sqlite.UnsafeDatabase as exc:
            raise Failure("restore.failed", "The restore refused the database's path in the data folder",
                          f"{exc}. Nothing was written; remove the link (or the extra hard link) and restore again",
                          {"backup": backup_id}) from exc
        if not done:
            raise Failure("restore.backup_missing", "The backup holds no such database",
                          f"backup {backup_id} has no database '{desired.name}'", {"backup": backup_id})
        detail["restored"] = [f.path for f in done]
        detail["data"] = {"schemas": {f.path if f.engine == "sqlite" else pgschema.key(f.database):
                                      f.db_schema.model_dump(mode="json") for f in done},
                          "restored": backup_id}
