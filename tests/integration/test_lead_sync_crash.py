"""Lead sync under crashes and concurrency, with `rally leads sync` as real processes against
the HubSpot fake over loopback: killed at random points it loses no lead and creates none twice;
two drains at once on PostgreSQL send nothing twice."""

import random
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import col

from config.settings import get_settings
from store.db import transaction
from store.models import OutboxMessage
from tasks.leads.sync import MOST_IN_FLIGHT
from tests.conftest import ROOT, SLUG
from tests.fakes.http_server import serving
from tests.fakes.hubspot_api import UPSERT, FakeHubSpot
from tests.helpers import make_leads
from tests.processes import store_env

pytestmark = pytest.mark.slow

LEADS = 2000
BATCH = 20


@pytest.fixture
def hubspot() -> Iterator[FakeHubSpot]:
    yield from serving(FakeHubSpot(rate=None))


@pytest.fixture
def to_hubspot(rally, applied: Path, hubspot: FakeHubSpot, settings, monkeypatch) -> FakeHubSpot:
    campaign = applied / "campaign.yaml"
    text = campaign.read_text()
    start, end = text.index("destinations:"), text.index("roster:")
    block = (  # the fake has no limit: neither has the destination, so kills cost no budget
        f"destinations:\n  - name: hub\n    type: hubspot\n    batch_size: {BATCH}\n"
        "    rate: {requests: 100000, per_seconds: 1}\n"
    )
    campaign.write_text(text[:start] + block + text[end:])
    assert rally("campaign", "apply", campaign).code == 0
    monkeypatch.setenv("RALLY_HUBSPOT_API_URL", hubspot.url)
    monkeypatch.setenv("RALLY_HUBSPOT_TOKEN", hubspot.token)
    get_settings.cache_clear()
    run = rally("leads", "check", SLUG, "--create-missing")  # the properties Rally writes
    assert run.code == 0, run.out
    return hubspot


def drain_env(settings, hubspot: FakeHubSpot, lease: float) -> dict[str, str]:
    """The environment of a `rally leads sync` run against `hubspot`, with its outbox lease."""
    return store_env(
        settings,
        RALLY_HUBSPOT_API_URL=hubspot.url,
        RALLY_HUBSPOT_TOKEN=hubspot.token,
        RALLY_OUTBOX_LEASE_SECONDS=str(lease),
    )


def drain_process(settings, hubspot: FakeHubSpot, lease: float) -> subprocess.Popen[str]:
    """`rally leads sync` in a new interpreter of its own, which takes SIGINT as Ctrl-C at a
    terminal does, even where this run was started in the background, whose children ignore
    it."""
    code = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from cli.main import main; main(['leads', 'sync'])"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env=drain_env(settings, hubspot, lease),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def statuses(engine) -> dict[str, int]:
    with transaction(engine, write=False) as session:
        rows = session.execute(
            sa_select(col(OutboxMessage.status), func.count())
            .where(col(OutboxMessage.channel) == "lead")
            .group_by(col(OutboxMessage.status))
        )
        return {status: count for status, count in rows}


