"""The private short folder of sockets, and the client's check of who serves the daemon's socket.

A state folder too deep for its socket puts the daemon's socket (and the edge's) in a short per-user folder
(:mod:`railguard.model.privatedir`). A local user that makes that folder first (``/tmp/railguard-0``), or puts a
symlink there, must not get the socket; and a socket served by a process of another OS user must not receive a
client's request (its token). Real folders, real users (``nobody``), real processes and sockets: these tests
run as root, as the reviewer's reproduction did.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from railguard.client import Client
from railguard.engine.workspace import Workspace, daemon_socket
from railguard.model.diagnostics import RailguardError
from railguard.model.privatedir import TEST_BASE_ENV, ensure, private_dir
from tests.e2e.test_adversarial import reachable_python

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"  # nobody cannot reach the test's own interpreter (under /root)
CODE = "daemon.unsafe_socket_folder"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: folders and processes of another user")

SPEC = """
[app]
name = "sockdir"

[environments.staging]
edge_port = {port}

[services.web]
run = ["python", "app.py"]
[[services.web.routes]]
path = "/"
"""


@pytest.fixture
def shared() -> Iterator[Path]:
    """A stand-in for /tmp: world-writable and sticky, reachable by nobody."""
    folder = Path(tempfile.mkdtemp(prefix="rgsock-", dir="/tmp"))
    folder.chmod(0o1777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def as_nobody(*argv: str) -> None:
    subprocess.run(list(argv), user=NOBODY, group=NOBODY, extra_groups=[], check=True, timeout=30)


def refused(exc: pytest.ExceptionInfo[RailguardError]) -> str:
    assert [d.code for d in exc.value.diagnostics] == [CODE]
    return exc.value.diagnostics[0].detail + " " + exc.value.diagnostics[0].remediation


# -- the folder ------------------------------------------------------------------------------------------------


def test_a_new_folder_is_made_private_and_a_loose_one_of_ours_is_tightened(shared: Path) -> None:
    made = ensure(shared / "railguard-0", 0, create=True, run_base=None)
    found = made.lstat()
    assert stat.S_ISDIR(found.st_mode) and found.st_uid == 0 and stat.S_IMODE(found.st_mode) == 0o700
    made.chmod(0o777)
    ensure(made, 0, create=True, run_base=None)
    assert stat.S_IMODE(made.lstat().st_mode) == 0o700


def test_a_folder_made_first_by_another_user_is_refused_and_left_alone(shared: Path) -> None:
    target = shared / "railguard-0"
    as_nobody("mkdir", "-m", "0777", str(target))
    for create in (True, False):  # the daemon refuses to use it, the client to trust it
        with pytest.raises(RailguardError) as exc:
            ensure(target, 0, create=create, run_base=None)
        text = refused(exc)
        assert f"uid {NOBODY}" in text and f"rm -rf {target}" in text
    found = target.lstat()
    assert found.st_uid == NOBODY and stat.S_IMODE(found.st_mode) == 0o777  # not taken over, not chmod-ed


@pytest.mark.parametrize("kind", ["symlink to ours", "symlink to theirs", "file"])
def test_a_symlink_or_a_file_in_its_place_is_refused(shared: Path, kind: str) -> None:
    target = shared / "railguard-0"
    if kind == "symlink to ours":  # even pointing at a good folder of ours: a symlink there is someone's trick
        real = ensure(shared / "real", 0, create=True, run_base=None)
        target.symlink_to(real)
    elif kind == "symlink to theirs":
        as_nobody("mkdir", str(shared / "theirs"))
        as_nobody("ln", "-s", str(shared / "theirs"), str(target))
    else:
        as_nobody("touch", str(target))
    before = os.lstat(target)
    with pytest.raises(RailguardError) as exc:
        ensure(target, 0, create=True, run_base=None)
    assert "symbolic link or not a folder" in refused(exc)
    after = os.lstat(target)
    assert (after.st_uid, after.st_mode) == (before.st_uid, before.st_mode)
    if kind == "symlink to theirs":
        assert (shared / "theirs").lstat().st_uid == NOBODY  # never chown-ed through the link


def test_root_hands_a_folder_to_the_user_that_listens_there(shared: Path) -> None:
    """The edge's folder: made by root, given to the edge's user through the open folder."""
    made = ensure(shared / f"railguard-{NOBODY}", NOBODY, NOBODY, create=True, run_base=None)
    found = made.lstat()
    assert (found.st_uid, found.st_gid, stat.S_IMODE(found.st_mode)) == (NOBODY, NOBODY, 0o700)
    ensure(made, NOBODY, NOBODY, create=True, run_base=None)  # already theirs: accepted as it is
    # A folder of a third user where the edge's should be is not handed over.
    os.chown(made, 1, 1)
    with pytest.raises(RailguardError):
        ensure(made, NOBODY, NOBODY, create=True, run_base=None)
    assert made.lstat().st_uid == 1


def test_a_client_makes_nothing(shared: Path) -> None:
    target = shared / "railguard-0"
    assert ensure(target, 0, create=False, run_base=None) == target
    assert not target.exists()
    run = shared / "run"
    assert ensure(run / "0", 0, create=False, run_base=run) == run / "0"
    assert not run.exists()


def test_a_parent_where_others_can_rename_our_folder_is_refused(shared: Path) -> None:
    loose = shared / "loose"
    loose.mkdir()
    loose.chmod(0o777)  # world-writable without the sticky bit: anyone may rename what is in it
    with pytest.raises(RailguardError) as exc:
        ensure(loose / "railguard-0", 0, create=True, run_base=None)
    assert "sticky" in refused(exc)
    assert not (loose / "railguard-0").exists()


def test_roots_own_base_is_made_traversable_and_per_user_folders_private(shared: Path) -> None:
    run = shared / "run"
    old = os.umask(0o077)  # the daemon's umask: the base must still be 0755 (the edge's user traverses it)
    try:
        ensure(run / "0", 0, create=True, run_base=run)
        ensure(run / str(NOBODY), NOBODY, NOBODY, create=True, run_base=run)
    finally:
        os.umask(old)
    assert (run.lstat().st_uid, stat.S_IMODE(run.lstat().st_mode)) == (0, 0o755)
    assert (run / "0").lstat().st_uid == 0 and stat.S_IMODE((run / "0").lstat().st_mode) == 0o700
    assert (run / str(NOBODY)).lstat().st_uid == NOBODY
    # A base that another user could write in is not root's alone: refused, not fixed, for a client.
    run.chmod(0o777)
    with pytest.raises(RailguardError):
        ensure(run / "0", 0, create=False, run_base=run)


def test_root_uses_run_by_default_and_the_test_base_only_when_asked(shared: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TEST_BASE_ENV, raising=False)
    default = private_dir(create=False)
    assert default == Path("/run/railguard/0")  # not /tmp: no other user can make anything there
    monkeypatch.setenv(TEST_BASE_ENV, str(shared))
    assert private_dir(create=False) == shared / "railguard-0"


# -- the daemon, started for real ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def deep(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A spec and a state folder whose socket path would be too long (so it goes in the short folder)."""
    (tmp_path / "app.py").write_text("print('hi')\n")
    spec = tmp_path / "railguard.toml"
    spec.write_text(SPEC.format(port=_free_port()))
    home = tmp_path / ("d" * 60) / ("e" * 60) / ".railguard"
    assert len(str(home / "daemon.sock")) >= 100
    yield spec, home
    _rg(spec, home, "daemon", "stop", "--everything", env={})


