"""How fast the staff pages answer, timed on the server side: the staff console of a campaign of
1,000 creators (three creatives each, their reviews, 20,000 follow-ups and 40,000 lead messages,
a stored report) and the review queue with 1,000 open tasks.

The store is built with bulk inserts and service functions (a minute or less), then each page
is asked for in-process through FastAPI's TestClient, signed in, N times, the pages in turn
round after round; the figure is the median. In the same run, each of the two pages with a
goal has a floor: a route added to the same app (the same middleware, TestClient and store)
that answers a page of the same size from the same rows with plain SQLAlchemy Core queries on
one connection and a plain Jinja template, with no sign-in and none of Rally's logic. The
console's floor counts what the console shows (active creators, each creator's latest brief
made, sent and acknowledged, creatives by state, the overdue review tasks with their creators,
lead messages by destination and state) and reads the latest report's numbers; the queue's
floor reads the queue's rows (every open or decided task with its draft, creative and creator,
soonest deadline first) in one query and lists the first 200. `/healthz` is printed too: the
least any request through the app costs.

Goals: the console at most 2.5x its floor, the queue at most 8x its floor (medians). The former
absolute goals (the console under 300 ms, the queue under 200 ms) are printed for reference;
the ratios decide.

    .venv/bin/python benchmarks/pages.py [--creators 1000] [--runs 15] [--database-url URL]
"""

import argparse
import csv
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from jinja2 import Environment
from sqlalchemy import Engine, func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from config.campaign_file import load_campaign
from store.audit import Change, record
from store.bulk import insert_rows
from store.db import engine_for, transaction, upgrade
from store.models import (
    Brief,
    Campaign,
    Contact,
    Creative,
    CreativeDraft,
    Creator,
    EngagementEvent,
    FollowUp,
    OutboxMessage,
    Report,
    ReviewStatus,
    ReviewTask,
    RosterMember,
)
from tasks.campaigns.apply import apply_campaign
from tasks.campaigns.configs import read_configs
from tasks.campaigns.roster import read_roster
from tasks.campaigns.roster_import import import_roster
from tasks.reporting.page import render_html
from tasks.reporting.report import build_report
from tasks.reporting.stored import store_report
from tasks.review.views import DECIDED, QUEUE_ROWS
from tasks.sprint.state import LIVE, start_sprint

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "youth-vote"
SLUG = "first-vote-pa-2027"
STAFF = "dana.okafor@keystoneyouthvote.example.org"  # staff, and an internal reviewer
NOW = datetime(2027, 3, 10, 15, tzinfo=UTC)  # week 6 of the example's sprint
GOAL_CONSOLE_OF_FLOOR = 2.5
GOAL_QUEUE_OF_FLOOR = 8.0
REFERENCE_CONSOLE_MS = 300.0  # the former absolute goals, printed for reference
REFERENCE_QUEUE_MS = 200.0
RULES = ("thank_commenters", "volunteer_interest_dm", "welcome_signup_email", "welcome_signup_sms")
CHANNELS = ("reply", "dm", "email", "sms")


def campaign_folder(scratch: Path, creators: int) -> Path:
    """The example campaign with a roster of `creators` made from its own rows."""
    folder = scratch / "campaign"
    shutil.copytree(EXAMPLE, folder)
    with (EXAMPLE / "roster.csv").open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    with (folder / "roster.csv").open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        for n in range(creators):
            row = dict(rows[n % len(rows)])
            row["handle"] = f"{row['handle'][:20]}{n}"
            row["email"] = f"creator{n}@example.org"
            writer.writerow(row)
    return folder


def apply_example(engine: Engine, folder: Path) -> Campaign:
    """The campaign in `folder` applied with its roster, as `rally campaign apply` does."""
    spec = load_campaign(folder / "campaign.yaml")
    file = str(folder / "campaign.yaml")
    with transaction(engine) as session:
        configs = read_configs(spec, folder, file=file)
        campaign = apply_campaign(session, spec, configs=configs, source_path=file, actor="bench")
        rows, _ = read_roster(folder / "roster.csv", spec)
        import_roster(session, campaign.campaign, spec, rows, actor="bench")
        return campaign.campaign