def test_a_drain_killed_at_random_points_loses_no_lead_and_creates_none_twice(
    engine, settings, to_hubspot: FakeHubSpot, forked_rally
):
    make_leads(engine, SLUG, LEADS)
    chooser = random.Random(20261122)
    kills = 0
    calls = LEADS // BATCH  # requests a full sync takes without crashes
    while kills < 6:
        seen = len(to_hubspot.requests)
        drain = forked_rally(["leads", "sync"], drain_env(settings, to_hubspot, lease=1.0))
        # Kill at a random request of this run: most often while the answer is on its way
        # back or being committed, the moment that could send something twice.
        target = seen + chooser.randint(1, max(2, calls // 8))
        to_hubspot.wait_for_requests(target, timeout=60)
        drain.send_signal(signal.SIGKILL)
        drain.wait(timeout=30)
        kills += 1
    for _ in range(5):  # runs to the end, once leases held by the killed drains run out
        finished = forked_rally(["leads", "sync"], drain_env(settings, to_hubspot, lease=1.0))
        _, err = finished.communicate(timeout=300)
        assert finished.returncode == 0, err
        if statuses(engine).get("pending", 0) == 0:
            break
    assert statuses(engine) == {"sent": LEADS}
    assert len(to_hubspot.contacts) == LEADS
    assert set(to_hubspot.created.values()) == {1}  # nobody created twice
    repeats = sum(to_hubspot.updated.values())
    print(f"{kills} kills; {repeats} upserts repeated")
    # at most the batches in flight at each kill go again: one per lane (the destination's
    # rate has no limit to speak of, so it takes the most lanes)
    assert repeats <= kills * BATCH * MOST_IN_FLIGHT
    with transaction(engine, write=False) as session:
        missing = session.execute(
            sa_select(func.count()).where(
                col(OutboxMessage.channel) == "lead", col(OutboxMessage.remote_id).is_(None)
            )
        ).scalar_one()
    assert missing == 0  # every lead's HubSpot id is recorded


def test_two_drains_at_once_on_postgresql_send_nothing_twice(
    engine, settings, to_hubspot: FakeHubSpot, store_url, forked_rally
):
    if not store_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer: drains take turns by design")
    make_leads(engine, SLUG, LEADS)
    env = drain_env(settings, to_hubspot, lease=300)
    drains = [forked_rally(["leads", "sync"], env) for _ in range(2)]
    shares = []
    for drain in drains:
        out, err = drain.communicate(timeout=300)
        assert drain.returncode == 0, err
        said = re.search(r"hub: ([\d,]+) sent", out)
        assert said, out
        shares.append(int(said[1].replace(",", "")))
    assert sum(shares) == LEADS and min(shares) > 0  # both drains did part of the work
    assert statuses(engine) == {"sent": LEADS}
    assert len(to_hubspot.contacts) == LEADS
    assert sum(to_hubspot.updated.values()) == 0  # each person sent exactly once
    sent = [r.json["inputs"] for r in to_hubspot.requests_to(UPSERT) if r.status == 200]
    assert sum(len(batch) for batch in sent) == LEADS


def test_ctrl_c_ends_each_lane_with_its_batch_recorded_and_a_rerun_sends_the_rest_once(
    engine, settings, to_hubspot: FakeHubSpot, forked_rally
):
    """Ctrl-C on `rally leads sync` while its lanes have calls in flight to a remote far away:
    each lane finishes the batch in hand and records it, the rest stay queued, and the next
    sync sends those, nobody twice."""
    make_leads(engine, SLUG, LEADS)
    to_hubspot.answer_after(0.2)  # every lane has a call in flight most of the time
    drain = drain_process(settings, to_hubspot, lease=300)
    to_hubspot.wait_for_requests(len(to_hubspot.requests) + 15, timeout=60)
    drain.send_signal(signal.SIGINT)
    _, err = drain.communicate(timeout=60)

    assert drain.returncode == 130, err
    assert "Traceback" not in err
    answered = sum(1 for r in to_hubspot.requests_to(UPSERT) if r.status == 200)
    left = statuses(engine)
    assert 0 < left.get("pending", 0) < LEADS  # stopped part of the way
    assert left.get("sent", 0) == len(to_hubspot.contacts) == answered * BATCH  # all recorded

    to_hubspot.answer_after(0)
    finished = forked_rally(["leads", "sync"], drain_env(settings, to_hubspot, lease=300))
    _, err = finished.communicate(timeout=300)
    assert finished.returncode == 0, err
    assert statuses(engine) == {"sent": LEADS}
    assert len(to_hubspot.contacts) == LEADS
    assert sum(to_hubspot.updated.values()) == 0  # nobody sent twice
