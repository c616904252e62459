"""Mixed traffic against the load balancer while a rollout runs, with every failure recorded.

Library first::

    with LoadRun(LoadConfig(base_url="http://127.0.0.1:18080", duration=60)) as run:
        ...  # roll out
        report = run.stop()
    assert report.failed == 0, report.summary()

CLI second: ``python tests/load/loadgen.py --url http://127.0.0.1:18080 --duration 30 [--json out.json]``
exits 0 when nothing failed, else 1.

Every HTTP request uses a new connection (``Connection: close``), so each one really goes through the
load balancer. WebSocket sessions stay open from start to stop: the server must never close one during a
zero-downtime rollout, whatever the close code. A session that fails is replaced by a new one a second later.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost"})
MAX_FAILURES_KEPT = 50
WEBSOCKET_INTERVAL = 1.0  # seconds between two echo messages of one session
POLL = 0.2  # longest a worker waits before it looks at stop() again
JOIN_MARGIN = 5.0  # stop() waits this long on top of the longest request

Json = dict[str, Any]
Request = tuple[str, str, bytes | None]  # method, path, body


def _check_loopback(url: str, schemes: tuple[str, ...]) -> urllib.parse.SplitResult:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in schemes:
        raise ValueError(f"{url!r}: the scheme must be one of {', '.join(schemes)}")
    if parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(f"{url!r}: only 127.0.0.1 or localhost may be loaded")
    if parts.port == 0:  # reading the port raises ValueError on one that is not a number
        raise ValueError(f"{url!r}: port 0 cannot be loaded")
    return parts


@dataclass
class LoadConfig:
    base_url: str  # http://127.0.0.1:PORT
    duration: float  # seconds the load runs at most
    max_requests: int = 20000  # HTTP requests in total, at most
    http_workers: int = 6  # threads sending GET /, /async, /whoami in turn
    slow_workers: int = 2  # threads sending GET /slow?seconds=<slow_seconds>
    post_workers: int = 1  # threads sending POST /db
    websocket_sessions: int = 2  # concurrent sessions, one echo a second each
    # Seconds each session stays open before it closes cleanly and a new one
    # opens; None keeps one session for the whole run. Sessions shorter than a
    # drain timeout outlive a switch instead of being cut by it.
    websocket_session_seconds: float | None = None
    request_interval: float = 0.0  # pause of each HTTP worker between its requests
    timeout: float = 15.0  # per request, per WebSocket open and per echo
    host_header: str | None = None  # Host sent instead of the URL's one
    slow_seconds: float = 2.0  # a /slow is only sent when it can end before the duration does
    websocket_url: str | None = None  # None: ws://<base_url's host:port>/ws/echo
    # What the HTTP workers GET in turn, each an answer with a JSON object (another app than the demo: its own).
    get_paths: tuple[str, ...] = ("/", "/async", "/whoami")

    def __post_init__(self) -> None:
        _check_loopback(self.base_url, ("http",))
        _check_loopback(self.websocket_target(), ("ws",))
        if not self.get_paths or not all(path.startswith("/") for path in self.get_paths):
            raise ValueError("get_paths must list at least one path, each starting with /")
        if not (self.duration > 0 and self.timeout > 0 and self.slow_seconds >= 0):
            raise ValueError("duration and timeout must be positive, slow_seconds not negative")
        counts = (self.max_requests, self.http_workers, self.slow_workers, self.post_workers, self.websocket_sessions)
        if min(counts) < 0:
            raise ValueError("request and worker counts must not be negative")

    def websocket_target(self) -> str:
        return self.websocket_url or f"ws://{urllib.parse.urlsplit(self.base_url).netloc}/ws/echo"


@dataclass
class LoadReport:
    sent: int = 0  # HTTP requests plus WebSocket sessions
    failed: int = 0
    failures: list[str] = field(default_factory=list)  # the first 50
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> {"sent", "failed"}
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50, p90, p99, max of successful HTTP requests
    latency_ms_by_kind: dict[str, dict[str, float]] = field(default_factory=dict)
    releases_seen: dict[str, int] = field(default_factory=dict)  # release -> answers and greetings carrying it
    servers_seen: dict[str, int] = field(default_factory=dict)
    websocket_sessions: int = 0
    websocket_failed: int = 0
    websocket_messages: int = 0  # echoes that came back right
    # The id of every write (POST /db) answered with a 2xx, and the seconds since the start of every
    # failure: what bench/chaos.py checks against the database, and the window failures spread over.
    written_ids: list[int] = field(default_factory=list)
    failure_seconds: list[float] = field(default_factory=list)

    def summary(self) -> str:
        lat = {"p50": 0.0, "p99": 0.0, "max": 0.0} | self.latency_ms
        kinds = ", ".join(f"{kind} {n['sent']}/{n['failed']}" for kind, n in sorted(self.by_kind.items()))
        lines = [
            f"sent {self.sent}, failed {self.failed} ({kinds or 'nothing'}: sent/failed)",
            f"latency p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms (successful HTTP)",
            f"websocket sessions {self.websocket_sessions}, failed {self.websocket_failed}, "
            f"echoes {self.websocket_messages}",
            "releases seen: " + (", ".join(f"{name} x{n}" for name, n in sorted(self.releases_seen.items())) or "none"),
        ]
        lines += [f"  failure: {failure}" for failure in self.failures[:10]]
        if self.failed > 10:
            lines.append(f"  ... {self.failed - 10} more failures")
        return "\n".join(lines)

    def to_json(self) -> Json:
        return asdict(self)


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(values)

    def rank(p: float) -> float:  # nearest-rank percentile
        return round(ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)], 3)

    return {"p50": rank(50), "p90": rank(90), "p99": rank(99), "max": round(ordered[-1], 3)}


class _Recorder:
    """What every worker saw; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._began = time.monotonic()
        self._sent: Counter[str] = Counter()
        self._failed: Counter[str] = Counter()
        self._latencies: dict[str, list[float]] = {}
        self._failures: list[str] = []
        self._releases: Counter[str] = Counter()
        self._servers: Counter[str] = Counter()
        self._echoes = 0
        self._written: list[int] = []
        self._failure_seconds: list[float] = []

    def sent(self, kind: str) -> None:
        with self._lock:
            self._sent[kind] += 1

    def failed(self, kind: str, description: str) -> None:
        with self._lock:
            self._failed[kind] += 1
            self._failure_seconds.append(round(time.monotonic() - self._began, 2))
            if len(self._failures) < MAX_FAILURES_KEPT:
                self._failures.append(f"+{time.monotonic() - self._began:.2f}s {kind}: {description}")

    def answered(self, kind: str | None, body: Json, latency_ms: float | None = None) -> None:
        with self._lock:
            if kind is not None and latency_ms is not None:
                self._latencies.setdefault(kind, []).append(latency_ms)
            if "release" in body:
                self._releases[str(body["release"])] += 1
            if "server" in body:
                self._servers[str(body["server"])] += 1
            if kind == "post" and isinstance(body.get("id"), int):
                self._written.append(body["id"])

    def echoed(self) -> None:
        with self._lock:
            self._echoes += 1

    def report(self) -> LoadReport:
        with self._lock:
            kinds = sorted(self._sent.keys() | self._failed.keys())
            return LoadReport(
                sent=sum(self._sent.values()),
                failed=sum(self._failed.values()),
                failures=list(self._failures),
                by_kind={kind: {"sent": self._sent[kind], "failed": self._failed[kind]} for kind in kinds},
                latency_ms=_percentiles([ms for values in self._latencies.values() for ms in values]),
                latency_ms_by_kind={kind: _percentiles(values) for kind, values in sorted(self._latencies.items())},
                releases_seen=dict(self._releases),
                servers_seen=dict(self._servers),
                websocket_sessions=self._sent["websocket"],
                websocket_failed=self._failed["websocket"],
                websocket_messages=self._echoes,
                written_ids=list(self._written),
                failure_seconds=list(self._failure_seconds),
            )


