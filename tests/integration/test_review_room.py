"""The approvers' review room on a real store: comments at moments of the video (checked,
kept, audited, seen by the task's other approvers), the queue's filters and counts, and the
"email me a new sign-in link" form (one answer for everyone, a link only for approvers, and
its limits)."""

import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from store.db import transaction
from store.models import AuditEvent, OutboxMessage, ReviewComment
from store.types import utcnow
from tasks.campaigns.campaign import campaign_spec, get_campaign
from tasks.review.approvers import SESSION_LIFETIME, issue
from tasks.review.comments import CommentRefused, add_comment, comments_on
from tasks.review.creatives import Submission, submit
from tasks.review.uploads import attach_video, store_video, video_shelf
from tasks.review.views import approver_queue
from tests.conftest import SLUG
from tests.integration.test_review import COUNSEL, DANA, GOOD, LI, open_tasks, rule, send
from web.app import create_app
from web.deps import SESSION_COOKIE

OUTSIDER = "someone@elsewhere.example.com"


def signed_in(settings, engine, email: str) -> TestClient:
    """A browser with `email`'s review session, as their emailed link would open."""
    with transaction(engine) as session:
        secret = issue(session, email, kind="session", lifetime=SESSION_LIFETIME, now=utcnow())
    client = TestClient(create_app(settings))
    client.cookies.set(SESSION_COOKIE, secret)
    return client


def comment(engine, task: int | None, who: str, text: str, at: str = "") -> None:
    with transaction(engine) as session:
        add_comment(session, task_id=task or 0, author=who, body=text, at=at, now=utcnow())


# The first bytes of an MP4 file (an ISO box `ftyp`), then filler: enough for Rally to take it.
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(4096)


def send_with_video(settings, engine) -> None:
    """A draft sent with a video file, as the brief page sends one."""
    made = send(engine)
    with transaction(engine) as session:
        stored = store_video(video_shelf(settings), SLUG, io.BytesIO(MP4), limit_mb=5)
        attach_video(session, creative_id=made.creative_id, version=made.version,
                     video=stored, actor="creator:@maya.votes.pa")  # fmt: skip


@pytest.mark.parametrize(
    ("at", "text", "field", "said"),
    [
        ("0:21", "Logo", "time", "Time: 0:21 is past the end of the video (0:20)"),
        ("1:5", "Logo", "time", 'Time: "1:5" is not a time like 0:45 (minutes:seconds)'),
        ("12s", "Logo", "time", 'Time: "12s" is not a time like 0:45 (minutes:seconds)'),
        ("0:10", "   ", "comment", "Comment: write what you noticed"),
        ("", "x" * 2001, "comment", "Comment: 2001 characters is too long (at most 2000)"),
    ],
)
def test_a_comment_with_a_bad_time_or_text_is_refused_naming_the_field(
    settings, engine, applied, at, text, field, said
):
    send_with_video(settings, engine)
    task = open_tasks(engine)[0].id
    with pytest.raises(CommentRefused) as refused:
        comment(engine, task, DANA, text, at)
    assert (refused.value.field, str(refused.value)) == (field, said)
    with transaction(engine, write=False) as session:
        assert session.exec(select(ReviewComment)).all() == []


def test_comments_are_kept_in_the_videos_order_audited_and_seen_by_the_other_approvers(
    settings, engine, applied
):
    send_with_video(settings, engine)
    task = open_tasks(engine)[0].id
    comment(engine, task, DANA, "The logo is too small to read.", "0:12")
    comment(engine, task, LI, "Music is licensed, fine.")
    comment(engine, task, DANA, "Say the registration deadline here.", "0:03")

    with transaction(engine, write=False) as session:
        spec = campaign_spec(get_campaign(session, SLUG))
        shown = comments_on(session, open_tasks(engine)[0].draft_id, spec)
        audit = session.exec(
            select(AuditEvent)
            .where(AuditEvent.action == "review.comment")
            .order_by(col(AuditEvent.seq))
        ).all()
    assert [(c["at"], c["author"]) for c in shown] == [("0:03", DANA), ("0:12", DANA), (None, LI)]
    assert all(re.search(r"(EST|EDT)$", c["written"]) for c in shown)  # the campaign's zone
    first = audit[0]
    assert (first.actor, first.entity_type, first.entity_id) == (DANA, "review_task", str(task))
    assert first.summary == f"internal review of creative 1 v1: comment at 0:12 by {DANA}"
    assert first.changes["text"] == "The logo is too small to read."
    assert first.changes["at_seconds"] == 12

    li = signed_in(settings, engine, LI)  # the task's other approver sees Dana's comments
    page = li.get(f"/review/tasks/{task}")
    assert page.status_code == 200
    assert "The logo is too small to read." in page.text and 'data-seek="12"' in page.text
    counsel = signed_in(settings, engine, COUNSEL)  # the next tier's approver does too
    assert "Say the registration deadline here." in counsel.get(f"/review/tasks/{task}").text
    stranger = signed_in(settings, engine, OUTSIDER)
    assert stranger.get(f"/review/tasks/{task}").status_code == 404
    refused = stranger.post(f"/review/tasks/{task}/comments", data={"comment": "hi"})
    assert refused.status_code == 404


