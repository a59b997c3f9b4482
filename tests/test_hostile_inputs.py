"""Hostile input to the daemon socket and the spec parser: refused with a diagnostic, never a hang or a 500.

A real daemon API server (in this process, on a Unix socket in a temporary folder) gets malformed
Content-Length values and a body that never arrives, while a normal request on another connection is
answered; the spec parser gets a 60,000-deep array and an oversized text.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from railguard.daemon.api import Server
from railguard.daemon.service import Daemon
from railguard.engine.appscan import read
from railguard.engine.capture import spec_digest_on_disk
from railguard.engine.facts import Facts
from railguard.engine.workspace import Workspace, read_spec_file
from railguard.model.diagnostics import RailguardError
from railguard.model.specfile import MAX_SPEC_BYTES, parse_spec
from railguard.providers.local import dependencies
from railguard.sources.listing import TooLarge, list_source
from railguard.sources.snapshot import git_state


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "d.sock"
    srv = Server(path, Daemon(tmp_path / "state"))
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield path
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=10)


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(20)
    sock.connect(str(path))
    return sock


def _answer(sock: socket.socket) -> tuple[int, dict[str, object], bytes]:
    """Read one answer and whatever follows until the server closes (b'' if it closed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(rest) < length:
        rest += sock.recv(4096)
    return int(head.split()[1]), json.loads(rest[:length]), head


@pytest.mark.parametrize("declared", ["abc", "-1", "1e3", "99999999999"])
def test_a_bad_content_length_is_refused_and_the_connection_closed(server: Path, declared: str) -> None:
    with _connect(server) as sock:
        sock.sendall(f"POST /v1/plans HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n".encode())
        status, body, head = _answer(sock)
        assert status == 422 and body["diagnostics"][0]["code"] == "daemon.bad_request", body  # type: ignore[index]
        assert b"Connection: close" in head
        assert sock.recv(100) == b""  # closed: nothing after the refusal is read as a request


def test_a_stalled_body_does_not_stop_a_normal_request(server: Path) -> None:
    with _connect(server) as hostile:
        hostile.sendall(b"POST /v1/plans HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"env\":")
        with _connect(server) as normal:  # concurrently, on another connection
            normal.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            status, body, _ = _answer(normal)
            assert status == 200 and body["ok"] is True
        hostile.shutdown(socket.SHUT_WR)  # the body ends short: refused, not waited for forever
        status, body, _ = _answer(hostile)
        assert status == 422 and "ended after" in json.dumps(body)


def test_deep_or_huge_toml_is_a_diagnostic() -> None:
    spec, found = parse_spec("a = " + "[" * 60_000)
    assert spec is None and [d.code for d in found] == ["spec.toml_syntax"]
    spec, found = parse_spec("# " + "x" * MAX_SPEC_BYTES)
    assert spec is None and [d.code for d in found] == ["spec.too_large"]


def _fifo(path: Path) -> None:
    os.mkfifo(path)  # opening it for reading waits for a writer


def _endless(path: Path) -> None:
    os.symlink("/dev/zero", path)  # reading it never ends


def _folder(path: Path) -> None:
    path.mkdir()


def _over_the_limit(path: Path) -> None:
    path.write_text("#" * (MAX_SPEC_BYTES + 1))


# What a spec path may name besides a spec (an agent can put any of these where the daemon reads the served spec).
SPEC_FILES: dict[str, tuple[Callable[[Path], None], str]] = {
    "fifo": (_fifo, "spec.unreadable"), "/dev/zero": (_endless, "spec.unreadable"),
    "folder": (_folder, "spec.unreadable"), "over the limit": (_over_the_limit, "spec.too_large"),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", sorted(SPEC_FILES))
def test_a_spec_path_naming_something_else_is_a_diagnostic_at_once(kind: str, tmp_path: Path) -> None:
    make, code = SPEC_FILES[kind]
    make(tmp_path / "railguard.toml")
    ws = Workspace(tmp_path / "railguard.toml", tmp_path / ".railguard")
    with pytest.raises(RailguardError) as refused:
        ws.load()
    assert [d.code for d in refused.value.diagnostics] == [code]
    assert spec_digest_on_disk(ws) is None  # the daemon's drift check of the file on disk does not hang either
    # The CLI reads it before its imports too (railguard validate's early parse): it must not block there.
    done = subprocess.run([sys.executable, "-m", "railguard", "validate", "--spec", str(ws.spec_path), "--json"],
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 1 and [d["code"] for d in json.loads(done.stdout)["diagnostics"]] == [code]


def test_a_spec_is_read_with_the_line_ends_text_mode_gives(tmp_path: Path) -> None:
    path = tmp_path / "railguard.toml"
    path.write_bytes(b'[app]\r\nname = "x\xc3\xa9"\r\n# old Mac\rend = 1\n')
    assert read_spec_file(path) == path.read_text(encoding="utf-8")  # the spec's digest does not move


def test_terminal_output_strips_control_characters_but_keeps_styles() -> None:
    import io

    from railguard.cli.terminal import SafeConsole

    console = SafeConsole(file=io.StringIO(), force_terminal=True, color_system="standard", highlight=False)
    console.print("[bold]reason[/]: urgent\x1b]0;pwned\x07\x1b[2J\x9b31m fix\u202e\nnext\tline")
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b]" not in shown and "\x1b[2J" not in shown and "\x9b" not in shown and "\u202e" not in shown
    assert "\x1b[1m" in shown  # Rich's own bold is still there
    assert "urgent]0;pwned[2J31m fix\nnext" in shown.replace("\x1b[1m", "").replace("\x1b[0m", "")


def test_one_line_values_cannot_fake_another_line_of_a_plan_and_invisible_characters_go() -> None:
    """An exec argv or a request reason with a line break would print what looks like another line of the approve
    screen (a fake 'risk: safe'); zero-width characters could hide a difference between two names."""
    import io

    from railguard.cli.output import one_line
    from railguard.cli.terminal import SafeConsole

    reason = "run migrate\n  risk: safe\r\nhash sha256:0000\u2028approved\x85ok"
    assert one_line(reason) == "run migrate⏎  risk: safe⏎hash sha256:0000⏎approved⏎ok"
    console = SafeConsole(file=io.StringIO(), force_terminal=False, highlight=False)
    console.print(one_line("prod\u200buction\ufeff \u2066x\u2069 \u200eok"))
    assert console.file.getvalue() == "production x ok\n"  # type: ignore[attr-defined]


@pytest.mark.timeout(60)
def test_init_reads_past_fifos_and_endless_files_the_app_folder_holds(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("from flask import Flask\napp = Flask(__name__)\n")
    for name in ("requirements.txt", "pyproject.toml", "Pipfile", "manage.py"):
        _fifo(tmp_path / name)
    _endless(tmp_path / ".env")
    assert read(tmp_path / "requirements.txt") == "" and read(tmp_path / ".env") == ""
    done = subprocess.run([sys.executable, "-m", "railguard", "init", "--json"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert json.loads(done.stdout)["framework"] == "flask"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root reads files other users cannot")
def test_as_root_a_spec_linked_to_another_users_file_is_not_read(tmp_path: Path) -> None:
    # An agent writes the app folder (owned by its user); its railguard.toml links to a file only root may read,
    # whose values a validation error would quote back ("got '...'").
    secret = tmp_path / "root-only.toml"
    secret.write_text('[app]\nname = "x"\n[environments.staging]\nedge_port = "TOPSECRET-value"\n')
    secret.chmod(0o600)
    app = tmp_path / "app"
    app.mkdir()
    (app / "railguard.toml").symlink_to(secret)
    os.chown(app, 65534, 65534)
    ws = Workspace(app / "railguard.toml", app / ".railguard")
    with pytest.raises(RailguardError) as refused:
        ws.load()
    assert [d.code for d in refused.value.diagnostics] == ["spec.unreadable"]
    assert "TOPSECRET" not in refused.value.diagnostics[0].model_dump_json()
    assert spec_digest_on_disk(ws) is None
    # The folder's owner's own file is read as before.
    (app / "railguard.toml").unlink()
    (app / "railguard.toml").write_text(secret.read_text())
    os.chown(app / "railguard.toml", 65534, 65534)
    spec, found = ws.load()
    assert spec is None and any("TOPSECRET" in d.detail for d in found)  # its own value, quoted to its own user


@pytest.mark.skipif(os.geteuid() != 0, reason="only root reads files other users cannot")
def test_as_root_a_spec_cannot_point_the_source_at_another_users_folder(tmp_path: Path) -> None:
    private = tmp_path / "root-only"
    private.mkdir(mode=0o700)
    (private / "app.py").write_text("print(1)\n")
    (private / "secret.txt").write_text("only root reads this\n")
    app = tmp_path / "app"
    app.mkdir()
    spec = '[app]\nname = "a"\nsource = "{}"\n[environments.staging]\nedge_port = 18999\n' \
           '[services.web]\nrun = ["python", "app.py"]\nlisten = false\n'
    (app / "railguard.toml").write_text(spec.format(private))
    for path in (app, app / "railguard.toml"):
        os.chown(path, 65534, 65534)
    with pytest.raises(RailguardError) as refused:
        Facts(Workspace(app / "railguard.toml", tmp_path / "state")).source()
    assert [d.code for d in refused.value.diagnostics] == ["source.not_owned"]
    # A folder of the spec's owner (a monorepo's parent folder, say) is snapshotted as before.
    os.chown(private, 65534, 65534)
    assert set(Facts(Workspace(app / "railguard.toml", tmp_path / "state")).source().files) == {
        "app.py", "secret.txt"}


@pytest.mark.timeout(60)
def test_an_ignore_file_is_read_up_to_a_limit_and_its_unusable_patterns_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("print(1)\n")
    (tmp_path / "big.bin").write_text("x")
    (tmp_path / ".gitignore").write_text("big.bin\n" + "a" * 10_000 + "\n" + "nul\0here\n")
    assert {f.rel for f in list_source(tmp_path).files} == {".gitignore", "app.py"}  # big.bin still ignored
    with (tmp_path / ".railguardignore").open("wb") as sparse:
        sparse.truncate(10 * 1024 ** 3)  # 10 GB of NULs, nothing on disk: read whole, the daemon ran out of memory
    with pytest.raises(TooLarge) as refused:
        list_source(tmp_path)
    assert refused.value.largest[0][0] == ".railguardignore"


def test_a_pyproject_nested_past_the_parser_is_no_project_not_a_crash(tmp_path: Path) -> None:
    # tomllib recurses per nesting level: an app's pyproject.toml (or Pipfile) 100,000 deep raised RecursionError
    # through init's scan and the daemon's build, neither of which expected anything but a syntax error.
    (tmp_path / "app.py").write_text("from flask import Flask\napp = Flask(__name__)\n")
    deep = "[project]\nname = 'x'\nx = " + "[" * 100_000 + "\n"
    for name in ("pyproject.toml", "Pipfile", "uv.toml"):
        (tmp_path / name).write_text(deep)
    assert not dependencies._declares_project(tmp_path / "pyproject.toml")
    done = subprocess.run([sys.executable, "-m", "railguard", "init", "--json"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert json.loads(done.stdout)["framework"] == "flask"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root has an authority to drop")
def test_git_in_the_apps_repository_runs_as_its_owner_not_as_root(request: pytest.FixtureRequest) -> None:
    # .git/config is the app's: core.fsmonitor makes `git status` run a command, which ran as root when root owned
    # the folder and others could write it; a repository another user owns, git refused from root altogether.
    repo, out = Path(tempfile.mkdtemp(dir="/tmp")), Path(tempfile.mkdtemp(dir="/tmp"))
    request.addfinalizer(lambda: [shutil.rmtree(p, ignore_errors=True) for p in (repo, out)])
    repo.chmod(0o755)
    out.chmod(0o777)
    git = ["git", "-C", str(repo), "-c", "user.email=a@b", "-c", "user.name=a"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "a").write_text("x\n")
    subprocess.run([*git, "add", "a"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
    subprocess.run([*git, "config", "core.fsmonitor", f"sh -c 'id -u >> {out}/who; exit 0'"], check=True)
    for folder, _, files in os.walk(repo):
        for name in [folder, *(os.path.join(folder, f) for f in files)]:
            os.lchown(name, 65534, 65534)
    commit, _ = git_state(repo)
    assert commit is not None  # git ran, as the repository's owner (from root it refused a foreign repository)
    assert set((out / "who").read_text().split()) == {"65534"}  # the app's hook, with the app owner's authority
    for folder, _, files in os.walk(repo):  # root's folder, but others may write it: nobody runs git there
        for name in [folder, *(os.path.join(folder, f) for f in files)]:
            os.lchown(name, 0, 0)
    repo.chmod(0o777)
    git_state(repo)
    assert "0" not in (out / "who").read_text().split()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root writes files another user then owns")
def test_init_as_root_leaves_the_spec_to_the_folders_owner(tmp_path: Path) -> None:
    # Root reads a spec only from its folder's owner: a root-owned one written by init would be refused next.
    tmp_path.chmod(0o755)
    (tmp_path / "app.py").write_text("from flask import Flask\napp = Flask(__name__)\n")
    os.chown(tmp_path, 65534, 65534)
    done = subprocess.run([sys.executable, "-m", "railguard", "init", "--json"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (tmp_path / "railguard.toml").stat().st_uid == 65534
    spec, found = Workspace(tmp_path / "railguard.toml", tmp_path / ".railguard").load()
    assert spec is not None, found
