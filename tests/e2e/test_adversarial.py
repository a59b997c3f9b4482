"""The app is hostile: code deployed to staging attacks production, in isolated and in shared-user mode.

One deployment per mode: production runs, then staging deploys an app (tests/e2e/hostile/hostile.py) that
tries each attack once at start and serves the results on /report. In isolated mode every attack fails and
production is unaffected; in shared-user mode what the app can do is exactly what docs/guardrails.md lists
(the test reads the table there, so the docs cannot drift). The table's "recorded" column says how each attempt is
recorded: those asserted as security.refused events, signed audit entries and one incident on staging, attributed
by the kernel's word (SO_PEERCRED for the daemon's socket, the audit subsystem's uid for what the kernel itself
refused) to staging's user, never to production.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from railguard.daemon.intrusions import PER_MINUTE

from .harness import free_port, wait_for

HOSTILE = Path(__file__).parent / "hostile" / "hostile.py"
DOCS = Path(__file__).parents[2] / "docs" / "guardrails.md"
SPEC = """
[app]
name = "hostile"

[environments.staging]
edge_port = {staging}

[environments.staging.services.web]
env = {{ TARGET_STATE = "{state}", TARGET_EDGE_PORT = "{production}", TARGET_DATA = "{prod_data}" }}

[environments.production]
edge_port = {production}

