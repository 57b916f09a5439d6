"""A base for local fake HTTP APIs: real HTTP/1.1 on loopback in a background thread, so the
adapters under test use their real httpx clients, keep-alive and timeouts included.

A fake subclasses `FakeHttpServer`, adds routes in `__init__` and answers with `Response`s:

    class FakeCrm(FakeHttpServer):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.people: dict[str, dict[str, Any]] = {}
            self.route("POST", "/api/people/{person_id}", self.upsert)
            self.rate_limit(4, per=1.0)                 # 4 requests a second, then 429s

        def upsert(self, request: RecordedRequest) -> Response:
            if request.headers.get("authorization") != "Bearer t":
                return Response(401, json={"error": "unauthorized"})
            self.people[request.path_params["person_id"]] = request.json
            return Response(201, json={"ok": True})

    with FakeCrm() as crm:                              # or `yield from serving(FakeCrm())`
        httpx.post(f"{crm.url}/api/people/7", json={...}, headers=...)
        assert crm.requests[-1].json == {...}

Each request is answered in this order: recorded (`requests`), then any injected fault
(`fail_next`, `timeout_next`, `drop_next`, in the order they were asked for), then the rate
limits, then the route (404 for an unknown path, 405 for a known path with another method).
"""

import contextlib
import json
import math
import queue
import re
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TypeVar
from urllib.parse import parse_qs, urlsplit

Clock = Callable[[], float]
F = TypeVar("F", bound="FakeHttpServer")


@dataclass
class RecordedRequest:
    """One request as the fake received it. Header names are lowercase; `json` is set when the
    body parses as JSON, `form` when it is form-encoded; `query` keeps a parameter's last value
    (`query_all` every value). `status` is set once answered (None: dropped or held)."""

    method: str
    path: str
    query: dict[str, str]
    query_all: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    path_params: dict[str, str] = field(default_factory=dict)
    status: int | None = None
    at: float = 0.0  # when it arrived, on the fake's clock


@dataclass
class Response:
    """An answer: `json` (serialised, with its content type) or raw `body`, and headers."""

    status: int = 200
    json: Any = None
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if self.json is not None:
            headers.setdefault("Content-Type", "application/json")
            return json.dumps(self.json).encode(), headers
        body = self.body.encode() if isinstance(self.body, str) else self.body
        if body:
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        return body, headers


Handler = Callable[[RecordedRequest], Response]
Respond = Callable[[RecordedRequest, float], Response]


class ManualClock:
    """A clock that moves only when told, for rate-limit windows without sleeping."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RateLimiter:
    """`limit` requests per `window` seconds, as a fixed window (reset when it ends) or a sliding
    one (the last `window` seconds); only the requests it lets through count against it."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        clock: Clock,
        sliding: bool = False,
        applies: Callable[[RecordedRequest], bool] | None = None,
        respond: Respond | None = None,
    ) -> None:
        self.limit, self.window, self.sliding = limit, window, sliding
        self.clock, self.applies, self.respond = clock, applies, respond
        self.rejected = 0
        self._times: deque[float] = deque()
        self._window_start: float | None = None

    def admit(self, request: RecordedRequest) -> float | None:
        """None when the request may pass (and is counted), else seconds until a slot frees."""
        if self.applies is not None and not self.applies(request):
            return None
        now = self.clock()
        if self.sliding:
            while self._times and self._times[0] <= now - self.window:
                self._times.popleft()
            wait = (self._times[0] + self.window - now) if self._times else 0.0
        else:
            if self._window_start is None or now >= self._window_start + self.window:
                self._window_start = now
                self._times.clear()
            wait = self._window_start + self.window - now
        if len(self._times) >= self.limit:
            self.rejected += 1
            return max(wait, 0.0)
        self._times.append(now)
        return None

    def remaining(self) -> int:
        """Requests left in the current window (for fakes that send RateLimit-* headers)."""
        return max(self.limit - len(self._times), 0)


@dataclass
class _Fault:
    kind: str  # "fail", "hold" or "drop"
    response: Response | None = None