class _Failure(Exception):
    """An answer that is not what the app sends."""


def _json_object(payload: str | bytes) -> Json:
    try:
        body = json.loads(payload)
    except ValueError as error:  # includes JSONDecodeError and UnicodeDecodeError
        raise _Failure(f"body is not JSON: {payload[:80]!r}") from error
    if not isinstance(body, dict):
        raise _Failure(f"body is not a JSON object: {payload[:80]!r}")
    return body


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is not a 2xx answer: let urllib raise HTTPError on it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class LoadRun:
    """Sends the load from start() (or ``with``) until stop(), ``duration`` or ``max_requests``."""

    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self._base = config.base_url.rstrip("/")
        self._recorder = _Recorder()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._deadline = 0.0
        self._budget = config.max_requests
        self._budget_lock = threading.Lock()
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
        self._websocket_parts = urllib.parse.urlsplit(config.websocket_target())
        self._report: LoadReport | None = None

    def start(self) -> None:
        if self._threads or self._report is not None:
            raise RuntimeError("a LoadRun runs once")
        config = self.config
        self._recorder = _Recorder()
        self._deadline = time.monotonic() + config.duration
        fast: list[Request] = [("GET", path, None) for path in config.get_paths]
        slow: list[Request] = [("GET", f"/slow?seconds={config.slow_seconds:g}", None)]
        post: list[Request] = [("POST", "/db", b"note=loadgen")]
        workers: list[tuple[str, Callable[[], None]]] = []
        for n in range(config.http_workers):
            first = n % len(fast)
            workers.append((f"get-{n}", lambda first=first: self._http_worker("get", fast[first:] + fast[:first], 0.0)))
        for n in range(config.slow_workers):
            workers.append((f"slow-{n}", lambda: self._http_worker("slow", slow, config.slow_seconds)))
        for n in range(config.post_workers):
            workers.append((f"post-{n}", lambda: self._http_worker("post", post, 0.0)))
        for n in range(config.websocket_sessions):
            workers.append((f"websocket-{n}", lambda n=n: self._websocket_worker(n)))
        for name, target in workers:
            thread = threading.Thread(target=self._guard, args=(name, target), name=f"loadgen-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the workers end by themselves (duration or max_requests); True when they all have."""
        end = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if end is None else max(end - time.monotonic(), 0.0))
        return not any(thread.is_alive() for thread in self._threads)

    def stop(self) -> LoadReport:
        """Let every worker finish its current request or session cleanly, join them (bounded), report."""
        if self._report is None:
            self._stop.set()
            if not self.wait(max(self.config.timeout, self.config.slow_seconds) + JOIN_MARGIN):
                stuck = [thread.name for thread in self._threads if thread.is_alive()]
                self._recorder.failed("loadgen", f"workers still running after stop(): {', '.join(stuck)}")
            self._report = self._recorder.report()
        return self._report

    def __enter__(self) -> LoadRun:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _running(self, lead: float = 0.0) -> bool:
        """Whether there is still time to send something that takes ``lead`` seconds."""
        return not self._stop.is_set() and time.monotonic() + lead < self._deadline

    def _take_request(self) -> bool:
        with self._budget_lock:
            if self._budget <= 0:
                return False
            self._budget -= 1
            return True

    def _guard(self, name: str, target: Callable[[], None]) -> None:
        try:
            target()
        except Exception as error:  # a bug here must not pass for a quiet rollout
            self._recorder.failed("loadgen", f"worker {name} crashed: {error!r}")

    def _http_worker(self, kind: str, requests: list[Request], lead: float) -> None:
        sent = 0
        while self._running(lead) and self._take_request():
            method, path, body = requests[sent % len(requests)]
            self._http(kind, method, path, body)
            sent += 1
            if self.config.request_interval:
                self._stop.wait(self.config.request_interval)

    def _http(self, kind: str, method: str, path: str, body: bytes | None) -> None:
        headers = {"Connection": "close", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if self.config.host_header:
            headers["Host"] = self.config.host_header
        # S310: the URL is checked to be http://127.0.0.1 or http://localhost in LoadConfig.
        request = urllib.request.Request(self._base + path, data=body, headers=headers, method=method)  # noqa: S310
        what = f"{method} {path}"
        self._recorder.sent(kind)
        began = time.perf_counter()
        try:
            with self._opener.open(request, timeout=self.config.timeout) as response:
                status, payload = response.status, response.read()
            latency_ms = (time.perf_counter() - began) * 1000
            if not 200 <= status < 300:
                raise _Failure(f"HTTP {status}")
            self._recorder.answered(kind, _json_object(payload), latency_ms)
        except urllib.error.HTTPError as error:
            error.close()
            self._recorder.failed(kind, f"{what}: HTTP {error.code}")
        except _Failure as error:
            self._recorder.failed(kind, f"{what}: {error}")
        except Exception as error:  # connection refused or reset, timeout, broken HTTP...
            reason = error.reason if isinstance(error, urllib.error.URLError) else error
            self._recorder.failed(kind, f"{what}: {reason!r}")

    def _websocket_worker(self, number: int) -> None:
        while self._running():
            self._websocket_session(number)
            self._stop.wait(min(WEBSOCKET_INTERVAL, max(self._deadline - time.monotonic(), 0.0)))

    @contextlib.contextmanager
    def _websocket(self) -> Iterator[ClientConnection]:
        """An open session; leaving it cleanly closes it with 1000."""
        parts = self._websocket_parts
        address = (parts.hostname or "", parts.port or 80)
        # The handshake's Host comes from the URI; the socket decides where it really goes.
        uri = urllib.parse.urlunsplit(("ws", self.config.host_header or parts.netloc, parts.path, parts.query, ""))
        with (
            socket.create_connection(address, timeout=self.config.timeout) as sock,
            connect(uri, sock=sock, proxy=None, open_timeout=self.config.timeout, legacy=False) as websocket,
        ):
            yield websocket

    def _websocket_session(self, number: int) -> None:
        """One session: greeting, then an echo a second until its lifetime, stop() or the deadline."""
        self._recorder.sent("websocket")
        try:
            with self._websocket() as websocket:
                greeting = _json_object(websocket.recv(timeout=self.config.timeout))
                if greeting.get("hello") is not True:
                    raise _Failure(f"unexpected greeting {greeting!r:.80}")
                self._recorder.answered(None, greeting)
                sequence = 0
                lifetime = self.config.websocket_session_seconds
                ends = time.monotonic() + lifetime if lifetime else float("inf")
                while self._running() and time.monotonic() < ends:
                    sequence += 1
                    message = f"loadgen {number}/{sequence}"
                    websocket.send(message)
                    echo = websocket.recv(timeout=self.config.timeout)
                    if echo != message:
                        raise _Failure(f"echo {echo!r:.80} for {message!r}")
                    self._recorder.echoed()
                    self._listen(websocket, time.monotonic() + WEBSOCKET_INTERVAL)
        except ConnectionClosed as error:
            self._recorder.failed("websocket", f"session {number} closed by the server: {error}")
        except _Failure as error:
            self._recorder.failed("websocket", f"session {number}: {error}")
        except Exception as error:  # refused, handshake rejected, timeout waiting for the echo, reset...
            self._recorder.failed("websocket", f"session {number}: {error!r}")

    def _listen(self, websocket: ClientConnection, until: float) -> None:
        """Wait until the next echo is due, noticing at once a close by the server."""
        while self._running() and (left := until - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                unexpected = websocket.recv(timeout=min(left, POLL))
                raise _Failure(f"unexpected message {unexpected!r:.80}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", required=True, help="base URL, http://127.0.0.1:PORT")
    parser.add_argument("--duration", type=float, required=True, help="seconds to run")
    parser.add_argument("--json", type=Path, help="write the report there as JSON")
    parser.add_argument("--max-requests", type=int, default=LoadConfig.max_requests)
    parser.add_argument("--host-header", help="Host header to send")
    parser.add_argument("--websocket-url", help="default: ws://<url's host:port>/ws/echo")
    args = parser.parse_args(argv)
    try:
        config = LoadConfig(
            base_url=args.url,
            duration=args.duration,
            max_requests=args.max_requests,
            host_header=args.host_header,
            websocket_url=args.websocket_url,
        )
    except ValueError as error:
        parser.error(str(error))
    run = LoadRun(config)
    run.start()
    try:
        run.wait()
    except KeyboardInterrupt:
        print("interrupted: stopping", file=sys.stderr)
    report = run.stop()
    print(report.summary())
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=2, sort_keys=True) + "\n")
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