def seed_pipeline(session: Session, campaign_id: int, *, now: datetime, per_creator: int) -> None:
    """A brief for each creator (sent, most acknowledged), `per_creator` creatives each with a
    draft and an internal review task: one posted, one in review (its task open, a third of
    them overdue: 1,000 open tasks for 1,000 creators), one sent back; an audit entry each."""
    members = [
        m or 0
        for m in session.exec(
            select(RosterMember.id).where(RosterMember.campaign_id == campaign_id)
        )
    ]
    briefs = [
        {
            "campaign_id": campaign_id,
            "member_id": m,
            "version": 1,
            "inputs_hash": "0" * 64,
            "content_markdown": "brief",
            "content_html": "<p>brief</p>",
            "token": f"bench-{campaign_id}-{m}",
            "token_expires_at": now + timedelta(days=90),
            "sent_at": now - timedelta(days=30),
            "acknowledged_at": now - timedelta(days=29) if m % 5 else None,
        }
        for m in members
    ]
    insert_rows(session, Brief, briefs)
    states = ("posted", "in_review", "changes_requested")  # one creative of each per creator
    creatives = [
        {
            "campaign_id": campaign_id,
            "member_id": m,
            "title": f"video {k}",
            "status": states[k % 3],
            "current_version": 1,
        }
        for m in members
        for k in range(per_creator)
    ]
    creative_ids = insert_rows(session, Creative, creatives, key=("member_id", "title"))
    drafts = [
        {
            "creative_id": c,
            "version": 1,
            "caption": "#ad Paid for by the fund",
            "submitted_by": "bench",
        }
        for c in creative_ids.values()
    ]
    draft_ids = insert_rows(session, CreativeDraft, drafts, key=("creative_id",))
    status_of = {c: states[int(title.split()[-1]) % 3] for (_, title), c in creative_ids.items()}
    task_status = {
        "posted": "approved",
        "in_review": "open",
        "changes_requested": "changes_requested",
    }
    tasks = [
        {
            "draft_id": d,
            "tier": "internal",
            "position": 0,
            "approver_group": "internal",
            "status": task_status[status_of[c]],
            "due_at": now + timedelta(hours=(-2 if n % 3 == 0 else 20)),
            "policy_version": "bench",
        }
        for n, ((c,), d) in enumerate(draft_ids.items())
    ]
    insert_rows(session, ReviewTask, tasks)
    record(
        session,
        [
            Change("bench", "creative.submitted", "creative", c, f"creative {c} submitted")
            for c in creative_ids.values()
        ],
    )


def seed_engagement(
    session: Session,
    campaign_id: int,
    *,
    now: datetime,
    people: int,
    dead_every: int = 50,
    prefix: str = "person",
) -> None:
    """`people` people who commented, each with a follow-up (its text in the outbox) and a
    lead message to each of two destinations (one in `dead_every` given up on)."""
    contacts = [
        {
            "email": f"{prefix}{n}@example.net",
            "email_normalized": f"{prefix}{n}@example.net",
            "given_name": ("Ana", "Jamal", "Priya", "Luis", "Mei")[n % 5],
            "family_name": f"Tester{n}",
            "handle": f"{prefix}.fan{n}",
            "platform": "tiktok",
        }
        for n in range(people)
    ]
    contact_ids = insert_rows(session, Contact, contacts, key=("handle",))
    person = [contact_ids[(row["handle"],)] for row in contacts]  # by n
    events = [
        {
            "source": "bench",
            "external_id": f"{campaign_id}-{row['handle']}",
            "type": "comment",
            "campaign_id": campaign_id,
            "contact_id": person[n],
            "actor": row["handle"],
            "text": "how can I help?",
            "occurred_at": now - timedelta(minutes=n),
        }
        for n, row in enumerate(contacts)
    ]
    event_ids = insert_rows(session, EngagementEvent, events, key=("contact_id",))
    messages: list[dict[str, Any]] = []
    followups: list[dict[str, Any]] = []
    for n, row in enumerate(contacts):
        channel, rule, cid = CHANNELS[n % 4], RULES[n % 4], person[n]
        key = f"followup:{campaign_id}:{rule}:{cid}"
        text = f"Thanks for asking, {row['given_name']}! Here is how to help."
        messages.append(
            {
                "channel": {"reply": "tiktok_reply", "dm": "tiktok_dm"}.get(channel, channel),
                "destination": "followup",
                "idempotency_key": key,
                "subject_type": "followup",
                "subject_id": str(cid),
                "payload": {"to": row["email"], "text": text},
                "status": "sent",
                "sent_at": now - timedelta(minutes=n),
            }
        )
        followups.append(
            {
                "campaign_id": campaign_id,
                "rule_id": rule,
                "event_id": event_ids[(cid,)],
                "contact_id": cid,
                "channel": channel,
                "status": "sent",
                "due_at": now - timedelta(minutes=n),
                "key": key,
            }
        )
    outbox_ids = insert_rows(session, OutboxMessage, messages, key=("idempotency_key",))
    for followup in followups:
        followup["outbox_id"] = outbox_ids[(followup.pop("key"),)]
    insert_rows(session, FollowUp, followups)
    leads = [
        {
            "channel": "lead",
            "destination": f"{campaign_id}:{name}",
            "idempotency_key": f"lead:{campaign_id}:{name}:{cid}",
            "subject_type": "contact",
            "subject_id": str(cid),
            "status": "dead" if n % dead_every == 0 else "sent",
            "attempts": 1,
            "last_error": "400: email is not valid" if n % dead_every == 0 else None,
        }
        for n, cid in enumerate(person)
        for name in ("crm_export", "hubspot")
    ]
    insert_rows(session, OutboxMessage, leads)


