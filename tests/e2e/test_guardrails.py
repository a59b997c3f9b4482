"""Guardrails end to end, with a real daemon and real processes: tokens, approvals, secrets, audit."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import APP, Workspace, check_contract, free_port, run_on_terminal, wait_for

SPEC = """
[app]
name = "guarded"

[environments.staging]
edge_port = {staging}

[environments.production]
edge_port = {production}
protected = true
soak = "0s"

[services.web]
run = ["python", "app.py"]
release = ["python", "migrate.py"]
secrets = ["API_TOKEN"]
env = {{ VERSION = "{version}" }}
start_timeout = "15s"
[services.web.health]
http = "/healthz"
interval = "500ms"
timeout = "400ms"
[[services.web.routes]]
path = "/"
{extra}
"""
API = """
[services.api]
run = ["python", "app.py"]
release = ["python", "migrate.py"]
start_timeout = "15s"
[services.api.health]
http = "/healthz"
interval = "500ms"
timeout = "400ms"
[[services.api.routes]]
path = "/api"
"""
STAGING_SECRET = "stg-9f2c1a7e-secret-value"
PRODUCTION_SECRET = "prd-4b8d2e6f-secret-value"


class Guarded(Workspace):
    production: int

    def spec(self, version: str = "1", api: bool = True, extra: str = "") -> None:
        (self.root / "railguard.toml").write_text(SPEC.format(
            staging=self.port, production=self.production, version=version, extra=(API if api else "") + extra))

    def token(self, name: str, role: str, *envs: str) -> str:
        args = ["token", "create", "--name", name, "--role", role, *sum((["--env", e] for e in envs), [])]
        if role in ("deployer", "approver", "admin"):  # widening power: typed on a terminal
            code, text = run_on_terminal(self.root, [*args, "--json"], f"{role}:{name}")
            assert code == 0, text
            return str(json.loads(text[text.index("{"):])["token"]["token"])
        code, found = self.rg_json(*args)
        assert code == 0, found
        return str(found["token"]["token"])

    def as_(self, token: str, *args: str) -> tuple[int, dict[str, Any]]:
        return self.rg_json(*args, env={"RAILGUARD_TOKEN": token})

    def set_secret(self, env: str, value: str) -> None:
        import subprocess
        import sys

        done = subprocess.run([sys.executable, "-m", "railguard", "secret", "set", "API_TOKEN", "--env", env,
                               "--json"], cwd=self.root, input=value, capture_output=True, text=True, timeout=60,
                              check=False)
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert answer["secret"]["name"] == "API_TOKEN" and value not in done.stdout
        check_contract("secret", answer)  # the daemon's SecretSet, through the client's model, dumped unchanged


def guarded(tmp_path: Path) -> Iterator[Guarded]:
    """The guardrail tests' workspace: staging and a protected production, each with its API_TOKEN."""
    import shutil

    from ..conftest import stop_daemon

    for name in ("app.py", "migrate.py"):
        shutil.copy(APP / name, tmp_path / name)
    ws = Guarded(tmp_path, free_port(), free_port())
    ws.production = free_port()
    ws.spec()
    ws.set_secret("staging", STAGING_SECRET)
    ws.set_secret("production", PRODUCTION_SECRET)
    yield ws
    stop_daemon(tmp_path)


@pytest.fixture
def g(tmp_path: Path) -> Iterator[Guarded]:
    yield from guarded(tmp_path)


def codes(result: dict[str, Any]) -> list[str]:
    return [d["code"] for d in result["diagnostics"]]


