"""A live sprint's page on `rally serve`, in a real browser: staff open it from the link in the
email that asks for the briefs' go-ahead, on a phone, and give it with one button."""

import re

import pytest
from sqlmodel import select

from flows.sprint import sprint_calendar, without_heartbeats
from store.db import transaction
from store.models import OutboxMessage, SprintStep
from tests.conftest import SLUG
from tests.e2e.conftest import Server
from tests.e2e.pages import assert_page_fits

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)]

STAFF = "dana.okafor@keystoneyouthvote.example.org"


def test_staff_give_the_go_ahead_from_their_phone(server: Server, rally, running, engine, tabs):
    assert rally("sprint", "start", SLUG).code == 0
    with without_heartbeats():
        assert sprint_calendar()["steps"][SLUG][0] == "briefs"  # made, and waiting
    with transaction(engine, write=False) as session:
        asked = session.exec(
            select(OutboxMessage).where(OutboxMessage.subject_type == "sprint")
        ).all()
    text = next(
        m.payload["text"]
        for m in asked
        if m.payload["to"] == STAFF and "go-ahead" in m.payload["subject"]
    )
    link = re.search(r"http\S+/review/signin/\S+", text)
    assert link is not None

    tab = tabs()
    tab.page.set_viewport_size({"width": 390, "height": 844})
    tab.page.goto(link[0])
    tab.page.click("#sign-in")
    assert tab.page.url == f"{server.url}/sprint/{SLUG}"
    assert tab.page.locator("h1").inner_text() == "First Vote PA 2027"
    assert_page_fits(tab.page, "sprint")
    tab.page.set_viewport_size({"width": 390, "height": 844})
    size = tab.page.evaluate("getComputedStyle(document.querySelector('textarea')).fontSize")
    assert float(size.removesuffix("px")) >= 16  # no zoom on focus on a phone

    tab.page.fill("#note-1", "Read five; the disclosure is right.")
    tab.page.get_by_role("button", name="Give the go-ahead").click()
    assert "Go-ahead given for briefs" in tab.page.inner_text("[role=status]")
    assert tab.page.get_by_role("button", name="Give the go-ahead").count() == 0
    assert tab.dialogs == []
    with transaction(engine, write=False) as session:
        step = session.exec(select(SprintStep).where(SprintStep.key == "briefs")).one()
    assert step.go_ahead_by == STAFF
