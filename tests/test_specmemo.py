"""The spec parse shared within a process (engine/specmemo.py): one parse per text, callers at once share it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from railguard.engine import specmemo
from railguard.engine.workspace import Workspace
from railguard.model import checks, specfile
from railguard.model.counters import COUNTS

SPEC = '[app]\nname = "a"\n[environments.staging]\nedge_port = 18080\n[services.web]\nrun = ["python", "app.py"]\n'


def _workspace(tmp_path: Path, text: str = SPEC) -> Workspace:
    (tmp_path / "railguard.toml").write_text(text)
    return Workspace(tmp_path / "railguard.toml", tmp_path / ".railguard")


def test_the_same_text_is_parsed_once_and_another_text_again(tmp_path: Path) -> None:
    specmemo.forget()
    ws = _workspace(tmp_path)
    parses = COUNTS["spec-parse"]
    first, _ = ws.load_valid()
    again, _ = Workspace(ws.spec_path, ws.home).load_valid()
    assert again is first and COUNTS["spec-parse"] - parses == 1
    ws.spec_path.write_text(SPEC.replace("18080", "18081"))
    changed, _ = ws.load_valid()
    assert COUNTS["spec-parse"] - parses == 2 and changed.environments["staging"].edge_port == 18081


def test_callers_at_once_share_one_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    specmemo.forget()
    ws = _workspace(tmp_path)
    started, release = threading.Event(), threading.Event()
    real = specfile.parse_spec

    def slow(text: str, file: str | None = None, loads: Any = None) -> specmemo.Result:
        started.set()
        release.wait(10)  # the other callers arrive while this parse is under way
        return real(text, file, loads)

    monkeypatch.setattr(specmemo, "parse_spec", slow)
    parses = COUNTS["spec-parse"]
    found: list[object] = []
    threads = [threading.Thread(target=lambda: found.append(ws.load_valid()[0])) for _ in range(3)]
    threads[0].start()
    assert started.wait(10)
    for t in threads[1:]:
        t.start()
    release.set()
    for t in threads:
        t.join(10)
    assert len(found) == 3 and found[0] is found[1] is found[2]
    assert COUNTS["spec-parse"] - parses == 1


def test_each_caller_gets_its_own_diagnostics_list(tmp_path: Path) -> None:
    specmemo.forget()
    ws = _workspace(tmp_path, SPEC + 'env = { API_TOKEN = "x" }\n')  # a warning: a secret-looking plain variable
    _, first = ws.load()
    first.clear()
    _, second = ws.load()
    assert [d.code for d in second] == ["spec.secret_in_env"]


def test_what_the_checks_read_of_the_machine_is_part_of_the_key(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    specmemo.forget()
    ws = _workspace(tmp_path, SPEC.replace("18080", "80"))
    monkeypatch.setattr(checks, "lowest_unprivileged_port", lambda: 1024)
    assert [d.code for d in ws.load()[1]] == ["spec.privileged_port"]
    monkeypatch.setattr(checks, "lowest_unprivileged_port", lambda: 0)  # root or CAP_NET_BIND_SERVICE
    assert ws.load()[1] == []


def test_a_parse_that_raised_is_not_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    specmemo.forget()
    ws = _workspace(tmp_path)

    def broken(text: str, file: str | None = None, loads: Any = None) -> specmemo.Result:
        raise MemoryError

    monkeypatch.setattr(specmemo, "parse_spec", broken)
    with pytest.raises(MemoryError):
        ws.load()
    monkeypatch.setattr(specmemo, "parse_spec", specfile.parse_spec)
    assert ws.load_valid()[0].app.name == "a"
