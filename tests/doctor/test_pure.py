"""The doctor's pure parts, as data: variable rewriting for scratch, the code scan, fingerprints, results."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from railguard.doctor.codescan import entry_closure, env_example_names, scan
from railguard.doctor.fingerprint import copy_data, differences, fingerprint, losses
from railguard.doctor.isolation import broken_value, data_like, edge_ports_in, rewrite
from railguard.doctor.report import Finding, Report, Status, combine, exit_code

REAL = [Path("/srv/app/data/staging"), Path("/srv/app/data/production")]
SCRATCH = Path("/tmp/rgdoc-x/data-1")

REWRITES = [
    # (variable, value) -> (value in scratch, unsafe?)
    (("DB_PATH", "/srv/app/data/staging/app.db"), ("/tmp/rgdoc-x/data-1/app.db", False)),
    (("DATABASE_URL", "sqlite:////srv/app/data/production/app.db"), ("sqlite:////tmp/rgdoc-x/data-1/app.db", False)),
    (("DATABASE_URL", "sqlite:///relative.db"), ("sqlite:///relative.db", False)),
    (("DATABASE_URL", "sqlite:////var/lib/other.db"), ("sqlite:////var/lib/other.db", True)),
    (("DATABASE_URL", "postgresql://app@db.internal/app"), ("postgresql://app@db.internal/app", True)),
    (("DATABASE_URL", "postgresql+psycopg://db/app"), ("postgresql+psycopg://db/app", True)),
    (("CACHE", "redis://localhost:6379/0"), ("redis://localhost:6379/0", True)),
    (("API_URL", "http://127.0.0.1:8080/api"), ("http://127.0.0.1:9999/api", False)),
    (("API_URL", "http://localhost:8443/x"), ("http://localhost:9999/x", False)),
    (("API_URL", "http://127.0.0.1:5000/api"), ("http://127.0.0.1:5000/api", False)),
    (("UPLOAD_DIR", "/srv/uploads"), ("/srv/uploads", True)),
    (("FFMPEG", "/usr/bin/ffmpeg"), ("/usr/bin/ffmpeg", False)),
    (("LOG_LEVEL", "info"), ("info", False)),
]


@pytest.mark.parametrize(("given", "want"), REWRITES, ids=[f"{g[0]}={g[1]}" for g, _ in REWRITES])
def test_rewrite_points_values_into_scratch(given: tuple[str, str], want: tuple[str, bool]) -> None:
    found = rewrite({given[0]: given[1]}, REAL, SCRATCH, {8080, 8443}, 9999)
    assert (found.values[given[0]], given[0] in found.unsafe) == want


def test_trusted_values_and_the_scratch_folder_are_safe() -> None:
    blocked = "sqlite:////tmp/rgdoc-x/blocked-2/not-a-folder/db.sqlite3"
    found = rewrite({"A": "postgresql://doctor@127.0.0.1:1/doctor", "B": blocked}, REAL, SCRATCH, set(), None,
                    Path("/tmp/rgdoc-x"), frozenset({"A"}))
    assert found.unsafe == {}


@pytest.mark.parametrize(("name", "value", "want"), [
    ("DATABASE_URL", "postgres://x/y", True), ("ANYTHING", "sqlite:///a.db", True), ("DATA_DIR", "/srv/d", True),
    ("DB_FILE", "/srv/app.db", True), ("LOG_LEVEL", "info", False), ("HOME_PAGE", "https://example.com", False),
    ("UPDATED", "/x", False), ("DATABASE_POOL", "5", False),
])
def test_data_like(name: str, value: str, want: bool) -> None:
    assert data_like(name, value) is want


def test_broken_values_keep_their_kind() -> None:
    blocked = Path("/tmp/s/not-a-folder")
    assert broken_value("sqlite:///x.db", blocked, 1) == "sqlite:////tmp/s/not-a-folder/db.sqlite3"
    assert broken_value("postgresql+psycopg://u:p@db/app", blocked, 7) == \
        "postgresql+psycopg://doctor@127.0.0.1:7/doctor"
    assert broken_value("/srv/data/app.db", blocked, 1) == "/tmp/s/not-a-folder/app.db"
    assert edge_ports_in("a http://127.0.0.1:80/x and localhost:8443 but not example.com:99") == {80, 8443}


SOURCES = [
    ("import os\nA = os.environ['A']\n", [("A", True)]),
    ("import os\nos.environ.get('B', 'x')\nos.getenv('C')\nos.environ.setdefault('D', '1')\n",
     [("B", False), ("C", False), ("D", False)]),
    ("from os import environ as env, getenv as ge\nenv['E']\nge('F')\nenv.get('G')\n",
     [("E", True), ("F", False), ("G", False)]),
    ("import os\nname = 'H'\nos.environ[name]\nos.environ['I'] = '1'\n", []),
]


@pytest.mark.parametrize(("source", "want"), SOURCES)
def test_code_scan_finds_environment_reads(tmp_path: Path, source: str, want: list[tuple[str, bool]]) -> None:
    (tmp_path / "m.py").write_text(source)
    assert [(r.name, r.required) for r in scan(tmp_path, ["m.py"]).reads] == want


def test_code_scan_skips_tests_and_finds_urlopen_without_timeout(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("import os\nos.environ['ONLY_IN_TESTS']\n")
    (tmp_path / "c.py").write_text("import urllib.request\nfrom urllib.request import urlopen\n"
                                   "urllib.request.urlopen('u')\nurlopen('u', None, 5)\nurlopen('u', timeout=5)\n"
                                   "urlopen('u')\n")
    found = scan(tmp_path, ["tests/test_x.py", "c.py"])
    assert found.reads == [] and [(c.line, c.call) for c in found.calls] == [(3, "urllib.request.urlopen"),
                                                                          (6, "urlopen")]
    (tmp_path / ".env.example").write_text("# comment\nexport A=1\nB=\n  C = x\nA=2\n")
    assert env_example_names(tmp_path) == (".env.example", ["A", "B", "C"])


def test_entry_closure_follows_local_imports(tmp_path: Path) -> None:
    files = {"app.py": "import notes\nfrom pkg import util\n", "notes.py": "import os\n",
             "pkg/__init__.py": "", "pkg/util.py": "from . import deep\n", "pkg/deep.py": "",
             "api.py": "import json\n"}
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    listed = sorted(files)
    assert entry_closure(tmp_path, listed, ["python", "app.py"]) == [
        "app.py", "notes.py", "pkg/__init__.py", "pkg/deep.py", "pkg/util.py"]
    assert entry_closure(tmp_path, listed, ["python", "-m", "api"]) == ["api.py"]
    assert entry_closure(tmp_path, listed, ["uvicorn", "notes:app"]) == ["notes.py"]
    assert entry_closure(tmp_path, listed, ["./run.sh"]) is None


def _db(path: Path, *statements: str) -> None:
    with sqlite3.connect(path) as db:
        for statement in statements:
            db.execute(statement)
    db.close()


def test_fingerprints_compare_sqlite_logically_and_find_losses(tmp_path: Path) -> None:
    real, copy = tmp_path / "real", tmp_path / "copy"
    real.mkdir()
    _db(real / "a.db", "CREATE TABLE t (x)", "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)")
    (real / "notes.txt").write_text("hello")
    assert copy_data(real, copy) == 2
    before = fingerprint(copy)
    assert before.digest == fingerprint(real).digest
    _db(copy / "a.db", "VACUUM")  # bytes may move; the logical content does not
    assert differences(before, fingerprint(copy)) == []
    _db(copy / "a.db", "DELETE FROM t WHERE x = 2", "CREATE TABLE u (y)")
    (copy / "notes.txt").unlink()
    after = fingerprint(copy)
    assert differences(before, after) == [
        "a.db: schema changed; + CREATE TABLE u (y)", "a.db: table t: 2 → 1 rows", "a.db: table u created (0 rows)",
        "notes.txt: file removed"]
    assert losses(before, after) == ["a.db: table t went from 2 to 1 rows", "notes.txt: file removed (5 bytes)"]


def _finding(status: Status) -> Finding:
    return Finding(status=status, summary=status.value)


@pytest.mark.parametrize(("statuses", "want"), [
    ([Status.passed, Status.skipped], Status.passed), ([Status.passed, Status.warn], Status.warn),
    ([Status.warn, Status.fail, Status.passed], Status.fail), ([Status.skipped], Status.skipped), ([], Status.skipped),
])
def test_a_check_is_as_bad_as_its_worst_finding(statuses: list[Status], want: Status) -> None:
    assert combine("x", "X", [_finding(s) for s in statuses]).status is want


def test_exit_codes() -> None:
    def report(*statuses: Status, interrupted: str | None = None) -> Report:
        return Report(app="a", env="e", seconds=0, scratch="/tmp/x", interrupted=interrupted,
                      checks=[combine(f"c{i}", "C", [_finding(s)]) for i, s in enumerate(statuses)])

    assert exit_code(report(Status.passed, Status.skipped, Status.warn)) == 0
    assert exit_code(report(Status.passed, Status.warn), strict=True) == 2
    assert exit_code(report(Status.fail)) == 2
    assert exit_code(report(Status.passed, interrupted="SIGTERM")) == 130


@pytest.mark.skipif(os.geteuid() != 0, reason="the interpreter reason is given only to a root daemon")
def test_shared_user_for_want_of_a_runnable_python_is_not_told_to_run_as_root(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As root with the artifacts' Python in a folder others cannot enter (pyenv under /root), the doctor told
    the user to "run the daemon as root" — which they were. The remediation names what to change."""
    from railguard.doctor.envs import _isolation_remedy
    from railguard.providers.local import isolation

    hidden = tmp_path / "private" / "bin"
    hidden.mkdir(parents=True)
    (tmp_path / "private").chmod(0o700)
    python = hidden / "python3"
    python.write_text("")
    python.chmod(0o755)
    monkeypatch.setattr("sys._base_executable", str(python), raising=False)
    monkeypatch.delenv("RAILGUARD_ISOLATION", raising=False)
    home = Path("/tmp") / f"rg-remedy-{os.getpid()}"
    level = isolation.detect(home)
    assert not level.isolated and "cannot be run by other users" in level.reason, level
    remedy = _isolation_remedy(level.reason)
    assert "system Python" in remedy and "Run the daemon as root" not in remedy, remedy
    monkeypatch.setenv("RAILGUARD_ISOLATION", "off")
    assert "RAILGUARD_ISOLATION" in _isolation_remedy(isolation.detect(home).reason)


def test_the_doctors_copy_of_the_data_never_follows_what_the_app_planted(tmp_path: Path) -> None:
    """The data folder is the app's: a link or a hard link to the daemon's state there is not copied into the
    scratch folder (which the scratch user owns), whatever its name or header."""
    state = tmp_path / "state.db"
    _db(state, "CREATE TABLE tokens (hash)", "INSERT INTO tokens VALUES ('admin-token-hash')")
    real, copy = tmp_path / "real", tmp_path / "copy"
    real.mkdir()
    _db(real / "app.db", "CREATE TABLE t (x)")
    (real / "leak.db").symlink_to(state)
    os.link(state, real / "hard.db")
    assert copy_data(real, copy) == 1
    assert sorted(p.name for p in copy.iterdir()) == ["app.db"]
