"""Group commit for events arriving one request at a time (webhooks, link clicks).

Each request hands its row to one writer thread and waits until the row is committed; the
thread commits whatever has queued up meanwhile in one transaction. At a thousand requests a
second that is a few dozen commits instead of a thousand, and no request is answered before
its event is safely stored.
"""

import logging
import queue
import threading
from concurrent.futures import Future
from typing import Any

from sqlalchemy import Engine

from store.db import connection_dropped, transaction
from tasks.engagement.events import store_events
from tasks.engagement.inbound import attribute

log = logging.getLogger(__name__)
MAX_GROUP = 1000


class EventWriter:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._queue: queue.Queue[tuple[dict[str, Any], Future[bool]]] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
        self._thread.start()

    def submit(self, row: dict[str, Any]) -> "Future[bool]":
        """Queue one event row; the future is done (True if new) once it is committed."""
        done: Future[bool] = Future()
        self._queue.put((row, done))
        return done

    def _run(self) -> None:
        while True:
            group = [self._queue.get()]
            while len(group) < MAX_GROUP:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._commit(group)

    def _commit(self, group: list[tuple[dict[str, Any], "Future[bool]"]]) -> None:
        """Commit the group in one transaction; if that fails, each row in one of its own, so
        that one bad row costs only its own request (answered 5xx) and the rest are stored."""
        try:
            self._store([row for row, _ in group])
        except Exception as exc:
            if len(group) > 1:
                for one in group:
                    self._commit([one])
                return
            log.exception("storing an event failed")
            group[0][1].set_exception(exc)
            return
        for _, done in group:
            done.set_result(True)

    def _store(self, rows: list[dict[str, Any]]) -> None:
        """Store the rows; if the database dropped the connection, once more on a fresh one
        (events are keyed by source and id, so a second try stores nothing twice)."""
        for attempt in range(2):
            try:
                # Events are keyed by source and id, so the writer need not take turns with
                # other changes (PostgreSQL's writers' lock): a webhook never waits behind a
                # rules pass or a drain.
                with transaction(self.engine, take_turns=False) as session:
                    attribute(session, rows)
                    store_events(session, rows, count=False)
                return
            except Exception as exc:
                if attempt or not connection_dropped(exc):
                    raise
