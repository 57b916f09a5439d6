"""`/healthz` answers from the event loop: a load balancer's check is never stuck behind pages
that have every worker thread busy (which would take a busy server out of rotation)."""

import asyncio

import anyio.to_thread
import httpx

from tests.helpers import on_a_loop
from web.app import create_app


def test_health_answers_while_every_worker_thread_is_busy(settings):
    app = create_app(settings)

    async def scenario() -> None:
        threads = anyio.to_thread.current_default_thread_limiter()
        busy = [object() for _ in range(int(threads.total_tokens))]
        for work in busy:  # every worker thread taken, as by slow pages
            await threads.acquire_on_behalf_of(work)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rally") as client:
            try:
                page = asyncio.create_task(client.get("/join/any-campaign"))  # needs a thread
                health = await asyncio.wait_for(client.get("/healthz"), timeout=10)
                assert not page.done()  # the page waits for a thread; the check did not
            finally:
                for work in busy:
                    threads.release_on_behalf_of(work)
            assert (await page).status_code == 404
        assert health.status_code == 200 and health.json() == {"status": "ok"}

    on_a_loop(scenario())
