"""The console end to end: a real daemon and app, the console process, a real headless Chromium.

One workspace per module (staging and a protected production, as in the guardrail tests) with an
agent, an approver and a viewer token. The approver approves the agent's production plan from the
browser by typing its short hash, and the agent's apply then goes through; an agent sees no
approve form and a crafted post is refused by the daemon; a forged form (no CSRF token), a
replayed cookie after sign-out and a stale plan hash are refused and land in the audit log.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..conftest import shared_processes
from ..e2e.harness import free_port, wait_for
from ..e2e.test_guardrails import Guarded, guarded


class Site:
    def __init__(self, ws: Guarded, url: str, tokens: dict[str, str]) -> None:
        self.ws, self.url, self.tokens = ws, url, tokens

    def audit(self) -> list[dict[str, Any]]:
        code, found = self.ws.rg_json("audit", "--limit", "500")
        assert code == 0, found
        return list(found["audit"])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("console")
    with shared_processes(str(root)):
        yield from _site(root)


def test_the_console_beside_the_daemon_serves_the_same_pages(site: Site, tmp_path: Path) -> None:
    """``railguard console`` as its own process, a client of the daemon's socket."""
    port = free_port()
    with open(tmp_path / "console.log", "wb") as log:  # outside the app folder: it would change the source
        proc = subprocess.Popen([sys.executable, "-m", "railguard", "console", "--listen", f"127.0.0.1:{port}"],
                                cwd=site.ws.root, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda u=url: _up(u), "the console to answer")
        with httpx.Client(base_url=url, timeout=10, follow_redirects=True) as http:
            form = http.get("/login")
            nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
            assert nonce
            page = http.post("/login", data={"nonce": nonce.group(1), "token": site.tokens["viewer"], "next": "/"})
            assert page.status_code == 200 and "staging" in page.text and "protected" in page.text
    finally:
        proc.terminate()
        proc.wait(10)


def _site(root: Path) -> Iterator[Site]:
    """The console served from the daemon's own process (``daemon start --console``)."""
    for ws in guarded(root):
        tokens = {"agent": ws.token("claude", "agent"), "approver": ws.token("alice", "approver"),
                  "viewer": ws.token("vera", "viewer")}
        port = free_port()
        assert ws.rg("daemon", "stop").returncode == 0
        started = ws.rg("daemon", "start", "--console", f"127.0.0.1:{port}")
        assert started.returncode == 0, started.stderr
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda u=url: _up(u), "the console to answer")
        yield Site(ws, url, tokens)


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/login", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _plan_production(site: Site, replicas: int) -> dict[str, Any]:
    site.ws.spec(extra=f"[environments.production.services.web]\nreplicas = {replicas}\n")
    code, deployed = site.ws.as_(site.tokens["agent"], "deploy", "--env", "staging", "--yes")
    assert code == 0, deployed  # production takes only what ran healthy in staging
    code, planned = site.ws.as_(site.tokens["agent"], "plan", "--env", "production")
    assert code == 0 and planned["plan"]["decision"] == "require_approval", planned["plan"]["verdicts"]
    return dict(planned["plan"])


def _sign_in(page: Any, site: Site, who: str) -> None:
    page.goto(f"{site.url}/")
    assert "/login" in page.url  # nothing is shown before signing in
    page.get_by_label("Railguard token").fill(site.tokens[who])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{site.url}/")


def test_an_approver_approves_from_the_browser_and_the_agents_apply_goes_through(
        site: Site, browser: Any, artifacts: Path) -> None:
    plan = _plan_production(site, 1)
    short = plan["hash"][7:15]
    context = browser.new_context()
    page = context.new_page()
    _sign_in(page, site, "approver")
    overview = page.locator("main").inner_text()
    assert "staging" in overview and "production" in overview and "protected" in overview
    page.screenshot(path=str(artifacts / "overview.png"), full_page=True)

    page.get_by_role("link", name="Approvals").click()
    page.get_by_role("link", name=plan["id"]).click()
    body = page.locator("main").inner_text()
    assert "guard.agent_in_protected" in body and "production/service.web" in body and "token:claude" in body
    assert "API_TOKEN" not in page.content() or "prd-" not in page.content()  # no secret value on the page
    page.screenshot(path=str(artifacts / "plan.png"), full_page=True)

    page.get_by_label(re.compile("short hash .* to approve")).fill("00000000")  # a wrong hash is refused
    page.get_by_role("button", name=f"Approve plan {plan['id']}").click()
    assert "console.hash_not_typed" in page.locator("main").inner_text()
    code, refused = site.ws.as_(site.tokens["agent"], "apply", plan["id"])
    assert code == 1 and refused["diagnostics"][0]["code"] == "policy.approval_required"

    page.goto(f"{site.url}/plans/{plan['id']}")
    page.get_by_label(re.compile("short hash .* to approve")).fill(short)
    page.get_by_label("Reason (optional)").fill("looks right")
    page.get_by_role("button", name=f"Approve plan {plan['id']}").click()
    page.wait_for_url(f"{site.url}/plans/{plan['id']}")
    assert f"Approved {plan['id']}" in page.locator("main").inner_text()
    assert "approved by token:alice" in page.locator("main").inner_text()

    code, applied = site.ws.as_(site.tokens["agent"], "apply", plan["id"])
    assert code == 0 and applied["operation"]["status"] == "succeeded", applied
    page.goto(f"{site.url}/operations/{applied['operation']['id']}")
    assert "succeeded" in page.locator("h1").inner_text()
    page.goto(f"{site.url}/env/production")
    assert "#1" in page.locator("main").inner_text()
    page.screenshot(path=str(artifacts / "environment.png"), full_page=True)
    page.goto(f"{site.url}/audit")
    assert "Intact" in page.locator("main").inner_text()
    page.screenshot(path=str(artifacts / "audit.png"), full_page=True)
    context.close()

    entries = site.audit()
    approved = [e for e in entries if e["action"] == "plans/approve" and e["outcome"] == "ok"]
    assert approved and approved[-1]["principal"] == "token:alice" and approved[-1]["detail"]["channel"] == "console"
    assert any(e["action"] == "console:plans/approve" and e["outcome"] == "refused: console.hash_not_typed"
               for e in entries), [(e["action"], e["outcome"]) for e in entries]


