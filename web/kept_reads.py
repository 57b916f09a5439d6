"""Answers to API reads, kept until the store changes.

An integration polls: an n8n schedule, a dashboard, a warehouse's loader ask the same few URLs
again and again, and most times nothing has changed since. Working a read out costs the store
and Python 2-5 ms of the one process; giving a kept answer again costs a tenth of that.

An answer is kept only where its route says it depends on the store alone (or also on the time,
up to a moment it names: `web.api_v1.keep_answer`), for the token that asked and the URL it
asked, and given again only while the store is unchanged. Whether it is changed is read after
each request arrives, from a mark that moves whenever anyone commits a change, in this process
or any other: SQLite's `data_version` seen from a connection that never writes, and on
PostgreSQL the snapshot, which moves whenever a transaction that wrote ends, in any database
of the server. So no read is answered from before a change committed before it was asked. The
price of so plain a mark: any change leaves every answer stale, a token's use (written once a
minute) too, and a PostgreSQL server shared with a busy Prefect keeps them only moments.

The token is still checked on every read: revoking it is a change of the store; its expiry,
and the minute its use is next written, are kept beside the answer; its rate is counted as for
any other read.
"""

import asyncio
import logging
import threading
import weakref
from collections import OrderedDict
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tasks.api.limits import TokenLimits
from tasks.api.tokens import hash_secret
from web.api_v1 import over_rate, problem, tagged
from web.deps import AppState

log = logging.getLogger(__name__)

Key = tuple[str, str, bytes]  # a kept answer's: its token's hash, its path, its query
LARGEST_KEPT = 1 << 20  # bytes: a bigger answer is worked out each time
KEPT_BYTES = 64 << 20  # the answers of one web process kept at most


class StoreMark:
    """A value that differs after any change is committed to the store, from any connection.

    Read on its own connection, one read at a time per event loop: a request that arrives while
    a read is under way waits for the next one, which starts after it arrived, so that a
    change committed before the request is never missed, and 32 requests at once cost a few
    reads, not 32. SQLite counts `data_version` per connection, from the same start on each:
    the mark carries which connection read it, so one opened again never repeats a mark."""

    def __init__(self, engine: Engine) -> None:
        self._engine = weakref.ref(engine)
        postgres = engine.dialect.name == "postgresql"
        self.statement = "SELECT pg_current_snapshot()::text" if postgres else "PRAGMA data_version"
        self._connection: Any = None
        self._opened = 0  # connections opened so far: the mark's first part
        self._failing = False
        self._lock = threading.Lock()
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Reads]
        self._loops = weakref.WeakKeyDictionary()

    @classmethod
    def of(cls, engine: Engine) -> "StoreMark":
        """The engine's one mark (apps on one store share its engine, and so its mark's
        connection), closed with the engine."""
        mark = _marks.get(engine)
        if mark is None:
            mark = _marks[engine] = cls(engine)
            event.listen(engine, "engine_disposed", _close_mark)
        return mark

    async def now(self) -> object | None:
        """The mark as read after this call began; None when it cannot be read."""
        loop = asyncio.get_running_loop()
        reads = self._loops.get(loop)
        if reads is None:
            reads = self._loops[loop] = _Reads()
        waiting = reads.waiting
        if waiting is None:
            waiting = reads.waiting = loop.create_future()
            if not reads.under_way:
                self._begin(loop, reads)
        return await asyncio.shield(waiting)

    def _begin(self, loop: asyncio.AbstractEventLoop, reads: "_Reads") -> None:
        answer, reads.waiting, reads.under_way = reads.waiting, None, True
        assert answer is not None

        def done(read: asyncio.Future[object]) -> None:
            reads.under_way = False
            failed = read.exception()
            if failed is not None and not self._failing:  # once, not on every request
                log.warning("API reads are not kept: cannot read the store's mark: %s", failed)
            self._failing = failed is not None
            answer.set_result(None if failed else read.result())
            if reads.waiting is not None:
                self._begin(loop, reads)

        try:
            loop.run_in_executor(None, self.read).add_done_callback(done)
        except RuntimeError:  # the loop is closing: its requests are worked out
            reads.under_way = False
            answer.set_result(None)

    def read(self) -> object:
        """The mark, read now on the mark's own connection (opened again after a failure)."""
        with self._lock:
            try:
                if self._connection is None:
                    self._connection = self._connect()
                    self._opened += 1
                cursor = self._connection.cursor()
                cursor.execute(self.statement)
                (mark,) = cursor.fetchone()
                cursor.close()
                return (self._opened, mark)
            except Exception:
                self._drop()  # opened again on the next read
                raise

    def _connect(self) -> Any:
        """A connection of the engine's own, out of its pool: it never writes (SQLite counts
        the commits of every other connection) and holds no transaction open."""
        engine = self._engine()
        if engine is None:
            raise RuntimeError("the store's engine is gone")
        pooled = engine.raw_connection()
        connection: Any = pooled.dbapi_connection
        pooled.detach()
        if engine.dialect.name == "postgresql":
            connection.rollback()
            connection.autocommit = True
        return connection

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with suppress(Exception):
                connection.close()


