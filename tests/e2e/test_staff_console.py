"""The staff console on `rally serve`, in a real browser: a staff member signs in with the link
`rally staff link` gives them, opens their campaign, starts a rehearsal of its sprint (run on
the server in a process of its own), follows it to its end, and reads the follow-ups it sent,
searching for one person."""

import time

import pytest
from sqlmodel import col, select

from store.db import transaction
from store.models import AuditEvent, StaffRun
from tasks.staff.runs import HERE
from tests.conftest import SLUG
from tests.e2e.conftest import Server
from tests.e2e.pages import assert_page_fits

pytestmark = [
    pytest.mark.slow,
    pytest.mark.serve_process,  # the server starts the rehearsal's process
    pytest.mark.parametrize("store_url", ["sqlite"], indirect=True),
]

STAFF = "dana.okafor@keystoneyouthvote.example.org"
REHEARSAL_SECONDS = 240  # Prefect's local start and five simulated weeks, with room to spare


def test_staff_rehearse_the_sprint_and_read_its_follow_ups(
    server: Server, rally, applied, engine, tabs
):
    printed = rally("staff", "link", STAFF, "--print")
    assert printed.code == 0, printed.err
    link = printed.out.strip().splitlines()[-1]
    assert link.startswith(f"{server.url}/staff/signin/")

    tab = tabs()
    page = tab.page
    page.goto(f"{server.url}/staff")  # signed out: the page offers a new link by email
    assert page.locator("#new-link").is_visible()
    assert_page_fits(page, "staff-signed-out")
    page.goto(link)
    assert page.locator("h1").inner_text() == "Sign in to the staff console"
    assert_page_fits(page, "staff-sign-in")
    with page.expect_navigation():
        page.click("#sign-in")
    assert page.url == f"{server.url}/staff"
    assert_page_fits(page, "staff-campaigns")

    with page.expect_navigation():
        page.get_by_role("link", name="First Vote PA 2027").first.click()
    assert page.url == f"{server.url}/staff/campaigns/{SLUG}"
    assert "The sprint has not started" in page.inner_text("main")
    assert_page_fits(page, "staff-campaign")
    page.set_viewport_size({"width": 390, "height": 844})
    for name in ("Follow-up log", "Audit log", "The sprint's page"):  # thumb-sized on a phone
        box = page.get_by_role("link", name=name).bounding_box()
        assert box is not None and box["height"] >= 44, name
    page.set_viewport_size({"width": 1280, "height": 800})

    page.select_option("#weeks", "5")
    page.get_by_role("button", name="Start the rehearsal").focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")  # by keyboard, as everything on the console works
    assert "/runs/" in page.url
    assert f"Running on {HERE}" in page.inner_text("#state")
    assert_page_fits(page, "staff-run")
    run_id = page.url.rsplit("/", 1)[1]
    deadline = time.monotonic() + REHEARSAL_SECONDS
    while not finished(engine, run_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    page.reload()  # as a person comes back to the run's page once it has ended
    assert "Finished" in page.inner_text("#state"), page.inner_text("main")
    assert "Sprint of first-vote-pa-2027 (rehearsal, seed 7): 5 week(s)" in page.inner_text(
        ".staff-output"
    )

    with transaction(engine, write=False) as session:  # the rehearsal's changes are the staff's
        started = session.exec(
            select(AuditEvent.actor).where(
                col(AuditEvent.action).in_(["staff.started", "sprint.started"])
            )
        ).all()
    assert started == [STAFF, STAFF]

    with page.expect_navigation():
        page.get_by_role("link", name="Back to First Vote PA 2027").click()
    main = page.inner_text("main")
    assert "Week 5 of 12" in main and "This was a rehearsal with simulated people." in main
    assert page.locator("figure svg.chart").count() >= 2  # the report's charts
    assert_page_fits(page, "staff-campaign-rehearsed")

    with page.expect_navigation():
        page.get_by_role("link", name="Follow-up log").click()
    entries = page.locator(".staff-entry")
    assert entries.count() == 50
    assert_page_fits(page, "staff-followups")
    person = entries.first.locator("strong").inner_text()
    page.fill("#person", person)
    with page.expect_navigation():
        page.press("#person", "Enter")
    found = page.locator(".staff-entry strong").all_inner_texts()
    assert found and set(found) == {person}
    assert page.locator(".staff-entry").first.locator(".staff-text, .fine-print").count() >= 1
    assert_page_fits(page, "staff-followups-search")

    page.goto(f"{server.url}/staff/campaigns/{SLUG}/audit")
    assert "the log's chain holds" in page.inner_text("#verified")
    assert page.locator("main li, main tr").count() > 10  # the rehearsal's entries
    assert_page_fits(page, "staff-audit")
    assert tab.dialogs == []


def finished(engine, run_id: str) -> bool:
    """Whether the run's process has recorded its end in the store (where its page reads it)."""
    with transaction(engine, write=False) as session:
        run = session.get(StaffRun, run_id)
        return run is not None and run.finished_at is not None
