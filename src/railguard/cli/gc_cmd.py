"""``railguard gc``: apply the spec's ``[retention]`` now (the daemon also does it at boot and hourly).

Old plans, finished operations with their journals, old events, and the artifacts of releases beyond the
rollback window go; ``--dry-run`` only reports what would. The daemon does the work (it must not race a
rollout); this command renders its answer.
"""

from __future__ import annotations

from typing import Annotated

import typer

from railguard.cli.common import ADMIN, JsonOpt, SpecOpt, add, connect
from railguard.cli.output import finish, guarded, out


@guarded()
def gc(
    spec: SpecOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report what would be removed.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove old plans, operations, events, artifacts and source snapshots as the spec's [retention] says (admin)."""
    ws, client = connect(spec)
    found = client.gc(str(ws.spec_path), dry_run)
    if as_json:
        finish(True, [], {"gc": found.model_dump(mode="json")})
    removed = found.removed
    verb = "Would remove" if dry_run else "Removed"
    out.print(f"{verb} {removed['plans']} plan(s), {removed['operations']} operation(s) with "
              f"{removed['journal']} journal step(s), {removed['events']} event(s), "
              f"{removed['artifacts']} artifact(s) and {removed.get('snapshots', 0)} source snapshot(s).")


def register(app: typer.Typer) -> None:
    add(app, gc, ADMIN, "railguard gc --dry-run", "railguard gc --json")
