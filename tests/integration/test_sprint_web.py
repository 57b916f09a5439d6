"""The sprint's page for its staff, reached from the link in their emails: where the sprint
stands, the go-ahead the briefs wait for and the milestones to mark, each settled by a button;
nobody else sees it, and a form from another site is refused."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from flows.sprint import sprint_calendar, without_heartbeats
from store.db import transaction
from store.models import AuditEvent, Milestone, OutboxMessage, SprintStep
from tasks.mail import deliver_email
from tests.conftest import SLUG
from tests.integration.test_report_web import STAFF, STRANGER, signed_in
from tests.integration.test_staff_console import LEGAL
from web.app import create_app

START = datetime(2027, 2, 1, tzinfo=UTC)


def first_pass(engine) -> None:
    with without_heartbeats():
        sprint_calendar(at=START + timedelta(hours=1))


@pytest.mark.slow
def test_staff_follow_the_link_in_their_email_and_give_the_go_ahead(
    settings, engine, rally, applied
):
    assert rally("sprint", "start", SLUG).code == 0
    first_pass(engine)
    with transaction(engine, write=False) as session:
        asked = session.exec(
            select(OutboxMessage).where(
                OutboxMessage.subject_type == "sprint", OutboxMessage.destination == "sprint"
            )
        ).all()
    mine = next(m for m in asked if m.payload["to"] == STAFF and "go-ahead" in m.payload["subject"])
    link = re.search(r"/review/signin/(\S+)\?next=(\S+)", mine.payload["text"])
    assert link and link[2] == f"/sprint/{SLUG}"

    clock = lambda: START + timedelta(hours=2)  # noqa: E731
    browser = TestClient(create_app(settings, clock=clock))
    page = browser.post(f"/review/signin/{link[1]}", data={"next": link[2]})
    assert page.status_code == 200 and str(page.url).endswith(f"/sprint/{SLUG}")
    assert (
        "Waiting on you" in page.text
        and "Briefs: generated, then sent on the go-ahead" in page.text
    )
    assert "for 50 creator(s)" in page.text and "Give the go-ahead" in page.text
    assert "Ready since Sun Jan 31, 20:00 EST" in page.text  # the campaign's time, not UTC
    assert "Strategy agreed (week 1)" in page.text  # a milestone people judge, due this week

    # A form from another site is refused; from the page it is taken, and said.
    forged = browser.post(
        f"/sprint/{SLUG}/go-ahead",
        data={"step": "briefs"},
        headers={"Origin": "https://evil.example"},
    )
    assert forged.status_code == 403
    given = browser.post(
        f"/sprint/{SLUG}/go-ahead",
        data={"step": "briefs", "note": "read five of them"},
        headers={"Origin": settings.public_url},
    )
    assert given.status_code == 200 and "Go-ahead given for briefs" in given.text
    assert "Give the go-ahead" not in given.text
    marked = browser.post(
        f"/sprint/{SLUG}/milestones/strategy",
        data={"status": "met", "note": "agreed with the board"},
        headers={"Origin": settings.public_url},
    )
    assert marked.status_code == 200 and "Milestone marked met" in marked.text
    assert "Nothing waits on you now." in marked.text
    wrong = browser.post(f"/sprint/{SLUG}/milestones/strategy", data={"status": "done"})
    assert "a milestone is marked met or missed" in wrong.text

    with transaction(engine, write=False) as session:
        step = session.exec(select(SprintStep).where(SprintStep.key == "briefs")).one()
        strategy = session.exec(select(Milestone).where(Milestone.key == "strategy")).one()
        audited = session.exec(
            select(AuditEvent.actor).where(AuditEvent.action == "sprint.go_ahead")
        ).all()
    assert step.go_ahead_by == STAFF and audited == [STAFF]
    assert strategy.status == "met" and strategy.outcome == {
        "marked_by": STAFF,
        "note": "agreed with the board",
    }

    # Once sent, the emails keep no usable sign-in link in the store.
    deliver_email(engine, settings, now=clock)
    with transaction(engine, write=False) as session:
        texts = [
            m.payload["text"]
            for m in session.exec(
                select(OutboxMessage).where(OutboxMessage.subject_type == "sprint")
            ).all()
        ]
    assert texts and not any("/review/signin/" in t for t in texts)


def test_nobody_else_sees_a_sprints_page(settings, engine, rally, applied):
    assert rally("sprint", "start", SLUG).code == 0
    stranger = signed_in(settings, engine, STRANGER)
    assert stranger.get(f"/sprint/{SLUG}").status_code == 404
    refused = stranger.post(f"/sprint/{SLUG}/go-ahead", data={"step": "briefs"})
    assert refused.status_code == 404
    # Legal counsel reviews the campaign's drafts but does not run its sprint (as on the console).
    counsel = signed_in(settings, engine, LEGAL)
    assert counsel.get(f"/sprint/{SLUG}").status_code == 404
    marked = counsel.post(
        f"/sprint/{SLUG}/milestones/strategy",
        data={"status": "met"},
        headers={"Origin": settings.public_url},
    )
    assert marked.status_code == 404
    assert signed_in(settings, engine, STAFF).get("/sprint/no-such-campaign").status_code == 404
    signed_out = TestClient(create_app(settings))
    assert signed_out.get(f"/sprint/{SLUG}").status_code == 401


@pytest.mark.slow
def test_an_oversized_form_is_refused_and_changes_nothing(settings, engine, rally, applied):
    assert rally("sprint", "start", SLUG).code == 0
    first_pass(engine)
    staff = signed_in(settings, engine, STAFF)
    refused = staff.post(
        f"/sprint/{SLUG}/go-ahead",
        data={"step": "briefs", "note": "x" * 100_000},
        headers={"Origin": settings.public_url},
    )
    assert refused.status_code == 413
    with transaction(engine, write=False) as session:
        step = session.exec(select(SprintStep).where(SprintStep.key == "briefs")).one()
        given = session.exec(select(AuditEvent).where(AuditEvent.action == "sprint.go_ahead"))
        assert step.go_ahead_by is None and given.all() == []
    assert "Give the go-ahead" in staff.get(f"/sprint/{SLUG}").text  # it still waits
