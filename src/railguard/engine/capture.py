"""What a plan records of its source: the snapshot stored for apply, the spec text, and what was left out.

``railguard plan`` stores the app source and the spec text in the snapshot store
(:mod:`railguard.sources.store`) and records both digests in the plan (:class:`PlanSource`), so
apply deploys exactly the reviewed content. The snapshot's rules come from the workspace: the state
folder and the spec file are never part of it, and the spec caps its size. Files left out for safety
(secret names, FIFOs and devices, symlinks out of the tree) become warnings on the plan. Called by
:class:`railguard.engine.facts.Facts`.
"""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

from railguard.engine.workspace import Workspace, read_spec_file
from railguard.model.api import Release
from railguard.model.diagnostics import Diagnostic, RailguardError, Severity, error, warning
from railguard.model.plans import PlanSource
from railguard.model.spec import Spec
from railguard.model.untrusted import one_line
from railguard.sources.listing import Listing, Rules, TooLarge, TooManyFiles
from railguard.sources.snapshot import SourceSnapshot, git_state, snapshot
from railguard.sources.store import SnapshotStore, capture

MB = 1024 * 1024
SHOWN = 10  # file names listed in one warning
NAME_LIMIT = 200  # characters of one file name shown


def rules(ws: Workspace, spec: Spec) -> Rules:
    """Never in a snapshot: the state folder, the spec, and the environments' data folders (the app writes there)."""
    data = tuple(ws.root / e.data_dir for e in spec.environments.values() if e.data_dir)
    return Rules(exclude=(ws.home, ws.spec_path, *data), max_bytes=spec.app.source_limit_mb * MB)


def take(root: Path, ws: Workspace, spec: Spec) -> SourceSnapshot:
    """The snapshot of ``root`` (digest only, nothing stored), or the diagnostic saying why not."""
    with _explained(root, spec):
        return snapshot(root, git=False, rules=rules(ws, spec))


def store(ws: Workspace, spec: Spec, snap: SourceSnapshot) -> tuple[SourceSnapshot, PlanSource]:
    """Store ``snap`` and the spec text; the snapshot actually stored (taken again if a file moved meanwhile)."""
    snapshots = SnapshotStore.of(ws.home)
    with _explained(snap.root, spec):
        stored, manifest = capture(snapshots, snap.root, snap, rules(ws, spec))
    spec_digest = snapshots.put_text(ws.read_spec_text())
    commit, dirty = _git(stored)
    return stored, PlanSource(digest=manifest.digest, files=len(manifest.files), bytes=manifest.size,
                              spec_digest=spec_digest, root=str(snap.root), proposed=ws.text is not None,
                              git_commit=commit, git_dirty=dirty)


_GIT: dict[Path, tuple[object, tuple[str | None, bool | None]]] = {}


def _git(snap: SourceSnapshot) -> tuple[str | None, bool | None]:
    """The git commit and dirty flag of the tree, asking git only when something that could change them moved.

    ``git status`` on a large tree costs tens of milliseconds; between two plans of an unchanged tree the
    answer is the same while the snapshot, HEAD, the index and the HEAD log are (no repository: no git run).
    """
    git_dir = next((p / ".git" for p in (snap.root, *snap.root.parents) if (p / ".git").exists()), None)
    if git_dir is None:
        return None, None
    if not git_dir.is_dir():  # a worktree's `.git` file: its HEAD lives elsewhere, ask every time
        return git_state(snap.root)
    key: object = (snap.digest, *(_stamp(git_dir / name) for name in ("HEAD", "index", "logs/HEAD")))
    cached = _GIT.get(snap.root)
    if cached is not None and cached[0] == key:
        return cached[1]
    found = git_state(snap.root)
    _GIT[snap.root] = (key, found)
    return found


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def promoted(ws: Workspace, root: Path, digest: str) -> PlanSource:
    """A promotion deploys a release's artifact: record its snapshot (file count and size when it was stored)."""
    snapshots = SnapshotStore.of(ws.home)
    manifest = snapshots.manifest(digest)
    return PlanSource(digest=digest, files=len(manifest.files) if manifest else 0,
                      bytes=manifest.size if manifest else 0, spec_digest=snapshots.put_text(ws.read_spec_text()),
                      root=str(root), proposed=ws.text is not None,
                      git_commit=manifest.git_commit if manifest else None,
                      git_dirty=manifest.git_dirty if manifest else None)


class _explained:
    """Turn the listing's refusals into diagnostics naming the file to edit."""

    def __init__(self, root: Path, spec: Spec) -> None:
        self.root, self.spec = root, spec

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        ignore = self.root / ".railguardignore"
        if isinstance(exc, TooLarge):
            largest = ", ".join(f"{path} ({size / MB:.1f} MB)" for path, size in exc.largest)
            raise RailguardError(error(
                "source.too_large", "The app source is too large to snapshot",
                f"The files under {self.root} add up to {exc.total / MB:.1f} MB, over the limit of "
                f"{exc.limit / MB:.0f} MB. The largest: {largest}.",
                f"Leave build output, data and caches out of the snapshot in {ignore} (gitignore syntax), or "
                "raise [app].source_limit_mb in the spec.", address="app.source",
                extra={"largest": [{"path": p, "bytes": n} for p, n in exc.largest], "ignore_file": str(ignore)},
            )) from exc
        if isinstance(exc, TooManyFiles):
            raise RailguardError(error(
                "spec.invalid_value", "The app source has too many files", f"{exc}.",
                f"Leave the bulk out in {ignore} (gitignore syntax).", address="app.source")) from exc
        if isinstance(exc, OSError):
            raise RailguardError(error(
                "source.unreadable", "The app source could not be read",
                f"Snapshotting {self.root} failed: {exc}.",
                f"Check file permissions, or leave the file out in {ignore}.", address="app.source")) from exc


