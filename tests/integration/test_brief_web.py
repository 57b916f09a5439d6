"""The brief page's answers beyond the happy path: private headers, odd forms, shortened
campaigns (the browser test covers reading and acknowledging)."""

import json

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import col, select

from store.db import transaction
from store.models import Brief, CreativeDraft
from tests.conftest import SLUG
from tests.helpers import generate
from tests.integration.test_report_web import STAFF, signed_in
from web.app import create_app


def links(rally) -> dict[str, str]:
    rows = json.loads(rally("briefs", "status", SLUG, "--json").out)
    return {r["handle"]: r["link"].split("/briefs/")[1] for r in rows if r["link"]}


def test_the_page_keeps_its_link_private_and_refuses_odd_forms(settings, engine, rally, running):
    generate(settings, engine, SLUG)
    token = links(rally)["maya.votes.pa"]
    client = TestClient(create_app(settings))

    page = client.get(f"/briefs/{token}")
    assert page.status_code == 200 and "Maya" in page.text
    assert page.headers["referrer-policy"] == "same-origin"  # the token never leaves the site
    assert page.headers["cache-control"] == "no-store"
    assert "noindex" in page.headers["x-robots-tag"]

    odd = client.post(f"/briefs/{token}/acknowledge", data={"version": "<script>"})
    assert odd.status_code == 400 and "<script>" not in odd.text
    missing = client.post(f"/briefs/{token}/acknowledge", data={})
    assert missing.status_code == 400
    assert json.loads(rally("briefs", "status", SLUG, "--json").out)[0]["acknowledged_at"] is None

    wrong_method = client.delete(f"/briefs/{token}")
    assert wrong_method.status_code == 405 and token not in wrong_method.text


def test_an_old_link_closes_when_the_newest_brief_has_expired(settings, engine, rally, running):
    generate(settings, engine, SLUG, handles=["maya.votes.pa"])
    old = links(rally)["maya.votes.pa"]
    campaign = running / "campaign.yaml"
    campaign.write_text(campaign.read_text().replace("in May counts.", "in May matters."))
    assert rally("campaign", "apply", campaign).code == 0
    generate(settings, engine, SLUG, handles=["maya.votes.pa"])
    client = TestClient(create_app(settings))
    assert "in May matters." in client.get(f"/briefs/{old}").text  # the old link shows v2

    with transaction(engine) as session:  # v2 expires (its campaign was cut short, say)
        session.execute(
            update(Brief).where(col(Brief.version) == 2).values(token_expires_at=Brief.created_at)
        )
    assert client.get(f"/briefs/{old}").status_code == 404


def test_odd_numbers_in_a_draft_or_an_address_are_named_not_a_server_error(
    settings, engine, rally, running
):
    generate(settings, engine, SLUG)
    token = links(rally)["maya.votes.pa"]
    client = TestClient(create_app(settings))
    draft = {"caption": "Two minutes #ad Paid for by Keystone Youth Vote Fund."}
    for duration, said in (
        ("nan", "length in seconds, more than 0"),
        ("inf", "length in seconds, more than 0"),
        ("-5", "length in seconds, more than 0"),
        ("abc", "duration: a number, please"),
    ):
        answer = client.post(f"/briefs/{token}/drafts", data=draft | {"duration": duration})
        assert answer.status_code == 409 and said in answer.text, duration
    huge = client.post(f"/briefs/{token}/drafts", data=draft | {"creative": "999999999999"})
    assert huge.status_code == 409 and "no creative 999999999999" in huge.text
    with transaction(engine, write=False) as session:
        assert session.exec(select(CreativeDraft)).all() == []  # nothing half-stored

    staff = signed_in(settings, engine, STAFF)
    for address in ("/review/tasks/99999999999999999999", "/review/tasks/0"):
        assert staff.get(address).status_code == 400, address


def test_a_draft_the_checks_send_back_says_what_to_fix_in_plain_words(
    settings, engine, rally, running
):
    generate(settings, engine, SLUG)
    token = links(rally)["maya.votes.pa"]
    client = TestClient(create_app(settings))
    sent = client.post(
        f"/briefs/{token}/drafts",
        data={"caption": "Register now! #FirstVotePA", "duration": "20"},  # no disclosure
        follow_redirects=False,
    )
    assert sent.status_code == 303 and sent.headers["location"] == f"/briefs/{token}#drafts"
    page = client.get(f"/briefs/{token}").text
    assert "Changes requested" in page and "Your version 1 needs changes" in page
    assert "Must fix before review: " in page
    assert "block:" not in page and "changes_requested" not in page  # no internal words
    assert "1 with changes requested" in page and "0 of 3 approved, 0 posted" in page
    # The form is the next version of that video, its caption kept.
    assert '<option value="1" selected>a new version of Video 1' in page
    assert ">Register now! #FirstVotePA</textarea>" in page


def test_forms_anyone_can_post_are_refused_unread_past_their_size(settings, engine, rally, running):
    """The acknowledgement, the sign-in button and the console's forms read at most a small
    form's bytes: a stranger's megabytes are refused (413) before they are read or parsed."""
    generate(settings, engine, SLUG)
    token = links(rally)["maya.votes.pa"]
    client = TestClient(create_app(settings))
    origin = {"Origin": settings.public_url}
    huge = {"version": "1", "padding": "x" * (2 * 1024 * 1024)}

    assert client.post(f"/briefs/{token}/acknowledge", data=huge).status_code == 413
    upload = client.post(
        f"/briefs/{token}/acknowledge",
        data={"version": "1"},
        files={"junk": ("junk.bin", b"\0" * (2 * 1024 * 1024), "application/octet-stream")},
    )
    assert upload.status_code == 413
    assert client.post("/review/signin/whatever", data=huge, headers=origin).status_code == 413
    staff = signed_in(settings, engine, STAFF)
    for form in ("start", "milestones/strategy"):
        answer = staff.post(f"/staff/campaigns/{SLUG}/{form}", data=huge, headers=origin)
        assert answer.status_code == 413, form
    assert json.loads(rally("briefs", "status", SLUG, "--json").out)[0]["acknowledged_at"] is None

    # The forms as the pages send them still work.
    done = client.post(
        f"/briefs/{token}/acknowledge", data={"version": "1"}, follow_redirects=False
    )
    assert done.status_code == 303 and done.headers["location"].endswith("#acknowledged")
