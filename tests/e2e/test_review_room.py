"""The review room in a real browser, as an approver lives it: the emailed sign-in link, the
queue with its filters and counts (an overdue task first), a task's page with who made what for
which campaign and when it is due, the player, the caption against the previous version, a
comment at a moment of the video, and decisions made from the keyboard; then the signed-out
page, where a new sign-in link is a form away."""

import io
import re
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from config.settings import get_settings
from store.db import transaction
from store.types import utcnow
from tasks.review.creatives import Submission, submit
from tasks.review.decisions import decide
from tasks.review.uploads import attach_video, store_video, video_shelf
from tests.conftest import SLUG
from tests.e2e.conftest import Server
from tests.e2e.pages import assert_page_fits
from tests.e2e.test_review_page import latest_link

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("store_url", ["sqlite"], indirect=True),
]

DANA = "dana.okafor@keystoneyouthvote.example.org"  # internal
LI = "li.chen@keystoneyouthvote.example.org"  # internal
DISCLAIMER = (
    "#ad Paid for by Keystone Youth Vote Fund. {} Not authorized by any candidate or "
    "candidate's committee."
)


# The first bytes of an MP4 file (an ISO box `ftyp`), then filler: enough for Rally to take it.
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(4096)


def submitted(engine, handle: str, said: str, video: str, *, creative=None, hours_ago=0.0):
    """A draft from `handle`; `video` is a hosted video's address, or UPLOADED for a file sent
    with the draft as the brief page sends one."""
    hosted = None if video == UPLOADED else video
    with transaction(engine) as session:
        made = submit(
            session,
            slug=SLUG,
            handle=handle,
            submission=Submission(DISCLAIMER.format(said), video_url=hosted, duration_seconds=22),
            submitted_by=f"creator:@{handle}",
            now=utcnow() - timedelta(hours=hours_ago),
            creative_id=creative,
            public_url=get_settings().public_url,
        )
        if video == UPLOADED:
            shelf = video_shelf(get_settings())
            stored = store_video(shelf, SLUG, io.BytesIO(MP4 + said.encode()), limit_mb=5)
            attach_video(session, creative_id=made.creative_id, version=made.version,
                         video=stored, actor=f"creator:@{handle}")  # fmt: skip
    return made


UPLOADED = "uploaded"


