"""Helpers for the MCP tests: the notes example in a temporary folder, MCP sessions over stdio and HTTP
(with the official client library), a recorder of every result (for the secret scan and the transcript)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
from mcp import ClientSession, StdioServerParameters, stdio_client

from ..e2e.harness import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "notes"
STAGING_SECRET = "stg-5e1c7a9b-notes-token"
PRODUCTION_SECRET = "prd-2d8f4c6a-notes-token"
# The app prints its own token at startup: the logs Railguard serves must hide it.
LEAK = 'print(f"notes token {os.environ.get(\'NOTES_TOKEN\')}", flush=True)\n'
BUG_AT = '        try:\n            with connect() as db:\n                rows = '
BUG = '        print("fatal: the notes index is corrupted", flush=True)\n        os._exit(70)\n'


@dataclass
class Notes:
    """The notes example, with free edge ports, a secret per environment and production soak of 0 s."""

    root: Path
    staging_port: int
    production_port: int

    @property
    def spec_path(self) -> Path:
        return self.root / "railguard.toml"

    def spec_text(self, run: str = '["python", "app.py"]') -> str:
        text = (EXAMPLE / "railguard.toml").read_text()
        text = text.replace("edge_port = 8080", f"edge_port = {self.staging_port}")
        text = text.replace("edge_port = 8443", f"edge_port = {self.production_port}\nsoak = \"0s\"")
        text = text.replace('run = ["python", "app.py"]', f'run = {run}\nsecrets = ["NOTES_TOKEN"]')
        return text

    def app_text(self, bug: bool = False) -> str:
        text = (EXAMPLE / "app.py").read_text().replace("\n\nin_flight = 0", "\n\n" + LEAK + "\nin_flight = 0", 1)
        assert LEAK in text and BUG_AT in text
        return text.replace(BUG_AT, BUG + BUG_AT, 1) if bug else text

    def rg(self, *args: str, token: str | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
        env.pop("RAILGUARD_HOME", None)
        env.pop("RAILGUARD_TOKEN", None)
        if token:
            env["RAILGUARD_TOKEN"] = token
        return subprocess.run([sys.executable, "-m", "railguard", *args], cwd=self.root, capture_output=True,
                              text=True, timeout=120, env=env, input=stdin, check=False)

    def token(self, name: str, role: str) -> str:
        done = self.rg("token", "create", "--name", name, "--role", role, "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        return str(json.loads(done.stdout)["token"]["token"])


def make_notes(tmp_path: Path) -> Notes:
    ws = Notes(tmp_path, free_port(), free_port())
    shutil.copy(EXAMPLE / "migrate.py", tmp_path / "migrate.py")
    (tmp_path / "app.py").write_text(ws.app_text())
    ws.spec_path.write_text(ws.spec_text())
    for env, value in (("staging", STAGING_SECRET), ("production", PRODUCTION_SECRET)):
        done = ws.rg("secret", "set", "NOTES_TOKEN", "--env", env, stdin=value)
        assert done.returncode == 0, done.stderr
    return ws


def server_env(token: str | None) -> dict[str, str]:
    env = {**os.environ}
    env.pop("RAILGUARD_HOME", None)
    env.pop("RAILGUARD_TOKEN", None)
    if token:
        env["RAILGUARD_TOKEN"] = token
    return env


@dataclass
class Result:
    data: dict[str, Any]
    is_error: bool
    text: str

    @property
    def codes(self) -> list[str]:
        return [d["code"] for d in self.data["diagnostics"]]


@dataclass
class Step:
    note: str
    tool: str
    arguments: dict[str, Any]
    result: Result


@dataclass
class Agent:
    """An MCP client session that checks every result's shape and keeps everything it saw."""

    session: ClientSession
    seen: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def tools(self) -> list[Any]:
        listed = (await self.session.list_tools()).tools
        self.schemas.update({t.name: t.output_schema or {} for t in listed})
        self.seen.append(json.dumps([t.model_dump(mode="json") for t in listed]))
        return listed

    async def call(self, tool: str, arguments: dict[str, Any] | None = None, note: str = "") -> Result:
        answer = await self.session.call_tool(tool, arguments or {}, read_timeout_seconds=120)
        self.seen.append(answer.model_dump_json())
        text = "\n".join(getattr(c, "text", "") for c in answer.content)
        data = answer.structured_content
        assert isinstance(data, dict), answer
        assert data["ok"] is (not answer.is_error), data
        assert {"summary", "diagnostics", "next_actions"} <= set(data), data
        if tool in self.schemas:  # error results too: the client validates only successful ones
            jsonschema.validate(data, self.schemas[tool])
        result = Result(data, bool(answer.is_error), text)
        if note:
            self.steps.append(Step(note, tool, arguments or {}, result))
        return result

    def narrate(self, note: str) -> None:
        """Something the agent (or a person) does outside MCP, for the transcript."""
        self.steps.append(Step(note, "", {}, Result({}, False, "")))

    async def follow(self, action: dict[str, Any], note: str = "") -> Result:
        """Call a next action exactly as the server suggested it."""
        return await self.call(action["tool"], action["arguments"], note)


