"""Answers to API reads are kept and given again while the store is unchanged
(`web.kept_reads`): a polling client costs the store nothing, yet sees every change committed
before it asked, and a kept answer is refused to whoever the token check would refuse."""

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import event
from starlette.types import Message

from store.types import utcnow
from tests.conftest import SLUG
from tests.helpers import apply_second_campaign, on_a_loop
from tests.integration.test_api_v1 import token
from tests.integration.test_review_api import CAPTION
from web.app import create_app

# The same on both stores; on PostgreSQL the mark moves with other tests' writes to the server.
SQLITE_ONLY = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


@contextmanager
def statements(app: FastAPI) -> Iterator[list[str]]:
    """The statements the app's store is asked while in the block."""
    asked: list[str] = []

    def count(conn, cursor, statement, *args) -> None:
        asked.append(statement)

    engine = app.state.rally.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield asked
    finally:
        event.remove(engine, "before_cursor_execute", count)


def unasked(app: FastAPI, client: TestClient, path: str, auth: dict[str, str]) -> Response:
    """A read of `path` answered without asking the store. On PostgreSQL the mark is the
    server's snapshot, which any write moves, in any of its databases (another test's, in
    parallel): there, one read of those made in the next few seconds."""
    deadline = time.monotonic() + 10
    while True:
        with statements(app) as asked:
            answer = client.get(path, headers=auth)
        if not asked or time.monotonic() > deadline:
            assert asked == [], "every read asked the store"
            return answer


def test_an_unchanged_read_costs_the_store_nothing_and_a_change_shows_at_once(
    rally, running, settings
) -> None:
    app = create_app(settings)
    client = TestClient(app)
    auth = token(rally, "--scope", "creatives:read", "--campaign", SLUG)
    path = f"/api/v1/campaigns/{SLUG}/creatives"

    first = client.get(path, headers=auth)
    assert first.status_code == 200 and first.json()["data"] == []
    client.get(path, headers=auth)  # the first read wrote the token's use: a change
    again = unasked(app, client, path, auth)
    assert again.content == first.content
    assert again.headers["etag"] == first.headers["etag"] and "ratelimit" in again.headers

    # Another connection commits a change (as a worker or a terminal would): the next read
    # is worked out again and shows it.
    assert rally("creatives", "submit", SLUG, "maya.votes.pa", "--caption", CAPTION).code == 0
    with statements(app) as asked:
        changed = client.get(path, headers=auth)
    assert asked and [c["creator"] for c in changed.json()["data"]] == ["maya.votes.pa"]
    assert changed.headers["etag"] != first.headers["etag"]

    unchanged = client.get(path, headers=auth | {"If-None-Match": changed.headers["etag"]})
    assert unchanged.status_code == 304 and unchanged.content == b""


def test_a_kept_answer_is_refused_as_the_token_check_would_refuse_it(
    rally, applied, settings, tmp_path
) -> None:
    apply_second_campaign(rally, applied, tmp_path / "second")
    client = TestClient(create_app(settings))
    made = json.loads(
        rally(
            "tokens", "create", "poller", "--scope", "campaign:read", "--all-campaigns", "--json"
        ).out
    )
    every = {"Authorization": f"Bearer {made['secret']}"}
    path = "/api/v1/campaigns/aa-second"
    assert client.get(path, headers=every).status_code == 200
    assert client.get(path, headers=every).status_code == 200  # kept

    others = token(rally, "--scope", "campaign:read", "--campaign", SLUG)
    refused = client.get(path, headers=others)
    assert refused.status_code == 403 and "another campaign" in refused.json()["detail"]
    lacking = token(rally, "--scope", "leads:read", "--all-campaigns")
    assert client.get(path, headers=lacking).status_code == 403
    listed = client.get("/api/v1/campaigns", headers=every).json()["data"]
    assert [c["slug"] for c in listed] == ["aa-second", SLUG]
    own = client.get("/api/v1/campaigns", headers=others).json()["data"]
    assert [c["slug"] for c in own] == [SLUG]

    assert rally("tokens", "revoke", str(made["id"])).code == 0
    revoked = client.get(path, headers=every)
    assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]


def test_a_kept_answer_holds_only_until_a_task_falls_overdue_or_the_token_expires(
    rally, running, settings
) -> None:
    moment = [utcnow()]
    client = TestClient(create_app(settings, clock=lambda: moment[0]))
    assert rally("creatives", "submit", SLUG, "maya.votes.pa", "--caption", CAPTION).code == 0
    made = json.loads(
        rally(
            "tokens", "create", "poller", "--scope", "reviews:read", "--campaign", SLUG,
            "--days", "30", "--json",
        ).out
    )  # fmt: skip
    auth = {"Authorization": f"Bearer {made['secret']}"}
    path = f"/api/v1/campaigns/{SLUG}/review-tasks"

    (task,) = client.get(path, headers=auth).json()["data"]
    assert task["overdue"] is False
    due = datetime.fromisoformat(task["due_at"])
    moment[0] = due - timedelta(seconds=1)
    assert client.get(path, headers=auth).json()["data"][0]["overdue"] is False
    moment[0] = due
    assert client.get(path, headers=auth).json()["data"][0]["overdue"] is True

    moment[0] = datetime.fromisoformat(made["expires_at"])
    expired = client.get(path, headers=auth)
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]