def test_agent_deploys_staging_and_waits_for_approval_in_production(g: Guarded) -> None:
    agent = g.token("claude", "agent")
    code, result = g.as_(agent, "deploy", "--env", "staging", "--yes")
    assert code == 0, result  # an agent deploys staging freely

    code, planned = g.as_(agent, "plan", "--env", "production")
    plan = planned["plan"]
    assert code == 0 and plan["decision"] == "require_approval" and plan["requested_by"] == "token:claude"
    assert {v["rule"] for v in plan["verdicts"]} == {"guard.agent_in_protected"}
    code, refused = g.as_(agent, "apply", plan["id"])
    assert code == 1 and codes(refused) == ["policy.approval_required"]
    code, refused = g.as_(agent, "approve", plan["id"])
    assert code == 1 and codes(refused) == ["auth.forbidden"]  # an agent can never approve
    code, refused = g.rg_json("approve", plan["id"])  # the OS user, but no terminal: an agent could run this
    assert code == 1 and codes(refused) == ["auth.needs_terminal"]

    code, text = run_on_terminal(g.root, ["approve", plan["id"]], plan["hash"][7:15])
    assert code == 0, text  # a person at a terminal, typing the plan's short hash
    code, result = g.as_(agent, "apply", plan["id"])
    assert code == 0 and result["operation"]["status"] == "succeeded", result
    assert g.get().status_code == 200
    # Nor can the OS user without a terminal stop everything while protected production runs (an agent could).
    code, refused = g.rg_json("daemon", "stop", "--everything")
    assert code == 1 and codes(refused) == ["auth.needs_terminal"], refused
    assert g.get().status_code == 200 and g.rg_json("daemon", "status")[0] == 0

    # A changed plan needs a new approval: the old one is bound to the old plan's hash.
    g.spec(extra="[environments.production.services.web]\nreplicas = 2\n")
    code, second = g.as_(agent, "plan", "--env", "production")
    code, refused = g.as_(agent, "apply", second["plan"]["id"])
    assert code == 1 and codes(refused) == ["policy.approval_required"]
    code, again = g.as_(agent, "apply", plan["id"])  # and the approved plan cannot be replayed
    assert code == 1 and codes(again) == ["plan.already_applied"]


def test_self_approval_and_scoped_tokens_are_refused(g: Guarded) -> None:
    approver = g.token("lead", "approver")
    staging_only = g.token("stg-bot", "agent", "staging")
    code, refused = g.as_(staging_only, "plan", "--env", "production")
    assert code == 1 and codes(refused) == ["auth.forbidden"]
    deployer = g.token("ops", "deployer")
    assert g.as_(deployer, "deploy", "--env", "staging", "--yes")[0] == 0
    g.spec(extra='[environments.production.services.api]\nreplicas = 0\n')
    code, planned = g.as_(approver, "plan", "--env", "production")
    assert code == 1 and codes(planned) == ["auth.forbidden"]  # approvers review, they do not plan
    code, planned = g.as_(deployer, "plan", "--env", "production")
    assert code == 0
    code, refused = g.as_(deployer, "approve", planned["plan"]["id"])
    assert code == 1 and codes(refused) == ["auth.forbidden"]
    code, ok = g.as_(approver, "approve", planned["plan"]["id"])
    assert code == 0 and ok["approval"]["principal"] == "token:lead"
    for bad, expected in (("rg_nope_nope", "auth.unknown_token"), ("garbage", "auth.unknown_token")):
        code, refused = g.as_(bad, "status", "--env", "staging")
        assert code == 1 and codes(refused) == [expected]
    db = sqlite3.connect(g.root / ".railguard" / "state.db")
    db.execute("UPDATE tokens SET expires_at = '2020-01-01T00:00:00+00:00' WHERE name = 'lead'")
    db.commit()
    db.close()
    code, refused = g.as_(approver, "status", "--env", "staging")
    assert code == 1 and codes(refused) == ["auth.token_expired"]
    assert g.rg_json("token", "revoke", "ops")[0] == 0
    code, refused = g.as_(deployer, "status", "--env", "staging")
    assert code == 1 and codes(refused) == ["auth.token_revoked"]


def test_deleting_a_production_service_needs_a_confirmed_approval(g: Guarded) -> None:
    assert g.rg_json("deploy", "--env", "staging", "--yes")[0] == 0
    code, planned = g.rg_json("plan", "--env", "production")
    assert code == 0 and planned["plan"]["decision"] == "allow"  # creates are safe; staging proved the artifact
    assert g.rg_json("apply", planned["plan"]["id"])[0] == 0
    approver = g.token("lead", "approver")

    g.spec(api=False)
    code, planned = g.rg_json("plan", "--env", "production")
    plan = planned["plan"]
    assert any(v["rule"] == "guard.protected_delete" and v["confirm"] == "production/service.api"
               for v in plan["verdicts"])
    code, refused = g.rg_json("apply", plan["id"])
    assert code == 1 and codes(refused) == ["policy.approval_required"]
    code, refused = g.rg_json("deploy", "--env", "production", "--yes")
    assert code == 1  # no shortcut for protected environments
    code, refused = g.rg_json("rollback", "--env", "production")
    assert code == 1  # nor through a rollback
    code, refused = g.as_(approver, "approve", plan["id"])
    assert code == 1 and codes(refused) == ["approval.confirm_required"]
    code, ok = g.as_(approver, "approve", plan["id"], "--confirm", "production/service.api")
    assert code == 0, ok
    code, result = g.rg_json("apply", plan["id"])
    assert code == 0 and result["operation"]["status"] == "succeeded"