def warnings(left_out: Listing, root: Path) -> list[Diagnostic]:
    """One warning per kind of file left out, naming them (consolidated: never one per file)."""
    ignore = root / ".railguardignore"
    found = []
    if left_out.secrets:
        found.append(warning(
            "source.secret_excluded", f"{len(left_out.secrets)} file(s) named like secrets left out of the snapshot",
            f"Not deployed: {_names(left_out.secrets)}. Files named like credentials never ship unless listed "
            "explicitly.",
            "Give the app its secrets with `railguard secret set NAME --env ENV`. To ship such a file anyway, "
            f"list it in {ignore} with a leading '!' (e.g. `!{left_out.secrets[0]}`).", address="app.source",
            extra={"files": left_out.secrets}))
    if left_out.special:
        found.append(warning(
            "source.special_skipped", f"{len(left_out.special)} FIFO, socket or device file(s) skipped",
            f"Not regular files, so never opened nor deployed: {_names(left_out.special)}.",
            f"Remove them from the source folder or list them in {ignore}.", address="app.source",
            extra={"files": left_out.special}))
    if left_out.links:
        found.append(warning(
            "source.link_skipped", f"{len(left_out.links)} symlink(s) skipped",
            f"They lead out of the source folder, nowhere, or to a file the snapshot leaves out: "
            f"{_names(left_out.links)}.",
            f"Copy the files they point at into the source folder, or list the links in {ignore}.",
            address="app.source", extra={"files": left_out.links}))
    if left_out.own_output:
        found.append(warning(
            "source.output_excluded", f"{len(left_out.own_output)} saved Railguard answer(s) left out of the snapshot",
            f"Not deployed: {_names(left_out.own_output)}. They are Railguard's own `--json` output (e.g. "
            "`railguard plan --json > plan.json`), not the app's; in the snapshot they would change its source "
            "and the next plan would replace every service.",
            f"Save them outside the app folder, or list them in {ignore} to silence this; to ship one anyway, "
            f"list it with a leading '!' (e.g. `!{left_out.own_output[0]}`).", address="app.source",
            extra={"files": left_out.own_output}))
    return found


def changed_files(ws: Workspace, live: Release | None, digest: str) -> list[Diagnostic]:
    """What a plan's source changes in the files of the live release's (info): ``plan.json added``.

    A replace says "source changed" and two digests; a reviewer needs the files, above all ones nobody meant
    to ship. Nothing when nothing runs, the source is the same, or the live snapshot was pruned."""
    before = sorted({s.source for s in (live.services.values() if live else []) if s.source and s.source != digest})
    if live is None or len(before) != 1:
        return []
    snapshots = SnapshotStore.of(ws.home)
    old, new = snapshots.manifest(before[0]), snapshots.manifest(digest)
    if old is None or new is None:
        return []
    a, b = {f.path: f.sha256 for f in old.files}, {f.path: f.sha256 for f in new.files}
    parts = [(sorted(b.keys() - a.keys()), "added"), (sorted(a.keys() - b.keys()), "removed"),
             (sorted(p for p in a.keys() & b.keys() if a[p] != b[p]), "changed")]
    said = "; ".join(f"{_names(paths)} {what}" for paths, what in parts if paths)
    if not said:
        return []
    return [Diagnostic(
        code="source.changed", severity=Severity.info,
        summary=f"Source files changed since release {live.number}: {said}",
        detail=f"{len(b)} files now, {len(a)} in the live release's snapshot.",
        remediation=f"Check these are the files you meant to ship; leave others out in {ws.root / '.railguardignore'}"
                    f" (`railguard show PLAN_ID --files` lists them all).", address="app.source",
        extra={what: paths for paths, what in parts})]


def _names(paths: list[str]) -> str:
    # File names are the app's: one visible line each, or a name with a line break would print a line of its own.
    shown = ", ".join(one_line(p, NAME_LIMIT) for p in paths[:SHOWN])
    return shown + (f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else "")


def spec_digest_on_disk(ws: Workspace) -> str | None:
    """The digest of the spec file as it is now, read as a plan reads it (None when it cannot be read)."""
    try:
        text = read_spec_file(ws.spec_path)
    except (OSError, ValueError):  # a decoding error is a ValueError, as is a file over the limit
        return None
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def identity(ws: Workspace, source: PlanSource) -> tuple[str | None, dict[str, str]]:
    """The app's name and the environments' named OS users, as the spec text the plan was made from says.

    A plan applies its own spec, not the file on disk; these name the OS users its processes run as, so an
    apply of a saved plan must use the same users as the deploy that made it.
    """
    text = SnapshotStore.of(ws.home).text(source.spec_digest)
    if text is None:
        return None, {}
    # The names only, read from the TOML the plan was validated from: no second full parse of the spec.
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError):
        return None, {}
    app: dict[str, object] = data["app"] if isinstance(data.get("app"), dict) else {}
    envs: dict[str, object] = data["environments"] if isinstance(data.get("environments"), dict) else {}
    name = app.get("name") if isinstance(app.get("name"), str) else None
    return (str(name) if name is not None else None,
            {n: str(e["user"]) for n, e in envs.items() if isinstance(e, dict) and isinstance(e.get("user"), str)})
