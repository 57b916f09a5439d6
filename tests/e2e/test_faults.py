"""`rally serve` under faults a production store meets: PostgreSQL dropping Rally's
connections in the middle of a burst of tracking-link clicks."""

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import select

from store.db import engine_for, transaction
from store.models import EngagementEvent, RosterMember

pytestmark = [
    pytest.mark.slow,
    pytest.mark.serve_process,
    pytest.mark.parametrize("store_url", ["postgresql"], indirect=True),
]

CLICKS = 400


def terminate_rallys_connections(store_url: str) -> int:
    """What a failover or an administrator's pg_terminate_backend does to Rally."""
    with engine_for(store_url).connect() as conn:
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
        conn.commit()
    return int(killed)


def test_connections_dropped_mid_burst_cost_no_request_and_no_click(
    applied, engine, server, store_url
):
    with transaction(engine, write=False) as session:
        codes = [m.tracking_code for m in session.exec(select(RosterMember))]
    url = server.ready()
    answered: list[int] = []
    killed: list[int] = []
    halfway = threading.Event()

    def click(n: int) -> int:
        with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as client:
            status = client.get(
                f"/t/{codes[n % len(codes)]}", headers={"User-Agent": f"phone-{n}"}
            ).status_code
        answered.append(status)
        if len(answered) in (CLICKS // 4, CLICKS // 2, 3 * CLICKS // 4):
            halfway.set()
        return status

    def dropper() -> None:
        for _ in range(3):
            halfway.wait(timeout=60)
            halfway.clear()
            killed.append(terminate_rallys_connections(store_url))

    drops = threading.Thread(target=dropper)
    drops.start()
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(click, range(CLICKS)))
    drops.join()
    assert sum(killed) > 0  # the server's connections were really dropped
    assert {s for s in statuses if s >= 500} == set(), server.output()[-12000:]
    with transaction(engine, write=False) as session:
        stored = session.exec(select(EngagementEvent).where(EngagementEvent.type == "link_click"))
        assert len(stored.all()) == statuses.count(302) == CLICKS
