"""Staff approve creators' payments in the console, in a real browser against `rally serve`:
what each creator earned and where it stands, an amount over the campaign's threshold approved
by one staff member and then, on their own phone, by a second, the approval posted with both
names; then the second pays it from the page, through the Stripe fake, once. The treasurer
prepares a quarter's FEC reports there and downloads them. The pages fit a phone and a
laptop."""

import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlmodel import select

from config.settings import get_settings
from store.db import transaction
from store.models import Campaign, LedgerEntry
from store.types import utcnow
from tasks.payments.payouts import set_account, take_back
from tests.conftest import SLUG
from tests.e2e.conftest import Server, Tab
from tests.e2e.pages import assert_page_fits
from tests.e2e.test_staff_console import finished
from tests.fakes.stripe_api import FakeStripe
from tests.integration.test_disbursements import FILING, paid_on
from tests.integration.test_payouts import earned, handles, use

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


@pytest.fixture
def stripe(settings, monkeypatch):
    """The Stripe fake, its keys in the environment a payout run started from the page gets."""
    with FakeStripe() as fake:
        yield use(fake, monkeypatch)
    get_settings.cache_clear()


def test_two_staff_members_approve_a_payment_over_the_threshold_and_pay_it(
    server: Server, rally, applied, engine, tabs, browser, stripe
) -> None:
    earned(engine, 120_000)  # 1,200.00 for Maya: over the 1,000.00 from which two approve
    earned(engine, 30_000, handle="@jordanreyes_phl")
    account = stripe.add_account(True)
    with transaction(engine) as session:
        campaign = session.exec(select(Campaign).where(Campaign.slug == SLUG)).one()
        set_account(session, campaign, "@maya.votes.pa", account, actor="staff:test", now=utcnow())
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
        # Maya has nothing waiting now: folded away with the others, Jordan still to approve.
        assert "1 creator with nothing waiting" in phone.inner_text("#settled summary")
        assert phone.locator("#balances tbody tr").count() == 1
        assert not phone.is_visible("#creator-maya-votes-pa")
        phone.click("#settled summary")
        assert "1,200.00" in phone.inner_text("#creator-maya-votes-pa")
        assert "1,200.00 approved for 1 creator" in phone.inner_text("#pay")
        assert_page_fits(phone, "staff-payments-approved")
        with phone.expect_navigation():
            phone.get_by_role("button", name="Pay 1,200.00").click()
        run_id = phone.url.rsplit("/", 1)[1]
        deadline = time.monotonic() + 120
        while not finished(engine, run_id) and time.monotonic() < deadline:
            time.sleep(0.5)
        phone.reload()
        assert "Finished" in phone.inner_text("#state"), phone.inner_text("main")
        assert "1 payout(s) made, 0 refused" in phone.inner_text(".staff-output")
        assert_page_fits(phone, "staff-payments-run")
        phone.goto(f"{server.url}/staff/campaigns/{SLUG}/payments")
        assert "1,200.00 paid" in phone.inner_text("#totals")
        assert not phone.is_visible("#pay")  # nothing approved is left to pay
    finally:
        other.close()
    assert [t["amount"] for t in stripe.paid_to(account)] == [120_000]
    with transaction(engine, write=False) as session:
        (approval,) = session.exec(
            select(LedgerEntry).where(
                LedgerEntry.kind == "approval", LedgerEntry.account == "approved"
            )
        ).all()
    assert approval.amount_cents == -120_000 and approval.details["approvers"] == [DANA, LI]


