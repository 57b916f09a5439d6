"""The payments ledger as staff and creators meet it: an approval earns its share of a
deliverable's fee at once and once only, a post still up after the terms' days earns the rest,
only the brief's deliverables are paid, signups earn a capped bonus, and corrections are
reversing postings; every posting balances and is in the audit log."""

import json
from collections import defaultdict
from datetime import timedelta

import pytest
from sqlmodel import col, select

from config.errors import RallyError
from store.db import transaction
from store.models import AuditEvent, Campaign, Creative, LedgerEntry, RosterMember
from tasks.engagement.signups import CampaignSignup, record_signups
from tasks.payments.ledger import earn_due, reverse
from tests.conftest import SLUG
from tests.integration.test_review import COUNSEL, DANA, T0, open_tasks, rule, send

MAYA_FEE = 240_000  # her roster rate, 2,400.00 USD, over the brief's three deliverables


def approved(engine) -> int:
    """A new creative of Maya's through both tiers; its id."""
    made = send(engine)
    (internal,) = open_tasks(engine)
    rule(engine, internal.id, "approve", DANA)
    (legal,) = open_tasks(engine)
    assert rule(engine, legal.id, "approve", COUNSEL).creative.status == "approved"
    return made.creative_id


def postings(engine) -> dict[str, dict[str, int]]:
    """Each posting's lines, account -> cents."""
    found: dict[str, dict[str, int]] = defaultdict(dict)
    with transaction(engine, write=False) as session:
        for entry in session.exec(select(LedgerEntry).order_by(col(LedgerEntry.id))):
            found[entry.posting][entry.account] = entry.amount_cents
    return dict(found)


def went_up(engine, creatives: list[int], at, status: str = "posted") -> None:
    """The creatives as posted at `at` (with `status` "taken_down": since gone)."""
    with transaction(engine) as session:
        for creative in creatives:
            row = session.get(Creative, creative)
            assert row is not None
            row.status, row.posted_at = status, at
            session.add(row)


def come_due(engine, at) -> int:
    with transaction(engine) as session:
        campaign = session.exec(select(Campaign).where(Campaign.slug == SLUG)).one()
        return earn_due(session, campaign, actor="staff:test", now=at)


def test_an_approval_earns_half_at_once_and_a_post_still_up_a_week_earns_the_rest(
    engine, applied, rally
) -> None:
    creative = approved(engine)
    half = MAYA_FEE // 3 // 2
    assert postings(engine) == {
        f"earned:creative:{creative}:approved": {"fees": half, "payable": -half}
    }
    run = rally("creatives", "posted", creative, "https://www.tiktok.com/@maya.votes.pa/video/1")
    assert run.code == 0, run.out
    went_up(engine, [creative], T0 + timedelta(days=1))  # a day after the approval
    assert come_due(engine, T0 + timedelta(days=7, hours=23)) == 0  # up six days and 23 hours
    assert come_due(engine, T0 + timedelta(days=8)) == 1
    assert come_due(engine, T0 + timedelta(days=9)) == 0  # never twice
    assert postings(engine)[f"earned:creative:{creative}:posted"] == {
        "fees": half,
        "payable": -half,
    }

    owed = json.loads(rally("payments", "balances", SLUG, "--json").out)
    assert owed == [
        {
            "creator": "maya.votes.pa",
            "fees_cents": 2 * half,
            "bonus_cents": 0,
            "earned_cents": 2 * half,
            "awaiting_cents": 2 * half,  # nobody approved it for payment yet
            "approved_cents": 0,
            "in_transit_cents": 0,
            "paid_cents": 0,
            "owed_cents": 2 * half,
            "currency": "USD",
        }
    ]
    lines = json.loads(
        rally("payments", "ledger", SLUG, "--creator", "@maya.votes.pa", "--json").out
    )
    misspelt = rally("payments", "ledger", SLUG, "--creator", "@maya.vote.pa")
    assert misspelt.code != 0 and "@maya.vote.pa is not on" in misspelt.err
    assert [(r["account"], r["amount_cents"], r["cause"]) for r in lines] == [
        ("fees", half, f"creative:{creative}"),
        ("payable", -half, f"creative:{creative}"),
    ] * 2
    assert lines[0]["actor"] == COUNSEL and lines[0]["details"]["deliverable"] == 1
    with transaction(engine, write=False) as session:
        audited = session.exec(
            select(AuditEvent)
            .where(AuditEvent.action == "ledger.earned")
            .order_by(col(AuditEvent.seq))
        ).all()
    assert [a.entity_id for a in audited] == [
        f"earned:creative:{creative}:approved",
        f"earned:creative:{creative}:posted",
    ]
    assert "400.00 USD owed for creative" in audited[0].summary


