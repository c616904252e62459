"""The load generator of tests/load, against tiny local HTTP and WebSocket servers."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

LOADGEN = Path(__file__).resolve().parents[1] / "load" / "loadgen.py"
spec = importlib.util.spec_from_file_location("loadgen", LOADGEN)
loadgen = importlib.util.module_from_spec(spec)
sys.modules["loadgen"] = loadgen  # dataclasses look their module up there
spec.loader.exec_module(loadgen)

RELEASE = "r1"


class App(ThreadingHTTPServer):
    """The demo app's HTTP side; every ``fail_every``-th request gets a 500, every ``garbage_every``-th a non-JSON."""

    daemon_threads = True

    def __init__(self, fail_every: int = 0, garbage_every: int = 0) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.fail_every = fail_every
        self.garbage_every = garbage_every
        self.lock = threading.Lock()
        self.requests = 0
        self.answered: dict[int | str, int] = {}
        self.connection_headers: set[str | None] = set()
        self.hosts: set[str | None] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def count(self, outcome: int | str) -> None:
        with self.lock:
            self.answered[outcome] = self.answered.get(outcome, 0) + 1


class Handler(BaseHTTPRequestHandler):
    server: App

    def do_GET(self) -> None:
        self.answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.answer()

    def answer(self) -> None:
        app = self.server
        with app.lock:
            app.requests += 1
            number = app.requests
            app.connection_headers.add(self.headers.get("Connection"))
            app.hosts.add(self.headers.get("Host"))
        url = urllib.parse.urlsplit(self.path)
        if app.fail_every and number % app.fail_every == 0:
            return self.send(500, {"error": "boom"})
        if app.garbage_every and number % app.garbage_every == 0:
            return self.send(200, b"<html>not json</html>")
        if url.path == "/slow":
            seconds = float(urllib.parse.parse_qs(url.query)["seconds"][0])
            time.sleep(seconds)
            return self.send(200, {"slept": seconds, "release": RELEASE})
        if url.path == "/db":
            if self.command == "POST":
                return self.send(201, {"id": number, "rows": number})
            return self.send(200, {"rows": number, "release": RELEASE})
        if url.path in ("/", "/async", "/whoami"):
            return self.send(200, {"release": RELEASE, "server": "app-1", "client": self.client_address[0]})
        return self.send(404, {"error": "not found"})

    def send(self, status: int, body: dict[str, object] | bytes) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        # Counted before the client can read the answer, so a test that reads
        # the counts after its last answer never misses one.
        self.server.count("garbage" if isinstance(body, bytes) else status)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@contextlib.contextmanager