class FakeHttpServer:
    """The common machinery of every fake: routes, the record, faults, rate limits."""

    def __init__(self, *, clock: Clock = time.monotonic, hold_seconds: float = 30.0) -> None:
        self.clock = clock
        self.hold_seconds = hold_seconds
        self.limiters: list[RateLimiter] = []
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._requests: list[RecordedRequest] = []
        self._faults: deque[_Fault] = deque()
        self._changed = threading.Condition()
        self._release = threading.Event()
        self._connections: set[socket.socket] = set()
        self.latency = 0.0  # seconds each answer takes (`answer_after`)
        self.in_flight = self.most_in_flight = 0  # requests being answered: now, at most
        self._gate = 0  # requests held until this many are in flight (`hold_until_in_flight`)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- set-up ------------------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """Answer `method` on paths matching `pattern`, where `{name}` matches one segment and
        `{name:path}` the rest of the path."""
        regex = re.sub(r"\\\{(\w+):path\\\}", r"(?P<\1>.+)", re.escape(pattern))
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", regex)
        self._routes.append((method.upper(), re.compile(regex + r"\Z"), handler))

    def rate_limit(
        self,
        limit: int,
        *,
        per: float,
        sliding: bool = False,
        applies: Callable[[RecordedRequest], bool] | None = None,
        respond: Respond | None = None,
    ) -> RateLimiter:
        """Add a limit of `limit` requests per `per` seconds (to the requests `applies` picks);
        over it, answer `respond(request, retry_after)` or else `throttled(...)`."""
        limiter = RateLimiter(
            limit, per, clock=self.clock, sliding=sliding, applies=applies, respond=respond
        )
        self.limiters.append(limiter)
        return limiter

    def throttled(self, request: RecordedRequest, retry_after: float) -> Response:
        """The answer over a rate limit; fakes override it with their service's own shape."""
        return Response(
            429,
            json={"error": "rate limit exceeded"},
            headers={"Retry-After": str(math.ceil(retry_after))},
        )

    def not_found(self, request: RecordedRequest) -> Response:
        return Response(404, json={"error": f"no route for {request.path}"})

    def method_not_allowed(self, request: RecordedRequest, allowed: list[str]) -> Response:
        return Response(
            405,
            json={"error": f"{request.method} not allowed"},
            headers={"Allow": ", ".join(allowed)},
        )

    # -- faults ------------------------------------------------------------------------------

    def fail_next(
        self,
        count: int = 1,
        status: int = 503,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next `count` requests with `status`; a dict or list `body` goes as JSON."""
        if isinstance(body, (bytes, str)):
            response = Response(status, body=body, headers=dict(headers or {}))
        else:
            response = Response(status, json=body, headers=dict(headers or {}))
        self._add_faults(count, _Fault("fail", response))

    def timeout_next(self, count: int = 1) -> None:
        """Hold the next `count` requests unanswered (until `hold_seconds` or the fake stops),
        then close their connections: longer than any client timeout a test uses."""
        self._add_faults(count, _Fault("hold"))

    def drop_next(self, count: int = 1) -> None:
        """Read the next `count` requests, then close their connections without answering."""
        self._add_faults(count, _Fault("drop"))

    def answer_after(self, seconds: float) -> None:
        """Answer each request `seconds` after it arrived, as a remote across the internet
        does; requests in flight at once wait together, not in turn."""
        self.latency = seconds

    def hold_until_in_flight(self, count: int) -> None:
        """Hold the first requests until `count` are in flight at once (or `hold_seconds`
        passed), then answer them and every later one without waiting: shows a client sends
        that many at once, with no timing in it."""
        with self._changed:
            self._gate = count

    def open_gate(self) -> None:
        """Answer at once the requests `hold_until_in_flight` holds, and every later one."""
        with self._changed:
            self._gate = 0
            self._changed.notify_all()

    def wait_for_in_flight(self, count: int, timeout: float = 60.0) -> None:
        """Block until `count` requests are being answered at once (for clients in other
        threads)."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.in_flight >= count, timeout):
                raise TimeoutError(f"{self.in_flight} of {count} requests in flight")

    def heal(self) -> None:
        """Forget the faults not met yet: the remote answers again."""
        with self._changed:
            self._faults.clear()

    def _add_faults(self, count: int, fault: _Fault) -> None:
        with self._changed:
            self._faults.extend([fault] * count)

    # -- the record --------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (a copy)."""
        with self._changed:
            return list(self._requests)

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        return [
            r for r in self.requests if r.path == path and (method is None or r.method == method)
        ]

    @property
    def rate_limited(self) -> int:
        """How many requests the rate limits refused."""
        return sum(limiter.rejected for limiter in self.limiters)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least `count` requests have arrived (for clients in other threads)."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._requests) >= count, timeout):
                raise TimeoutError(f"{len(self._requests)} of {count} requests arrived")
            return list(self._requests)

    # -- running -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake is not running: use it in a `with` block")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._release.clear()
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},  # how soon `stop` is noticed
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        with self._changed:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            self._connections.clear()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- answering (on the server's threads) -------------------------------------------------

    def _serve(self, handler: "_Handler") -> None:
        request = _parse(handler)
        request.at = self.clock()
        with self._changed:
            self._requests.append(request)
            fault = self._faults.popleft() if self._faults else None
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self._changed.notify_all()
        try:
            self._wait_in_flight()
            response = self._response(handler, request, fault)
        finally:  # out of flight before the client hears: its next call may follow at once
            with self._changed:
                self.in_flight -= 1
                self._changed.notify_all()
        if response is not None:
            request.status = response.status
            _send(handler, response)

    def _wait_in_flight(self) -> None:
        """As `answer_after` and `hold_until_in_flight` say."""
        with self._changed:
            if self._gate:
                gathered = self._changed.wait_for(
                    lambda: (
                        not self._gate or self.in_flight >= self._gate or self._release.is_set()
                    ),
                    self.hold_seconds,
                )
                if gathered:
                    self._gate = 0  # open for good
        if self.latency:
            self._release.wait(self.latency)

    def _response(
        self, handler: "_Handler", request: RecordedRequest, fault: _Fault | None
    ) -> Response | None:
        """The answer to `request`, or None for a fault that gives none."""
        if fault is not None and fault.kind != "fail":
            if fault.kind == "hold":
                self._release.wait(self.hold_seconds)
            handler.close_connection = True
            return None
        response = fault.response if fault is not None and fault.response else None
        if response is None:
            response = self._limit(request) or self._dispatch(request)
        return response

    def _limit(self, request: RecordedRequest) -> Response | None:
        with self._changed:
            for limiter in self.limiters:
                wait = limiter.admit(request)
                if wait is not None:
                    return (limiter.respond or self.throttled)(request, wait)
        return None

    def _dispatch(self, request: RecordedRequest) -> Response:
        allowed: list[str] = []
        for method, regex, handler in self._routes:
            match = regex.match(request.path)
            if match is None:
                continue
            if method != request.method:
                allowed.append(method)
                continue
            request.path_params = match.groupdict()
            try:
                return handler(request)
            except Exception:
                traceback.print_exc(file=sys.stderr)
                return Response(500, json={"error": "the fake itself failed: see stderr"})
        if allowed:
            return self.method_not_allowed(request, allowed)
        return self.not_found(request)

    def _track(self, connection: socket.socket, open_: bool) -> None:
        with self._changed:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


def serving(fake: F) -> Iterator[F]:
    """For fixtures: `yield from serving(FakeTikTok())` runs the fake for one test."""
    with fake:
        yield fake


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (killed, timed out) is no error of the fake's."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real services and httpx use it
    timeout = 60  # an idle kept-alive connection ends after a minute

    def _fake(self) -> FakeHttpServer:
        return self.server.fake  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        # Answers leave at once: headers and body are written apart, and with Nagle's
        # algorithm a kept-alive connection would wait ~40 ms for each answer's delayed ACK.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._fake()._track(self.connection, True)

    def finish(self) -> None:
        self._fake()._track(self.connection, False)
        super().finish()

    def _any(self) -> None:
        self._fake()._serve(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _any

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the record is the log


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        chunks = []
        while size := int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
        while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return b"".join(chunks)
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def _parse(handler: BaseHTTPRequestHandler) -> RecordedRequest:
    body = _read_body(handler)
    parts = urlsplit(handler.path)
    query_all = parse_qs(parts.query, keep_blank_values=True)
    headers = {name.lower(): value for name, value in handler.headers.items()}
    content_type = headers.get("content-type", "")
    request = RecordedRequest(
        method=handler.command,
        path=parts.path,
        query={name: values[-1] for name, values in query_all.items()},
        query_all=query_all,
        headers=headers,
        body=body,
    )
    if "json" in content_type:
        with contextlib.suppress(ValueError):
            request.json = json.loads(body)
    elif "application/x-www-form-urlencoded" in content_type:
        request.form = {
            k: v[-1] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()
        }
    return request


def _send(handler: BaseHTTPRequestHandler, response: Response) -> None:
    body, headers = response.encoded()
    handler.send_response(response.status)
    for name, value in headers.items():
        handler.send_header(name, value)
    if "Content-Length" not in headers:  # a HEAD's answer names the length it would have
        handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


@dataclass(frozen=True)
class Remote:
    """How the shared sync test reaches a CRM's fake: the fake, the `RALLY_*` settings that
    point a destination at it, the campaign file's `options` lines, and whether it holds a
    person by email. Each fake module of a registered destination type gives one as `REMOTE`."""

    fake: Callable[[], FakeHttpServer]
    env: Callable[[Any], dict[str, str]]
    options: Callable[[Any], str]
    holds: Callable[[Any, str], bool]


class AfterAnswer:
    """Events a fake sends once the answer to the request that made them is written (at once
    for one made outside a request, such as a test's own call), one at a time from a thread of
    their own and in the order they were made: a client that acts on an answer never sees the
    event of its act overtake the answer's."""

    def __init__(self, deliver: Callable[[Any], None], name: str) -> None:
        self._deliver, self._name = deliver, name
        self._queue: queue.Queue[tuple[Any, threading.Event] | None] = queue.Queue()
        self._local = threading.local()
        self._worker: threading.Thread | None = None

    def start(self) -> None:
        self._worker = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._worker.start()

    def stop(self) -> None:
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout=15)
            self._worker = None

    def add(self, event: Any) -> None:
        """Send `event` after the answer being made on this thread (if any) is written."""
        written = threading.Event()
        waiting = getattr(self._local, "answers", None)
        if waiting is None:
            written.set()
        else:
            waiting.append(written)
        self._queue.put((event, written))

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Around the writing of one answer: the events made meanwhile wait for its end."""
        self._local.answers = []
        try:
            yield
        finally:
            answers, self._local.answers = self._local.answers, None
            for written in answers:
                written.set()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            event, written = item
            written.wait()
            self._deliver(event)