def build(engine: Engine, scratch: Path, creators: int) -> Campaign:
    """The 1,000-creator campaign with its sprint started, pipeline, engagement and report."""
    campaign = apply_example(engine, campaign_folder(scratch, creators))
    cid = campaign.id or 0
    with transaction(engine) as session:
        start_sprint(
            session, SLUG, mode=LIVE, seed=None, now=NOW - timedelta(days=30), actor="bench"
        )
        seed_pipeline(session, cid, now=NOW, per_creator=3)
        seed_engagement(session, cid, now=NOW, people=20 * creators)
    with transaction(engine) as session:
        report = build_report(session, SLUG, week=5)
        store_report(session, report, render_html(report), now=NOW)
    if engine.dialect.name == "postgresql":
        # What autovacuum does within a minute of such a load: planned on the empty tables'
        # statistics, a page of leads took 80 ms instead of 12, one client at a time.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    return campaign


FLOOR_PAGE = Environment(autoescape=True).from_string(
    """<!doctype html><html lang="en"><head><title>{{ title }}</title></head><body>
<h1>{{ title }}</h1>
<table>{% for name, value in counts %}<tr><th>{{ name }}</th><td>{{ value }}</td></tr>{% endfor %}
</table>
<table>{% for row in rows %}<tr>{% for value in row %}<td>{{ value }}</td>{% endfor %}</tr>
{% endfor %}</table>
<p>{{ filler }}</p></body></html>"""
)


def console_floor(engine: Engine, campaign_id: int) -> dict[str, Any]:
    """What the console shows, counted with plain queries on one connection."""
    roster, briefs = RosterMember.__table__.c, Brief.__table__.c  # type: ignore[attr-defined]
    creatives, tasks = Creative.__table__.c, ReviewTask.__table__.c  # type: ignore[attr-defined]
    outbox = OutboxMessage.__table__.c  # type: ignore[attr-defined]
    latest = sa_select(func.max(briefs.id)).where(briefs.campaign_id == campaign_id)
    overdue = (
        sa_select(tasks.due_at, tasks.tier, col(Creator.handle))
        .join(CreativeDraft, col(CreativeDraft.id) == tasks.draft_id)
        .join(Creative, col(Creative.id) == col(CreativeDraft.creative_id))
        .join(RosterMember, col(RosterMember.id) == col(Creative.member_id))
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .where(
            creatives.campaign_id == campaign_id,
            tasks.status == ReviewStatus.OPEN,
            tasks.due_at <= NOW,
        )
        .order_by(tasks.due_at)
    )
    with engine.connect() as conn:
        active = roster.campaign_id == campaign_id, roster.status == "active"
        counts = [("creators", conn.scalar(sa_select(func.count()).where(*active)))]
        made, sent, acknowledged = conn.execute(
            sa_select(
                func.count(), func.count(briefs.sent_at), func.count(briefs.acknowledged_at)
            ).where(briefs.id.in_(latest.group_by(briefs.member_id)))
        ).one()
        counts += [("briefs made", made), ("sent", sent), ("acknowledged", acknowledged)]
        counts += conn.execute(
            sa_select(creatives.status, func.count())
            .where(creatives.campaign_id == campaign_id)
            .group_by(creatives.status)
        ).all()
        late = conn.execute(overdue).all()
        counts.append(("overdue", len(late)))
        leads = conn.execute(
            sa_select(outbox.destination, outbox.status, func.count())
            .where(outbox.channel == "lead", outbox.destination.startswith(f"{campaign_id}:"))
            .group_by(outbox.destination, outbox.status)
        ).all()
        report = conn.scalar(
            sa_select(col(Report.data))
            .where(col(Report.campaign_id) == campaign_id)
            .order_by(col(Report.week).desc())
            .limit(1)
        )
    kpis = [(k, v) for k, v in (report or {}).items() if not isinstance(v, dict | list)]
    return {"title": SLUG, "counts": counts + kpis, "rows": [*late[:10], *leads]}


