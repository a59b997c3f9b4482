"""What goes into a source snapshot, and the snapshot store: ignore rules, secret names, special files, symlinks,
the size cap, content-addressed storage, materializing with checks, and pruning.

Golden cases: each tree below lists the files a snapshot must hold and what it must leave out (and why).
"""

from __future__ import annotations

import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from railguard.engine import capture
from railguard.engine.workspace import Workspace
from railguard.model.diagnostics import RailguardError
from railguard.model.specfile import parse_spec
from railguard.sources.listing import Rules, TooLarge, list_source
from railguard.sources.snapshot import SnapshotCache, snapshot
from railguard.sources.store import SnapshotMissing, SnapshotStore, materialize_or_capture

# (files to write, .railguardignore text, expected files, expected secrets left out)
GOLDEN = {
    "gitignore and railguardignore": (
        {"app.py": "", ".gitignore": "*.log\nbuild/\n", ".railguardignore": "docs/\n!keep.log\n", "x.log": "",
         "keep.log": "", "build/out.bin": "", "docs/a.md": "", "pkg/mod.py": ""},
        None,
        [".gitignore", ".railguardignore", "app.py", "keep.log", "pkg/mod.py"], []),
    "secret names left out": (
        {"app.py": "", ".env": "K=1", ".env.production": "K=2", ".env.example": "K=", "certs/tls.pem": "",
         "deploy/id_rsa": "", "server.key": "", ".aws/credentials": "", "notes/.netrc": ""},
        None,
        [".env.example", "app.py"],
        [".aws/credentials", ".env", ".env.production", "certs/tls.pem", "deploy/id_rsa", "notes/.netrc",
         "server.key"]),
    "a secret listed explicitly ships": (
        {"app.py": "", ".env.production": "K=2", ".env": "K=1"},
        "!.env.production\n",
        [".env.production", ".railguardignore", "app.py"], [".env"]),
    "railguard's own files never ship": (
        {"app.py": "", "railguard.toml": "", ".railguard/state.db": "", ".git/HEAD": "", "__pycache__/a.pyc": ""},
        None,
        ["app.py"], []),
}


def _write(root: Path, files: dict[str, str], ignore: str | None) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    if ignore is not None:
        (root / ".railguardignore").write_text(ignore)


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_golden_listing(tmp_path: Path, case: str) -> None:
    files, ignore, expected, secrets = GOLDEN[case]
    _write(tmp_path, files, ignore)
    found = list_source(tmp_path)
    assert [f.rel for f in found.files] == expected
    assert sorted(found.secrets) == secrets


def test_state_folder_and_spec_elsewhere_in_the_tree_are_left_out(tmp_path: Path) -> None:
    _write(tmp_path, {"app.py": "", "ops/state/state.db": "", "deploy/rg.toml": ""}, None)
    found = list_source(tmp_path, Rules(exclude=(tmp_path / "ops" / "state", tmp_path / "deploy" / "rg.toml")))
    assert [f.rel for f in found.files] == ["app.py"]


