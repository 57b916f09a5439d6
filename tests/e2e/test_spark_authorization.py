"""A creator gives the Spark Ads authorization of a post staff asked to boost, on their brief
page, on a phone, in a real browser against `rally serve`: the email asks with the page's
link, a code that is not one is refused naming the field, the code and the day it runs until
are kept with their consent (their address and browser), audited, and the page thanks them;
and legal, asked to review the post as a paid placement, approves the boost on her phone, and
staff see it ready on the console's Boosts page."""

import email
import email.policy
from datetime import date, timedelta

import pytest
from sqlmodel import select

from config.settings import get_settings
from store.db import transaction
from store.models import AuditEvent, Campaign, Creative, CreativeDraft, SparkAuthorization
from store.types import utcnow
from tasks.campaigns.campaign import roster_member
from tasks.mail import deliver_email
from tests.conftest import SLUG
from tests.e2e.conftest import Server
from tests.e2e.pages import assert_page_fits
from tests.e2e.test_creator_portal import HANDLE, brief_link, on_phone
from tests.e2e.test_review_page import LEGAL, latest_link
from tests.e2e.test_staff_payments import DANA, signed_in

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("store_url", ["sqlite"], indirect=True),
]
CAPTION = "#ad Two minutes, and your first vote counts. Link in bio. #FirstVotePA"


def a_brand_program(folder, rally) -> None:
    """The example made a program that may advertise, with Spark Ads settings."""
    campaign = folder / "campaign.yaml"
    text = campaign.read_text().replace("political: true", "political: false")
    campaign.write_text(
        text + '\namplification:\n  advertiser_id: "7000000000000000001"\n  budget: 1000\n'
    )
    run = rally("campaign", "apply", campaign)
    assert run.code == 0, run.err


def posted_video(engine) -> int:
    """A video of the creator's, approved and up; its id."""
    with transaction(engine) as session:
        campaign = session.exec(select(Campaign).where(Campaign.slug == SLUG)).one()
        found = roster_member(session, campaign, HANDLE)
        assert found is not None
        creative = Creative(
            campaign_id=campaign.id or 0, member_id=found[0].id or 0, title="Video 1",
            status="posted", current_version=1, posted_at=utcnow(),
            posted_url=f"https://www.tiktok.com/@{HANDLE}/video/7400000000000000001",
        )  # fmt: skip
        session.add(creative)
        session.flush()
        session.add(
            CreativeDraft(
                creative_id=creative.id or 0, version=1, caption=CAPTION,
                duration_seconds=20, submitted_by=f"creator:@{HANDLE}", status="approved",
            )
        )  # fmt: skip
        return creative.id or 0


def test_a_creator_gives_a_spark_ads_code_on_their_brief_page(
    server: Server, rally, running, engine, tabs
) -> None:
    a_brand_program(running, rally)
    link = brief_link(rally, engine)
    video = posted_video(engine)
    asked = rally("boost", "ask", SLUG, str(video))
    assert asked.code == 0, asked.err
    assert f"{link}#spark" in asked.out
    assert rally("boost", "ask", SLUG, str(video)).code == 0  # asked once: no second email
    deliver_email(engine, get_settings(), now=utcnow)
    mails = [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in get_settings().mailbox.glob("*.eml")
    ]
    (ask,) = [m for m in mails if "would like to boost your video" in str(m["subject"])]
    body = ask.get_body(preferencelist=("plain",))
    assert body is not None and f"{link}#spark" in body.get_content()

    page = on_phone(tabs().page, link + "#spark")
    shown = page.inner_text("#spark")
    assert "Boost your video with Spark Ads?" in shown and "Video 1" in shown
    assert_page_fits(page, "creator-spark")

    until = date.today() + timedelta(days=30)
    page.fill(f"#spark-code-{video}", "not a code")
    page.fill(f"#spark-until-{video}", until.isoformat())
    page.check(f"#spark-agree-{video}")
    page.click(f"#spark-give-{video}")
    assert "Not saved. code: a Spark Ads authorization code" in page.inner_text("#spark-error")
    with transaction(engine, write=False) as session:
        assert session.exec(select(SparkAuthorization)).all() == []

    page.fill(f"#spark-code-{video}", "#Xy7Kq2AbCdEfGhIjKlMnOp==")
    page.fill(f"#spark-until-{video}", until.isoformat())
    page.check(f"#spark-agree-{video}")
    page.click(f"#spark-give-{video}")
    thanks = page.inner_text(f"#spark-given-{video}")
    assert f"You authorized Video 1 as a Spark Ad until {until.strftime('%B %-d, %Y')}" in thanks
    assert page.locator(f"#spark-code-{video}").count() == 0  # nothing more to give
    assert_page_fits(page, "creator-spark-given")
    with transaction(engine, write=False) as session:
        (kept,) = session.exec(select(SparkAuthorization)).all()
        audited = session.exec(
            select(AuditEvent).where(AuditEvent.action == "spark.authorized")
        ).one()
    agent = page.evaluate("navigator.userAgent")
    assert (kept.code, kept.ends_on, kept.creative_id) == (
        "#Xy7Kq2AbCdEfGhIjKlMnOp==",
        until,
        video,
    )
    assert "on their brief page, from 127.0.0.1" in kept.consent and agent[:60] in kept.consent
    assert audited.actor == f"creator:@{HANDLE}"

    # Asking sent the post to legal review as a paid placement: counsel reviews it on her
    # phone, is told what it is and checks the paid-partnership label, and approves the boost.
    legal = on_phone(tabs().page, latest_link(engine, LEGAL))
    legal.click("#sign-in")
    assert f"Legal review of creative {video}, version 2" in legal.inner_text("h1")
    notice = legal.inner_text("#paid-placement")
    assert "already posted" in notice and "paid-partnership label" in notice
    assert legal.locator("input[name=check_paid_partnership]").count() == 1
    assert legal.locator("#request_changes").count() == 0  # the post itself cannot change
    assert_page_fits(legal, "legal-paid-placement")
    for box in legal.locator("#decision-form input[type=checkbox]").all():
        box.check()
    legal.click("#approve")
    assert "Recorded: approve" in legal.inner_text("#decided")
    with transaction(engine, write=False) as session:
        boosted = session.get(Creative, video)
        assert boosted is not None and boosted.status == "posted"  # still up, as it was
        paid = session.exec(select(CreativeDraft).where(CreativeDraft.version == 2)).one()
        assert (paid.paid, paid.status, paid.caption) == (True, "approved", CAPTION)

    # Staff watch it on the console's Boosts page, on a phone: ready, with the next step.
    staff = tabs().page
    staff.set_viewport_size({"width": 390, "height": 844})
    signed_in(rally, staff, server, DANA)
    staff.goto(f"{server.url}/staff/campaigns/{SLUG}")
    staff.click("text=Boosts")
    stands = staff.inner_text(f"#creative-{video}")
    assert "Approved as a paid placement." in stands
    assert f"Authorized until {until.strftime('%b')} {until.day}." in stands
    assert f"Next: rally boost start {SLUG} {video}" in stands
    assert "Nothing is boosted yet." in staff.inner_text("body")
    assert "by boosts, of at most 1,000.00" in staff.inner_text("#budget")
    assert_page_fits(staff, "staff-boosts")
