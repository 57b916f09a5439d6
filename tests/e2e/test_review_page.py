"""Review in a real browser, as approvers and a creator live it: the emailed sign-in link, the
finding on the review page, a change request, the creator's new version from the brief page,
internal then legal approval, and the whole chain in the history."""

import email
import email.policy
import json
import re
from pathlib import Path

import pytest

from config.settings import get_settings
from store.types import utcnow
from tasks.mail import deliver_email
from tests.conftest import SLUG
from tests.e2e.conftest import Server
from tests.helpers import generate

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("store_url", ["sqlite"], indirect=True),
]

CREATOR = "maya.votes.pa"
INTERNAL = "dana.okafor@keystoneyouthvote.example.org"
LEGAL = "counsel@keystoneyouthvote.example.org"
CAPTION = (
    "#ad Paid for by Keystone Youth Vote Fund. Registering takes two minutes! #FirstVotePA"
    " Not authorized by any candidate or candidate's committee."
)


def latest_link(engine, to: str) -> str:
    """Deliver what the outbox holds, then read the newest sign-in link mailed to `to`."""
    settings = get_settings()
    deliver_email(engine, settings, now=utcnow)
    found = []
    for path in settings.mailbox.glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if message["To"].addresses[0].addr_spec == to:
            body = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            found += [
                (path.stat().st_mtime_ns, m) for m in re.findall(r"\S+/review/signin/\S+", body)
            ]
    assert found, f"no sign-in link mailed to {to}"
    return max(found)[1]


def test_change_request_resubmission_and_two_tiers_of_approval(
    server: Server, rally, running: Path, engine, tabs
):
    assert not generate(get_settings(), engine, SLUG, handles=[CREATOR]).failed
    brief_link = json.loads(rally("briefs", "status", SLUG, "--json").out)
    brief_link = next(r["link"] for r in brief_link if r["handle"] == CREATOR)

    creator = tabs()
    creator.page.goto(brief_link)
    creator.page.fill("#caption", CAPTION)  # no tracking code: a warning for the reviewers
    creator.page.fill("#duration", "22")
    creator.page.click("#submit")
    assert "in review" in creator.page.inner_text("#drafts")

    internal = tabs()
    link = latest_link(engine, INTERNAL)
    internal.page.goto(link)
    with internal.page.expect_navigation():  # loaded: the body is read whole
        internal.page.click("#sign-in")
    body = internal.page.inner_text("body")
    assert "Internal review of creative 1, version 1" in body
    assert "Warning" in body and "mention your own link or promo code" in body  # plain words
    internal.page.fill("#note", "Add your promo code so we can credit you.")
    internal.page.click("#request_changes")
    assert "Recorded: request changes" in internal.page.inner_text("#decided")

    again = tabs().page.goto(link)  # a sign-in link works once
    assert again is not None and again.status == 401

    creator.page.reload()
    assert "Add your promo code so we can credit you." in creator.page.inner_text("#drafts")
    # The form is already the next version of the draft sent back, its caption kept to edit.
    assert creator.page.input_value("#creative") == "1"
    assert creator.page.input_value("#caption") == CAPTION
    assert creator.page.input_value("#duration") == "22"
    assert "The next version of" in creator.page.inner_text("#fixing")
    creator.page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing wider
    assert creator.page.evaluate("document.documentElement.scrollWidth") <= 390
    creator.page.fill("#caption", creator.page.input_value("#caption") + " Code MAYAVOTESPA")
    creator.page.click("#submit")
    assert "version 2" in creator.page.inner_text("#drafts")

    internal.page.goto(latest_link(engine, INTERNAL))
    internal.page.click("#sign-in")
    assert "Internal review of creative 1, version 2" in internal.page.inner_text("h1")
    for box in internal.page.locator("input[type=checkbox]").all():
        box.check()
    internal.page.click("#approve")
    assert "Recorded: approve" in internal.page.inner_text("#decided")

    legal = tabs()
    legal.page.goto(latest_link(engine, LEGAL))
    legal.page.click("#sign-in")
    assert "Legal review of creative 1, version 2" in legal.page.inner_text("h1")
    legal.page.click("#approve")  # nothing checked and no note: refused, with the reason
    assert "confirm the checklist" in legal.page.inner_text("#refused")
    legal.page.fill("#note", "Checked against the Department of State's dates.")
    legal.page.click("#approve")
    assert "Recorded: approve" in legal.page.inner_text("#decided")

    creator.page.reload()
    assert "approved" in creator.page.inner_text("#drafts")
    chain = json.loads(rally("creatives", "history", "1", "--json").out)
    steps = [e["summary"] for e in chain["audit"]]
    assert "v1 on first-vote-pa-2027: to internal, legal" in steps[0]
    assert "internal review of creative 1 v1: changes requested by " + INTERNAL in steps[1]
    assert "v2 on first-vote-pa-2027: to internal, legal" in steps[2]
    assert "internal review of creative 1 v2: approved by " + INTERNAL in steps[3]
    assert "legal review of creative 1 v2: approved by " + LEGAL in steps[4]
    assert chain["status"] == "approved" and chain["versions"][1]["brief_version"] == 1
