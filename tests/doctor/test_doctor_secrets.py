"""The doctor never hands a protected environment's real secrets to the working tree's code (it is unreviewed: an
agent may have written it a minute ago). Its scratch runs get ``railguard-doctor-placeholder`` for each secret, and
the check says so; an unprotected environment's scratch runs keep its real values (redacted from the output).

Through the real CLI on the healthy sample app, whose release command prints what it was given and fails, so the
doctor's evidence (the command's log tail) shows the value the code saw.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.doctor.harness import SampleApp, make_app

REAL = "prod-real-value-6f1c"
RELEASE = ('release = ["python", "-c", '
           '"import os, sys; print(\'release saw\', os.environ.get(\'API_KEY\')); sys.exit(3)"]')


@pytest.mark.timeout(300)
def test_a_protected_environments_scratch_runs_get_placeholders_not_its_secrets(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    try:
        _check(app)
    finally:
        app.stop()  # the daemon `secret set` started


def _check(app: SampleApp) -> None:
    app.edit_spec('release = ["python", "migrate.py"]', RELEASE + '\nsecrets = ["API_KEY"]')
    for env, value in (("production", REAL), ("staging", "staging-value-93ab")):
        done = subprocess.run([sys.executable, "-m", "railguard", "secret", "set", "API_KEY", "--env", env],
                              cwd=app.root, input=value, capture_output=True, text=True, env=app.env(), timeout=120,
                              check=False)
        assert done.returncode == 0, done.stdout + done.stderr

    done = app.rg("doctor", "--env", "production", "--json", "--check=idempotent-release")
    assert REAL not in done.stdout + done.stderr
    result = next(c for c in json.loads(done.stdout)["doctor"]["checks"] if c["id"] == "idempotent-release")
    text = json.dumps(result)
    assert "release saw railguard-doctor-placeholder" in text, text  # what the code was given
    notes = [f for f in result["findings"] if f["summary"].startswith("secrets: placeholder values for API_KEY")]
    assert notes and "protected 'production'" in notes[0]["summary"], result

    done = app.rg("doctor", "--env", "staging", "--json", "--check=idempotent-release")
    assert "staging-value-93ab" not in done.stdout + done.stderr  # redacted from every finding
    result = next(c for c in json.loads(done.stdout)["doctor"]["checks"] if c["id"] == "idempotent-release")
    assert "placeholder" not in json.dumps(result) and "release saw" in json.dumps(result), result

    # Staging protected by what was applied (the state), the working tree's spec saying otherwise: placeholders.
    from railguard.model.resources import ObservedResource, environment_address
    from railguard.state.store import Store

    store = Store.open(app.root / ".railguard")
    try:
        store.set_observed("staging", ObservedResource(address=environment_address("staging"), kind="environment",
                                                       fingerprint="sha256:x", config={"protected": True}),
                           environment_address("staging"))
    finally:
        store.close()
    done = app.rg("doctor", "--env", "staging", "--json", "--check=idempotent-release")
    assert "staging-value-93ab" not in done.stdout + done.stderr
    result = next(c for c in json.loads(done.stdout)["doctor"]["checks"] if c["id"] == "idempotent-release")
    assert "release saw railguard-doctor-placeholder" in json.dumps(result), result