def test_fifo_socket_and_outside_symlinks_are_skipped_never_opened(tmp_path: Path) -> None:
    """A FIFO would block the reader forever: the snapshot finishes, with the FIFO named as skipped."""
    root = tmp_path / "app"
    _write(root, {"app.py": "print(1)\n", "conf/settings.py": "X = 1\n", ".env": "SECRET=1\n"}, None)
    os.mkfifo(root / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock"))
    (tmp_path / "outside.txt").write_text("host file\n")
    os.symlink(tmp_path / "outside.txt", root / "leak.txt")
    os.symlink("/etc/passwd", root / "passwd")
    os.symlink("conf/settings.py", root / "settings.py")  # inside the tree: taken, as its target's content
    os.symlink(".env", root / "config")  # leads to a secret the snapshot leaves out: skipped
    os.symlink("missing", root / "dangling")
    os.symlink("conf", root / "conf-link")  # a folder symlink is never walked
    done: list[object] = []
    worker = threading.Thread(target=lambda: done.append(snapshot(root, git=False)), daemon=True)
    worker.start()
    worker.join(timeout=30)
    sock.close()
    assert done, "the snapshot hung on a special file"
    snap = done[0]
    assert isinstance(snap, type(snapshot(root, git=False)))
    assert list(snap.files) == ["app.py", "conf/settings.py", "settings.py"]
    assert snap.left_out.special == ["pipe", "sock"]
    assert snap.left_out.links == ["conf-link/", "config", "dangling", "leak.txt", "passwd"]
    notes = {d.code: d for d in capture.warnings(snap.left_out, root)}
    assert set(notes) == {"source.secret_excluded", "source.special_skipped", "source.link_skipped"}
    assert all(d.severity == "warning" for d in notes.values())
    assert "pipe" in notes["source.special_skipped"].detail and "!.env" in notes["source.secret_excluded"].remediation


def test_size_cap_names_the_largest_files_and_the_ignore_file(tmp_path: Path) -> None:
    _write(tmp_path, {"app.py": "x", "data/big.bin": "0" * 3_000_000, "data/mid.bin": "0" * 1_000_000}, None)
    with pytest.raises(TooLarge) as exc:
        list_source(tmp_path, Rules(max_bytes=2 * 1024 * 1024))
    assert [p for p, _ in exc.value.largest][:2] == ["data/big.bin", "data/mid.bin"]
    spec, _ = parse_spec('[app]\nname = "a"\nsource_limit_mb = 2\n[environments.s]\nedge_port = 18080\n'
                         '[services.web]\nrun = ["python", "app.py"]\n')
    assert spec is not None
    with pytest.raises(RailguardError) as err:
        capture.take(tmp_path, Workspace(tmp_path / "railguard.toml", tmp_path / ".railguard"), spec)
    found = err.value.diagnostics[0]
    assert found.code == "source.too_large" and "data/big.bin" in found.detail
    assert ".railguardignore" in found.remediation and "source_limit_mb" in found.remediation


def test_store_keeps_blobs_once_materializes_checked_and_prunes(tmp_path: Path) -> None:
    root, store = tmp_path / "app", SnapshotStore(tmp_path / "state" / "sources")
    _write(root, {"app.py": "print('v1')\n", "lib/util.py": "U = 1\n", "run.sh": "#!/bin/sh\n"}, None)
    os.chmod(root / "run.sh", 0o755)
    first = store.put(snapshot(root, git=False))
    (root / "app.py").write_text("print('v2')\n")
    second = store.put(SnapshotCache().snapshot(root))
    assert first.digest != second.digest and store.has(first.digest) and store.has(second.digest)
    blobs = sorted(p.name for p in (store.root / "blobs").glob("*/*"))
    assert len(blobs) == 4  # util.py and run.sh stored once for both snapshots
    out = tmp_path / "out"
    store.materialize(first.digest, out)
    assert (out / "app.py").read_text() == "print('v1')\n" and os.access(out / "run.sh", os.X_OK)
    assert not stat.S_IMODE(os.stat(next((store.root / "blobs").glob("*/*"))).st_mode) & 0o222  # read-only
    # A blob altered in the state folder is caught when an artifact is made from it.
    blob = next(p for p in (store.root / "blobs").glob("*/*") if p.read_bytes() == b"print('v1')\n")
    os.chmod(blob, 0o644)
    blob.write_bytes(b"print('v666')\n")
    with pytest.raises(SnapshotMissing, match="altered"):
        store.materialize(first.digest, tmp_path / "out2")
    assert not blob.exists() and not store.has(first.digest)  # dropped: a new plan stores the true content again
    spec_digest = store.put_text("[app]\n")
    third = store.put(snapshot(root, git=False))  # v2 again, plus an unused snapshot to prune
    (root / "app.py").write_text("print('v3')\n")
    fourth = store.put(SnapshotCache().snapshot(root))
    (root / "app.py").write_text("print('v2')\n")
    assert third.digest == second.digest
    assert store.prune({second.digest, spec_digest}) == [fourth.digest]
    assert store.text(spec_digest) == "[app]\n"
    assert len(list((store.root / "blobs").glob("*/*"))) == 4  # 3 files + the spec text
    # A source folder that vanished changes nothing for a stored snapshot.
    for path in sorted(root.rglob("*"), reverse=True):
        path.unlink() if not path.is_dir() else path.rmdir()
    root.rmdir()
    assert materialize_or_capture(store, second.digest, tmp_path / "out3", root).digest == second.digest
    assert (tmp_path / "out3" / "app.py").read_text() == "print('v2')\n"
    with pytest.raises(SnapshotMissing):
        materialize_or_capture(store, first.digest, tmp_path / "out4", root)


def test_prune_waits_while_a_capture_holds_the_store(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "sources")
    store.put_text("x")
    with store.holding():
        assert store.prune(set()) is None
    assert store.prune(set()) == []


def test_retention_frees_the_snapshots_of_plans_that_can_no_longer_apply(tmp_path: Path) -> None:
    """Kept: a plan's snapshot while it can still be applied, and the sources releases use; freed: the rest."""
    from railguard.engine import usecases
    from railguard.model.principals import Principal, Role
    from railguard.providers.fake import FakeProvider
    from railguard.state import retention
    from railguard.state.store import Store

    from .conftest import BASE_SPEC

    admin = Principal(id="user:test", role=Role.admin)
    (tmp_path / "app.py").write_text("print('v1')\n")
    (tmp_path / "railguard.toml").write_text(BASE_SPEC)
    ws, provider = Workspace(tmp_path / "railguard.toml", tmp_path / ".railguard"), FakeProvider()
    store, snapshots = Store.open(ws.home), SnapshotStore.of(ws.home)
    applied = usecases.plan(ws, "staging", store, provider, admin)
    submitted = usecases.submit_apply(ws, applied.id, store, provider, admin)
    submitted.run(store, store.create_operation("staging", "apply", applied.id, admin.id, status="queued"))
    (tmp_path / "app.py").write_text("print('v2')\n")
    stale = usecases.plan(ws, "staging", store, provider, admin)
    provider.live["staging"].pop("staging/service.web")  # the live state moves: `stale` can never apply
    (tmp_path / "app.py").write_text("print('v3')\n")
    current = usecases.plan(ws, "staging", store, provider, admin)
    assert applied.source and stale.source and current.source
    keep = retention.kept_sources(store, retention.kept_releases(store, 5))
    assert applied.source.digest in keep, "applied"
    assert current.source.digest in keep, "current"
    assert current.source.spec_digest in keep
    assert stale.source.digest not in keep
    assert snapshots.prune(keep) == [stale.source.digest]
    assert snapshots.has(applied.source.digest) and snapshots.has(current.source.digest)


def test_data_folders_of_environments_are_never_part_of_the_source(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("print(1)\n")
    (tmp_path / "data" / "staging").mkdir(parents=True)
    (tmp_path / "data" / "staging" / "app.db").write_text("rows")
    spec, _ = parse_spec('[app]\nname = "a"\n[environments.staging]\nedge_port = 18080\ndata_dir = "data/staging"\n'
                         '[services.web]\nrun = ["python", "app.py"]\n')
    assert spec is not None
    snap = capture.take(tmp_path, Workspace(tmp_path / "railguard.toml", tmp_path / ".railguard"), spec)
    assert list(snap.files) == ["app.py"]