def test_a_comment_from_the_page_says_what_is_wrong_and_keeps_what_was_typed(
    settings, engine, applied
):
    send_with_video(settings, engine)
    task = open_tasks(engine)[0].id
    dana = signed_in(settings, engine, DANA)
    wrong = dana.post(
        f"/review/tasks/{task}/comments", data={"at": "0:45", "comment": "Cut the ending."}
    )
    assert wrong.status_code == 400
    assert "Time: 0:45 is past the end of the video (0:20)" in wrong.text
    assert 'aria-invalid="true"' in wrong.text and "Cut the ending.</textarea>" in wrong.text
    made = dana.post(
        f"/review/tasks/{task}/comments",
        data={"at": "0:15", "comment": "Cut the ending."},
        follow_redirects=False,
    )
    assert made.status_code == 303
    assert "Cut the ending." in dana.get(made.headers["location"]).text
    forged = dana.post(
        f"/review/tasks/{task}/comments",
        data={"comment": "x"},
        headers={"Origin": "https://evil.example"},
    )
    assert forged.status_code == 403

    # Once a newer version is in review, the old one takes no more comments.
    rule(engine, task, "request_changes", DANA, note="Shorter, please.")
    send(engine, GOOD + " Shorter.", creative=1)
    with pytest.raises(CommentRefused, match="Version 1 was replaced by version 2"):
        comment(engine, task, LI, "late")
    newer = dana.get(f"/review/tasks/{open_tasks(engine)[0].id}").text
    assert "1 comment on version 1" in newer and "Cut the ending." in newer


def test_the_queue_filters_by_state_campaign_and_tier_with_counts_soonest_first(engine, applied):
    now = datetime(2027, 2, 17, 12, 0, tzinfo=UTC)
    send(engine, at=now - timedelta(hours=30))  # internal, due 6 hours ago: overdue
    with transaction(engine) as session:
        submit(
            session,
            slug=SLUG,
            handle="jordanreyes_phl",
            submission=Submission(GOOD.replace("MAYAVOTESPA", "JORDANPHL"), duration_seconds=20),
            submitted_by="creator:@jordanreyes_phl",
            now=now - timedelta(hours=2),
        )
    late, soon = open_tasks(engine)
    rule(engine, soon.id, "approve", LI, at=now)  # decided; its legal tier opens
    with transaction(engine, write=False) as session:
        opened = approver_queue(session, approver=DANA, now=now)
        overdue = approver_queue(session, approver=DANA, now=now, state="overdue")
        decided = approver_queue(session, approver=DANA, now=now, state="decided", tier="internal")
        everyone = approver_queue(session, approver=COUNSEL, now=now, state="")

    def counts(found, key):
        return {f["value"]: f["count"] for f in found["facets"][key]}

    assert [r["task"] for r in opened["rows"]] == [late.id]
    assert opened["rows"][0]["overdue"] and opened["rows"][0]["creator"] == "maya.votes.pa"
    assert re.fullmatch(r"\w{3} \w{3} \d+, \d\d:\d\d E[SD]T", opened["rows"][0]["due"])
    assert counts(opened, "state") == {"": 2, "open": 1, "overdue": 1, "decided": 1}
    assert counts(opened, "tier") == {"": 1, "internal": 1}
    assert counts(opened, "campaign") == {"": 1, SLUG: 1}
    assert [r["task"] for r in overdue["rows"]] == [late.id]
    assert [(r["task"], r["status"]) for r in decided["rows"]] == [(soon.id, "approved")]
    assert [r["tier"] for r in everyone["rows"]] == ["legal"]  # counsel's: legal only