def test_promotion_freeze_and_rules(g: Guarded) -> None:
    rule = ('\n[[policies]]\nname = "no-friday-deletes"\nexpression = \'change.action == "delete" && env.protected\'\n'
            'effect = "deny"\nmessage = "no deletes in production this week"\n')
    g.spec(extra=rule)
    code, planned = g.rg_json("plan", "--env", "production")  # staging never ran this artifact
    # Saved for the record, but an agent reading the answer must not take it for a plan it may apply.
    assert code == 1 and not planned["ok"] and codes(planned)[-1] == "policy.denied", planned
    verdicts = {(v["rule"], v["effect"]) for v in planned["plan"]["verdicts"]}
    assert ("guard.promotion", "deny") in verdicts and planned["plan"]["decision"] == "deny"
    code, refused = g.rg_json("apply", planned["plan"]["id"])
    assert code == 1 and codes(refused) == ["policy.denied"]
    assert g.rg_json("deploy", "--env", "staging", "--yes")[0] == 0
    code, promoted = g.rg_json("promote", "--from", "staging", "--to", "production")
    assert code == 0 and promoted["plan"]["summary"]["decision"] == "allow"
    assert g.rg_json("apply", promoted["plan"]["id"])[0] == 0

    g.spec(api=False, extra=rule)
    code, planned = g.rg_json("plan", "--env", "production")
    assert ("policy:no-friday-deletes", "deny") in {(v["rule"], v["effect"]) for v in planned["plan"]["verdicts"]}

    freeze = ('\n[[environments.production.freezes]]\nstart = 2020-01-01T00:00:00Z\nend = 2099-01-01T00:00:00Z\n'
              'reason = "year-end freeze"\n')
    g.spec(extra=freeze.replace("[[environments.production.freezes]]", "[[environments.production.freezes]]"))
    code, planned = g.rg_json("plan", "--env", "production")
    code, refused = g.rg_json("apply", planned["plan"]["id"])
    assert code == 1 and codes(refused)[0] in ("policy.frozen", "policy.denied")


def test_secrets_never_leak(g: Guarded) -> None:
    assert g.rg_json("deploy", "--env", "staging", "--yes")[0] == 0
    # The replica got its own environment's value...
    code, status = g.rg_json("status", "--env", "staging")
    import httpx

    port = status["status"]["services"][1]["replicas"][0]["port"]
    assert "API_TOKEN" in httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text
    # ...and no output surface, nor the state folder, ever holds a value.
    outputs = []
    for args in (["status", "--env", "staging"], ["plan", "--env", "staging"], ["releases", "--env", "staging"],
                 ["events"], ["operations"], ["logs", "web", "--env", "staging"], ["audit"], ["secret", "list"],
                 ["plans"], ["policies", "--env", "staging"], ["validate"], ["whoami"]):
        done = g.rg(*args, "--json")
        outputs.append(done.stdout + done.stderr)
        outputs.append(g.rg(*args).stdout)
    code, refused = g.rg_json("secret", "set", "API_TOKEN", "--env", "staging", "--value", STAGING_SECRET)
    assert codes(refused) == ["secret.on_command_line"]
    outputs.append(json.dumps(refused))
    blob = "\n".join(outputs)
    for value in (STAGING_SECRET, PRODUCTION_SECRET):
        assert value not in blob
        for path in (g.root / ".railguard").rglob("*"):
            if path.is_file():
                assert value.encode() not in path.read_bytes(), path


def test_shared_secret_values_are_refused(g: Guarded) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "railguard", "secret", "set", "API_TOKEN", "--env", "production",
                           "--json"], cwd=g.root, input=STAGING_SECRET, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 1 and json.loads(done.stdout)["diagnostics"][0]["code"] == "secret.shared_value"


def test_an_edited_audit_entry_is_detected(g: Guarded) -> None:
    g.token("claude", "agent")
    g.rg_json("plan", "--env", "staging")
    code, ok = g.rg_json("audit", "verify")
    assert code == 0 and ok["verify"]["ok"]
    db = sqlite3.connect(g.root / ".railguard" / "state.db")
    db.execute("UPDATE audit SET principal = 'user:someone-else' WHERE id = 2")
    db.commit()
    db.close()
    code, refused = g.rg_json("audit", "verify")
    assert code == 1 and codes(refused) == ["audit.tampered"]
    assert "entry 2" in refused["diagnostics"][0]["detail"]


