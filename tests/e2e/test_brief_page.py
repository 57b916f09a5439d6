"""The creator's brief page in a real browser, served by a real `rally serve` process.

Chromium comes from Debian (`apt-get install chromium`); without it these tests are skipped,
unless RALLY_REQUIRE_BROWSER=1 (as in CI), which turns the skip into a failure. SQLite only:
each test starts its own server, and acknowledging on PostgreSQL is covered by the integration
tests.
"""

import csv
import json
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, update
from sqlmodel import Session, col, select

from config.settings import get_settings
from store.db import transaction
from store.models import AuditEvent, Brief
from store.types import utcnow
from tests.conftest import SLUG
from tests.e2e.conftest import Server
from tests.helpers import generate, start_this_week

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("store_url", ["sqlite"], indirect=True),
]

CAMPAIGN_NAME = "First Vote PA 2027"
DISCLOSURE = "Paid for by Keystone Youth Vote Fund"
HANDLE = "jordanreyes_phl"
TEMPLATE_CODE = "{{ ''.__class__.__mro__ }}"
SCRIPT = "<script>alert(1)</script>"


# --- shortcuts --------------------------------------------------------------------------------


def make_briefs(engine) -> None:
    """Generate every creator's briefs with the settings as they are now (links included)."""
    report = generate(get_settings(), engine, SLUG)
    assert not report.failed, report.failed


def status(rally) -> dict[str, dict]:
    run = rally("briefs", "status", SLUG, "--json")
    assert run.code == 0, run.err
    return {row["handle"]: row for row in json.loads(run.out)}


def acknowledgements(engine) -> list[AuditEvent]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(AuditEvent)
                .where(AuditEvent.action == "brief.acknowledged")
                .order_by(col(AuditEvent.seq))
            )
        )


def set_key_message(example: Path, message: str) -> None:
    path = example / "campaign.yaml"
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    spec["brief"]["key_message"] = message
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")


def apply(rally, example: Path) -> None:
    run = rally("campaign", "apply", example / "campaign.yaml")
    assert run.code == 0, run.err


def shows_not_found(response, text: str) -> None:
    assert response is not None and response.status == 404
    assert "Not found" in text
    for leak in ("Traceback", "Internal Server Error", CAMPAIGN_NAME, DISCLOSURE, "acknowledge"):
        assert leak not in text


# --- tests ------------------------------------------------------------------------------------


def test_a_creator_reads_and_acknowledges_their_brief_once(
    server: Server, rally, running: Path, engine, tabs
) -> None:
    make_briefs(engine)
    creator = next(
        c
        for c in json.loads(rally("creators", "list", SLUG, "--json").out)
        if c["handle"] == HANDLE
    )
    link = status(rally)[HANDLE]["link"]
    assert link.startswith(f"{server.url}/briefs/")

    first, second = tabs(), tabs()  # the same link open in two tabs, both showing the form
    response = first.page.goto(link)
    assert response is not None and response.status == 200
    assert response.headers["cache-control"] == "no-store"
    text = first.page.inner_text("body")
    assert CAMPAIGN_NAME in text and "Hi Jordan," in text
    # The link the creator is told to use is Rally's own short link, which counts clicks.
    assert creator["tracking_link"] in text and creator["source_code"] in text
    assert creator["tracking_link"].startswith(f"{server.url}/t/")
    assert creator["tracking_url"] not in text
    assert DISCLOSURE in text
    assert first.page.locator("#acknowledged").count() == 0
    second.page.goto(link)

    first.page.click("#acknowledge")
    first.page.locator("#acknowledged").wait_for()
    assert first.page.url == f"{link}#acknowledged"  # back where they clicked, confirmed
    assert "Thank you" in first.page.inner_text("#acknowledged")
    assert first.page.locator("#acknowledge").count() == 0

    rows = status(rally)
    assert rows[HANDLE]["acknowledged_at"] is not None
    assert [h for h, row in rows.items() if row["acknowledged_at"]] == [HANDLE]
    (entry,) = acknowledgements(engine)
    assert entry.actor == f"creator:@{HANDLE}" and entry.changes == {"version": 1}

    # Clicking the form still open in the other tab, and reloading, record nothing more.
    second.page.click("#acknowledge")
    second.page.locator("#acknowledged").wait_for()
    first.page.reload()
    first.page.locator("#acknowledged").wait_for()
    assert len(acknowledgements(engine)) == 1
    assert status(rally)[HANDLE]["acknowledged_at"] == rows[HANDLE]["acknowledged_at"]
    assert rally("audit", "verify").code == 0
    assert first.dialogs == second.dialogs == []


