"""Shortcuts the brief tests share: generating briefs the way the flow's batch task does."""

from collections.abc import Sequence
from datetime import datetime

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