def queue_floor(engine: Engine) -> dict[str, Any]:
    """The queue's rows, read in one plain query; the first `QUEUE_ROWS` listed."""
    tasks = ReviewTask.__table__.c  # type: ignore[attr-defined]
    query = (
        sa_select(
            tasks.id,
            tasks.status,
            tasks.due_at,
            tasks.tier,
            tasks.decided_by,
            tasks.approver_group,
            tasks.escalated_to,
            col(CreativeDraft.version),
            col(Creative.id),
            col(Creative.title),
            col(Creative.campaign_id),
            col(Creator.handle),
        )
        .join(CreativeDraft, col(CreativeDraft.id) == tasks.draft_id)
        .join(Creative, col(Creative.id) == col(CreativeDraft.creative_id))
        .join(RosterMember, col(RosterMember.id) == col(Creative.member_id))
        .join(Creator, col(Creator.id) == col(RosterMember.creator_id))
        .where(tasks.status.in_((ReviewStatus.OPEN, *DECIDED)))
        .order_by(tasks.due_at, tasks.id)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return {"title": f"Review queue: {len(rows)}", "counts": [], "rows": rows[:QUEUE_ROWS]}


def floor_page(read: Callable[[], dict[str, Any]], filler: dict[str, str], key: str) -> Any:
    from fastapi.responses import HTMLResponse

    def page() -> HTMLResponse:
        return HTMLResponse(FLOOR_PAGE.render(read(), filler=filler.get(key, "")))

    return page


def add_floors(app: Any, engine: Engine, campaign_id: int) -> dict[str, str]:
    """The floors' routes on `app`; `filler` pads each page to its Rally page's size."""
    filler: dict[str, str] = {}
    floors = {
        "console_floor": lambda: console_floor(engine, campaign_id),
        "queue_floor": lambda: queue_floor(engine),
    }
    for key, read in floors.items():
        app.add_api_route(f"/bench/{key}", floor_page(read, filler, key), include_in_schema=False)
    return filler


def timed(client: Any, paths: dict[str, str], runs: int) -> dict[str, float]:
    """The median time of each of `paths`, asked for in turn `runs` times (after two rounds
    that warm the caches), so that a burst of noise falls on all of them alike."""
    times: dict[str, list[float]] = {key: [] for key in paths}
    for _ in range(runs + 2):
        for key, path in paths.items():
            start = time.perf_counter()
            answer = client.get(path)
            times[key].append((time.perf_counter() - start) * 1000)
            assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    return {key: statistics.median(values[2:]) for key, values in times.items()}


def size(client: Any, path: str) -> int:
    answer = client.get(path)
    assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    return len(answer.content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creators", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--database-url", default="", help="A PostgreSQL store (default: SQLite)")
    args = parser.parse_args()
    from fastapi.testclient import TestClient

    from config.settings import get_settings
    from tasks.review.approvers import issue
    from web.app import create_app
    from web.deps import SESSION_COOKIE

    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        url = args.database_url or f"sqlite:///{scratch / 'rally.db'}"
        engine = engine_for(url)
        upgrade(engine)
        started = time.perf_counter()
        campaign = build(engine, scratch, args.creators)
        built_s = time.perf_counter() - started
        import os

        os.environ |= {"RALLY_HOME": str(scratch / "home"), "RALLY_DATABASE_URL": url}
        get_settings.cache_clear()
        app = create_app(get_settings(), clock=lambda: NOW)
        filler = add_floors(app, engine, campaign.id or 0)
        client = TestClient(app)
        with transaction(engine) as session:
            secret = issue(session, STAFF, kind="session", lifetime=timedelta(days=1), now=NOW)
        client.cookies.set(SESSION_COOKIE, secret)
        pages = {  # key in the JSON line: (what it is, its address)
            "healthz": ("healthz", "/healthz"),
            "staff_list": ("staff campaign list", "/staff"),
            "staff_campaign": ("staff campaign page", f"/staff/campaigns/{SLUG}"),
            "console_floor": ("  its floor", "/bench/console_floor"),
            "staff_followups": (
                "follow-ups, searched",
                f"/staff/campaigns/{SLUG}/followups?person=ana",
            ),
            "staff_audit": ("audit log", f"/staff/campaigns/{SLUG}/audit"),
            "staff_audit_checked": (
                "audit log, chain walked",
                f"/staff/campaigns/{SLUG}/audit?check=true",
            ),
            "review_queue": ("review queue", "/review"),
            "queue_floor": ("  its floor", "/bench/queue_floor"),
        }
        sizes = {key: size(client, path) for key, (_, path) in pages.items()}
        for floor, page in (("console_floor", "staff_campaign"), ("queue_floor", "review_queue")):
            filler[floor] = "x" * max(0, sizes[page] - sizes[floor])
            sizes[floor] = size(client, pages[floor][1])
        figures = timed(client, {key: path for key, (_, path) in pages.items()}, args.runs)
    store_kind = "PostgreSQL" if args.database_url else "SQLite"
    print(
        f"Staff pages, {args.creators:,} creators ({3 * args.creators:,} creatives, "
        f"{20 * args.creators:,} follow-ups) on {store_kind}, built in {built_s:.1f} s; "
        f"median of {args.runs} requests, server side:"
    )
    for key, ms in figures.items():
        print(f"  {pages[key][0]:<26} {ms:8.1f} ms  {sizes[key] / 1000:7.1f} kB")
    console, queue = figures["staff_campaign"], figures["review_queue"]
    console_x, queue_x = console / figures["console_floor"], queue / figures["queue_floor"]
    met = console_x <= GOAL_CONSOLE_OF_FLOOR and queue_x <= GOAL_QUEUE_OF_FLOOR
    reference = console < REFERENCE_CONSOLE_MS and queue < REFERENCE_QUEUE_MS
    print(
        f"Goals: the console at most {GOAL_CONSOLE_OF_FLOOR:g}x its floor ({console_x:.2f}x), "
        f"the queue at most {GOAL_QUEUE_OF_FLOOR:g}x its floor ({queue_x:.2f}x): "
        f"{'met' if met else 'MISSED'} (for reference, the former goals of the console under "
        f"{REFERENCE_CONSOLE_MS:g} ms and the queue under {REFERENCE_QUEUE_MS:g} ms: "
        f"{'held' if reference else 'not held'}; the ratios decide)"
    )
    result = {
        "benchmark": "pages",
        "store": store_kind,
        "creators": args.creators,
        "runs": args.runs,
        **{f"{key}_ms": round(ms, 1) for key, ms in figures.items()},
        **{f"{key}_bytes": n for key, n in sizes.items() if key.endswith("_floor")},
        "console_of_floor": round(console_x, 2),
        "queue_of_floor": round(queue_x, 2),
        "goal": {
            "console_of_floor_at_most": GOAL_CONSOLE_OF_FLOOR,
            "queue_of_floor_at_most": GOAL_QUEUE_OF_FLOOR,
        },
        "met": met,
        "reference": {
            "staff_campaign_ms_under": REFERENCE_CONSOLE_MS,
            "review_queue_ms_under": REFERENCE_QUEUE_MS,
            "held": reference,
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
