"""The kernel audit witness: records parsed as the kernel writes them, and (as root) rules that are exactly ours.

The parser is pure logic and is tested on records captured from this kernel. The rest is real: as root with
``auditctl``, a process of another user is refused by the kernel and the refusal arrives through the netlink
readlog group; stopping removes exactly our rules and turns auditing off again when we turned it on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from railguard.daemon import kernelaudit
from railguard.daemon.kernelaudit import (
    AUDIT_CWD,
    AUDIT_PATH,
    AUDIT_SOCKADDR,
    AUDIT_SYSCALL,
    KernelAudit,
    Refusal,
    fields,
    refusal,
    sockaddr,
    split,
)

SYSCALL = ('arch=c000003e syscall=257 success=no exit=-13 a0=ffffff9c a1=7ffe3b38393a a2=0 a3=0 items=1 ppid=20724 '
           'pid=20798 auid=4294967295 uid=65534 gid=65534 euid=65534 suid=65534 fsuid=65534 egid=65534 sgid=65534 '
           'fsgid=65534 tty=(none) ses=4294967295 comm="cat" exe="/usr/bin/cat" key="railguard-0123"')
NAMES = {257: "openat", 49: "bind"}
KEY = "railguard-0123"


def test_a_refused_open_names_the_user_syscall_errno_and_path() -> None:
    found = refusal([(AUDIT_SYSCALL, SYSCALL), (AUDIT_CWD, 'cwd="/tmp"'),
                     (AUDIT_PATH, 'item=0 name="/root/.bashrc" nametype=UNKNOWN cap_fp=0')], NAMES, KEY)
    assert found == Refusal(uid=65534, pid=20798, syscall="openat", errno="EACCES", target="/root/.bashrc",
                            comm="cat", exe="/usr/bin/cat", key="railguard-0123")


def test_relative_and_hex_encoded_paths_are_made_whole() -> None:
    # The kernel writes a name with a space (or any odd byte) as unquoted hex, and a relative one as given.
    hexed = b"data prod/x".hex().upper()
    found = refusal([(AUDIT_SYSCALL, SYSCALL), (AUDIT_CWD, 'cwd="/srv/app"'),
                     (AUDIT_PATH, f"item=0 name={hexed} nametype=UNKNOWN")], NAMES, KEY)
    assert found is not None and found.target == "/srv/app/data prod/x"


def test_a_refused_bind_names_the_address() -> None:
    text = SYSCALL.replace("syscall=257", "syscall=49").replace("exit=-13", "exit=-98")
    # struct sockaddr_in for 127.0.0.1:8080: family 2 (host order), port big-endian, address.
    found = refusal([(AUDIT_SYSCALL, text), (AUDIT_SOCKADDR, "saddr=02001F907F0000010000000000000000")], NAMES, KEY)
    assert found is not None and (found.syscall, found.errno, found.target) == ("bind", "EADDRINUSE", "127.0.0.1:8080")
    assert sockaddr("0100" + b"/run/x.sock".hex() + "00") == "/run/x.sock"


def test_records_not_ours_or_not_failures_are_ignored() -> None:
    assert refusal([(AUDIT_SYSCALL, SYSCALL.replace('key="railguard-0123"', 'key="sshd"'))], NAMES, KEY) is None
    assert refusal([(AUDIT_SYSCALL, SYSCALL.replace("success=no", "success=yes"))], NAMES, KEY) is None
    assert refusal([(AUDIT_SYSCALL, SYSCALL.replace('key="railguard-0123"', "key=(null)"))], NAMES, KEY) is None
    assert refusal([(AUDIT_PATH, 'item=0 name="/x"')], NAMES, KEY) is None
    # Another state folder's daemon's key: its refusals are its own, not recorded here.
    assert refusal([(AUDIT_SYSCALL, SYSCALL)], NAMES, "railguard-4567") is None


def test_a_uid_whose_rules_auditctl_refused_is_tried_again_and_the_state_says_so(
        monkeypatch: pytest.MonkeyPatch) -> None:
    audit = KernelAudit("railguard-pure", lambda found: None)
    audit.on = True  # as after start(), without touching this machine's audit rules
    answer = {"code": 1, "stderr": "Error sending add rule data request (Operation not permitted)"}
    calls: list[tuple[str, ...]] = []

    def fake_auditctl(*args: str) -> subprocess.CompletedProcess[str]:
        assert audit._lock.acquire(blocking=False), "auditctl ran with the lock the reader thread needs"
        audit._lock.release()
        calls.append(args)
        return subprocess.CompletedProcess(["auditctl", *args], answer["code"], "", str(answer["stderr"]))

    monkeypatch.setattr(kernelaudit, "_auditctl", fake_auditctl)
    audit.watch(65534, "qa")
    assert calls and audit.watched() == {}
    assert "except for uid(s) 65534" in audit.state and "Operation not permitted" in audit.state
    answer.update(code=0, stderr="")
    tried = len(calls)
    audit.watch(65534, "qa")  # tried again, not taken as covered
    assert len(calls) > tried and audit.watched() == {65534: "qa"}
    assert audit.state == "kernel-refused attempts are recorded (Linux audit rules keyed railguard-pure)"
    assert fields('a=1 b="two words" c=(null)') == {"a": "1", "b": "two words", "c": "(null)"}


def test_netlink_datagrams_are_split_into_typed_records_by_serial() -> None:
    def message(kind: int, text: str) -> bytes:
        body = text.encode()
        length = 16 + len(body)
        return (length.to_bytes(4, sys.byteorder) + kind.to_bytes(2, sys.byteorder) + bytes(10) + body
                + bytes((-length) % 4))

    data = message(AUDIT_SYSCALL, f"audit(1796210760.368:16): {SYSCALL}") + message(1320, "audit(1796210760.368:16): ")
    assert split(data) == [(AUDIT_SYSCALL, 16, SYSCALL), (1320, 16, "")]


# -- real: root, auditctl, a kernel with audit ------------------------------------------------------------------
def _usable() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("auditctl") is None or shutil.which("setpriv") is None:
        return "needs auditctl (Debian auditd) and setpriv"
    if subprocess.run(["auditctl", "-s"], capture_output=True, check=False).returncode != 0:
        return "the kernel refuses audit requests here"
    return None


def _rules() -> str:
    return subprocess.run(["auditctl", "-l"], capture_output=True, text=True, check=True).stdout


def _enabled() -> str:
    status = subprocess.run(["auditctl", "-s"], capture_output=True, text=True, check=True).stdout
    return next(line.split()[1] for line in status.splitlines() if line.startswith("enabled"))


@pytest.fixture
def witness() -> Iterator[tuple[KernelAudit, list[Refusal]]]:
    if (why := _usable()) is not None:
        pytest.skip(why)
    before = _enabled()
    seen: list[Refusal] = []
    lock = threading.Lock()

    def report(found: Refusal) -> None:
        with lock:
            seen.append(found)

    audit = KernelAudit(f"railguard-test{os.getpid()}", report)
    yield audit, seen
    audit.stop()
    assert f"railguard-test{os.getpid()}" not in _rules()
    if before == "0" and _enabled() != "0" and "railguard-" not in _rules():
        pytest.fail("auditing left on after the witness stopped")


def test_a_refusal_of_a_watched_user_arrives_and_stop_leaves_nothing(witness: tuple[KernelAudit,
                                                                                   list[Refusal]]) -> None:
    audit, seen = witness
    assert audit.start(), audit.state
    assert "are recorded" in audit.state and _enabled() == "1"
    nobody = 65534
    audit.watch(nobody, "qa")
    audit.watch(nobody, "qa")  # once is enough: no duplicate rules
    assert _rules().count(audit.key) == len(kernelaudit.RULES)
    secret = Path("/root") / f".railguard-kernelaudit-{os.getpid()}"
    secret.write_text("not for nobody")
    secret.chmod(0o600)
    try:
        done = subprocess.run(["setpriv", f"--reuid={nobody}", f"--regid={nobody}", "--clear-groups", "cat",
                               str(secret)], capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode != 0
        for _ in range(100):  # bounded: the record travels kernel -> netlink -> reader thread
            if any(r.target == str(secret) for r in list(seen)):
                break
            time.sleep(0.05)
    finally:
        secret.unlink()
    found = [r for r in seen if r.target == str(secret)]
    assert found and found[0].uid == nobody and found[0].errno == "EACCES" and found[0].comm == "cat", seen
    assert found[0].env == "qa"  # the environment the uid was watched for
    assert found[0].syscall in ("openat", "open")
    assert all(r.uid == nobody for r in seen)  # only the watched uid is reported


def test_a_crashed_daemons_rules_are_removed_at_start_and_others_are_kept(witness: tuple[KernelAudit,
                                                                                        list[Refusal]]) -> None:
    audit, _ = witness
    stale = ["-a", "always,exit", "-F", "arch=b64", "-S", "openat", "-F", "exit=-EACCES", "-F", "uid=65533"]
    other = f"railguard-other{os.getpid()}"
    subprocess.run(["auditctl", *stale, "-k", audit.key], check=True, capture_output=True)
    subprocess.run(["auditctl", *stale, "-F", "exit=-EPERM", "-k", other], check=True, capture_output=True)
    try:
        assert audit.start(), audit.state
        assert audit.key not in _rules() and other in _rules()  # ours from before went, another's stays
        audit.stop()
        assert other in _rules() and _enabled() == "1"  # another daemon's rule keeps auditing on
    finally:
        subprocess.run(["auditctl", "-D", "-k", other], check=False, capture_output=True)
        if "railguard-" not in _rules() and kernelaudit._mark().exists():
            subprocess.run(["auditctl", "-e", "0"], check=False, capture_output=True)
            kernelaudit._mark().unlink(missing_ok=True)


def test_without_root_the_feature_is_off_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernelaudit.os, "geteuid", lambda: 1000)
    audit = KernelAudit("railguard-nobody", lambda found: None)
    assert audit.start() is False and audit.on is False
    assert audit.state == "kernel-refused attempts are not recorded (the daemon is not root)"
    audit.watch(65534)  # off: nothing happens, nothing fails
    audit.stop()


def test_without_auditctl_the_feature_is_off_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernelaudit.os, "geteuid", lambda: 0)
    monkeypatch.setattr(kernelaudit.shutil, "which", lambda name: None)
    audit = KernelAudit("railguard-none", lambda found: None)
    assert audit.start() is False
    assert "auditctl is not installed" in audit.state
