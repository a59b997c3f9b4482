"""A hostile app for the adversarial tests: deployed to staging, it attacks production and reports.

At start it tries each attack once (targets come from its environment: the state folder, production's
edge port and data folder) and serves the results as JSON on /report, so a test reads them over HTTP.
Each result is {"possible": bool, "detail": str}: "possible" means the attack worked.
"""

import json
import os
import socket
import sqlite3
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

STATE = Path(os.environ.get("TARGET_STATE", "/nonexistent"))
PROD_PORT = int(os.environ.get("TARGET_EDGE_PORT", "0") or 0)
PROD_DATA = Path(os.environ.get("TARGET_DATA", "/nonexistent"))


def write_state_db() -> tuple[bool, str]:
    """Insert an approval row for a made-up plan straight into the state database."""
    try:
        db = sqlite3.connect(f"file:{STATE / 'state.db'}?mode=rw", uri=True, timeout=2)
        db.execute("INSERT INTO approvals (id, plan_id, plan_hash, decision, principal, reason, confirmed, "
                   "created_at, expires_at) VALUES ('appr-forged', 'plan-forged', 'sha256:0', 'approved', "
                   "'token:nobody', 'forged', '[]', '2026-01-01T00:00:00+00:00', '2999-01-01T00:00:00+00:00')")
        db.commit()
        db.execute("DELETE FROM approvals WHERE id = 'appr-forged'")  # leave no trace the test has to clean
        db.commit()
        db.close()
        return True, "inserted an approval row"
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"


def tamper_artifact() -> tuple[bool, str]:
    """Change a file of its own release artifact (the code a promotion would ship)."""
    target = Path(sys.argv[0]).resolve()
    # A read-only mount of its own namespace stops a plain write, not a root process reaching the host's
    # view of the same file through the root of a process outside it (init, the daemon).
    for path in (target, Path(f"/proc/1/root{target}"), Path(f"/proc/{os.getppid()}/root{target}")):
        try:
            with path.open("a") as handle:
                handle.write("\n# tampered\n")
            return True, f"appended to {path}"
        except Exception as exc:
            failure = f"{type(exc).__name__}: {exc}"
    return False, failure


def join_edge() -> tuple[bool, str]:
    """Bind production's edge port with SO_REUSEPORT, to take a share of its traffic."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", PROD_PORT))
        sock.listen(1)
        return True, f"bound 127.0.0.1:{PROD_PORT}"
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        sock.close()  # proving it is enough: never actually steal the test's requests


def read_environ() -> tuple[bool, str]:
    """Read production replicas' environment (their secrets) from /proc."""
    denied = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            data = (entry / "environ").read_bytes()
        except (PermissionError, ProcessLookupError):
            denied += 1
            continue
        except OSError:
            continue
        if b"RAILGUARD_ENV=production\0" in data:
            return True, f"read /proc/{entry.name}/environ of a production replica"
    return False, f"no production environ readable ({denied} processes refused)"


def write_data() -> tuple[bool, str]:
    """Write into production's data folder."""
    try:
        (PROD_DATA / "pwned").write_text("staging was here")
        (PROD_DATA / "pwned").unlink()
        return True, f"wrote {PROD_DATA / 'pwned'}"
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"


def _ask_daemon(request: bytes) -> str:
    """One request on the daemon's API socket; its answer's first bytes (or the error)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    try:
        sock.connect(str(STATE / "daemon.sock"))
        sock.sendall(request)
        answer = b""
        while len(answer) < 65536:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
            if b"\r\n\r\n" in answer:
                head, _, body = answer.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                if len(body) >= length:
                    break
        return answer.decode("latin-1")
    finally:
        sock.close()


def call_daemon() -> tuple[bool, str]:
    """Call the daemon's API without a token (in same-user mode its OS user is admin)."""
    try:
        answer = _ask_daemon(b"GET /v1/whoami HTTP/1.1\r\nHost: railguard\r\nContent-Length: 0\r\n\r\n")
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return '"ok": true' in answer, answer.split("\r\n", 1)[0] + " " + answer[-300:]


def forged_token() -> tuple[bool, str]:
    """Call the daemon's API with a made-up token, asking for production's status."""
    try:
        answer = _ask_daemon(b"GET /v1/status?env=production HTTP/1.1\r\nHost: railguard\r\n"
                             b"Authorization: Bearer rg_forged_0000\r\nContent-Length: 0\r\n\r\n")
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return '"ok": true' in answer, answer.split("\r\n", 1)[0] + " " + answer[-300:]


def flood_daemon() -> tuple[bool, str]:
    """Open 300 connections to the daemon's socket at once, to flood its store with records (or its threads)."""
    opened, refused = [], 0
    for _ in range(300):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(STATE / "daemon.sock"))
            sock.sendall(b"GET /v1/whoami HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            opened.append(sock)
        except OSError:
            refused += 1
            sock.close()
    for sock in opened:
        sock.close()
    return False, f"{len(opened)} connections opened, {refused} refused"


ATTACKS = {"write_state_db": write_state_db, "tamper_artifact": tamper_artifact, "join_edge": join_edge,
           "read_environ": read_environ, "write_data": write_data, "call_daemon": call_daemon,
           "forged_token": forged_token, "flood_daemon": flood_daemon}
ATTACKING = "TARGET_STATE" in os.environ  # production runs the same code, harmlessly
REPORT = {name: dict(zip(("possible", "detail"), attack(), strict=True))
          for name, attack in ATTACKS.items() if ATTACKING}
REPORT["_whoami"] = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups()}
print(json.dumps(REPORT), flush=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = json.dumps(REPORT).encode() if self.path == "/report" else b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