def test_a_post_taken_down_earns_nothing_more(engine, applied, rally) -> None:
    creative = approved(engine)
    url = "https://www.tiktok.com/@maya.votes.pa/video/2"
    assert rally("creatives", "posted", creative, url).code == 0
    went_up(engine, [creative], T0, status="taken_down")  # as polling finds a post gone
    assert come_due(engine, T0 + timedelta(days=30)) == 0
    assert list(postings(engine)) == [f"earned:creative:{creative}:approved"]


def test_only_the_briefs_deliverables_are_paid_and_they_add_up_to_the_fee(engine, applied) -> None:
    creatives = [approved(engine) for _ in range(4)]
    went_up(engine, creatives, T0)
    assert come_due(engine, T0 + timedelta(days=7)) == 3
    made = postings(engine)
    assert not any(str(creatives[3]) in posting for posting in made)  # the fourth: unpaid
    assert -sum(lines["payable"] for lines in made.values()) == MAYA_FEE
    assert all(sum(lines.values()) == 0 for lines in made.values())  # each posting balances


def test_signups_earn_the_bonus_up_to_its_cap(engine, example, rally) -> None:
    campaign_file = example / "campaign.yaml"
    campaign_file.write_text(
        campaign_file.read_text() + "\npayments:\n  signup_bonus: {per_signup: 2, cap: 5}\n"
    )
    assert rally("campaign", "apply", campaign_file).code == 0
    with transaction(engine) as session:
        campaign = session.exec(select(Campaign).where(Campaign.slug == SLUG)).one()
        member = session.exec(
            select(RosterMember).where(RosterMember.campaign_id == campaign.id)
        ).first()
        assert member is not None

        def signup(n: int) -> CampaignSignup:
            values = {"name": f"Fan {n}", "email": f"fan{n}@example.org", "consent": {}}
            return CampaignSignup(
                campaign.id, values, member.source_code, f"join:{SLUG}", member_id=member.id
            )

        record_signups(session, [signup(1)], now=T0)
    assert come_due(engine, T0) == 1
    assert come_due(engine, T0) == 0
    with transaction(engine) as session:
        record_signups(session, [signup(n) for n in range(2, 6)], now=T0)
    assert come_due(engine, T0) == 1  # five signups: 10.00, held to the cap of 5.00
    bonus = [lines["payable"] for key, lines in postings(engine).items() if "bonus" in key]
    assert bonus == [-200, -300]


def test_a_correction_is_a_reversing_posting_citing_the_one_it_undoes(
    engine, applied, rally
) -> None:
    creative = approved(engine)
    key = f"earned:creative:{creative}:approved"
    run = rally("payments", "reverse", key, "--reason", "approved in error")
    assert run.code == 0, run.out
    assert "400.00 no longer owed" in run.out
    made = postings(engine)
    assert made[f"reversal:{key}"] == {"fees": -40_000, "payable": 40_000}
    assert made[key] == {"fees": 40_000, "payable": -40_000}  # kept as it was
    owed = json.loads(rally("payments", "balances", SLUG, "--json").out)
    assert owed[0]["owed_cents"] == 0

    again = rally("payments", "reverse", key, "--reason", "twice")
    assert again.code != 0 and "reversed already" in again.err + again.out
    back = rally("payments", "reverse", f"reversal:{key}", "--reason", "undo")
    assert back.code != 0 and "is a reversal" in back.err + back.out
    missing = rally("payments", "reverse", "earned:creative:999:approved", "--reason", "x")
    assert missing.code != 0 and "no posting" in missing.err + missing.out
    with transaction(engine) as session, pytest.raises(RallyError, match="say why"):
        reverse(session, key, reason=" ", actor="staff:test", now=T0)