def test_an_agent_cannot_approve_and_forged_posts_are_refused_and_audited(site: Site, browser: Any) -> None:
    plan = _plan_production(site, 2)
    context = browser.new_context()
    page = context.new_page()
    _sign_in(page, site, "agent")
    page.goto(f"{site.url}/plans/{plan['id']}")
    assert page.get_by_role("button", name=re.compile("Approve")).count() == 0
    assert "cannot approve" in page.locator("main").inner_text()
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    # A crafted post with the agent's own valid session and CSRF token: the daemon refuses it.
    crafted = page.request.post(f"{site.url}/plans/{plan['id']}/approve", form={
        "csrf": csrf or "", "plan_hash": plan["hash"], "typed": plan["hash"][7:15]})
    assert crafted.status == 403 and "auth.forbidden" in crafted.text()
    # Without the CSRF token (a form posted from another site): refused by the console.
    forged = page.request.post(f"{site.url}/plans/{plan['id']}/approve", form={
        "plan_hash": plan["hash"], "typed": plan["hash"][7:15]})
    assert forged.status == 403 and "console.csrf" in forged.text()
    context.close()

    # The approver's stale page: the hash on the form is not the plan's.
    context = browser.new_context()
    page = context.new_page()
    _sign_in(page, site, "approver")
    page.goto(f"{site.url}/plans/{plan['id']}")
    page.locator("input[name=plan_hash]").first.evaluate("el => el.value = 'sha256:' + '0'.repeat(64)")
    page.get_by_label(re.compile("short hash .* to approve")).fill(plan["hash"][7:15])
    page.get_by_role("button", name=f"Approve plan {plan['id']}").click()
    assert "console.plan_changed" in page.locator("main").inner_text()
    # Sign out, then replay the old session cookie with a valid-looking post.
    cookie = next(c for c in context.cookies() if c["name"] == "rg_session")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile("/login"))
    replayed = httpx.post(f"{site.url}/plans/{plan['id']}/approve", cookies={"rg_session": cookie["value"]},
                          data={"csrf": csrf, "plan_hash": plan["hash"], "typed": plan["hash"][7:15]}, timeout=10)
    assert replayed.status_code == 403 and "console.session_ended" in replayed.text
    context.close()

    code, record = site.ws.rg_json("show", plan["id"])
    assert code == 0 and record["approval"]["state"] in ("needed", "requested"), record  # nothing got approved
    outcomes = {(e["action"], e["outcome"]) for e in site.audit()}
    for expected in [("plans/approve", "refused: auth.forbidden"),
                     ("console:plans/approve", "refused: console.csrf"),
                     ("console:plans/approve", "refused: console.plan_changed"),
                     ("console:plans/approve", "refused: console.session_ended")]:
        assert expected in outcomes, (expected, outcomes)


def test_pages_are_guarded_for_a_browser(site: Site) -> None:
    with httpx.Client(base_url=site.url, timeout=10, follow_redirects=False) as http:
        assert http.get("/").status_code == 303  # to the sign-in page
        form = http.get("/login")
        csp = form.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert form.headers["x-frame-options"] == "DENY"
        nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
        assert nonce
        refused = http.post("/login", data={"nonce": nonce.group(1), "token": "rg_not-a-token", "next": "/"})
        assert refused.status_code == 401 and "Sign-in refused" in refused.text
        form = http.get("/login")
        nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
        assert nonce
        signed = http.post("/login", data={"nonce": nonce.group(1), "token": site.tokens["viewer"],
                                           "next": "//evil.example/"})
        assert signed.status_code == 303 and signed.headers["location"] == "/"  # no open redirect
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        tokens = http.get("/tokens")  # admin only: the daemon refuses a viewer
        assert tokens.status_code == 403 and "auth.forbidden" in tokens.text
        page = http.get("/")
        assert page.status_code == 200 and site.tokens["viewer"] not in page.text
        static = http.get("/static/console.js")
        assert static.status_code == 200 and "toLocaleString" in static.text
