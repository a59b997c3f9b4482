"""What a newcomer reads on an 80-column terminal: `status`, the doctor's findings, `token create --json`.

Pure presentation, no daemon: each test renders a record the daemon would send and checks what the user sees.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from railguard.cli import doctor_cmd, render
from railguard.cli.output import out
from railguard.doctor import report as doctor_report
from railguard.doctor.report import CheckResult, Finding, Report, Status
from railguard.model.api import EnvironmentStatus


@pytest.fixture
def eighty() -> Iterator[None]:
    console = out.capture.__self__  # the console behind the lazy proxy
    old = console._width
    console.width = 80
    yield
    console._width = old


def _status() -> EnvironmentStatus:
    replica = {"name": "staging.web.r12.0", "pid": 1234567, "port": 43499, "health": "healthy", "restarts": 3,
               "uptime_s": 3 * 86400 + 5 * 3600 + 7}
    return EnvironmentStatus.model_validate({
        "env": "staging", "serial": 41, "drift": {"live_differs": False, "details": []},
        "edge": {"port": 8080, "url": "http://127.0.0.1:8080/", "running": True,
                 "routes": [{"path": "/", "upstreams": ["127.0.0.1:43499"]}]},
        "services": [{"name": "web", "address": "staging/service.web", "release": 12, "status": "progressing",
                      "replicas": [replica, {**replica, "name": "staging.web.r12.1", "pid": 1234568}],
                      "warm": [{"release": 11, "replicas": 2, "until_s": 300}]}]})


def test_status_table_fits_80_columns_without_folding_a_cell(eighty: None) -> None:
    """It was 89 columns wide: at 80 the replica's name and 'restarts' folded over three lines."""
    with out.capture() as shown:
        render.status(_status())
    lines = shown.get().splitlines()
    assert all(len(line) <= 80 for line in lines), "\n" + "\n".join(lines)
    header = next(line for line in lines if "replica" in line)
    assert "restarts" in header and header.rstrip().endswith(" up"), header
    row = next(line for line in lines if "1234567" in line)
    assert "r12.0" in row and "3d5h" in row and "progressing" in row, row
    assert sum("1234568" in line for line in lines) == 1
    assert "web release 11: warm, 2 replica(s), stops in 5m" in shown.get()


def test_short_duration() -> None:
    assert [render.short_duration(s) for s in (0, 59.6, 60, 725, 3600, 3 * 3600 + 12 * 60 + 5, 86400 * 9)] == \
        ["0s", "59s", "1m", "12m5s", "1h", "3h12m", "9d"]


def _isolation_check() -> CheckResult:
    findings = [Finding(status=Status.warn, subject=env, summary=f"{env}: shared-user: the daemon is not root",
                        evidence=["not root"]) for env in ("staging", "production")]
    return CheckResult(id="isolation", title="isolation", status=Status.warn, summary=findings[0].summary,
                       findings=findings)


def test_doctor_names_a_findings_subject_once() -> None:
    """The isolation check's findings say "staging: shared-user: ..." and the renderer put the subject in front
    again: "staging: staging: shared-user"."""
    with out.capture() as shown:
        doctor_cmd.show(_isolation_check())
    text = shown.get()
    assert "staging: shared-user" in text and "production: shared-user" in text, text
    assert "staging: staging" not in text and "production: production" not in text, text
    report = Report(app="notes", env="staging", checks=[_isolation_check()], seconds=1.0, scratch="/tmp/x")
    summaries = [d.summary for d in doctor_report.diagnostics(report)]
    assert summaries == ["isolation: staging: shared-user: the daemon is not root",
                         "isolation: production: shared-user: the daemon is not root"], summaries


def test_a_line_number_between_colons_is_not_an_emoji() -> None:
    """init printed "locallibrary/settings.py💯 ..." for a change at line 100 (Rich's :100: emoji code)."""
    with out.capture() as shown:
        out.print("    locallibrary/settings.py:100: STATIC_ROOT = ...  :fire:")
    assert "settings.py:100: STATIC_ROOT" in shown.get() and ":fire:" in shown.get(), shown.get()


def test_a_kubernetes_service_refuses_a_build_chained_after_its_pip_install() -> None:
    """`pip install ... && python manage.py collectstatic` (what init writes for Django) passed as a plain pip
    install on Kubernetes, where the collect step would silently not run."""
    from railguard.model.diagnostics import RailguardError
    from railguard.providers.kubernetes.artifact_deps import refuse_build

    refuse_build("web", ["python", "-m", "pip", "install", "-r", "requirements.txt"])
    with pytest.raises(RailguardError):
        refuse_build("web", ["python", "-m", "pip", "install", "-r", "requirements.txt", "&&", "python",
                             "manage.py", "collectstatic", "--noinput"])


def test_the_doctor_says_which_environments_lack_a_variable_in_english() -> None:
    from railguard.doctor.envs import _lack

    assert _lack(["staging"]) == "staging does not"
    assert _lack(["staging", "production"]) == "staging and production do not"