def _rg(spec: Path, home: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "RAILGUARD_HOME": str(home), "NO_COLOR": "1", **env}
    return subprocess.run([sys.executable, "-m", "railguard", *args, "--spec", str(spec)], capture_output=True,
                          text=True, timeout=120, env=full, check=False, cwd=spec.parent)


def _codes(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [d["code"] for d in json.loads(done.stdout)["diagnostics"]]


@pytest.mark.parametrize("planted", ["their folder", "a symlink"])
def test_the_daemon_does_not_start_on_a_folder_planted_by_another_user(deep: tuple[Path, Path], shared: Path,
                                                                       planted: str) -> None:
    spec, home = deep
    target = shared / "railguard-0"
    if planted == "their folder":
        as_nobody("mkdir", "-m", "0755", str(target))
    else:
        as_nobody("mkdir", str(shared / "theirs"))
        as_nobody("ln", "-s", str(shared / "theirs"), str(target))
    done = _rg(spec, home, "daemon", "start", "--json", env={TEST_BASE_ENV: str(shared)})
    assert done.returncode != 0 and _codes(done) == [CODE], done.stdout + done.stderr
    assert str(target) in json.loads(done.stdout)["diagnostics"][0]["detail"]
    assert not (home / "daemon.pid").exists()
    assert sorted(os.listdir(shared / "theirs" if planted == "a symlink" else target)) == []  # no socket in it
    # The daemon itself refuses too (if the folder appears after the client looked): run it directly.
    run = subprocess.run([sys.executable, "-m", "railguard", "daemon", "run", "--home", str(home)],
                         capture_output=True, text=True, timeout=120, check=False,
                         env={**os.environ, TEST_BASE_ENV: str(shared), "NO_COLOR": "1"})
    assert run.returncode != 0 and CODE in run.stdout + run.stderr
    assert sorted(os.listdir(shared / "theirs" if planted == "a symlink" else target)) == []


@pytest.mark.parametrize("base", ["default", "tmp-like"])
def test_a_deep_state_folder_still_works(deep: tuple[Path, Path], shared: Path, base: str) -> None:
    spec, home = deep
    env = {} if base == "default" else {TEST_BASE_ENV: str(shared)}
    started = _rg(spec, home, "daemon", "start", "--json", env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    status = _rg(spec, home, "daemon", "status", "--json", env=env)
    assert status.returncode == 0 and json.loads(status.stdout)["running"], status.stdout + status.stderr
    folder = Path("/run/railguard/0") if base == "default" else shared / "railguard-0"
    sock = folder / Path(_socket_name(home, env)).name
    assert sock.parent == folder and stat.S_ISSOCK(sock.lstat().st_mode)
    assert folder.lstat().st_uid == 0 and stat.S_IMODE(folder.lstat().st_mode) == 0o700
    assert not (home / "daemon.sock").exists()


def _socket_name(home: Path, env: dict[str, str]) -> str:
    old = os.environ.get(TEST_BASE_ENV)
    os.environ.pop(TEST_BASE_ENV, None)
    os.environ.update(env)
    try:
        return str(daemon_socket(home, create=False))
    finally:
        os.environ.pop(TEST_BASE_ENV, None)
        if old is not None:
            os.environ[TEST_BASE_ENV] = old


# -- the peer behind the socket --------------------------------------------------------------------------------

# A stand-in for a hijacked socket: it records what each connection sent (one line per connection) and answers
# like a daemon would, so a client that does send gets an answer.
IMPOSTOR = r"""
import os, socket, sys
path = sys.argv[1]
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
os.chmod(path, 0o666)
server.listen(8)
print("ready", flush=True)
while True:
    conn, _ = server.accept()
    conn.settimeout(2.0)
    got = b""
    try:
        while b"\r\n\r\n" not in got:
            chunk = conn.recv(65536)
            if not chunk:
                break
            got += chunk
    except OSError:
        pass
    print(repr(got), flush=True)
    if got:
        body = (b'{"ok": true, "diagnostics": [], "principal": {"id": "spoofed", "role": "admin"}, '
                b'"require_token": false}')
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    conn.close()
"""


@pytest.fixture
def impostor_home(shared: Path) -> Iterator[tuple[Path, Path]]:
    """A short state folder (root's, 0700) and its spec; the impostor's socket is moved into it."""
    root = Path(tempfile.mkdtemp(prefix="rgi-", dir="/tmp"))
    (root / "app.py").write_text("print('hi')\n")
    spec = root / "railguard.toml"
    spec.write_text(SPEC.format(port=_free_port()))
    home = root / ".railguard"
    home.mkdir(mode=0o700)
    yield spec, home
    shutil.rmtree(root, ignore_errors=True)


def _impostor(shared: Path, home: Path, uid: int) -> subprocess.Popen[str]:
    """A server run as ``uid`` on a socket it binds in the shared folder, then moved (by root) to where the daemon's
    socket is: what a user that owned the socket's folder could do."""
    bound = shared / f"imp-{uid}.sock"
    proc = subprocess.Popen([SYSTEM_PYTHON, "-c", IMPOSTOR, str(bound)], stdout=subprocess.PIPE, text=True,
                            user=uid, group=uid, extra_groups=[], cwd="/")
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    os.rename(bound, home / "daemon.sock")
    return proc


def _received(proc: subprocess.Popen[str]) -> list[str]:
    proc.terminate()
    out, _ = proc.communicate(timeout=10)
    return [line for line in out.splitlines() if line]


@pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason="needs the system Python for the other user")
@pytest.mark.parametrize("served_by", [NOBODY, 0])
def test_the_client_sends_nothing_to_a_socket_served_by_another_user(impostor_home: tuple[Path, Path],
                                                                     shared: Path, served_by: int) -> None:
    spec, home = impostor_home
    proc = _impostor(shared, home, served_by)
    try:
        env = {"RAILGUARD_TOKEN": "rgt_secret_of_the_client"}
        whoami = _rg(spec, home, "whoami", "--json", env=env)
        status = _rg(spec, home, "status", "--env", "staging", "--json", env=env)  # the CLI's fast path
        client = Client(Workspace(spec, home), autostart=False, token="rgt_secret_of_the_library")
        try:
            in_process: object = client.call("GET", "whoami")
        except RailguardError as exc:
            in_process = exc
    finally:
        received = _received(proc)
    if served_by == 0:  # the control: root may serve the daemon's socket, and gets the request (token included)
        assert whoami.returncode == 0 and "spoofed" in whoami.stdout, whoami.stdout + whoami.stderr
        assert any("rgt_secret_of_the_client" in line for line in received)
        assert any("rgt_secret_of_the_library" in line for line in received)
        return
    for done in (whoami, status):
        assert done.returncode != 0 and _codes(done) == ["daemon.socket_impostor"], done.stdout + done.stderr
        assert f"uid {NOBODY}" in json.loads(done.stdout)["diagnostics"][0]["detail"]
    assert isinstance(in_process, RailguardError)
    assert [d.code for d in in_process.diagnostics] == ["daemon.socket_impostor"]
    assert received and all(line == "b''" for line in received)  # connected, and not one byte sent


def test_a_deep_state_folder_connects_to_nothing_in_a_folder_that_is_not_ours(shared: Path, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The client, before connecting: a socket in another user's short folder is not even tried."""
    monkeypatch.setenv(TEST_BASE_ENV, str(shared))
    as_nobody("mkdir", "-m", "0777", str(shared / "railguard-0"))
    home = tmp_path / ("d" * 60) / ("e" * 60) / ".railguard"
    client = Client(Workspace(tmp_path / "railguard.toml", home), autostart=False, token="t")
    with pytest.raises(RailguardError) as exc:
        client.call("GET", "whoami")
    assert [d.code for d in exc.value.diagnostics] == [CODE]
    assert os.listdir(shared / "railguard-0") == []


# -- the edge's sockets: root makes the folder, rg-edge listens there ----------------------------------------------


@pytest.fixture
def deep_edge_dir() -> Iterator[Path]:
    """A run folder too deep for Caddy's admin socket, that rg-edge can reach (not under pytest's 0700 root)."""
    root = Path(tempfile.mkdtemp(prefix="rge-", dir="/tmp"))
    root.chmod(0o755)
    deep = root / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True, mode=0o755)
    yield deep / "edge"
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("base", ["default", "tmp-like"])
def test_the_edges_sockets_go_in_a_folder_handed_to_its_user(deep_edge_dir: Path, shared: Path, base: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from railguard.providers.local.edge import CaddyEdge
    from railguard.providers.local.isolation import EDGE_USER, ensure_user

    if base == "tmp-like":
        monkeypatch.setenv(TEST_BASE_ENV, str(shared))
    user = ensure_user(EDGE_USER)
    edge = CaddyEdge(deep_edge_dir, user)
    folder = Path(f"/run/railguard/{user.uid}") if base == "default" else shared / f"railguard-{user.uid}"
    assert edge.socket_path.parent == folder and edge.resolver.path.parent == folder
    found = folder.lstat()
    assert (found.st_uid, stat.S_IMODE(found.st_mode)) == (user.uid, 0o700)
    # Started for real: Caddy and its resolver run as rg-edge and bind there, root configures Caddy through it. In
    # a process of an interpreter rg-edge can run (the resolver runs on the daemon's), as in test_adversarial.
    python = reachable_python(deep_edge_dir.parents[2])
    if python is None:
        pytest.skip("no interpreter other users can run")
    script = ("import sys; from pathlib import Path\n"
              "from railguard.providers.local.edge import CaddyEdge\n"
              "from railguard.providers.local.isolation import EDGE_USER, ensure_user\n"
              "e = CaddyEdge(Path(sys.argv[1]), ensure_user(EDGE_USER))\n"
              "e.start()\n"
              "try:\n"
              "    print(e.running(), e.socket_path, e.resolver.path, flush=True)\n"
              "finally:\n"
              "    e.stop()\n")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # the Caddy binary
    done = subprocess.run([python, "-c", script, str(deep_edge_dir)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PATH": path}, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["True", str(edge.socket_path), str(edge.resolver.path)]


def test_an_edge_folder_planted_by_another_user_is_refused(deep_edge_dir: Path, shared: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from railguard.providers.local.edge import CaddyEdge
    from railguard.providers.local.isolation import EDGE_USER, ensure_user

    monkeypatch.setenv(TEST_BASE_ENV, str(shared))
    user = ensure_user(EDGE_USER)
    as_nobody("mkdir", "-m", "0777", str(shared / f"railguard-{user.uid}"))
    with pytest.raises(RailguardError) as exc:
        CaddyEdge(deep_edge_dir, user)
    assert f"uid {NOBODY}" in refused(exc)
    assert (shared / f"railguard-{user.uid}").lstat().st_uid == NOBODY


def test_an_edge_left_by_an_earlier_layout_is_restarted_in_the_new_folder(tmp_path: Path, shared: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """An earlier version put a deep edge's sockets in /tmp/railguard-<uid>; the new folder is elsewhere, so the
    running Caddy and resolver cannot be reached where they are now looked for: they are replaced, not waited
    for until a timeout."""
    import psutil

    from railguard.providers.local.edge import CaddyEdge

    run_dir = tmp_path / ("d" * 60) / ("e" * 60) / "edge"
    old_base, new_base = shared / "old", shared / "new"
    for base in (old_base, new_base):
        base.mkdir(mode=0o1777)
        base.chmod(0o1777)
    monkeypatch.setenv(TEST_BASE_ENV, str(old_base))
    earlier = CaddyEdge(run_dir)
    earlier.start()
    caddy, resolver = earlier.pid(), earlier.resolver.pid()
    assert caddy is not None and resolver is not None
    monkeypatch.setenv(TEST_BASE_ENV, str(new_base))
    edge = CaddyEdge(run_dir)
    try:
        assert edge.socket_path.parent == new_base / "railguard-0"
        edge.start()  # answers at the new admin socket, or raises
        assert edge.pid() not in (None, caddy) and edge.resolver.pid() not in (None, resolver)
        assert not psutil.pid_exists(caddy) or psutil.Process(caddy).status() == psutil.STATUS_ZOMBIE
        assert not psutil.pid_exists(resolver) or psutil.Process(resolver).status() == psutil.STATUS_ZOMBIE
    finally:
        edge.stop()
        earlier.stop()


@pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason="needs the system Python for the other users")
@pytest.mark.parametrize("served_by", [1, NOBODY])
def test_a_client_that_is_not_root_trusts_only_its_own_user_or_root(shared: Path, served_by: int) -> None:
    """The client as ``nobody`` (a daemon runs as whoever started it): a socket served by ``daemon`` (uid 1) is
    refused before the token goes out; one served by ``nobody`` itself gets the request (the control)."""
    python = reachable_python(shared)
    if python is None:
        pytest.skip("no interpreter other users can run")
    root = shared / "client"
    home = root / ".railguard"
    home.mkdir(parents=True)
    (root / "railguard.toml").write_text(SPEC.format(port=_free_port()))
    for path in (root, home):
        os.chown(path, NOBODY, NOBODY)
    home.chmod(0o700)
    proc = _impostor(shared, home, served_by)
    script = ("import sys; from pathlib import Path\n"
              "from railguard.client import Client\n"
              "from railguard.engine.workspace import Workspace\n"
              "from railguard.model.diagnostics import RailguardError\n"
              "c = Client(Workspace(Path(sys.argv[1]) / 'railguard.toml', Path(sys.argv[1]) / '.railguard'),\n"
              "           autostart=False, token='rgt_secret_of_nobody')\n"
              "try:\n"
              "    c.call('GET', 'whoami')\n"
              "    print('sent')\n"
              "except RailguardError as exc:\n"
              "    print(' '.join(d.code for d in exc.diagnostics))\n")
    try:
        done = subprocess.run([python, "-c", script, str(root)], capture_output=True, text=True, timeout=60,
                              user=NOBODY, group=NOBODY, extra_groups=[], cwd="/", check=False)
    finally:
        received = _received(proc)
    assert done.returncode == 0, done.stdout + done.stderr
    if served_by == NOBODY:
        assert done.stdout.strip() == "sent" and any("rgt_secret_of_nobody" in line for line in received)
    else:
        assert done.stdout.strip() == "daemon.socket_impostor"
        assert received and all(line == "b''" for line in received)