def test_the_report_spends_what_creators_earned_in_the_week_they_earned_it(
    engine, applied, rally
) -> None:
    from tasks.reporting.report import build_report

    def report() -> dict:
        with transaction(engine, write=False) as session:
            return build_report(session, SLUG, week=4)

    assert report()["spend_from"] == [] and report()["totals"]["spend"] == 0
    creative = approved(engine)  # on 15 February: the third week of a sprint from 1 February
    made = report()
    assert made["spend_from"] == ["ledger"]
    assert [row["spend"] for row in made["weekly"]] == [0, 0, 400.0, 0]
    assert made["totals"]["spend"] == 400.0

    rally("payments", "reverse", f"earned:creative:{creative}:approved", "--reason", "error")
    assert report()["totals"]["spend"] == 0  # the reversal takes it back


def test_two_runs_at_once_post_what_came_due_once(engine, applied, rally, store_url) -> None:
    if not store_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer: runs take turns by design")
    from tests.integration.test_concurrency import at_once

    creatives = [approved(engine) for _ in range(3)]
    went_up(engine, creatives, T0)
    # Changes take turns (store.db.transaction): each run sees what the one before it posted.
    made = at_once([lambda: come_due(engine, T0 + timedelta(days=8))] * 4)
    assert not [m for m in made if isinstance(m, BaseException)], made
    assert sum(made) == 3  # each post's split once, whichever run made it
    assert len([key for key in postings(engine) if key.endswith(":posted")]) == 3
    with transaction(engine, write=False) as session:
        audited = session.exec(select(AuditEvent).where(AuditEvent.action == "ledger.earned")).all()
    assert len(audited) == 6


def test_the_api_reads_the_ledger_and_balances_as_the_cli_shows_them(
    engine, applied, rally, settings
) -> None:
    from starlette.testclient import TestClient

    from tests.integration.test_api_v1 import every_page, token
    from web.app import create_app

    for _ in range(2):
        approved(engine)
    client = TestClient(create_app(settings))
    auth = token(rally, "--scope", "payments:read", "--campaign", SLUG)
    lines = every_page(client, f"/api/v1/campaigns/{SLUG}/ledger", auth, limit=3)
    assert lines == json.loads(rally("payments", "ledger", SLUG, "--json").out)
    assert len(lines) == 4 and sum(line["amount_cents"] for line in lines) == 0
    owed = every_page(client, f"/api/v1/campaigns/{SLUG}/payments", auth, limit=1)
    assert owed == json.loads(rally("payments", "balances", SLUG, "--json").out)
    assert owed[0]["owed_cents"] == 80_000

    reviews_only = token(rally, "--scope", "reviews:read", "--campaign", SLUG)
    refused = client.get(f"/api/v1/campaigns/{SLUG}/ledger", headers=reviews_only)
    assert refused.status_code == 403


def test_a_kill_fee_pays_a_share_of_each_cancelled_deliverable_once(engine, applied, rally) -> None:
    campaign = applied / "campaign.yaml"
    assert (
        "no kill fee" in rally("payments", "kill-fee", SLUG, "@maya.votes.pa", "--reason", "x").err
    )
    campaign.write_text(campaign.read_text() + "\npayments:\n  kill_fee: 0.25\n")
    assert rally("campaign", "apply", campaign).code == 0
    approved(engine)  # her first deliverable: approved, earned, not cancelled
    run = rally("payments", "kill-fee", SLUG, "@maya.votes.pa", "--reason", "  ")
    assert run.code != 0 and "reason: say why" in run.err
    run = rally("payments", "kill-fee", SLUG, "@maya.votes.pa", "--reason", "campaign paused")
    assert run.code == 0, run.err
    # Her two other deliverables, 800.00 each, at a quarter: 400.00.
    assert "kill fee of 400.00 earned" in run.out
    killed = {k: v for k, v in postings(engine).items() if k.startswith("kill_fee:member:")}
    assert list(killed.values()) == [{"fees": 40_000, "payable": -40_000}]
    again = rally("payments", "kill-fee", SLUG, "@maya.votes.pa", "--reason", "again")
    assert again.code != 0 and "posted already" in again.err
    owed = json.loads(rally("payments", "balances", SLUG, "--json").out)[0]
    assert owed["fees_cents"] == MAYA_FEE // 3 // 2 + 40_000  # half the first, and the kill fee
