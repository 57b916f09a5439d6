"""Shortcuts the brief tests share: generating briefs the way the flow's batch task does."""

import asyncio
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine

from config.settings import Settings
from store.db import transaction
from store.types import utcnow
from tasks.briefs.generate import generate_batch
from tasks.briefs.run import GenerationReport, prepare, select_members


def generate(
    settings: Settings,
    engine: Engine,
    slug: str,
    *,
    send: bool = False,
    handles: Sequence[str] = (),
    now: datetime | None = None,
) -> GenerationReport:
    """Generate (and with `send`, queue) briefs in one batch, without starting Prefect."""
    with transaction(engine) as session:
        run = prepare(session, slug, public_url=settings.public_url)
        members = select_members(session, run.campaign, handles)
        return generate_batch(
            session, run, members, actor=settings.actor, send=send, now=now or utcnow()
        )


# The contact properties Rally writes to HubSpot by default: a HubSpot fake given them is an
# account where `rally leads check --create-missing` already ran.
HUBSPOT_PROPERTIES = (
    "rally_tags",
    "rally_email_consent",
    "rally_sms_consent",
    "rally_source_code",
    "rally_first_source_code",
    "rally_creator",
    "rally_campaign",
)


def start_this_week(campaign_folder: Path) -> None:
    """Move the example campaign's sprint to start this Monday, so its brief links are live
    whatever today's date (they expire when the campaign ends)."""
    monday = date.today() - timedelta(days=date.today().weekday())
    campaign = campaign_folder / "campaign.yaml"
    text = campaign.read_text()
    assert "start: 2027-02-01" in text
    campaign.write_text(text.replace("start: 2027-02-01", f"start: {monday.isoformat()}"))


def make_leads(
    engine: Engine,
    slug: str,
    count: int,
    *,
    destinations: Sequence[str] = (),
    prefix: str = "lead",
    now: datetime | None = None,
) -> list[int]:
    """`count` new people with an email each, queued for the campaign's destinations (or the
    named ones), as signups would queue them; their contact ids."""
    from sqlmodel import select

    from config.campaign import CampaignSpec
    from store.bulk import insert_rows
    from store.models import Campaign, Contact
    from tasks.leads.records import queue_sync

    at = now or utcnow()
    with transaction(engine) as session:
        campaign = session.exec(select(Campaign).where(Campaign.slug == slug)).one()
        assert campaign.id is not None
        rows = [
            {
                "email": f"{prefix}{i}@example.org",
                "email_normalized": f"{prefix}{i}@example.org",
                "given_name": f"Lead{i}",
                "family_name": "Tester",
                "postal_code": "19104",
                "created_at": at,
                "updated_at": at,
            }
            for i in range(count)
        ]
        ids = insert_rows(session, Contact, rows, key=("email_normalized",))
        spec = CampaignSpec.model_validate(campaign.spec)
        chosen = [d for d in spec.destinations if not destinations or d.name in destinations]
        contact_ids = sorted(ids.values())
        queue_sync(session, campaign.id, chosen, contact_ids, now=at)
        return contact_ids


def apply_second_campaign(rally, folder: Path, target: Path, slug: str = "aa-second") -> str:
    """The campaign of `folder` applied again as another campaign, `slug` (first in slug
    order): for what one campaign's token must not reach of another's."""
    target.mkdir()
    text = (folder / "campaign.yaml").read_text()
    (target / "campaign.yaml").write_text(text.replace("slug: first-vote-pa-2027", f"slug: {slug}"))
    (target / "roster.csv").write_text((folder / "roster.csv").read_text())
    run = rally("campaign", "apply", target / "campaign.yaml")
    assert run.code == 0, run.err
    return slug


T = TypeVar("T")


def on_a_loop(work: Coroutine[Any, Any, T]) -> T:
    """`work` on an event loop of its own thread (a browser test before it in this process may
    have left one marked running on this thread)."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, work).result()
