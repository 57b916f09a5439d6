"""API reads take turns in a web process (`web.app.WithState`): a few are worked on at once,
the rest wait on the event loop; a read gives up its turn once its answer starts, or fails."""

import asyncio
from typing import Any

import pytest

from tests.helpers import on_a_loop
from web.app import ReadTurns


class Counting:
    """An ASGI app that counts the requests it is working on, answering each when let go;
    `started` lets the answer start and holds its body until `go`."""

    def __init__(self, *, fail: bool = False, started: bool = False) -> None:
        self.working = self.most = 0
        self.go = asyncio.Event()
        self.fail, self.started = fail, started

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.working += 1
        self.most = max(self.most, self.working)
        try:
            if self.started:
                await send({"type": "http.response.start", "status": 200, "headers": []})
            await self.go.wait()
            if self.fail:
                raise RuntimeError("the read failed")
            if not self.started:
                await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})
        finally:
            self.working -= 1


def taking_turns(app: Any, at_once: int) -> ReadTurns:
    return ReadTurns(app, at_once)


async def request(app: Any, method: str = "GET") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "method": method, "path": "/"}, receive, send)
    return sent


async def settle() -> None:
    """Let every task that can run, run until it waits."""
    for _ in range(20):
        await asyncio.sleep(0)


def test_reads_are_worked_on_a_few_at_a_time_and_every_one_is_answered():
    async def scenario() -> None:
        inner = Counting()
        app = taking_turns(inner, 2)
        reads = [asyncio.create_task(request(app)) for _ in range(8)]
        await settle()
        assert inner.working == 2  # the other six wait their turn
        inner.go.set()
        answers = await asyncio.gather(*reads)
        assert inner.most == 2
        assert [sent[0]["status"] for sent in answers] == [200] * 8

    on_a_loop(scenario())


def test_changes_do_not_wait_for_reads_turns():
    async def scenario() -> None:
        inner = Counting()
        app = taking_turns(inner, 1)
        posts = [asyncio.create_task(request(app, "POST")) for _ in range(4)]
        await settle()
        assert inner.working == 4
        inner.go.set()
        await asyncio.gather(*posts)

    on_a_loop(scenario())


def test_a_read_whose_answer_started_or_failed_gives_its_turn_up():
    async def scenario() -> None:
        streaming = Counting(started=True)  # its body held back, as to a slow client
        app = taking_turns(streaming, 1)
        first = asyncio.create_task(request(app))
        await settle()
        second = asyncio.create_task(request(app))
        await settle()
        assert streaming.working == 2  # the second read did not wait for the first's body
        streaming.go.set()
        await asyncio.gather(first, second)

        failing = Counting(fail=True)
        app = taking_turns(failing, 1)
        failing.go.set()
        for _ in range(2):  # the turn the first failure held is free for the next read
            with pytest.raises(RuntimeError, match="the read failed"):
                await asyncio.wait_for(request(app), timeout=10)  # not left waiting forever
        assert failing.working == 0

    on_a_loop(scenario())
