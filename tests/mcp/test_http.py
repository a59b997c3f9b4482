"""``railguard mcp --http``: Streamable HTTP with the official client library against a real daemon. A bearer
token is required (the server's own), tools are filtered by the token's role, a non-loopback bind without TLS
is refused, TLS works, and an agent deploys the notes example to staging over HTTP."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
from pathlib import Path

import anyio
import httpx
import pytest

from ..e2e.harness import free_port
from .harness import Notes, action, http_agent, http_server
from .test_session import READ_TOOLS

INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "curl", "version": "0"}}}


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def _viewer(url: str, token: str, verify: ssl.SSLContext | bool = True) -> None:
    async with http_agent(url, token, verify) as agent:
        assert {t.name for t in await agent.tools()} == READ_TOOLS
        status = await agent.call("get_status", {"env": "staging"})
        assert not status.is_error and status.data["counts"] == {}
        refused = await agent.call("plan", {"env": "staging"})
        assert refused.is_error and refused.codes == ["auth.forbidden"]


async def _deploy(url: str, token: str) -> None:
    async with http_agent(url, token) as agent:
        planned = await agent.call("plan", {"env": "staging"})
        applied = await agent.follow(action(planned, "apply_plan"))
        done = await agent.follow(action(applied, "get_operation"))
        assert done.data["operation"]["status"] == "succeeded", done.data
        status = await agent.follow(action(done, "get_status"))
        assert httpx.get(status.data["url"], timeout=5).json()["version"] == "1"


def test_http_needs_the_servers_token_and_filters_tools_by_role(
        notes: Notes, tmp_path_factory: pytest.TempPathFactory) -> None:
    logs = tmp_path_factory.mktemp("mcp-http")
    viewer, agent = notes.token("eyes", "viewer"), notes.token("claude", "agent")
    for address, token, code in ((f"0.0.0.0:{free_port()}", agent, "mcp.insecure_bind"),
                                 (f"127.0.0.1:{free_port()}", None, "mcp.token_required"),
                                 ("127.0.0.1:http", agent, "mcp.invalid_arguments")):
        done = notes.rg("mcp", "--http", address, token=token)
        assert done.returncode == 1 and code in done.stderr and not done.stdout, done.stderr

    with http_server(notes, viewer, logs / "viewer.log") as url:
        for headers in ({}, {"Authorization": f"Bearer {agent}"}, {"Authorization": "Basic x"}):
            answer = httpx.post(url, json=INITIALIZE, timeout=10, headers={
                **headers, "Accept": "application/json, text/event-stream"})
            assert answer.status_code == 401 and answer.json()["diagnostics"][0]["code"] == "mcp.unauthorized"
        anyio.run(_viewer, url, viewer)

    cert, key = _self_signed(logs)
    with http_server(notes, viewer, logs / "tls.log", "--tls-cert", str(cert), "--tls-key", str(key)) as url:
        assert url.startswith("https://")
        anyio.run(_viewer, url, viewer, ssl.create_default_context(cafile=str(cert)))

    with http_server(notes, agent, logs / "agent.log") as url:
        anyio.run(_deploy, url, agent)
    text = "".join(p.read_text() for p in logs.glob("*.log"))
    assert "Traceback" not in text and viewer not in text and agent not in text
    assert json.loads(notes.rg("status", "--env", "staging", "--json").stdout)["status"]["services"]
