"""Rollbacks that know the schema: refuse to run old code on a schema it does not understand.

Each release records the schema of every database after its release command; the environment keeps the
schema live now (after the last release command or restore). Rolling back code to release N is refused
(``rollback.schema_changed``) when the live schema lacks something N's schema had (a dropped table or
column, a changed type): N's code would read what is not there. The diagnostic offers the two real ways
out. When the live schema only adds to N's (the "expand" step), the rollback goes ahead with a note.
Called by :mod:`railguard.engine.rollback` (the pre-check and the job) and the doctor's rollback drill.
"""

from __future__ import annotations

from railguard.data.schemarule import compare
from railguard.model.api import Release
from railguard.model.data import DatabaseSchema
from railguard.model.diagnostics import RailguardError, error


def with_known_schema(target: Release, releases: list[Release]) -> Release:
    """``target`` with the schema its code was recorded against. A release that ran no release command (a deploy
    that switched back to warm replicas of the same code, a warm rollback) records no schema; the newest release
    with the very same services (code and config) that does record one stands for it, so a rollback to it is
    checked like a rollback to that one (it used to pass unchecked: "nothing is known")."""
    if not target.services or (target.data is not None and target.data.schemas):
        return target
    for other in releases:  # newest first
        if other.number != target.number and other.services == target.services and other.data is not None \
                and other.data.schemas:
            return target.model_copy(update={"data": other.data})
    return target


def check(env: str, target: Release, live: dict[str, DatabaseSchema]) -> str | None:
    """None when the schemas match (or nothing is known), a note for the expand case; raises otherwise."""
    wanted = target.data.schemas if target.data is not None else {}
    if not wanted or not live:
        return None
    verdict = compare(wanted, live)
    if verdict.same:
        return None
    if verdict.superset:
        return (f"the live schema only adds to release {target.number}'s ({'; '.join(verdict.added[:5])}); "
                f"its code runs on it unchanged (expand case)")
    lost = (f"the data's schema lost what its code reads: {'; '.join(verdict.missing[:6])}"
            + (f" (and {len(verdict.missing) - 6} more)" if len(verdict.missing) > 6 else "")) if verdict.missing \
        else ""
    gained = (f"the data gained columns its code does not know, NOT NULL without a default, so its INSERTs "
              f"would fail: {'; '.join(verdict.blocking[:6])}") if verdict.blocking else ""
    raise RailguardError(error(
        "rollback.schema_changed", f"Release {target.number}'s code does not match the live schema",
        f"Since release {target.number}, " + "; and ".join(p for p in (lost, gained) if p)
        + ". Rolling back only the code would answer errors.",
        f"Either roll forward: fix the code and deploy a new release (`railguard deploy --env {env}`); or roll "
        f"back code and data: `railguard restore --env {env} --release {target.number}` (destructive: the data "
        f"returns to what release {target.number} left, later changes are lost), then `railguard rollback --env "
        f"{env} --to {target.number}`."
        + (" Or give the new column(s) a default in the database (a new migration): then old code can insert."
           if verdict.blocking else ""),
        address=f"{env}/release.{target.number}",
        extra={"missing": verdict.missing, "added": verdict.added, "blocking": verdict.blocking,
               "options": [f"railguard deploy --env {env}",
                           f"railguard restore --env {env} --release {target.number}"]}))