def test_the_treasurer_prepares_a_quarter_s_reports_and_downloads_what_the_cli_writes(
    server: Server, rally, applied, engine, tabs, stripe, settings
) -> None:
    """Dana prepares the first quarter's disbursements on the console: what they hold, the
    payee left out for want of an address, the money that came back as an offset, and files
    that are, byte for byte, what `rally payments disbursements` writes."""
    campaign = applied / "campaign.yaml"
    campaign.write_text(campaign.read_text() + FILING)
    assert rally("campaign", "apply", campaign).code == 0
    maya, jordan = handles(engine, 2)
    w9 = rally("payments", "w9", maya, "--collected-on", "2026-11-30", "--name", "Maya Thompson",
               "--street", "12 Main St", "--city", "Philadelphia", "--state", "PA",
               "--zip", "19104")  # fmt: skip
    assert w9.code == 0, w9.err
    paid = paid_on(engine, stripe, maya, 30_000, date(2027, 2, 15), 1)
    paid_on(engine, stripe, jordan, 25_000, date(2027, 2, 20), 2)  # no W-9: left out
    with transaction(engine) as session:
        at = datetime(2027, 3, 1, tzinfo=UTC)
        assert take_back(session, paid, 25_000, "reversed", actor="stripe", now=at)

    page = tabs().page
    signed_in(rally, page, server, DANA)
    with page.expect_navigation():
        page.click("#reports-link a")
    page.fill("#from", "2027-03-31")
    page.fill("#to", "2027-01-01")
    with page.expect_navigation():
        page.get_by_role("button", name="Prepare").click()
    assert "to: 2027-01-01 is before 2027-03-31" in page.inner_text("#error")
    page.fill("#from", "2027-01-01")
    page.fill("#to", "2027-03-31")
    with page.expect_navigation():
        page.get_by_role("button", name="Prepare").click()
    summary = page.inner_text("#summary")
    assert "1 itemized disbursement(s), 300.00 USD; 0 unitemized, 0.00 USD." in summary
    assert "1 itemized offset(s), 250.00 USD" in summary
    assert f"{jordan}: address: none on file" in page.inner_text("#problems")
    assert_page_fits(page, "staff-payment-reports")

    cli = rally("payments", "disbursements", SLUG, "--from", "2027-01-01", "--to", "2027-03-31")
    assert cli.code == 1  # the same payee left out, and said to be
    folder = settings.exports / SLUG
    names = ["disbursements-2027-01-01-2027-03-31.fec", "offsets-2027-01-01-2027-03-31.fec",
             "disbursements-2027-01-01-2027-03-31.csv"]  # fmt: skip
    for name in names:
        with page.expect_download() as download:
            page.locator(f"#files a[href*='/{name}?']").click()
        assert download.value.suggested_filename == name
        assert Path(download.value.path()).read_bytes() == (folder / name).read_bytes()
    fec = (folder / names[0]).read_text()
    assert fec.startswith("SB21B\x1cC00123456\x1cRALLY-PAY-") and "\x1c300.00\x1c" in fec

    # Dana completes Jordan's W-9 from the report's own link, the way a phone would.
    with page.expect_navigation():
        page.click("#to-tax-forms")
    row, filed = (f"#w9-{h.lstrip('@').replace('.', '-')}" for h in (jordan, maya))
    assert "not on file" in page.inner_text(row)
    assert "on file collected 2026-11-30" in page.inner_text(filed)
    assert_page_fits(page, "staff-tax-forms")
    with page.expect_navigation():
        page.get_by_role("link", name=f"Record the W-9 of {jordan}").click()
    page.fill("#collected_on", "2026-11-30")
    page.fill("#name", "Jordan Reyes")
    page.fill("#street", "400 Market St")
    page.fill("#city", "Pittsburgh")
    page.fill("#state", "PA")
    page.fill("#zip", "1522")
    page.fill("#tin_last4", "6789")
    with page.expect_navigation():
        page.get_by_role("button", name="Record the W-9").click()
    assert "zip: '1522' is not a ZIP code" in page.inner_text("#refused")
    assert page.get_attribute("#zip", "aria-invalid") == "true"
    assert page.input_value("#street") == "400 Market St"  # nothing else to type again
    assert page.input_value("#tin_last4") == "6789"
    assert_page_fits(page, "staff-w9-refused")
    page.fill("#zip", "15222")
    with page.expect_navigation():
        page.get_by_role("button", name="Record the W-9").click()
    assert f"{jordan}: W-9 on file, collected 2026-11-30." in page.inner_text("#said")
    assert "on file collected 2026-11-30, TIN ending 6789" in page.inner_text(row)
    page.goto(f"{server.url}/staff/campaigns/{SLUG}/payments/reports?from=2027-01-01&to=2027-03-31")
    assert "2 itemized disbursement(s), 550.00 USD" in page.inner_text("#summary")
    assert page.locator("#problems").count() == 0
