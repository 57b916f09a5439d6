"""Shortcuts the brief tests share: generating briefs the way the flow's batch task does."""

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from config.settings import Settings
from store.db import transaction
from store.types import utcnow
from tasks.briefs import GenerationReport, generate_batch, prepare, select_members


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


def start_this_week(campaign_folder: Path) -> None:
    """Move the example campaign's sprint to start this Monday, so its brief links are live
    whatever today's date (they expire when the campaign ends)."""
    monday = date.today() - timedelta(days=date.today().weekday())
    campaign = campaign_folder / "campaign.yaml"
    text = campaign.read_text()
    assert "start: 2027-02-01" in text
    campaign.write_text(text.replace("start: 2027-02-01", f"start: {monday.isoformat()}"))