def test_a_wrong_or_expired_link_gets_a_plain_not_found(
    server: Server, rally, running: Path, engine, tabs
) -> None:
    make_briefs(engine)
    links = status(rally)
    token = links[HANDLE]["link"].rsplit("/", 1)[1]
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")

    tab = tabs()
    response = tab.page.goto(f"{server.url}/briefs/{wrong}")
    shows_not_found(response, tab.page.inner_text("body"))
    assert response is not None and response.headers["cache-control"] == "no-store"

    with transaction(engine) as session:  # the campaign has ended
        session.execute(
            update(Brief)
            .where(col(Brief.token) == token)
            .values(token_expires_at=utcnow() - timedelta(minutes=1))
        )
    response = tab.page.goto(links[HANDLE]["link"])
    shows_not_found(response, tab.page.inner_text("body"))
    posted = tab.page.request.post(
        f"{server.url}/briefs/{token}/acknowledge", form={"version": "1"}
    )
    assert posted.status == 404 and "Not found" in posted.text()
    assert "Traceback" not in posted.text()
    assert status(rally)[HANDLE]["acknowledged_at"] is None
    assert acknowledgements(engine) == []

    other = links["maya.votes.pa"]["link"]  # everyone else's link still works
    response = tab.page.goto(other)
    assert response is not None and response.status == 200
    assert CAMPAIGN_NAME in tab.page.inner_text("body")


@pytest.fixture
def hostile(example: Path) -> Path:
    """The example campaign, with a creator's name and the key message written to attack."""
    start_this_week(example)
    set_key_message(example, f"{TEMPLATE_CODE} {SCRIPT} Register today.")
    roster = example / "roster.csv"
    with roster.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    row = next(r for r in rows if r["handle"] == HANDLE)
    # The page greets a creator by the first word of their name, so the attack has no space.
    row["name"] = f"{TEMPLATE_CODE.replace(' ', '')}{SCRIPT} {TEMPLATE_CODE}"
    with roster.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return example


def test_names_and_messages_show_as_text_never_as_code(
    server: Server, rally, hostile: Path, engine, tabs
) -> None:
    apply(rally, hostile)
    make_briefs(engine)
    tab = tabs()
    tab.page.set_content(f"<body>{SCRIPT}</body>")  # the dialog watch itself works
    assert tab.dialogs == ["1"]
    tab.dialogs.clear()

    response = tab.page.goto(status(rally)[HANDLE]["link"])
    assert response is not None and response.status == 200

    greeting = TEMPLATE_CODE.replace(" ", "") + SCRIPT
    assert f"Hi {greeting}, thank you" in tab.page.inner_text("body")
    assert tab.page.inner_text(".key-message") == f"{TEMPLATE_CODE} {SCRIPT} Register today."
    assert "<class" not in tab.page.inner_text("body")  # no template ran the name
    # No script but Rally's own (the copy buttons').
    assert tab.page.locator("script:not([src='/static/rally.js'])").count() == 0
    assert tab.dialogs == []

    tab.page.click("#acknowledge")  # the page still works
    tab.page.locator("#acknowledged").wait_for()
    assert tab.dialogs == []


def test_an_old_link_opens_the_updated_brief_and_acknowledges_it(
    server: Server, rally, running: Path, engine, tabs
) -> None:
    make_briefs(engine)
    old_link = status(rally)[HANDLE]["link"]
    stale = tabs()  # opened before the update: its form is for version 1
    stale.page.goto(old_link)

    new_message = "Registration closes May 3: register today, it takes two minutes."
    set_key_message(running, new_message)
    apply(rally, running)
    make_briefs(engine)
    rows = status(rally)
    assert rows[HANDLE]["version"] == 2 and rows[HANDLE]["link"] != old_link

    # Acknowledging version 1 after version 2 exists records nothing: version 2 is shown.
    with stale.page.expect_navigation():  # loaded: the button below the notice is there
        stale.page.click("#acknowledge")
    stale.page.locator(".notice").wait_for()
    assert "version 2" in stale.page.inner_text(".notice")
    assert stale.page.locator("#acknowledge").count() == 1
    assert acknowledgements(engine) == []

    tab = tabs()
    response = tab.page.goto(old_link)
    assert response is not None and response.status == 200
    notice = tab.page.inner_text(".notice")
    assert "This brief was updated" in notice and "version 2" in notice
    assert tab.page.inner_text(".key-message") == new_message

    tab.page.click("#acknowledge")
    tab.page.locator("#acknowledged").wait_for()
    assert status(rally)[HANDLE]["acknowledged_at"] is not None
    (entry,) = acknowledgements(engine)
    assert entry.changes == {"version": 2}
    with Session(engine) as session:
        acknowledged = session.exec(
            select(Brief.version, func.count())
            .where(col(Brief.acknowledged_at).is_not(None))
            .group_by(col(Brief.version))
        ).all()
    assert [tuple(r) for r in acknowledged] == [(2, 1)]

    tab.page.goto(old_link)  # the old link now shows the acknowledgement too
    tab.page.locator("#acknowledged").wait_for()