[services.web]
run = ["python", "hostile.py"]
secrets = ["API_TOKEN"]
start_timeout = "20s"
[services.web.health]
http = "/healthz"
interval = "500ms"
timeout = "400ms"
start_period = "1s"
[[services.web.routes]]
path = "/"
"""
PROD_SECRET = "prd-hostile-7c1d-secret"


# What each attack the daemon can see sends it (the request line it records), for the table's recorded rows.
TRIED = {"call_daemon": "GET /v1/whoami HTTP/1.1",
         "forged_token": "GET /v1/status?env=production HTTP/1.1 with a token"}
KERNEL = "`security.refused` (kernel audit)"  # the table's word: the kernel refused it, its audit reported it


def kernel_witness(d: Deployment, name: str, data: dict[str, Any]) -> bool:
    """Whether a kernel-reported refusal (an event's data) is the attack ``name`` (its syscall and target)."""
    target, syscall = str(data.get("target", "")), str(data.get("syscall", ""))
    if name == "write_state_db":
        return target.startswith(f"{d.state}/state.db") and syscall.startswith("open")
    if name == "tamper_artifact":
        return target.endswith("/hostile.py") and syscall.startswith("open") and "/data/" not in target
    if name == "join_edge":
        return syscall == "bind" and target == f"127.0.0.1:{d.production}" and data.get("errno") == "EADDRINUSE"
    if name == "read_environ":
        return re.fullmatch(r"/proc/\d+/environ", target) is not None
    if name == "write_data":
        return target.startswith(f"{d.state}/data/production/") or target == f"{d.state}/data/production"
    raise AssertionError(f"no kernel witness for {name}")


def documented() -> dict[str, dict[str, str]]:
    """The attack table of docs/guardrails.md: attack -> {mode: 'refused' | 'possible', 'recorded': ...}."""
    text = DOCS.read_text()
    table = text[text.index("<!-- attacks:begin -->"):text.index("<!-- attacks:end -->")]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    found = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        name = re.match(r"`(\w+)`", cells[0])
        assert name, row
        found[name.group(1)] = {"isolated": cells[1], "shared-user": cells[2], "recorded": cells[3]}
    return found


def reachable_python(folder: Path) -> str | None:
    """An interpreter whose base other users can run (the artifacts' virtualenvs are made from it)."""
    base = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    if all(os.stat(p).st_mode & 0o001 for p in base.parents):
        return sys.executable
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not system.exists():
        return None
    # A venv on the system's Python of the same minor version that sees this venv's packages (same ABI).
    venv = folder / "py"
    subprocess.run([str(system), "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True,
                             check=True).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(purelib, "railguard-test.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return str(venv / "bin" / "python")


class Deployment:
    def __init__(self, root: Path, python: str, env: dict[str, str]) -> None:
        self.root, self.python, self.env = root, python, env
        self.staging, self.production = free_port(), free_port()
        self.state = root / ".railguard"
        self.agent = ""
        shutil.copy(HOSTILE, root / "hostile.py")
        (root / "railguard.toml").write_text(SPEC.format(
            staging=self.staging, production=self.production, state=self.state,
            prod_data=self.state / "data" / "production"))

    def rg(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("RAILGUARD_HOME", "RAILGUARD_TOKEN")}
        # Tools installed beside this interpreter (the Caddy binary) stay findable from the other interpreter.
        path = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.update({"NO_COLOR": "1", "COLUMNS": "200", "PATH": path, **self.env})
        return subprocess.run([self.python, "-m", "railguard", *args], cwd=self.root, capture_output=True,
                              text=True, timeout=180, env=env, input=stdin, check=False)

    def rg_json(self, *args: str) -> dict[str, Any]:
        done = self.rg(*args, "--json")
        assert "Traceback" not in done.stderr, done.stderr
        answer: dict[str, Any] = json.loads(done.stdout)
        assert answer["ok"], answer
        return answer

    def get(self, port: int, path: str = "/") -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5, trust_env=False)


@pytest.fixture
def site() -> Iterator[Path]:
    # Not under pytest's 0700 folder: an isolated environment's user must traverse down to its artifact.
    root = Path(tempfile.mkdtemp(prefix="rg-adversarial-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    done = subprocess.run([sys.executable, "-m", "railguard", "daemon", "stop", "--everything", "--spec",
                           str(root / "railguard.toml")], capture_output=True, text=True, timeout=60,
                          check=False)
    assert "Traceback" not in done.stderr
    shutil.rmtree(root, ignore_errors=True)


def attack(site: Path, python: str, env: dict[str, str]) -> tuple[Deployment, dict[str, Any]]:
    d = Deployment(site, python, env)
    assert d.rg("secret", "set", "API_TOKEN", "--env", "production", stdin=PROD_SECRET).returncode == 0
    assert d.rg("secret", "set", "API_TOKEN", "--env", "staging", stdin="stg-hostile-2b9e").returncode == 0
    d.rg_json("deploy", "--env", "production", "--yes")
    agent = d.rg_json("token", "create", "--name", "mallory", "--role", "agent", "--env", "staging")
    d.env["RAILGUARD_TOKEN"] = agent["token"]["token"]
    d.rg_json("deploy", "--env", "staging", "--yes")  # as the staging-only agent
    report: dict[str, Any] = wait_for(lambda: d.get(d.staging, "/report").json(), "the hostile app's report")
    d.agent = d.env.pop("RAILGUARD_TOKEN")  # from here on, the owner looks
    return d, report


def test_isolated_mode_refuses_every_attack_and_production_is_unaffected(site: Path) -> None:
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("isolation needs root and useradd")
    python = reachable_python(site)
    if python is None:
        pytest.skip("no Python other users can run")
    d, report = attack(site, python, {})
    expected = documented()
    assert set(expected) <= set(report), report
    for name, wanted in expected.items():
        assert wanted["isolated"] == "refused"
        assert report[name]["possible"] is False, (name, report[name])
    # The app ran as staging's own user, without root's groups; production as another user.
    staging_user, production_user = pwd.getpwnam("rg-hostile-staging"), pwd.getpwnam("rg-hostile-production")
    assert report["_whoami"]["uid"] == staging_user.pw_uid and set(report["_whoami"]["groups"]) <= {staging_user.pw_gid}
    for env, user in (("staging", "rg-hostile-staging"), ("production", "rg-hostile-production")):
        status = d.rg_json("status", "--env", env)["status"]
        assert status["isolation"] == "isolated" and status["user"] == user, status
        pids = [r["pid"] for s in status["services"] for r in s["replicas"]]
        assert pids and all(os.stat(f"/proc/{pid}").st_uid == pwd.getpwnam(user).pw_uid for pid in pids)
    # Production is unaffected: it serves, its data folder is its user's alone, the state holds no forgery.
    assert d.get(d.production).text == "ok"
    # The edge (Caddy and its upstream resolver) runs as its own user, never as the daemon's root.
    edge_user = pwd.getpwnam("rg-edge")
    for pid_file in ("caddy.pid", "resolver.pid"):
        pid = json.loads((d.state / "edge" / "production" / pid_file).read_text())["pid"]
        assert os.stat(f"/proc/{pid}").st_uid == edge_user.pw_uid, pid_file
    data = d.state / "data" / "production"
    assert data.stat().st_uid == production_user.pw_uid and data.stat().st_mode & 0o077 == 0
    assert not (data / "pwned").exists()
    assert (d.state / "state.db").stat().st_mode & 0o077 == 0
    health = d.rg_json("daemon", "status")["daemon"]
    assert health["isolation"] == "isolated", health
    # What the daemon can see of the attacks is recorded, attributed to staging's user by the kernel's word
    # (SO_PEERCRED), never the app's: an event, a signed audit entry, an incident, and a count in status.
    seen = [name for name, wanted in expected.items() if wanted["recorded"] == "`security.refused`"]
    assert seen and set(seen) <= set(TRIED), seen
    assert {wanted["recorded"] for wanted in expected.values()} <= {"`security.refused`", KERNEL, "unseen"}
    kernel = [name for name, wanted in expected.items() if wanted["recorded"] == KERNEL]
    if "kernel-refused attempts are recorded" not in health["kernel_audit"]:  # no auditctl or no kernel audit here
        assert "kernel-refused attempts are not recorded (" in health["kernel_audit"], health
        pytest.skip(f"the kernel's refusals cannot be witnessed here: {health['kernel_audit']}")
    assert kernel, "the docs name the kernel-refused attacks"

    last: list[dict[str, Any]] = []

    def kernel_recorded() -> list[dict[str, Any]] | None:
        events = [e for e in d.rg_json("events", "--env", "staging", "--limit", "1000")["events"]
                  if e["kind"] == "security.refused" and e["data"]["code"] == "kernel.refused"]
        last[:] = events
        return events if all(any(kernel_witness(d, n, e["data"]) for e in events) for n in kernel) else None

    try:
        witnessed = wait_for(kernel_recorded, "the kernel's refusals of each attack on staging's timeline")
    except AssertionError:
        missing = [n for n in kernel if not any(kernel_witness(d, n, e["data"]) for e in last)]
        raise AssertionError(f"not recorded: {missing}; recorded: {[e['data']['what'] for e in last]}") from None
    for event in witnessed:  # by the kernel's word: staging's uid, never production's
        assert event["data"]["user"] == "rg-hostile-staging" and event["data"]["uid"] == staging_user.pw_uid, event
    kernel_audit = [a for a in d.rg_json("audit", "--env", "staging", "--limit", "1000")["audit"]
                    if a["action"] == "security.refused" and a["detail"].get("code") == "kernel.refused"]
    for name in kernel:
        assert any(kernel_witness(d, name, a["detail"]) for a in kernel_audit), (name, kernel_audit)
    assert all(a["principal"] == "os:rg-hostile-staging" for a in kernel_audit), kernel_audit

    def recorded() -> list[dict[str, Any]] | None:
        events = [e for e in d.rg_json("events", "--env", "staging")["events"] if e["kind"] == "security.refused"]
        return events if {TRIED[name] for name in seen} <= {e["data"]["what"] for e in events} else None

    events = wait_for(recorded, "the refused attempts on staging's timeline")
    for event in events:
        assert event["data"]["user"] == "rg-hostile-staging" and event["data"]["uid"] == staging_user.pw_uid, event
        assert event["data"]["code"] in ("auth.foreign_user", "kernel.refused"), event
        assert "rg_forged" not in json.dumps(event), event
    entries = [a for a in d.rg_json("audit", "--env", "staging")["audit"] if a["action"] == "security.refused"]
    assert {TRIED[name] for name in seen} <= {a["detail"]["what"] for a in entries}, entries
    assert all(a["principal"] == "os:rg-hostile-staging" for a in entries), entries
    assert d.rg_json("audit", "verify")["verify"]["ok"] is True  # the entries are in the signed chain
    incidents = d.rg_json("incidents", "--env", "staging")["incidents"]
    # The app also opened 300 connections at once (flood_daemon): the records stay a handful (rate limit), and the
    # daemon kept answering the owner meanwhile (every command above).
    refused = [e for e in d.rg_json("events", "--env", "staging", "--limit", "1000")["events"]
               if e["kind"] == "security.refused"]
    assert "300 connections opened" in report["flood_daemon"]["detail"], report["flood_daemon"]
    socket_refused = [e for e in refused if e["data"]["code"] == "auth.foreign_user"]
    assert len(seen) <= len(socket_refused) <= 10, refused
    # The kernel's records are one per kind of attempt: scanning every /proc/<pid>/environ is one record, not one
    # per process; the whole burst stays within the recorder's minute budget.
    assert len(kernel) <= len(refused) - len(socket_refused) <= 2 * len(kernel), refused
    assert len(refused) <= PER_MINUTE, refused
    security = [i for i in incidents if i["kind"] == "security_refused"]
    assert len(security) == 1 and security[0]["next_actions"][0]["tool"] == "list_events", incidents
    staging = d.rg_json("status", "--env", "staging")["status"]
    assert staging["security_refused"] >= len(seen) and "rg-hostile-staging" in staging["security_last"], staging
    # Nothing of staging's attempts is on production's timeline: it was not production's code.
    assert not [e for e in d.rg_json("events", "--env", "production")["events"] if e["kind"] == "security.refused"]
    # Secrets of production never reached staging's report (nor anything it could read).
    assert PROD_SECRET not in json.dumps(report)


def test_shared_user_mode_allows_what_the_docs_list_and_token_only_refuses_it(site: Path) -> None:
    d, report = attack(site, sys.executable, {"RAILGUARD_ISOLATION": "off"})
    expected = documented()
    for name, wanted in expected.items():
        assert report[name]["possible"] is (wanted["shared-user"] == "possible"), (name, report[name])
    status = d.rg_json("status", "--env", "production")["status"]
    assert status["isolation"] == "shared-user" and status["user"] is None
    # The made-up token is refused in this mode too, and recorded on the daemon's timeline (the environment a
    # request names is the caller's word: only a token limited to exactly it puts the refusal on its timeline).
    assert not report["forged_token"]["possible"] and " 401 " in report["forged_token"]["detail"]
    forged = wait_for(lambda: [e for e in d.rg_json("events")["events"]
                               if e["kind"] == "security.refused" and e["env"] is None
                               and e["data"]["code"] == "auth.unknown_token"] or None, "the forged token's refusal")
    assert forged[0]["data"]["code"] == "auth.unknown_token" and "GET /v1/status" in forged[0]["data"]["what"]
    # A real token used beyond its scope (the staging-only agent asking for production) is recorded the same way,
    # and nothing lands on production's own timeline.
    d.env["RAILGUARD_TOKEN"] = d.agent
    assert d.rg("status", "--env", "production").returncode != 0
    del d.env["RAILGUARD_TOKEN"]
    beyond = wait_for(lambda: [e for e in d.rg_json("events")["events"]
                               if e["kind"] == "security.refused" and e["data"]["code"] == "auth.forbidden"] or None,
                      "the agent's refusal on the daemon's timeline")
    assert not [e for e in d.rg_json("events", "--env", "production")["events"] if e["kind"] == "security.refused"]
    assert beyond[0]["data"]["principal"].endswith("mallory") and d.agent not in json.dumps(beyond), beyond
    # Token-only mode without isolation is refused unless accepted explicitly, and then it says so.
    agent = d.agent
    assert d.rg("daemon", "stop").returncode == 0
    refused = d.rg("daemon", "start", "--require-token")
    assert refused.returncode != 0 and "daemon.not_isolated" in refused.stdout + refused.stderr, refused
    assert d.rg("daemon", "start", "--require-token", "--allow-shared-user").returncode == 0
    d.env["RAILGUARD_TOKEN"] = agent
    who = d.rg_json("whoami")
    assert who["require_token"] is True and who["shared_user_allowed"] is True and who["isolation"] == "shared-user"
    # The daemon dies; the next call starts it on demand, in the recorded mode: still token-only.
    os.kill(int(json.loads((d.state / "daemon.pid").read_text())["pid"]), signal.SIGKILL)
    del d.env["RAILGUARD_TOKEN"]
    again = d.rg("status", "--env", "production", "--json")
    assert json.loads(again.stdout)["diagnostics"][0]["code"] == "auth.token_required", again.stdout
    # Only the owner's explicit choice leaves token-only mode (the fixture then stops everything).
    pid = json.loads((d.state / "daemon.pid").read_text())["pid"]
    os.kill(int(pid), signal.SIGTERM)
    wait_for(lambda: not (d.state / "daemon.pid").exists(), "the daemon to stop")
    assert d.rg("daemon", "start", "--same-user").returncode == 0