def _sent_links(engine, to: str) -> list[str]:
    with transaction(engine, write=False) as session:
        texts = [
            m.payload["text"]
            for m in session.exec(select(OutboxMessage).where(OutboxMessage.channel == "email"))
            if m.payload["to"] == to
        ]
    return [link for t in texts for link in re.findall(r"\S+/review/signin/\S+", t)]


def test_a_new_sign_in_link_goes_only_to_an_approver_and_the_answer_never_says_who_is_one(
    settings, engine, applied
):
    browser = TestClient(create_app(settings))
    signed_out = browser.get("/review")
    assert signed_out.status_code == 401
    assert "Email me a new sign-in link" in signed_out.text and "rally " not in signed_out.text

    listed = browser.post("/review/new-link", data={"email": DANA.upper(), "next": "/review"})
    unlisted = browser.post("/review/new-link", data={"email": OUTSIDER, "next": "/review"})
    assert listed.status_code == unlisted.status_code == 200
    assert listed.text.replace(DANA.upper(), "@") == unlisted.text.replace(OUTSIDER, "@")
    assert _sent_links(engine, OUTSIDER) == []
    [link] = _sent_links(engine, DANA)

    path = link.removeprefix(settings.public_url)
    token = path.split("/")[3].split("?")[0]
    opened = browser.post(f"/review/signin/{token}", data={"next": "/review"})
    assert opened.status_code == 200 and "Your review queue" in opened.text

    bad = browser.post("/review/new-link", data={"email": "not an address"})
    assert bad.status_code == 400 and "Email: enter your work email address" in bad.text
    away = browser.post(
        "/review/new-link", data={"email": DANA}, headers={"Origin": "https://x.example"}
    )
    assert away.status_code == 403


def test_new_sign_in_links_are_limited_per_address_and_per_network_address(
    settings, engine, applied
):
    browser = TestClient(create_app(settings))

    def ask(email: str) -> int:
        return browser.post("/review/new-link", data={"email": email}).status_code

    assert [ask(DANA) for _ in range(4)] == [200, 200, 200, 429]
    assert [ask(OUTSIDER) for _ in range(4)] == [200, 200, 200, 429]  # the same for anyone
    assert len(_sent_links(engine, DANA)) == 3
    refused = browser.post("/review/new-link", data={"email": LI})
    assert refused.status_code == 200  # the 9th from this network address
    assert ask("a@example.org") == 200
    refused = browser.post("/review/new-link", data={"email": "b@example.org"})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert "Too many sign-in links were asked for just now" in refused.text


def test_a_refused_decision_keeps_what_was_checked_and_a_reject_needs_a_note(
    settings, engine, applied
):
    send(engine, video_url="https://www.tiktok.com/@maya.votes.pa/video/1")
    task = open_tasks(engine)[0].id
    dana = signed_in(settings, engine, DANA)
    page = dana.get(f"/review/tasks/{task}").text
    assert 'class="ok" name="decision" value="approve"' in page
    assert 'class="secondary" name="decision" value="request_changes"' in page
    assert 'class="danger" name="decision" value="reject"' in page
    assert 'target="_blank" rel="noopener"' in page and "<video" not in page

    refused = dana.post(
        f"/review/tasks/{task}/decide",
        data={"decision": "reject", "version": "1", "check_message_alignment": "on"},
    )
    assert refused.status_code == 409
    assert "say what must change (or why it is rejected) in a note" in refused.text
    assert 'name="check_message_alignment" checked' in refused.text
    assert 'id="note" rows="4" aria-invalid="true"' in refused.text
    assert open_tasks(engine)[0].status == "open"
    for version in ("", "1x", "9" * 5000):  # a page that lost its version, or was tampered with
        garbled = dana.post(
            f"/review/tasks/{task}/decide",
            data={"decision": "approve", "version": version, "note": "fine by me"},
        )
        assert garbled.status_code == 400
        assert "the form does not say which version you read" in garbled.text
        assert "fine by me" in garbled.text
    assert open_tasks(engine)[0].status == "open"