_marks: weakref.WeakKeyDictionary[Engine, StoreMark] = weakref.WeakKeyDictionary()


def _close_mark(engine: Engine) -> None:
    mark = _marks.get(engine)
    if mark is not None:
        mark.close()


class _Reads:
    """One event loop's reads of the mark: the one under way, the next one's waiters."""

    def __init__(self) -> None:
        self.under_way = False
        self.waiting: asyncio.Future[object | None] | None = None


@dataclass(frozen=True)
class Kept:
    mark: object
    until: Any  # datetime: the route's or the token's, whichever is sooner
    token_id: int
    start: Message  # without the rate's headers, which are each request's own
    body: bytes


class KeptReads:
    """The API's GETs with a token: a kept answer while it holds, else the API's own, kept if
    its route allows (`web.api_v1.keep_answer`). At most `entries` answers, the least recently
    given forgotten first. One kept before the store changed stays, unused, until its URL is
    asked again: it says that URL's answers are kept, so that requests for it at once after a
    change wait for one of them to work it out, instead of each working it out."""

    def __init__(self, app: ASGIApp, state: AppState, limits: TokenLimits, entries: int) -> None:
        self.app, self.state, self.limits, self.entries = app, state, limits, entries
        self.mark = StoreMark.of(state.engine)
        self.kept: OrderedDict[Key, Kept] = OrderedDict()
        self._working: dict[tuple[Key, object], asyncio.Future[None]] = {}
        self.size = 0  # bytes of the answers kept, with their URLs
        self._lock = threading.Lock()  # apps served from several threads (a test's) share it

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        secret = _bearer(scope) if scope["type"] == "http" and scope["method"] == "GET" else ""
        if not secret:
            await self.app(scope, receive, send)
            return
        mark = await self.mark.now()
        if mark is None:
            await self.app(scope, receive, send)
            return
        key = (hash_secret(secret), scope["path"], scope.get("query_string", b""))
        now = self.state.clock()
        kept = self._kept(key)
        if kept is not None and kept.mark == mark and now < kept.until:
            await self._give(kept, scope, receive, send, now.timestamp())
            return
        if kept is None:  # a URL not kept before (its route may keep none): worked out
            await self._work_out(key, mark, scope, receive, send)
            return
        # Kept before the store changed: one request works it out again, and those asking for
        # it meanwhile under the same mark wait for its answer (their mark was read after they
        # arrived, and it has not moved since that request's was read: nothing they must see
        # was committed after it began).
        loop = asyncio.get_running_loop()
        with self._lock:
            working = self._working.get((key, mark))
            mine = working is None or working.get_loop() is not loop
            if mine:
                working = self._working[(key, mark)] = loop.create_future()
        assert working is not None
        if mine:
            await self._work_out(key, mark, scope, receive, send, working)
            return
        await asyncio.shield(working)
        kept = self._kept(key)
        if kept is not None and kept.mark == mark and now < kept.until:
            await self._give(kept, scope, receive, send, now.timestamp())
        else:
            await self._work_out(key, mark, scope, receive, send)

    def _kept(self, key: Key) -> Kept | None:
        with self._lock:
            kept = self.kept.get(key)
            if kept is not None:
                self.kept.move_to_end(key)
            return kept

    async def _work_out(
        self,
        key: Key,
        mark: object,
        scope: Scope,
        receive: Receive,
        send: Send,
        waited_for: "asyncio.Future[None] | None" = None,
    ) -> None:
        """The API's own answer, kept if its route allows. A 200 is held until it is whole,
        kept, and only then sent: as 304 when the client's `If-None-Match` holds its tag,
        which the API is not shown, so that a conditional poll's answer is kept as well. Those
        waiting for it (`waited_for`) are told once it is kept, or cannot be, before this
        client has read a byte of it."""
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"if-none-match"]
        inner = {**scope, "headers": headers}
        held: list[Message] = []

        def told() -> None:
            if waited_for is not None and not waited_for.done():
                waited_for.set_result(None)
                with self._lock:
                    if self._working.get((key, mark)) is waited_for:
                        del self._working[(key, mark)]

        async def answering(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                held.append(message)
                return
            if message["type"] == "http.response.start":
                with self._lock:  # refused or gone now: what was kept for it says nothing
                    self._forget(key)
                told()
            elif held:
                held.append(message)
                if message.get("more_body"):
                    return
                body = b"".join(m.get("body", b"") for m in held[1:])
                self._keep(key, mark, inner, held[0], body)
                told()
                start, whole = tagged(scope, held[0], body)
                await send(start)
                await send(whole)
                return
            await send(message)

        try:
            await self.app(inner, receive, answering)
        finally:
            told()

    def _keep(self, key: Key, mark: object, scope: Scope, start: Message, body: bytes) -> None:
        """Keep a worked-out 200 if its route allows, else forget what was kept for its URL
        before (an answer grown too large, or no longer kept)."""
        state = scope.get("state", {})
        until, grant = state.get("kept_until"), state.get("grant")
        with self._lock:
            self._forget(key)
            if until is None or grant is None or len(body) > LARGEST_KEPT or self.entries <= 0:
                return
            headers = [
                (k, v) for k, v in start["headers"] if not k.lower().startswith(b"ratelimit")
            ]
            stands = min(until, grant.stands_until) if grant.stands_until else until
            self.kept[key] = Kept(mark, stands, grant.token_id, {**start, "headers": headers}, body)
            self.size += _size(key, body)
            while self.kept and (len(self.kept) > self.entries or self.size > KEPT_BYTES):
                self._forget(next(iter(self.kept)))

    def _forget(self, key: Key) -> None:
        gone = self.kept.pop(key, None)
        if gone is not None:
            self.size -= _size(key, gone.body)

    async def _give(
        self, kept: Kept, scope: Scope, receive: Receive, send: Send, now: float
    ) -> None:
        quota = self.limits.take(kept.token_id, now)
        if not quota.allowed:
            refused = over_rate(quota)
            await problem(refused.status, refused.detail, refused.headers)(scope, receive, send)
            return
        rate = [(k.lower().encode(), v.encode()) for k, v in quota.headers().items()]
        start, body = tagged(
            scope, {**kept.start, "headers": [*kept.start["headers"], *rate]}, kept.body
        )
        await send(start)
        await send(body)


def _size(key: Key, body: bytes) -> int:
    """What an answer kept under `key` holds of memory, near enough: its body and its URL (a
    query can be padded to tens of KB)."""
    return len(body) + len(key[1]) + len(key[2]) + 256


def _bearer(scope: Scope) -> str:
    """The request's bearer token, or ''."""
    scheme, _, secret = Headers(scope=scope).get("authorization", "").partition(" ")
    return secret.strip() if scheme.lower() == "bearer" else ""