def test_token_only_mode(g: Guarded) -> None:
    admin = g.token("root-admin", "admin")
    assert g.rg("daemon", "stop").returncode == 0
    assert g.rg("daemon", "start", "--require-token", "--allow-shared-user").returncode == 0
    code, refused = g.rg_json("status", "--env", "staging")
    assert code == 1 and codes(refused) == ["auth.token_required"]
    code, ok = g.as_(admin, "whoami")
    assert code == 0 and ok["principal"]["id"] == "token:root-admin" and ok["require_token"] is True
    code, refused = g.rg_json("daemon", "stop")
    assert code == 1 and codes(refused) == ["auth.token_required"]
    code, stopped = g.as_(admin, "daemon", "stop", "--everything")
    assert code == 0 and stopped["stopped"]


def test_logs_served_are_redacted_even_when_the_app_prints_its_secret(g: Guarded) -> None:
    g.spec(api=False, extra="")
    spec = (g.root / "railguard.toml").read_text().replace('env = { VERSION = "1" }',
                                                           'env = { VERSION = "1", MODE = "leak" }')
    (g.root / "railguard.toml").write_text(spec)
    assert g.rg_json("deploy", "--env", "staging", "--yes")[0] == 0
    for args in (["logs", "web", "--env", "staging"], ["logs", "web", "--env", "staging", "--json"]):
        text = g.rg(*args).stdout
        assert "connecting with token (sensitive:API_TOKEN)" in text
        assert STAGING_SECRET not in text
    # A rotation is a pending change: the daemon dies, its replica too, and the adopting daemon restarts the
    # replica with the version its release pinned, never the new one.
    rotated = "stg-rotated-0d9e3c5a-value"
    g.set_secret("staging", rotated)
    replica = g.status()["services"][0]["replicas"][0]["pid"]
    os.kill(int(json.loads((g.root / ".railguard" / "daemon.pid").read_text())["pid"]), signal.SIGKILL)
    os.kill(replica, signal.SIGKILL)
    wait_for(lambda: (s := g.status()["services"][0]["replicas"]) and s[0]["pid"] not in (None, replica),
             "the adopting daemon to restart the replica")
    logs = sorted((g.root / ".railguard" / "logs" / "staging" / "web").glob("*.log"))
    raw = "".join(p.read_text() for p in logs)
    wait_for(lambda: "".join(p.read_text() for p in logs).count(STAGING_SECRET) >= 2, "the restart's log line")
    assert rotated not in "".join(p.read_text() for p in logs)
    code, planned = g.rg_json("plan", "--env", "staging")  # the new version goes live only through a plan
    assert code == 0 and any("secret_versions" in c["reason"] for c in planned["plan"]["changes"]), planned
    served = g.rg("logs", "web", "--env", "staging").stdout  # every version stays redacted
    assert STAGING_SECRET not in served and rotated not in served and raw


def test_a_token_cannot_point_the_daemon_at_another_spec(g: Guarded, tmp_path_factory: Any) -> None:
    agent = g.token("claude", "agent")
    assert g.as_(agent, "plan", "--env", "staging")[0] == 0  # pins the daemon to this spec
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "railguard.toml").write_text((g.root / "railguard.toml").read_text())
    code, refused = g.rg_json("plan", "--env", "staging", "--spec", str(elsewhere / "railguard.toml"),
                              env={"RAILGUARD_TOKEN": agent, "RAILGUARD_HOME": str(g.root / ".railguard")})
    assert code == 1 and codes(refused) == ["auth.forbidden"]


def test_a_scoped_token_sees_only_its_environments(g: Guarded) -> None:
    assert g.rg_json("deploy", "--env", "staging", "--yes")[0] == 0
    code, planned = g.rg_json("plan", "--env", "production")
    assert code == 0
    staging_only = g.token("stg-reader", "viewer", "staging")
    code, refused = g.as_(staging_only, "logs", "../../production/web", "--env", "staging")
    assert code == 1 and codes(refused) == ["daemon.bad_request"]  # no path out of logs/<env>/
    code, events = g.as_(staging_only, "events")
    assert code == 0 and events["events"] and {e["env"] for e in events["events"]} <= {"staging", None}
    code, audit = g.as_(staging_only, "audit")
    assert code == 0 and all(e["env"] in ("staging", None) for e in audit["audit"])
    code, refused = g.as_(staging_only, "show", planned["plan"]["id"])
    assert code == 1 and codes(refused) == ["auth.forbidden"]
