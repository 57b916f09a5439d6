"""Staff approve creators' payments in the console, in a real browser against `rally serve`:
what each creator earned and where it stands, an amount over the campaign's threshold approved
by one staff member and then, on their own phone, by a second, the approval posted with both
names; the page fits a phone and a laptop."""

import pytest
from sqlmodel import select

from store.db import transaction
from store.models import LedgerEntry
from tests.conftest import SLUG
from tests.e2e.conftest import Server, Tab
from tests.e2e.pages import assert_page_fits
from tests.integration.test_payouts import earned

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("store_url", ["sqlite"], indirect=True),
]
DANA = "dana.okafor@keystoneyouthvote.example.org"
LI = "li.chen@keystoneyouthvote.example.org"


def signed_in(rally, page, server: Server, email: str) -> None:
    """`page` signed in to the staff console as `email`, with the link `rally staff link`
    gives, on the campaign's payments page."""
    link = rally("staff", "link", email, "--print").out.strip().splitlines()[-1]
    page.goto(link)
    with page.expect_navigation():
        page.click("#sign-in")
    page.goto(f"{server.url}/staff/campaigns/{SLUG}/payments")


def test_two_staff_members_approve_a_payment_over_the_threshold(
    server: Server, rally, applied, engine, tabs, browser
) -> None:
    earned(engine, 120_000)  # 1,200.00 for Maya: over the 1,000.00 from which two approve
    earned(engine, 30_000, handle="@jordanreyes_phl")
    page = tabs().page
    signed_in(rally, page, server, DANA)
    assert "1,500.00 earned, 0.00 paid, 1,500.00 still owed" in page.inner_text("#totals")
    assert_page_fits(page, "staff-payments")
    with page.expect_navigation():
        page.get_by_role("button", name="Approve 1,200.00 for @maya.votes.pa").click()
    assert "approved by you; a second person must approve it too" in page.inner_text("#said")
    row = page.inner_text("#creator-maya-votes-pa")
    assert f"approved by {DANA}" in row and "Approve" not in row  # not twice by her

    other = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        phone = Tab(other).page
        signed_in(rally, phone, server, LI)
        with phone.expect_navigation():
            phone.get_by_role("button", name="Approve 1,200.00 for @maya.votes.pa").click()
        assert "@maya.votes.pa: 1,200.00 USD approved for payment." in phone.inner_text("#said")
        assert "nothing waiting" in phone.inner_text("#creator-maya-votes-pa")
        assert_page_fits(phone, "staff-payments-approved")
    finally:
        other.close()
    with transaction(engine, write=False) as session:
        (approval,) = session.exec(
            select(LedgerEntry).where(
                LedgerEntry.kind == "approval", LedgerEntry.account == "approved"
            )
        ).all()
    assert approval.amount_cents == -120_000 and approval.details["approvers"] == [DANA, LI]