@asynccontextmanager
async def stdio_agent(ws: Notes, token: str | None, errlog: Path) -> AsyncIterator[Agent]:
    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "railguard", "mcp", "--spec", str(ws.spec_path)],
                                   env=server_env(token), cwd=str(ws.root))
    with errlog.open("a") as log:
        async with stdio_client(params, errlog=log) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=120) as session:
                await session.initialize()
                agent = Agent(session)
                await agent.tools()
                yield agent


@asynccontextmanager
async def http_agent(url: str, token: str, verify: str | bool = True) -> AsyncIterator[Agent]:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120), verify=verify) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=120) as session:
                await session.initialize()
                agent = Agent(session)
                await agent.tools()
                yield agent


@contextmanager
def http_server(ws: Notes, token: str | None, log: Path, *extra: str) -> Iterator[str]:
    """``railguard mcp --http`` as a real process on a free loopback port; yields its URL."""
    port = free_port()
    scheme = "https" if "--tls-cert" in extra else "http"
    with log.open("a") as out:
        proc = subprocess.Popen([sys.executable, "-m", "railguard", "mcp", "--spec", str(ws.spec_path), "--http",
                                 f"127.0.0.1:{port}", *extra], cwd=ws.root, env=server_env(token), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        yield f"{scheme}://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def action(result: Result, tool: str) -> dict[str, Any]:
    found = [a for a in result.data["next_actions"] if a["tool"] == tool]
    assert found, f"no next action {tool}: {result.data['next_actions']}"
    return found[0]


# -- the transcript ---------------------------------------------------------------------------------
HEALTH_LINE = '"GET /healthz '  # access-log lines of health checks: how many there are depends on timing
_IDS = re.compile(r"\b(plan|op|appr)-[0-9a-f]{12}\b")
_SCRUB = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)?"), "<time>"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
    (re.compile(r"\bpid \d+"), "pid <pid>"),
    (re.compile(r"sha256:[0-9a-f]{8,64}"), "sha256:<hash>"),
    (re.compile(r"\b[0-9a-f]{16,64}\b"), "<hash>"),
    (re.compile(r"(/tmp/railguard-|/run/railguard/)\d+/"), "/tmp/railguard-<uid>/"),  # a deep state folder's socket
]


def scrub(text: str, root: Path, names: dict[str, str]) -> str:
    text = text.replace(str(root), "/path/to/notes")
    user = os.environ.get("USER") or "root"

    def number(match: re.Match[str]) -> str:
        kind = match.group(1) + "-"
        return names.setdefault(match.group(0), f"{kind}{sum(1 for k in names if k.startswith(kind)) + 1}")

    text = _IDS.sub(number, text)
    text = re.sub(rf"\buser:{re.escape(user)}\b", "user:you", text)
    for pattern, replacement in _SCRUB:
        text = pattern.sub(replacement, text)
    return text


def transcript(steps: list[Step], root: Path, intro: str) -> str:
    """Markdown of a session: each call, its arguments, and the text the client shows (ids, times, ports scrubbed)."""
    names: dict[str, str] = {}
    out = [intro.rstrip(), ""]
    number = 0
    for step in steps:
        if not step.tool:
            out += [f"*{scrub(step.note, root, names)}*", ""]
            continue
        number += 1
        call = json.dumps(step.arguments, sort_keys=True)
        text = "\n".join(line for line in step.result.text.splitlines() if HEALTH_LINE not in line)
        out += [f"### {number}. {scrub(step.note, root, names)}", "",
                f"`{step.tool}` `{scrub(call, root, names)}`" + ("  → **isError**" if step.result.is_error else ""),
                "", "```text", scrub(text, root, names), "```", ""]
        if step.tool == "diagnose":
            keep = {k: step.result.data.get(k) for k in ("verdict", "live_release", "last_good_release")}
            keep["cause"] = (step.result.data.get("cause") or {}).get("code")
            keep["log_tail"] = [{"name": f["name"], "lines": [x for x in f["lines"] if HEALTH_LINE not in x][-3:]}
                                for f in step.result.data["log_tail"]]
            out += ["<details><summary>structured content (excerpt)</summary>", "", "```json",
                    scrub(json.dumps(keep, indent=2), root, names), "```", "", "</details>", ""]
    return "\n".join(out)
