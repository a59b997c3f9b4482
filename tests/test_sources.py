"""The source snapshot's tree-state cache: an unchanged tree is not hashed again, any edit is noticed.

Hashes are counted with the debug counter ``source-hash`` (bumped each time file contents are hashed).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from railguard.engine.facts import Facts
from railguard.engine.workspace import Workspace
from railguard.model.counters import COUNTS
from railguard.sources.snapshot import SnapshotCache, digest_files, list_files

OLD = time.time_ns() - 3600 * 1_000_000_000  # an hour ago: older than any timestamp tick


def _cache(roots: int = 8) -> SnapshotCache:
    """A cache whose clock runs 10 s ahead: the ctimes that back-dating cannot move look settled."""
    return SnapshotCache(roots, clock=lambda: time.time_ns() + 10 * 1_000_000_000)


def _tree(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "app.py").write_text("print('v1')\n")
    (root / "pkg" / "mod.py").write_text("X = 1\n")
    (root / ".gitignore").write_text("*.log\n")
    _age(root)
    return root


def _age(root: Path) -> None:
    """Back-date every file, so the cache may trust the tree (a fresh write could hide in the same tick)."""
    for rel in list_files(root):
        os.utime(root / rel, ns=(OLD, OLD))


def _hashes(cache: SnapshotCache, root: Path) -> tuple[int, str]:
    before = COUNTS["source-hash"]
    digest = cache.digest(root)[1]
    return COUNTS["source-hash"] - before, digest


def test_unchanged_tree_is_hashed_once(tmp_path: Path) -> None:
    root, cache = _tree(tmp_path / "src"), _cache()
    first = _hashes(cache, root)
    assert first == (1, digest_files(root, list_files(root)))
    assert _hashes(cache, root) == (0, first[1])
    assert _hashes(cache, root) == (0, first[1])


def test_same_size_edit_is_noticed(tmp_path: Path) -> None:
    root, cache = _tree(tmp_path / "src"), _cache()
    _, before = _hashes(cache, root)
    (root / "app.py").write_text("print('v2')\n")  # same size; mtime and ctime move
    count, after = _hashes(cache, root)
    assert count == 1 and after != before and after == digest_files(root, list_files(root))


def test_edit_with_restored_mtime_is_noticed(tmp_path: Path) -> None:
    """`cp -p`, `touch -r`: content and mtime as before except for the bytes; the ctime still moves."""
    root, cache = _tree(tmp_path / "src"), _cache()
    _, before = _hashes(cache, root)
    (root / "pkg" / "mod.py").write_text("X = 2\n")
    os.utime(root / "pkg" / "mod.py", ns=(OLD, OLD))
    count, after = _hashes(cache, root)
    assert count == 1 and after != before


def test_mode_added_and_removed_files_are_noticed(tmp_path: Path) -> None:
    root, cache = _tree(tmp_path / "src"), _cache()
    seen = {_hashes(cache, root)[1]}
    for change in (lambda: os.chmod(root / "app.py", 0o755),
                   lambda: (root / "new.py").write_text("Y = 1\n"),
                   lambda: (root / "pkg" / "mod.py").unlink()):
        change()
        _age(root)
        count, digest = _hashes(cache, root)
        assert count == 1 and digest not in seen
        seen.add(digest)
    assert _hashes(cache, root)[0] == 0


def test_ignored_files_do_not_invalidate(tmp_path: Path) -> None:
    root, cache = _tree(tmp_path / "src"), _cache()
    _hashes(cache, root)
    (root / "debug.log").write_text("noise\n")
    assert _hashes(cache, root)[0] == 0


def test_fresh_tree_is_hashed_again_until_it_settles(tmp_path: Path) -> None:
    """A file written just now could be rewritten within the same timestamp tick, same size: not trusted yet."""
    root, cache = _tree(tmp_path / "src"), SnapshotCache()  # the real clock
    (root / "app.py").write_text("print('v3')\n")
    _, first = _hashes(cache, root)
    (root / "app.py").write_text("print('v4')\n")  # may well carry the very same mtime
    count, second = _hashes(cache, root)
    assert count == 1 and second != first


def test_cache_is_bounded_by_roots(tmp_path: Path) -> None:
    cache = _cache(roots=2)
    roots = [_tree(tmp_path / f"src{i}") for i in range(3)]
    for root in roots:
        _hashes(cache, root)
    assert _hashes(cache, roots[2])[0] == 0
    assert _hashes(cache, roots[0])[0] == 1  # evicted: the least recently used root


def test_facts_gather_the_spec_and_the_source_once(tmp_path: Path) -> None:
    root = _tree(tmp_path / "app")
    (root / "railguard.toml").write_text(
        '[app]\nname = "a"\n[environments.staging]\nedge_port = 18080\n[services.web]\nrun = ["python", "app.py"]\n')
    facts = Facts(Workspace(root / "railguard.toml", root / ".railguard"))
    parses, snaps = COUNTS["spec-parse"], COUNTS["source-snapshot"]
    digest = facts.desired_digest("staging")
    assert facts.desired_digest("staging") == digest and facts.desired("staging") == facts.desired("staging")
    assert facts.source_record()["digest"] == facts.source().digest
    assert (COUNTS["spec-parse"] - parses, COUNTS["source-snapshot"] - snaps) == (1, 1)
