"""How often a real `railguard deploy` parses the spec and snapshots the source, counted across CLI and daemon.

The debug counters (``RAILGUARD_DEBUG_COUNTS``) append one line per spec parse, source snapshot and source
hash; the daemon inherits the variable from the CLI that starts it. The bounds are what one deploy needs:
the CLI parses only when no daemon runs yet (a bad spec must not start one), the daemon's one deploy request
(plan, then submit) gathers its facts once, and the artifact build reuses the cached digest. A new re-parse or
re-snapshot fails here.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from pathlib import Path

from railguard.daemon.observation import DESCRIBE_S, INTERVAL_S
from railguard.model.counters import ENV

from .harness import Workspace

# Longer than the observer's pause between two reads of the served spec, with a pass to spare.
QUIET_S = DESCRIBE_S + 2 * INTERVAL_S


def _counted(ws: Workspace, log: Path, *args: str, parses_after: int = 0) -> Counter[str]:
    """The counts of one command. ``parses_after``: spec parses the daemon still makes after the command returned
    (the verification window reads the served spec on its next pass, which may come after a fast CLI is done);
    they are waited for, within a bound, so they are counted here and not in the next command's window."""
    log.write_text("")
    code, result = ws.rg_json(*args, env={ENV: str(log)})
    assert code == 0, result

    def counts() -> Counter[str]:
        return Counter(line.split(" ", 1)[1] for line in log.read_text().splitlines())

    # Until the late parses came, or nothing new was counted for longer than the observer's gap between two reads
    # of the served spec (a deploy that parses fewer times than the bound allows must not wait out a timeout).
    deadline = time.monotonic() + 15.0
    seen, quiet_since = counts(), time.monotonic()
    while seen["spec-parse"] < parses_after and time.monotonic() < deadline:
        time.sleep(0.05)
        now = counts()
        if now != seen:
            seen, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since > QUIET_S:
            break
    return counts()


def test_deploy_parses_and_snapshots_a_bounded_number_of_times(ws: Workspace) -> None:
    with tempfile.TemporaryDirectory() as tmp:  # outside the app folder: the log is not part of the source
        log = Path(tmp) / "counts.log"
        deploy = ("deploy", "--env", "staging", "--yes")
        first = _counted(ws, log, *deploy, parses_after=4)
        # This one also starts the daemon, whose retention pass at boot reads the spec's [retention] once.
        assert first["spec-parse"] <= 4 and first["source-snapshot"] <= 3, first

        (ws.root / "app.py").write_text((ws.root / "app.py").read_text() + "# a change\n")
        ws.write_spec(version="2")
        # Older than one timestamp tick (sources/snapshot.py, 100 ms) when this deploy snapshots them: a file written
        # within the tick is hashed again by the next snapshot (racy timestamps), which the no-op deploy below would
        # then count. The CLI's fast path gets the request to the daemon well within 100 ms of these writes.
        time.sleep(0.25)
        changed = _counted(ws, log, *deploy, parses_after=2)
        assert ws.version() == "v2"
        # The deploy request 1 (the CLI leaves the spec to the running daemon), and the verification window reading
        # the served spec's thresholds once after the switch; the submission reads the plan only (was 4, then 3).
        assert changed["spec-parse"] <= 2, changed
        # The plan snapshots and stores the source; apply and the artifact build use the stored snapshot.
        assert changed["source-snapshot"] == 1 and changed["source-hash"] == 1, changed

        unchanged = _counted(ws, log, *deploy)  # a no-op plan: nothing to apply
        assert unchanged["spec-parse"] <= 1 and unchanged["source-hash"] == 0, unchanged

        status = _counted(ws, log, "status", "--env", "staging")
        assert status["source-hash"] == 0, status
