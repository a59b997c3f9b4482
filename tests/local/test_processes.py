"""Real-process tests of the local runtime's replica processes and supervisor."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from railguard.providers.local.processes import (
    ReplicaRecord,
    ReplicaSpec,
    SpawnError,
    Supervisor,
    allocate_port,
    exit_code,
    is_alive,
    port_in_use,
    rotate_log,
    spawn,
    stop,
    tail,
)

PY = sys.executable
SLEEPER = "import time\nwhile True: time.sleep(0.05)"


def wait_for(cond: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def make_spec(tmp_path: Path, code: str, *, name: str = "staging.web.r1.0", port: int | None = None,
              env: dict[str, str] | None = None, extra: list[str] | None = None) -> ReplicaSpec:
    return ReplicaSpec(name=name, argv=[PY, "-c", code, *(extra or [])], cwd=tmp_path,
                       env=env if env is not None else {}, port=port,
                       log_path=tmp_path / "logs" / f"{name}.log", stop_timeout=2.0)


def gone(pid: int) -> bool:
    """No longer running; an orphan may linger as a zombie if PID 1 does not reap."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def finish(record: ReplicaRecord, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while (code := exit_code(record)) is None:
        assert time.monotonic() < deadline, "timed out waiting for exit"
        time.sleep(0.01)
    return code


def test_environment_is_exactly_the_declared_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAILGUARD_TEST_LEAK", "must-not-leak")
    declared = {"APP_MODE": "staging", "DATABASE_URL": "sqlite:///x.db"}
    spec = make_spec(tmp_path, "import os, json; print(json.dumps(dict(os.environ)))", env=declared)
    record = spawn(spec)
    assert finish(record) == 0
    seen = json.loads(spec.log_path.read_text())
    # Python itself may add LC_CTYPE when coercing a C locale (PEP 538).
    assert {k: v for k, v in seen.items() if k != "LC_CTYPE"} == declared
    assert "HOME" not in seen and "RAILGUARD_TEST_LEAK" not in seen


def test_port_is_substituted_into_argv(tmp_path: Path) -> None:
    port = allocate_port()
    spec = make_spec(tmp_path, "import sys; print(sys.argv[1:])", port=port, extra=["$PORT", "--bind=:$PORT"])
    record = spawn(spec)
    assert finish(record) == 0
    assert spec.log_path.read_text().strip() == str([str(port), f"--bind=:{port}"])
    assert record.argv[-2:] == [str(port), f"--bind=:{port}"] and record.port == port
    with pytest.raises(SpawnError, match=r"\$PORT"):
        spawn(replace(spec, port=None))


def test_replica_has_its_own_session_and_process_group(tmp_path: Path) -> None:
    record = spawn(make_spec(tmp_path, SLEEPER))
    try:
        assert os.getpgid(record.pid) == record.pgid == record.pid != os.getpgrp()
        assert os.getsid(record.pid) == record.pid
        assert is_alive(record)
        assert psutil.Process(record.pid).cwd() == str(tmp_path)
    finally:
        assert stop(record, 2.0) == "exited"
    assert not is_alive(record) and gone(record.pid)
    assert stop(record, 2.0) == "gone"


IGNORES_TERM_WITH_CHILD = f"""
import signal, subprocess, sys, time
# Ignores SIGTERM, but says it got it: the log then shows TERM came first and found it running.
signal.signal(signal.SIGTERM, lambda *_: print("parent ignored TERM", flush=True))
child = subprocess.Popen([{PY!r}, "-c", "import signal, time\\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
                          "print('child ready', flush=True)\\nwhile True: time.sleep(0.05)"])
print("child", child.pid, flush=True)
while True: time.sleep(0.05)
"""


def test_stop_escalates_to_sigkill_for_the_whole_group(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, IGNORES_TERM_WITH_CHILD)
    record = spawn(spec)
    wait_for(lambda: "child ready" in spec.log_path.read_text(), what="child to start")
    child_pid = int(next(x for x in spec.log_path.read_text().splitlines() if x.startswith("child "))
                    .split()[1])
    assert os.getpgid(child_pid) == record.pgid
    assert stop(record, 0.5) == "killed"
    # Order, not time: SIGTERM first, which the parent was still running to note, then SIGKILL.
    assert "parent ignored TERM" in spec.log_path.read_text()
    assert gone(record.pid) and gone(child_pid)
    assert exit_code(record) is None  # already reaped by stop: no zombie left


