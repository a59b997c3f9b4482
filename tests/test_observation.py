"""Observation's pure parts and its store: request metrics, verdicts, incident dedup and lifecycle, alerts.

Metrics and verdicts are pure logic over numbers; incidents use a real store on disk; alert deliveries go
to a real local HTTP server and a real command. The end-to-end flows (real Caddy) are in
tests/e2e/test_observe.py and tests/mcp/test_observe_agent.py.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from railguard.daemon.alerts import Deliverer
from railguard.daemon.metrics import KEEP_S, Counts, RequestMetrics
from railguard.daemon.verification import Watch, judge
from railguard.model.api import Evidence, IncidentKind, IncidentState
from railguard.model.diagnostics import RailguardError
from railguard.model.spec import Alerts, Thresholds
from railguard.model.specfile import parse_spec
from railguard.providers.local.accesslog import AccessReader
from railguard.sources import asuser
from railguard.state import incidents
from railguard.state.store import Store

from .e2e.harness import free_port, wait_for


def _counts(ok: int, errors: int, ms: float = 1.0) -> Counts:
    found = Counts()
    for _ in range(ok):
        found.add(200, ms)
    for _ in range(errors):
        found.add(503, ms)
    return found


def test_percentiles_are_within_ten_percent_and_windows_slide() -> None:
    metrics, now = RequestMetrics(), 1_000_000.0
    latencies = [float(i) for i in range(1, 101)]  # 1..100 ms
    metrics.record("s", "web", 1, [now - 100] * 100, [200] * 100, latencies)  # before the last minute
    metrics.record("s", "web", 1, [now] * 10, [500] * 10, [50.0] * 10)
    windows = {w.window: w for w in metrics.releases("s", now=now)[0].windows}
    assert windows["1m"].requests == 10 and windows["1m"].status_5xx == 10 and windows["1m"].error_ratio == 1.0
    assert windows["5m"].requests == 110 and windows["since_switch"].requests == 110
    whole = windows["since_switch"]
    assert whole.p99_ms is not None and whole.p50_ms is not None
    assert 99 * 0.9 <= whole.p99_ms <= 100 * 1.1 and 45 <= whole.p50_ms <= 55 * 1.1
    assert metrics.releases("other", now=now) == []


def test_old_series_go_but_the_newest_two_releases_stay() -> None:
    metrics, now = RequestMetrics(), 1_000_000.0
    for release in (1, 2, 3):
        metrics.record("s", "web", release, [now - KEEP_S - 10], [200], [1.0])
    assert metrics.prune(now) == 1
    assert [r.release for r in metrics.releases("s", now=now)] == [3, 2]


def _watch(**thresholds: float) -> Watch:
    return Watch(env="s", service="web", release=2, previous=1, started=100.0, verify_s=60.0,
                 thresholds=Thresholds(**thresholds), on_regression="rollback")  # type: ignore[arg-type]


def test_a_verdict_fails_on_5xx_only_above_the_threshold_and_the_previous_release() -> None:
    assert judge(_watch(), 110, _counts(5, 15), _counts(100, 0), 0, {}).check == "error_ratio"  # type: ignore[union-attr]
    # The previous release failed as often: not a regression of this one.
    assert judge(_watch(), 110, _counts(5, 15), _counts(25, 75), 0, {}) is None
    assert judge(_watch(), 110, _counts(3, 2), _counts(100, 0), 0, {}) is None  # fewer than min_requests
    failed = judge(_watch(), 110, _counts(5, 15), _counts(100, 0), 0, {})
    assert failed is not None and not failed.passed and failed.evidence[0].metrics[0].status_5xx == 15


def test_a_verdict_fails_on_crash_loops_flapping_and_latency_and_passes_after_the_window() -> None:
    assert judge(_watch(), 105, Counts(), Counts(), 2, {}).check == "crash_loop"  # type: ignore[union-attr]
    watch = _watch(flaps=2)
    for state in ("healthy", "failing", "healthy", "unhealthy"):
        verdict = judge(watch, 105, Counts(), Counts(), 0, {"r0": state})
    assert verdict is not None and verdict.check == "flapping"
    slow = judge(_watch(), 110, _counts(30, 0, ms=40.0), _counts(30, 0, ms=5.0), 0, {})
    assert slow is not None and slow.check == "latency"
    assert judge(_watch(), 110, _counts(30, 0, ms=40.0), _counts(30, 0, ms=35.0), 0, {}) is None
    passed = judge(_watch(), 161, _counts(30, 0), _counts(30, 0), 0, {})
    assert passed is not None and passed.passed


SPEC = """
[app]
name = "x"
[environments.staging]
edge_port = 8080
rollback_window = "30s"
[services.web]
run = ["python", "app.py"]
{extra}
"""


@pytest.mark.parametrize(("extra", "code"), [
    ('verify = "2m"', "spec.verify_window"),
    ("[services.web.thresholds]\nerror_ratio = -0.1", "spec.invalid_value"),
    ("[services.web.thresholds]\np99_factor = 0.5", "spec.invalid_value"),
    ('on_regression = "pray"', "spec.invalid_value"),
])
def test_thresholds_that_make_no_sense_are_refused(tmp_path: Path, extra: str, code: str) -> None:
    spec, found = parse_spec(SPEC.format(extra=extra), str(tmp_path / "railguard.toml"))
    assert code in [d.code for d in found if d.is_error], found


def test_the_default_window_is_capped_and_alert_mode_may_outlast_the_rollback_window(tmp_path: Path) -> None:
    for extra in ("", 'verify = "2m"\non_regression = "alert"'):
        _, found = parse_spec(SPEC.format(extra=extra), str(tmp_path / "railguard.toml"))
        assert not [d for d in found if d.is_error], found


def test_incidents_dedup_move_through_their_lifecycle_and_are_redacted(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.add_redactor(lambda text: text.replace("hunter2", "(sensitive)"))
    first, new = incidents.open_or_add(store, IncidentKind.crash_loop, "s", "web crashes (hunter2)", service="web",
                                       release=2, evidence=[Evidence(kind="log", summary="tail", lines=["hunter2"])])
    again, new_again = incidents.open_or_add(store, IncidentKind.crash_loop, "s", "again", service="web", release=2)
    assert new and not new_again and again.id == first.id and len(again.timeline) == 2
    stored = incidents.get(store, first.id)
    assert stored is not None and "hunter2" not in stored.model_dump_json()
    moved = incidents.note(store, first.id, "mitigated", "rolled back", state=IncidentState.mitigated)
    assert moved.state is IncidentState.mitigated
    assert incidents.note(store, first.id, "resolved", "fixed", state=IncidentState.resolved).resolved_at
    with pytest.raises(RailguardError) as exc:
        incidents.note(store, first.id, "reopened", "no", state=IncidentState.open)
    assert exc.value.diagnostics[0].code == "state.illegal_transition"
    third, new_third = incidents.open_or_add(store, IncidentKind.crash_loop, "s", "back", service="web", release=2)
    assert new_third and third.id != first.id  # a resolved incident is history: the same trouble opens a new one
    assert [i.id for i in incidents.listed(store, "s", include_resolved=False)] == [third.id]


def test_known_bad_marks_are_lifted_by_an_acknowledgement(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    incidents.mark_bad(store, "s", "web", "fp1", 2, "inc-1")
    assert incidents.known_bad(store, "s") == {("web", "fp1"): (2, "inc-1")}
    assert incidents.acknowledge_bad(store, "s", "inc-1", "user:me") == 1
    assert incidents.known_bad(store, "s") == {}


class _Hook(BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:
        type(self).bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(503)  # always failing: the delivery must give up and say so
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def failing_hook() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_failed_deliveries_are_retried_then_recorded_and_a_command_gets_the_json(tmp_path: Path,
                                                                                failing_hook: int) -> None:
    _Hook.bodies = []
    store = Store.open(tmp_path)
    # The command writes into tmp_path: it runs as tmp_path's owner (this test's user; root's folder, root's words).
    deliverer = Deliverer(tmp_path, lambda: store, backoff_s=0.01, command_user=lambda: asuser.owner_of(tmp_path))
    deliverer.start()
    found, _ = incidents.open_or_add(store, IncidentKind.crash_loop, "s", "boom", service="web", release=1)
    out = tmp_path / "got.json"
    command = [sys.executable, "-c", f"import sys; open({str(out)!r}, 'wb').write(sys.stdin.buffer.read())"]
    started = time.monotonic()
    deliverer.send(found, "opened", Alerts(webhook=f"http://127.0.0.1:{failing_hook}/h", command=command))
    deliverer.send(found, "opened", Alerts(webhook=f"http://127.0.0.1:{failing_hook}/h"))  # a duplicate
    assert time.monotonic() - started < 1.0  # sending never waits for the hook
    wait_for(lambda: deliverer.idle() and len((incidents.get(store, found.id) or found).deliveries) == 2,
             what="both deliveries recorded")
    deliveries = {d.channel: d for d in (incidents.get(store, found.id) or found).deliveries}
    assert not deliveries["webhook"].ok and deliveries["webhook"].attempts == 4 and "503" in (
        deliveries["webhook"].error or "")
    assert deliveries["command"].ok and json.loads(out.read_text())["incident"]["id"] == found.id
    assert len(_Hook.bodies) == 4  # four attempts, and the duplicate was not sent again
    unresolvable = Alerts(webhook="http://railguard-test.invalid/h")
    deliverer.send(found, "mitigated", unresolvable)
    wait_for(lambda: deliverer.idle() and any(d.transition == "mitigated" and not d.ok for d in
                                              (incidents.get(store, found.id) or found).deliveries),
             what="the unresolvable webhook recorded as failed")
    deliverer.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root daemon has an authority to drop")
def test_a_root_daemon_runs_the_alert_command_as_the_spec_folders_owner_never_as_root(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    # The spec is an agent's text: its [alerts] command ran as root, whoever wrote it.
    store = Store.open(tmp_path / "state")
    app = tmp_path / "app"
    app.mkdir(mode=0o755)
    os.chown(app, 65534, 65534)
    out = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own folders are root's alone: nobody writes its answer here
    out.chmod(0o777)
    request.addfinalizer(lambda: shutil.rmtree(out, ignore_errors=True))
    deliverer = Deliverer(tmp_path, lambda: store, backoff_s=0.01, command_user=lambda: asuser.owner_of(app))
    deliverer.start()
    found, _ = incidents.open_or_add(store, IncidentKind.crash_loop, "s", "boom", service="web", release=1)
    report = ("import os, json, sys; sys.stdin.read(); s = open('/proc/self/status').read().splitlines(); "
              f"open({str(out / 'who.json')!r}, 'w').write(json.dumps([os.getuid(), os.geteuid(), "
              "[l.split()[1] for l in s if l.startswith('NoNewPrivs:')]]))")
    deliverer.send(found, "opened", Alerts(command=[sys.executable, "-c", report]))
    wait_for(lambda: deliverer.idle() and (incidents.get(store, found.id) or found).deliveries, what="the delivery")
    assert (incidents.get(store, found.id) or found).deliveries[0].ok
    assert json.loads((out / "who.json").read_text()) == [65534, 65534, ["1"]]
    deliverer.stop()
    app.chmod(0o775)  # a folder others may write: any of them could have written the command
    assert asuser.owner_of(app) == asuser.nobody()


def test_the_access_reader_reads_appended_lines_and_follows_a_roll(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    reader = AccessReader(path)
    assert reader.read() == []  # no file yet: it will be read from its start
    line = '{"ts": 1.5, "status": 502, "duration": 0.002, "upstream": "127.0.0.1:9"}\n'
    path.write_text(line + '{"ts": 2, "sta')  # the second line is still being written
    first = reader.read()
    assert [(x.status, x.upstream, x.duration_ms) for x in first] == [(502, "127.0.0.1:9", 2.0)]
    with path.open("a") as f:
        f.write('tus": 200, "duration": 0}\n')
    assert [x.status for x in reader.read()] == [200]
    path.unlink()
    path.write_text(line)  # rolled: a new file from its start
    assert [x.status for x in reader.read()] == [502]


def test_the_first_look_counts_what_came_after_the_daemon_began_and_nothing_before(tmp_path: Path) -> None:
    """The edge may log requests before the daemon's first look (right after a deploy's switch): those count;
    lines from before the daemon (another daemon's, already in the store) do not; a long log is read from its
    tail, the cut line dropped."""
    from railguard.providers.local import accesslog

    path = tmp_path / "access.log"

    def line(ts: float, status: int) -> str:
        return f'{{"ts": {ts}, "status": {status}, "duration": 0.001, "upstream": "127.0.0.1:9"}}\n'

    path.write_text(line(99.0, 500) + line(100.0, 200) + line(101.0, 201))
    assert [x.status for x in AccessReader(path, since=100.0).read()] == [200, 201]
    old = accesslog.FIRST_LOOK
    try:
        accesslog.FIRST_LOOK = len(line(101.0, 201)) + 10  # the tail cuts the second line
        assert [x.status for x in AccessReader(path, since=0.0).read()] == [201]
    finally:
        accesslog.FIRST_LOOK = old


def test_failed_applies_and_lasting_unhealthiness_open_incidents_that_resolve(tmp_path: Path) -> None:
    from railguard.daemon.service import Daemon
    from railguard.model.api import OperationStatus, ReplicaHealth
    from railguard.providers.base import ReplicaUnit, ServiceUnit
    from railguard.providers.fake import FakeProvider

    daemon = Daemon(tmp_path, provider=FakeProvider())  # not booted: its loops do not run
    store, watchers = daemon.store(), daemon.observer.watchers
    watchers.operations()  # primes: what finished before this daemon is not news
    op = store.create_operation("s", "apply", None, "user:me", status=OperationStatus.queued)
    store.finish_operation(op, OperationStatus.failed, {"diagnostics": []})
    watchers.operations()
    failed = incidents.listed(store, "s")
    assert [(i.kind, i.state) for i in failed] == [(IncidentKind.rollout_failed, IncidentState.open)]
    assert failed[0].next_actions[0].args["operation_id"] == op
    ok = store.create_operation("s", "apply", None, "user:me", status=OperationStatus.queued)
    store.finish_operation(ok, OperationStatus.succeeded)
    watchers.operations()
    assert incidents.listed(store, "s")[0].state is IncidentState.resolved

    def unit(health: ReplicaHealth) -> ServiceUnit:
        return ServiceUnit(name="web", address="s/service.web", release=3, replicas=[ReplicaUnit(
            name="s.web.r3.0", pid=None, port=None, health=health, restarts=0, uptime_s=0.0,
            last_exit="exited with status 1 (not by Railguard)")])

    watchers.health("s", unit(ReplicaHealth.unhealthy), False, 100.0)
    watchers.health("s", unit(ReplicaHealth.unhealthy), False, 102.0)
    assert len(incidents.listed(store, "s")) == 1  # not yet: within the grace period
    watchers.health("s", unit(ReplicaHealth.unhealthy), False, 106.0)
    regression = incidents.listed(store, "s")[0]
    assert regression.kind is IncidentKind.health_regression and regression.release == 3
    assert "exited with status 1" in regression.evidence[0].summary
    watchers.health("s", unit(ReplicaHealth.healthy), False, 107.0)
    assert incidents.get(store, regression.id).state is IncidentState.resolved  # type: ignore[union-attr]