def test_an_approver_signs_in_filters_the_queue_comments_at_a_time_and_decides(
    server: Server, engine, running: Path, tabs
):
    # Maya's first version went back with a note; her second waits for internal review.
    first = submitted(engine, "maya.votes.pa", "Register now!", UPLOADED)
    with transaction(engine) as session:
        decide(
            session,
            task_id=first.open_task,
            decision="request_changes",
            approver=LI,
            now=utcnow(),
            note="Add your code.",
            public_url=get_settings().public_url,
        )
    hosted = submitted(  # Jordan's, on TikTok, is a day and more old: overdue
        engine,
        "jordanreyes_phl",
        "Two minutes, code JORDANPHL.",
        "https://www.tiktok.com/@jordanreyes_phl/video/7311",
        hours_ago=30,
    )
    second = submitted(
        engine,
        "maya.votes.pa",
        "Register today, code MAYAVOTESPA!",
        UPLOADED,
        creative=first.creative_id,
    )

    tab = tabs()
    page = tab.page
    link = latest_link(engine, DANA)  # the email about Maya's second version
    page.goto(link)
    assert_page_fits(page, "review-sign-in")
    page.focus("#sign-in")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/review/tasks/{second.open_task}")

    with page.expect_navigation():  # loaded: the table's rows are counted whole
        page.click("text=← Your queue")
    assert page.locator("[data-filter='state:open'] .count").inner_text() == "2"
    assert page.locator("[data-filter='state:overdue'] .count").inner_text() == "1"
    assert page.locator("[data-filter='state:decided'] .count").inner_text() == "1"
    assert page.locator("[data-filter='tier:internal'] .count").inner_text() == "2"
    rows = page.locator("#queue tbody tr")
    assert rows.count() == 2
    assert "overdue" in (rows.nth(0).get_attribute("class") or "")  # soonest deadline first
    assert "@jordanreyes_phl" in rows.nth(0).inner_text()
    assert "First Vote PA 2027" in rows.nth(1).inner_text()
    assert_page_fits(page, "review-queue")
    page.click("[data-filter='state:decided']")
    assert "Changes requested" in page.inner_text("#queue") and "by " + LI in page.inner_text(
        "#queue"
    )
    page.click("[data-filter='state:open']")

    page.click("text=@maya.votes.pa")
    heading = page.inner_text("h1")
    assert "Internal review of creative 1, version 2" in heading
    assert "@maya.votes.pa" in heading and "First Vote PA 2027" in heading
    assert "due " in heading and ("EST" in heading or "EDT" in heading)
    assert "maya.votes.pa" in page.title() and "First Vote PA 2027" in page.title()
    src = page.get_attribute("video#player", "src")
    assert src is not None and re.fullmatch(r"/review/videos/\d+/[0-9a-f]{64}\.mp4", src)
    assert page.request.get(server.url + src).status == 200  # the signed-in approver's to watch
    assert httpx.get(server.url + src).status_code == 401  # and no one else's
    assert page.text_content("#caption-diff ins") == "added: today, code MAYAVOTESPA! "
    assert page.text_content("#caption-diff del") == "removed: now! "

    page.fill("#at", "0:30")  # past the end of a 22-second video
    page.fill("#comment", "The code is on screen too briefly.")
    page.click("#add-comment")
    assert "Time: 0:30 is past the end of the video (0:22)" in page.inner_text("#comment-problem")
    assert page.get_attribute("#at", "aria-invalid") == "true"
    assert page.input_value("#comment") == "The code is on screen too briefly."
    assert_page_fits(page, "review-task-comment-problem")
    page.fill("#at", "0:12")
    page.click("#add-comment")
    assert "Your comment is added" in page.inner_text("#commented")
    seek = page.locator("#comment-list button[data-seek='12']")  # the script made it a button
    assert seek.inner_text() == "0:12"
    seek.focus()
    page.keyboard.press("Enter")  # the player is set to that moment
    assert page.evaluate("document.getElementById('player').currentTime") == 12
    page.click("text=Use the player's time")  # and a new comment can take the same moment
    assert page.input_value("#at") == "0:12"
    assert "The code is on screen too briefly." in page.inner_text("#comment-list")
    assert_page_fits(page, "review-task")

    # Request changes from the keyboard: the note, then Tab past Approve to Request changes.
    page.focus("#note")
    page.keyboard.type("Hold the code on screen for two seconds.")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "request_changes"
    page.keyboard.press("Enter")
    assert "Recorded: request changes" in page.inner_text("#decided")

    page.goto(f"{server.url}/review/tasks/{hosted.open_task}")
    video = page.locator("#open-video")
    assert video.get_attribute("href") == "https://www.tiktok.com/@jordanreyes_phl/video/7311"
    assert (video.get_attribute("target"), video.get_attribute("rel")) == ("_blank", "noopener")
    for box in page.locator("#decision-form input[type=checkbox]").all():
        box.focus()
        page.keyboard.press("Space")
    page.focus("#approve")
    page.keyboard.press("Enter")
    assert "Recorded: approve" in page.inner_text("#decided")
    assert "Approved by " + DANA in page.inner_text("#status")
    assert_page_fits(page, "review-task-decided")
    page.click("text=← Your queue")
    assert page.locator("[data-filter='state:decided'] .count").inner_text() == "3"

    used = page.goto(link)  # a sign-in link works once; its page offers a new one
    assert used is not None and used.status == 401
    assert "used or has expired" in page.inner_text("h1") and page.is_visible("#new-link")

    page.context.clear_cookies()  # signed out: the page offers a new link, no command
    page.goto(f"{server.url}/review")
    assert "rally " not in page.inner_text("main")
    assert_page_fits(page, "review-signed-out")
    page.fill("#email", DANA)
    page.keyboard.press("Enter")
    assert DANA in page.inner_text("#link-sent")
    page.goto(latest_link(engine, DANA))
    page.click("#sign-in")
    page.wait_for_url("**/review")
    assert "Your review queue" in page.inner_text("h1")