def test_missing_command_and_cwd_raise_spawn_error(tmp_path: Path) -> None:
    spec = ReplicaSpec(name="staging.web.r1.0", argv=["pythn-not-installed", "app.py"], cwd=tmp_path, env={},
                       port=None, log_path=tmp_path / "web.log")
    with pytest.raises(SpawnError, match="command not found: 'pythn-not-installed'") as err:
        spawn(spec)
    assert "app.py" in str(err.value)
    with pytest.raises(SpawnError, match="working directory does not exist"):
        spawn(replace(spec, argv=[PY, "-c", "pass"], cwd=tmp_path / "nope"))
    script = tmp_path / "not-executable.sh"
    script.write_text("echo hi\n")
    with pytest.raises(SpawnError, match="permission denied"):
        spawn(replace(spec, argv=[str(script)]))


def test_wrong_create_time_is_a_stranger_and_is_never_signalled(tmp_path: Path) -> None:
    record = spawn(make_spec(tmp_path, SLEEPER))
    stranger = replace(record, create_time=record.create_time - 100)
    assert not is_alive(stranger)
    assert stop(stranger, 0.1) == "gone"
    assert is_alive(record)
    assert ReplicaRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    assert stop(record, 2.0) == "exited"


def test_exit_code_reaps_the_child(tmp_path: Path) -> None:
    record = spawn(make_spec(tmp_path, "import sys; sys.exit(7)"))
    assert finish(record) == 7
    assert not psutil.pid_exists(record.pid) or psutil.Process(record.pid).create_time() != record.create_time
    assert not is_alive(record)
    assert exit_code(replace(record, pid=1)) is None  # not our child