def http_app(fail_every: int = 0, garbage_every: int = 0) -> Iterator[App]:
    app = App(fail_every, garbage_every)
    thread = threading.Thread(target=app.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield app
    finally:
        app.shutdown()
        app.server_close()
        thread.join(5)


class Echo:
    """The demo app's /ws/echo; ``behaviour`` "close-<code>" closes after the first echo, "wrong" echoes wrong."""

    def __init__(self, behaviour: str = "echo") -> None:
        self.behaviour = behaviour
        self.close_codes: list[int | None] = []
        self.server: Server = serve(self.handle, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}/ws/echo"

    def handle(self, websocket: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            websocket.send(json.dumps({"hello": True, "release": RELEASE, "server": "ws-1"}))
            for message in websocket:
                websocket.send(f"not {message!s}" if self.behaviour == "wrong" else message)
                if self.behaviour.startswith("close-"):
                    websocket.close(int(self.behaviour.removeprefix("close-")))
        self.close_codes.append(websocket.close_code)


@contextlib.contextmanager
def echo_app(behaviour: str = "echo") -> Iterator[Echo]:
    echo = Echo(behaviour)
    thread = threading.Thread(target=echo.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield echo
    finally:
        echo.server.shutdown()
        thread.join(5)


def config(app: App, echo: Echo | None = None, **overrides: object) -> loadgen.LoadConfig:
    settings: dict[str, object] = {
        "base_url": app.url,
        "duration": 1.5,
        "http_workers": 2,
        "slow_workers": 1,
        "post_workers": 1,
        "websocket_sessions": 2 if echo else 0,
        "slow_seconds": 0.2,
        "timeout": 3.0,
        "websocket_url": echo.url if echo else None,
    }
    return loadgen.LoadConfig(**(settings | overrides))


def test_clean_run_counts_everything_and_stops_cleanly():
    with http_app() as app, echo_app() as echo:
        with loadgen.LoadRun(config(app, echo, duration=30.0, host_header="lb.example")) as run:
            time.sleep(1.5)
            asked = time.monotonic()
            report = run.stop()
            stopped_in = time.monotonic() - asked
        assert stopped_in < 1.5  # the in-flight /slow (0.2 s) and echoes finish, nothing waits for the 30 s
        time.sleep(0.2)  # the echo server records close codes after the closing handshake
    assert report.failed == 0, report.summary()
    assert report.failures == []
    kinds = report.by_kind
    assert {kind: counts["failed"] for kind, counts in kinds.items()} == dict.fromkeys(kinds, 0)
    assert all(kinds[kind]["sent"] > 0 for kind in ("get", "slow", "post", "websocket"))
    assert report.sent == sum(counts["sent"] for counts in kinds.values())
    assert report.websocket_sessions == 2
    assert report.websocket_messages >= 4  # one echo a second per session, the first at once
    # Every GET answer and every greeting carries the release; POST /db answers do not.
    assert report.releases_seen == {RELEASE: kinds["get"]["sent"] + kinds["slow"]["sent"] + 2}
    assert report.servers_seen == {"app-1": kinds["get"]["sent"], "ws-1": 2}
    assert 0 < report.latency_ms["p50"] <= report.latency_ms["p99"] <= report.latency_ms["max"]
    assert report.latency_ms_by_kind["slow"]["p50"] >= 200
    assert app.connection_headers == {"close"}
    assert app.hosts == {"lb.example"}
    assert echo.close_codes == [1000, 1000]
    assert json.loads(json.dumps(report.to_json()))["releases_seen"] == {RELEASE: report.releases_seen[RELEASE]}
    assert f"{RELEASE} x" in report.summary()
    # Each acknowledged write's id, once (what bench/chaos.py looks for in the database); no failure's moment.
    assert len(report.written_ids) == len(set(report.written_ids)) == kinds["post"]["sent"]
    assert report.failure_seconds == []


def test_error_statuses_and_bodies_that_are_not_json_are_failures_and_max_requests_bounds_the_run():
    with http_app(fail_every=5, garbage_every=7) as app:
        run = loadgen.LoadRun(config(app, duration=10.0, max_requests=60, slow_workers=0))
        run.start()
        assert run.wait(timeout=5.0)
        report = run.stop()
    assert report.sent == app.requests == 60
    assert report.failed == app.answered[500] + app.answered["garbage"] > 0
    assert sum(counts["failed"] for counts in report.by_kind.values()) == report.failed
    assert any("HTTP 500" in failure for failure in report.failures)
    assert any("not JSON" in failure for failure in report.failures)
    assert report.releases_seen == {RELEASE: app.answered[200]}  # the GETs that answered right
    # Every failure's moment, in seconds since the start, however many failures the report keeps in words.
    assert len(report.failure_seconds) == report.failed
    assert all(0 <= moment < 10 for moment in report.failure_seconds)


@pytest.mark.parametrize("behaviour", ["close-1000", "close-1001", "close-1012", "wrong"])
def test_websocket_closed_by_the_server_or_echoing_wrong_is_a_failure(behaviour):
    with http_app() as app, echo_app(behaviour) as echo:
        with loadgen.LoadRun(config(app, echo, duration=10.0, websocket_sessions=1)) as run:
            time.sleep(0.6)
            report = run.stop()
    assert report.websocket_failed >= 1
    assert report.by_kind["websocket"]["failed"] == report.websocket_failed
    assert report.failed == report.websocket_failed  # HTTP was fine
    expected = "echo 'not loadgen 0/1'" if behaviour == "wrong" else f"closed by the server: received {behaviour[6:]}"
    assert any(expected in failure for failure in report.failures), report.failures


def test_unreachable_server_is_a_failure():
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    run = loadgen.LoadRun(
        loadgen.LoadConfig(base_url=f"http://127.0.0.1:{port}", duration=1.0, max_requests=5, websocket_sessions=1)
    )
    run.start()
    assert run.wait(timeout=3.0)
    report = run.stop()
    assert report.failed == report.sent == 6
    assert report.websocket_failed == 1
    assert any("Connection refused" in failure or "ConnectionRefused" in failure for failure in report.failures)


@pytest.mark.parametrize(
    "urls",
    [
        {"base_url": "http://10.0.0.5:8080"},
        {"base_url": "http://example.com"},
        {"base_url": "http://127.0.0.2:18080"},
        {"base_url": "http://[::1]:18080"},
        {"base_url": "https://127.0.0.1:18080"},
        {"base_url": "http://127.0.0.1:port"},
        {"base_url": "http://127.0.0.1:18080", "websocket_url": "ws://10.0.0.5:18080/ws/echo"},
    ],
)
def test_anything_but_loopback_is_refused(urls):
    with pytest.raises(ValueError):
        loadgen.LoadConfig(duration=1.0, **urls)


def test_localhost_is_accepted_and_gives_the_default_websocket_url():
    assert loadgen.LoadConfig(base_url="http://localhost:18080/", duration=1).websocket_target() == (
        "ws://localhost:18080/ws/echo"
    )


def test_run_stops_by_itself_within_its_duration():
    with http_app() as app, echo_app() as echo:
        began = time.monotonic()
        run = loadgen.LoadRun(config(app, echo, duration=1.0))
        run.start()
        assert run.wait(timeout=3.0)
        took = time.monotonic() - began
        report = run.stop()
        time.sleep(0.2)
    assert took < 1.0 + 0.5, took
    assert report.failed == 0, report.summary()
    assert report.sent > 0
    assert echo.close_codes == [1000, 1000]


def test_cli_prints_the_summary_writes_json_and_exits_by_failures(tmp_path, capsys):
    out = tmp_path / "load.json"
    with http_app() as app, echo_app() as echo:
        args = ["--url", app.url, "--websocket-url", echo.url, "--duration", "1", "--max-requests", "200"]
        assert loadgen.main([*args, "--json", str(out)]) == 0
    assert "failed 0" in capsys.readouterr().out
    assert json.loads(out.read_text())["by_kind"]["get"]["sent"] > 0
    with http_app(fail_every=2) as app:
        assert loadgen.main(["--url", app.url, "--duration", "1", "--max-requests", "20"]) == 1
