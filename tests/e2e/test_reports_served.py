"""A rehearsal's weekly reports kept in the store and read by staff on `rally serve`, in a real
browser, on a phone and on a desktop."""

import pytest
from sqlmodel import col, select

from store.db import transaction
from store.models import Report
from store.types import utcnow
from tasks.review.approvers import sign_in_link
from tests.conftest import SLUG
from tests.e2e.conftest import Server
from tests.e2e.pages import assert_page_fits

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("store_url", ["sqlite"], indirect=True),  # the flow, not the store
]

STAFF = "dana.okafor@keystoneyouthvote.example.org"
WEEKS = 3


def test_a_rehearsals_reports_are_stored_and_staff_read_them_on_any_screen(
    server: Server, rally, applied, engine, settings, tabs
):
    run = rally("sprint", "start", SLUG, "--simulate", "--weeks", str(WEEKS), "--json")
    assert run.code == 0, run.err
    with transaction(engine, write=False) as session:
        stored = session.exec(select(Report).order_by(col(Report.week))).all()
    assert [r.week for r in stored] == list(range(1, WEEKS + 1))
    newest = settings.home / "reports" / SLUG / f"week-{WEEKS:02d}" / "report.html"
    assert stored[-1].html == newest.read_text()  # the same page as the file

    with transaction(engine) as session:
        link = sign_in_link(
            session, STAFF, public_url=server.url, now=utcnow(), next_path=f"/reports/{SLUG}"
        )
    tab = tabs()
    tab.page.goto(link)
    tab.page.click("#sign-in")
    assert tab.page.url == f"{server.url}/reports/{SLUG}/week-{WEEKS}"  # the newest week
    assert tab.page.locator("h1").inner_text() == "First Vote PA 2027"
    assert f"Weeks 1\N{EN DASH}{WEEKS} of 12" in tab.page.inner_text("header")
    assert tab.page.locator("svg").count() >= 3
    assert_page_fits(tab.page, "report-week")  # a wide table scrolls in its place, by keyboard too

    tab.page.goto(f"{server.url}/reports")
    assert tab.page.locator("ul.reports li").count() == WEEKS
    assert_page_fits(tab.page, "report-list")
    tab.page.click(f"a[href='/reports/{SLUG}/week-1']")
    assert "Week 1 of 12" in tab.page.inner_text("header")
    assert tab.dialogs == []