def test_liveness_of_an_ended_child_reaps_nothing(tmp_path: Path) -> None:
    """A child that ended is not alive before anyone reaps it (a zombie), and asking leaves its exit status for
    the supervisor; a stale record of a live pid (another start time) is never alive."""
    record = spawn(make_spec(tmp_path, "import sys; sys.exit(5)"))
    deadline = time.monotonic() + 10
    while psutil.Process(record.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the child did not end"
        time.sleep(0.01)
    assert not is_alive(record) and not is_alive(record)
    assert finish(record) == 5  # still there to collect
    sleeper = spawn(make_spec(tmp_path, SLEEPER, name="staging.web.r1.1"))
    try:
        assert is_alive(sleeper)
        assert not is_alive(replace(sleeper, create_time=sleeper.create_time - 100))
    finally:
        os.kill(sleeper.pid, 9)
        finish(sleeper)
    assert not is_alive(sleeper)


def crash_detected(sup: Supervisor, name: str, offset: float = 0.0) -> tuple[float, float]:
    """Tick until the crash is seen; returns (the `now` it was seen at, the restart delay)."""
    seen: list[float] = []

    def probe() -> bool:
        now = time.monotonic() + offset
        sup.tick(now)
        seen.append(now)
        return sup.restart_at(name) is not None

    wait_for(probe, what="crash to be detected")
    restart_at = sup.restart_at(name)
    assert restart_at is not None
    return seen[-1], restart_at - seen[-1]


def test_supervisor_restarts_with_growing_backoff(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "import sys; print('up'); sys.exit(3)")
    sup = Supervisor(backoff_initial=0.5, backoff_max=1.5)
    hooked: list[tuple[str, ReplicaRecord]] = []
    sup.on_restart = lambda name, rec: hooked.append((name, rec))
    first = sup.add(spec)
    delays = []
    for n in range(1, 4):
        now, delay = crash_detected(sup, spec.name)
        delays.append(delay)
        assert sup.tick(now + delay - 0.01) == []
        assert sup.tick(now + delay) == [spec.name]
        assert sup.restarts(spec.name) == n
    assert delays == pytest.approx([0.5, 1.0, 1.5])  # doubled, then capped
    assert [n for n, _ in hooked] == [spec.name] * 3
    assert hooked[-1][1] == sup.records()[spec.name] and hooked[0][1].pid != first.pid
    # Up for more than 10 s before crashing: the streak is forgotten.
    _, delay = crash_detected(sup, spec.name, offset=now + delay + 11 - time.monotonic())
    assert delay == pytest.approx(0.5)
    sup.remove(spec.name)
    assert spec.log_path.read_text().count("up") >= 3


def test_supervisor_keeps_a_replica_down_when_it_may_not_start_again(tmp_path: Path) -> None:
    """The provider refuses a restart from a tampered artifact through ``before_start``."""
    spec = make_spec(tmp_path, "import sys; sys.exit(3)")
    sup = Supervisor(backoff_initial=0.5, backoff_max=1.5)
    asked: list[str] = []
    sup.before_start = lambda s: asked.append(s.name) or "its artifact changed after it was built"
    first = sup.add(spec)
    now, delay = crash_detected(sup, spec.name)
    assert sup.tick(now + delay) == []
    assert asked == [spec.name] and sup.restarts(spec.name) == 0
    assert sup.records()[spec.name].pid == first.pid  # nothing new was spawned
    sup.before_start = None
    assert sup.tick(now + 10) == [spec.name]  # allowed again: it restarts
    sup.remove(spec.name)


def test_supervisor_adopts_a_live_record_and_remove_stops_it(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, SLEEPER)
    record = spawn(spec)
    sup = Supervisor()
    assert sup.add(spec, record) == record  # adopted, not restarted
    with pytest.raises(ValueError):
        sup.add(spec)
    assert sup.tick() == [] and sup.restarts(spec.name) == 0
    sup.remove(spec.name, timeout=2.0)
    assert not is_alive(record) and sup.records() == {}
    dead = replace(record, create_time=record.create_time - 100)
    fresh = sup.add(spec, dead)  # a record that is no longer live is started afresh
    assert fresh.pid != record.pid and is_alive(fresh)
    sup.remove(spec.name)


def test_supervisor_thread_restarts_and_shutdown_leaves_replicas_running(tmp_path: Path) -> None:
    crasher = make_spec(tmp_path, "import sys; sys.exit(1)", name="staging.api.r1.0")
    steady = make_spec(tmp_path, SLEEPER, name="staging.web.r1.0")
    sup = Supervisor(backoff_initial=0.02, backoff_max=0.05)
    sup.add(crasher)
    steady_record = sup.add(steady)
    sup.run_in_thread(interval=0.01)
    try:
        wait_for(lambda: sup.restarts(crasher.name) >= 2, what="restarts from the thread")
    finally:
        sup.shutdown_thread()
    assert is_alive(steady_record)
    sup.remove(crasher.name)
    sup.remove(steady.name)


WRITER = "import time\nfor i in range(100000):\n    print('line', i, flush=True)\n    time.sleep(0.002)"


def test_rotate_log_keeps_numbered_copies(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    assert not rotate_log(path, 10, 2)  # missing file: nothing to do
    for content in ("first " * 20, "second " * 20, "third " * 20):
        path.write_text(content)
        assert not rotate_log(path, 10_000, 2)
        assert rotate_log(path, 50, 2)
        assert path.stat().st_size == 0
    assert path.with_name("app.log.1").read_text().startswith("third")
    assert path.with_name("app.log.2").read_text().startswith("second")
    assert not path.with_name("app.log.3").exists()


def test_copy_truncate_while_a_replica_writes(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, WRITER)
    sup = Supervisor(log_max_bytes=500, log_keep=1)
    sup.add(spec)
    try:
        wait_for(lambda: spec.log_path.stat().st_size > 500, what="log to grow")
        sup.tick()
        rotated = spec.log_path.with_name(spec.log_path.name + ".1")
        assert rotated.read_text().startswith("line 0\n")
        wait_for(lambda: spec.log_path.stat().st_size > 0, what="new writes")
        # O_APPEND: the writer continues at the new end rather than leaving a hole of NULs.
        assert spec.log_path.read_bytes().startswith(b"line ")
    finally:
        sup.remove(spec.name)


def test_tail_reads_a_bounded_end_and_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.with_name("app.log.1").write_text("".join(f"old {i}\n" for i in range(10)))
    path.write_text("new 0\nnew 1\nnew 2\n")
    assert tail(path, 5) == ["old 8", "old 9", "new 0", "new 1", "new 2"]
    assert tail(path, 2) == ["new 1", "new 2"]
    path.with_name("app.log.1").unlink()
    path.write_text("".join(f"line {i:04d}\n" for i in range(1000)))
    bounded = tail(path, 100, max_bytes=100)
    assert bounded[-1] == "line 0999" and len(bounded) < 100
    assert all(x.startswith("line ") for x in bounded)  # no half line at the start
    assert tail(tmp_path / "missing.log", 10) == []


def test_allocate_port_and_port_in_use() -> None:
    ports = {allocate_port() for _ in range(20)}
    assert len(ports) == 20
    port = ports.pop()
    assert not port_in_use(port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert port_in_use(port)



def test_a_replica_killed_from_outside_is_named_with_its_signal_and_its_restarts_decay(tmp_path: Path) -> None:
    import signal as signals

    from railguard.providers.local.processes import RECENT_S

    spec = make_spec(tmp_path, SLEEPER)
    sup = Supervisor(backoff_initial=0.01, backoff_max=0.05)
    first = sup.add(spec)
    os.kill(first.pid, signals.SIGKILL)
    now, delay = crash_detected(sup, spec.name)
    assert sup.last_exit(spec.name) == "killed by SIGKILL (not by Railguard)"
    assert sup.tick(now + delay) == [spec.name]
    assert sup.restarts(spec.name) == 1 and sup.recent_restarts(spec.name, now + delay) == 1
    # The total stays; the count a status leads with decays once the window has passed.
    assert sup.recent_restarts(spec.name, now + delay + RECENT_S + 1) == 0 and sup.restarts(spec.name) == 1
    sup.remove(spec.name)


def test_an_exit_status_is_named() -> None:
    from railguard.providers.local.processes import describe_exit

    assert describe_exit(3) == "exited with status 3 (not by Railguard)"
    assert describe_exit(-15) == "killed by SIGTERM (not by Railguard)"


def test_views_share_one_liveness_read_but_never_trust_a_stranger_or_a_stop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from railguard.providers.local import processes
    reads: list[int] = []
    real = processes.is_alive
    monkeypatch.setattr(processes, "is_alive", lambda r: reads.append(r.pid) or real(r))
    spec = make_spec(tmp_path, SLEEPER)
    sup = Supervisor()
    record = sup.add(spec)
    sup.run_in_thread(interval=60)  # one tick now, no second one during the test
    try:
        wait_for(lambda: (record.pid, record.create_time) in sup._seen, what="the first tick's observation")
        reads.clear()
        assert sup.alive(record) and sup.alive(record) and sup.alive(record)
        assert reads == []  # the tick's fresh observation serves every view
        stranger = replace(record, create_time=record.create_time - 100)
        assert not sup.alive(stranger) and not sup.alive(stranger)  # same pid, other start time: not ours
        assert len(reads) == 1  # read once, then shared
        stop(record, 2.0)  # Railguard's own stop: the earlier read is no longer trusted
        assert not sup.alive(record)
    finally:
        sup.shutdown_thread()
        sup.remove(spec.name, timeout=1.0)


def test_a_pass_reads_only_processes_whose_pidfd_says_they_ended_and_still_restarts_a_killed_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The supervisor's pass skips replicas that still run (one poll over their pidfds), yet a replica killed
    from outside is seen, named and restarted as before, and the restarted process is watched in turn."""
    import signal as signals

    from railguard.providers.local import processes

    if not hasattr(os, "pidfd_open"):
        pytest.skip("no pidfd on this system: every pass reads every replica")
    reads: list[int] = []
    real_alive, real_exit = processes.is_alive, processes.exit_code
    monkeypatch.setattr(processes, "is_alive", lambda r: reads.append(r.pid) or real_alive(r))
    monkeypatch.setattr(processes, "exit_code", lambda r: reads.append(r.pid) or real_exit(r))
    specs = [make_spec(tmp_path, SLEEPER, name=f"staging.w{i}.r1.0") for i in range(5)]
    sup = Supervisor(backoff_initial=0.01, backoff_max=0.05)
    records = [sup.add(spec) for spec in specs]
    try:
        assert sup.tick() == []  # opens a pidfd per process (one liveness check each, against its start time)
        reads.clear()
        for _ in range(3):
            assert sup.tick() == []
        assert reads == []  # nothing moved: no process was read
        assert all(sup.alive(r) for r in records)  # and views are told they run, from the pass
        victim = records[2]
        os.kill(victim.pid, signals.SIGKILL)
        now, delay = crash_detected(sup, specs[2].name)
        assert set(reads) == {victim.pid}  # only the one that ended was read
        assert sup.last_exit(specs[2].name) == "killed by SIGKILL (not by Railguard)"
        assert sup.tick(now + delay) == [specs[2].name]
        fresh = sup.records()[specs[2].name]
        assert fresh.pid != victim.pid and real_alive(fresh) and sup.restarts(specs[2].name) == 1
        sup.tick()  # the new process gets its pidfd
        reads.clear()
        assert sup.tick() == [] and reads == []
        os.kill(fresh.pid, signals.SIGKILL)  # the restarted process is watched too
        crash_detected(sup, specs[2].name)
        assert sup.restarts(specs[2].name) == 1 and sup.restart_at(specs[2].name) is not None
    finally:
        for spec in specs:
            sup.remove(spec.name, timeout=2.0)
    sup.tick()
    assert sup._exits._fds == {}  # removed replicas' descriptors are closed


def test_an_adopted_process_that_is_not_a_child_is_watched_too(tmp_path: Path) -> None:
    """A daemon restarted adopts replicas it did not start: their pidfds turn readable when they end as well."""
    import subprocess

    from railguard.providers.local.processes import ExitWatch

    watch = ExitWatch(cap=10)
    # A grandchild (its parent exits at once): not ours to wait for, like a replica a previous daemon started.
    out = subprocess.run([sys.executable, "-c", "import subprocess as s; print(s.Popen(['sleep', '60'], "
                          "start_new_session=True, stdout=s.DEVNULL, stderr=s.DEVNULL).pid)"],
                         capture_output=True, text=True, check=True)
    pid = int(out.stdout)
    record = ReplicaRecord(name="staging.web.r1.0", pid=pid, create_time=psutil.Process(pid).create_time(),
                           pgid=pid, port=None, argv=[], log_path="", started_at=time.time())
    try:
        key = (record.pid, record.create_time)
        assert watch.running([record]) == {key}
        stranger = replace(record, create_time=record.create_time - 100)
        assert watch.running([stranger]) == set()  # same pid, another start time: no pidfd, read as before
        os.kill(pid, 9)
        wait_for(lambda: watch.running([record]) == set(), what="the adopted process's pidfd to turn readable")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
        watch.close()


def test_an_exit_is_handled_when_it_happens_not_at_the_next_interval(tmp_path: Path) -> None:
    """The supervisor's pass runs every ``interval``; a replica's exit wakes it at once (a pidfd per process), so
    its port leaves the edge's routes before another process can bind it and be sent requests. With an interval
    of two minutes, only the wake-up can call on_exit within the test's deadline."""
    spec = make_spec(tmp_path, SLEEPER, name="production.web.r1.0", port=allocate_port())
    sup = Supervisor(backoff_initial=0.02)
    exits: list[tuple[str, int | None]] = []
    sup.on_exit = lambda name, old: exits.append((name, old.port)) or None
    record = sup.add(spec)
    sup.run_in_thread(interval=120)
    try:
        wait_for(lambda: (record.pid, record.create_time) in sup._seen, what="the first pass")
        os.kill(record.pid, signal.SIGKILL)
        wait_for(lambda: exits, timeout=20, what="on_exit, woken by the exit")
    finally:
        sup.shutdown_thread()
    assert exits == [(spec.name, spec.port)]
    sup.remove(spec.name)
