"""Reports kept in the store: a campaign's report per week, its numbers and its page, so staff
read it on Rally's pages whichever machine made it (the files under RALLY_HOME stay on that
machine). A week reported again replaces its report; its staff are the campaign's approvers.
"""

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from store.db import transaction
from store.models import Campaign, Report
from tasks.campaigns.campaign import get_campaign, on_team
from tasks.reporting.page import render_html
from tasks.reporting.report import write_report


def keep_report(
    engine: Engine, report: dict[str, Any], folder: Path, *, now: datetime
) -> dict[str, Path]:
    """The report stored, then written as files in `folder` (a copy on this machine), its
    page rendered once for both."""
    html = render_html(report)
    with transaction(engine) as session:
        store_report(session, report, html, now=now)
    return write_report(report, folder, html=html)


def store_report(session: Session, report: dict[str, Any], html: str, *, now: datetime) -> Report:
    """Store the report of its campaign and week, replacing one stored before."""
    campaign = get_campaign(session, report["campaign"]["slug"])
    data = json.loads(json.dumps(report, default=str))  # as report.json has it
    row = session.exec(
        select(Report).where(Report.campaign_id == campaign.id, Report.week == report["week"])
    ).first()
    if row is None:
        week = report["week"]
        row = Report(campaign_id=campaign.id or 0, week=week, data=data, html=html, made_at=now)
    else:
        row.data, row.html, row.made_at = data, html, now
    session.add(row)
    return row


def reports_of(session: Session, *, reader: str, slug: str | None = None) -> list[dict[str, Any]]:
    """The campaigns `reader` is staff of (or only `slug`), each (its row as `campaign`) with
    its stored weeks, newest first, and when each report was made."""
    query = select(Campaign).order_by(col(Campaign.slug))
    if slug is not None:
        query = query.where(Campaign.slug == slug)
    campaigns = {c.id: c for c in session.exec(query) if on_team(c, reader)}
    rows = session.exec(
        select(Report.campaign_id, Report.week, Report.made_at)
        .where(col(Report.campaign_id).in_(list(campaigns)))
        .order_by(col(Report.week).desc())
    ).all()
    return [
        {
            "campaign": c,
            "slug": c.slug,
            "name": c.name,
            "weeks": [
                {"week": week, "made_at": made_at} for id_, week, made_at in rows if id_ == c.id
            ],
        }
        for c in campaigns.values()
    ]


def report_page(session: Session, slug: str, week: int, *, reader: str) -> str | None:
    """The stored page of `slug`'s report up to `week`; None if there is none or `reader` is
    not on the campaign's staff, alike, so that the answer tells a stranger nothing."""
    found = session.exec(
        select(Campaign, Report.html)
        .join(Report, col(Report.campaign_id) == col(Campaign.id))
        .where(Campaign.slug == slug, Report.week == week)
    ).first()
    if found is None or not on_team(found[0], reader):
        return None
    return found[1]