def test_a_change_is_seen_after_the_stores_connections_were_closed(rally, running, settings):
    """SQLite counts its mark per connection, from the same start on each: a kept answer must
    not match a mark read on a connection opened after the change."""
    app = create_app(settings)
    client = TestClient(app)
    auth = token(rally, "--scope", "creatives:read", "--campaign", SLUG)
    path = f"/api/v1/campaigns/{SLUG}/creatives"
    assert client.get(path, headers=auth).json()["data"] == []

    assert rally("creatives", "submit", SLUG, "maya.votes.pa", "--caption", CAPTION).code == 0
    app.state.rally.engine.dispose()
    after = client.get(path, headers=auth)
    assert [c["creator"] for c in after.json()["data"]] == ["maya.votes.pa"]


@SQLITE_ONLY
def test_reads_of_one_url_at_once_after_a_change_are_worked_out_once(rally, running, settings):
    """After a change, a dashboard's clients all ask again at once: one works the answer out,
    the others wait for it, instead of each costing the store a read."""
    app = create_app(settings)
    auth = token(rally, "--scope", "creatives:read", "--campaign", SLUG)
    path = f"/api/v1/campaigns/{SLUG}/creatives"

    on_a_loop(asgi_gets(app, path, auth, 1))  # the token's use written: a change
    on_a_loop(asgi_gets(app, path, auth, 1))  # kept
    assert rally("creatives", "submit", SLUG, "maya.votes.pa", "--caption", CAPTION).code == 0
    with statements(app) as once:
        on_a_loop(asgi_gets(app, path, auth, 1))
    assert rally("creatives", "submit", SLUG, "jordanreyes_phl", "--caption", CAPTION).code == 0
    with statements(app) as at_once:
        answers = on_a_loop(asgi_gets(app, path, auth, 8))
    assert {body for _, _, body in answers} == {answers[0][2]}
    assert len(json.loads(answers[0][2])["data"]) == 2
    assert len(at_once) == len(once) > 0


@SQLITE_ONLY
def test_conditional_polls_after_a_change_elsewhere_are_worked_out_once_and_kept(
    rally, running, settings
):
    """A poller sends its tag back: when a change elsewhere left this answer as it was, the
    burst after it is one read of the store, every answer 304, and the next burst none."""
    app = create_app(settings)
    auth = token(rally, "--scope", "creatives:read", "--campaign", SLUG)
    path = f"/api/v1/campaigns/{SLUG}/creatives"
    on_a_loop(asgi_gets(app, path, auth, 1))  # the token's use written: a change
    ((_, headers, _),) = on_a_loop(asgi_gets(app, path, auth, 1))  # kept
    polled = auth | {"If-None-Match": headers["etag"]}

    token(rally, "--scope", "campaign:read", "--campaign", SLUG)  # a change elsewhere
    with statements(app) as after_the_change:
        burst = on_a_loop(asgi_gets(app, path, polled, 8))
    with statements(app) as then:
        again = on_a_loop(asgi_gets(app, path, polled, 8))
    assert [status for status, _, _ in burst + again] == [304] * 16
    assert after_the_change and then == []


@SQLITE_ONLY
def test_a_client_slow_to_read_its_answer_holds_up_no_one_waiting_for_it(rally, running, settings):
    app = create_app(settings)
    auth = token(rally, "--scope", "creatives:read", "--campaign", SLUG)
    path = f"/api/v1/campaigns/{SLUG}/creatives"
    on_a_loop(asgi_gets(app, path, auth, 1))
    on_a_loop(asgi_gets(app, path, auth, 1))  # kept
    assert rally("creatives", "submit", SLUG, "maya.votes.pa", "--caption", CAPTION).code == 0

    async def scenario() -> list[tuple[int, dict[str, str], bytes]]:
        reading, started = asyncio.Event(), asyncio.Event()
        slow = asyncio.create_task(asgi_get(app, path, auth, reading=reading, started=started))
        await started.wait()  # its answer is worked out: its client has not read it yet
        try:
            others = await asyncio.wait_for(asgi_gets(app, path, auth, 3), timeout=30)
        finally:
            reading.set()
            await slow
        return others

    others = on_a_loop(scenario())
    assert [status for status, _, _ in others] == [200] * 3
    assert {len(json.loads(body)["data"]) for _, _, body in others} == {1}


async def asgi_gets(
    app: FastAPI, path: str, headers: dict[str, str], count: int
) -> list[tuple[int, dict[str, str], bytes]]:
    return list(await asyncio.gather(*(asgi_get(app, path, headers) for _ in range(count))))


async def asgi_get(
    app: FastAPI,
    path: str,
    headers: dict[str, str],
    *,
    reading: asyncio.Event | None = None,
    started: asyncio.Event | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """A GET straight to the ASGI app: status, headers, body. With `reading`, a client that
    does not read its body until it is set (the server's send waits for it, as uvicorn's
    does for a full socket); `started` is set when the answer starts."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"rally")]
        + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("rally", 80),
    }
    sent: list[Message] = []

    async def receive() -> Message:
        await asyncio.Event().wait()  # the client sends nothing more
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start" and started is not None:
            started.set()
        if message["type"] == "http.response.body" and reading is not None:
            await reading.wait()
        sent.append(message)

    await app(scope, receive, send)
    answer = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], answer, b"".join(m.get("body", b"") for m in sent[1:])
