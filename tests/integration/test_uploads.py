"""Videos uploaded with a draft from the brief page: bounded in size, only video types, kept
by their hash under RALLY_HOME or in an S3-compatible bucket (a local fake that checks
signatures as S3 does), and served to the creator (by their brief link) and the campaign's
approvers only. On SQLite and PostgreSQL, through the real app."""

import hashlib
import json
from datetime import timedelta

import httpx
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlmodel import col, select

from config.settings import get_settings
from store.db import transaction
from store.models import AuditEvent, CreativeDraft
from tasks.review.uploads import upload_url
from tests.conftest import SLUG
from tests.helpers import generate
from tests.integration.test_report_web import STAFF, STRANGER, signed_in
from web.app import create_app

CAPTION = (
    "#ad Paid for by Keystone Youth Vote Fund. Registering takes two minutes! Code MAYAVOTESPA"
    " Not authorized by any candidate or candidate's committee."
)
# The first bytes of an MP4 file (an ISO box `ftyp`), then filler.
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(range(256)) * 40


def links(rally) -> dict[str, str]:
    rows = json.loads(rally("briefs", "status", SLUG, "--json").out)
    return {r["handle"]: r["link"].split("/briefs/")[1] for r in rows if r["link"]}


def send(client: TestClient, token: str, video: tuple[str, bytes, str] | None, **fields: str):
    data = {"caption": CAPTION, "duration": "20"} | fields
    files = {"video": video} if video else None
    return client.post(f"/briefs/{token}/drafts", data=data, files=files, follow_redirects=False)


def drafts(engine) -> list[CreativeDraft]:
    with transaction(engine, write=False) as session:
        return list(session.exec(select(CreativeDraft).order_by(col(CreativeDraft.id))))


def stored_files(settings) -> list[str]:
    folder = settings.home / "uploads" / SLUG
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_video_is_kept_by_its_hash_and_shown_to_its_creator_and_approvers(
    settings, engine, rally, running
):
    generate(settings, engine, SLUG)
    tokens = links(rally)
    client = TestClient(create_app(settings))

    answer = send(client, tokens["maya.votes.pa"], ("take 1.mp4", MP4, "video/mp4"))
    assert answer.status_code == 303, answer.text
    name = f"{hashlib.sha256(MP4).hexdigest()}.mp4"
    assert stored_files(settings) == [name]  # the name is Rally's, not the sender's
    assert (settings.home / "uploads" / SLUG / name).read_bytes() == MP4
    (draft,) = drafts(engine)
    assert draft.video_file == name and draft.caption == CAPTION
    with transaction(engine, write=False) as session:
        entry = session.exec(
            select(AuditEvent).where(AuditEvent.action == "creative.video_uploaded")
        ).one()
    assert entry.changes == {"version": 1, "file": name, "bytes": len(MP4)}
    assert rally("audit", "verify").code == 0

    # The creator watches it from their page, with their link; ranges work (a <video> seeks).
    page = client.get(f"/briefs/{tokens['maya.votes.pa']}")
    own = f"/briefs/{tokens['maya.votes.pa']}/videos/{name}"
    assert f'src="{own}"' in page.text
    video = client.get(own)
    assert video.status_code == 200 and video.content == MP4
    assert video.headers["content-type"] == "video/mp4"
    part = client.get(own, headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == MP4[:10]

    # Another creator's link, a made-up name or a path out of the folder: not found alike.
    for address in (
        f"/briefs/{tokens['jordanreyes_phl']}/videos/{name}",
        f"/briefs/{tokens['maya.votes.pa']}/videos/{'0' * 64}.mp4",
        f"/briefs/{tokens['maya.votes.pa']}/videos/..%2F..%2Frally.db",
        f"/briefs/not-a-token/videos/{name}",
    ):
        assert client.get(address).status_code == 404, address

    # Approvers of the campaign, signed in, at the address the review room gets.
    review_address = upload_url(draft)
    assert review_address == f"/review/videos/{draft.id}/{name}"
    address = review_address
    staff = signed_in(settings, engine, STAFF)
    seen = staff.get(address)
    assert seen.status_code == 200 and seen.content == MP4
    assert signed_in(settings, engine, STRANGER).get(address).status_code == 404
    assert TestClient(create_app(settings)).get(address).status_code == 401  # signed out
    assert staff.get(f"/review/videos/{draft.id}/{'f' * 64}.mp4").status_code == 404

    # A fix to the caption alone keeps the video; the same file sent again is one file.
    fixed = send(
        client,
        tokens["maya.votes.pa"],
        None,
        caption=CAPTION + " #FirstVotePA",
        creative=str(draft.creative_id),
        keep_video="true",
    )
    assert fixed.status_code == 303, fixed.text
    again = send(client, tokens["maya.votes.pa"], ("again.mov", MP4, "video/quicktime"))
    assert again.status_code == 303
    assert [d.video_file for d in drafts(engine)] == [name, name, name]
    assert stored_files(settings) == [name]


def test_a_file_too_large_or_not_a_video_is_refused_by_name_and_nothing_is_kept(
    settings, engine, rally, running, monkeypatch
):
    monkeypatch.setenv("RALLY_MAX_UPLOAD_MB", "1")
    get_settings.cache_clear()
    small = get_settings()
    generate(small, engine, SLUG)
    token = links(rally)["maya.votes.pa"]
    client = TestClient(create_app(small))

    # Just over the limit: read, counted and refused on the way in.
    over = MP4 + bytes(1024 * 1024)
    answer = send(client, token, ("big.mp4", over, "video/mp4"))
    assert answer.status_code == 413
    assert "video: a file of at most 1 MB" in answer.text
    assert f">{escape(CAPTION)}</textarea>" in answer.text  # the form keeps what was typed

    # Far over: refused by its declared length, before the body is read.
    huge = MP4 + bytes(3 * 1024 * 1024)
    answer = send(client, token, ("huge.mp4", huge, "video/mp4"))
    assert answer.status_code == 413 and "video: a file of at most 1 MB" in answer.text

    # Not a video, whatever its name and type say.
    for name, body, kind in (
        ("notes.mp4", b"just some text, not a video at all", "video/mp4"),
        ("photo.mov", b"\x89PNG\r\n\x1a\n" + bytes(64), "video/quicktime"),
    ):
        answer = send(client, token, (name, body, kind))
        assert answer.status_code == 415, name
        assert "video: an MP4, MOV (QuickTime) or WebM video file" in answer.text

    # A draft refused for another reason keeps no video either.
    answer = send(client, token, ("take.mp4", MP4, "video/mp4"), duration="-5")
    assert answer.status_code == 409 and "length in seconds" in answer.text

    assert drafts(engine) == []
    assert stored_files(small) == []
    assert client.post("/briefs/nobody/drafts", data={"caption": "x"}).status_code == 404


def test_with_a_bucket_videos_go_to_it_and_pages_play_them_from_a_short_lived_link(
    bucket, engine, rally, running
):
    settings = get_settings()
    generate(settings, engine, SLUG)
    tokens = links(rally)
    client = TestClient(create_app(settings))
    token = tokens["maya.votes.pa"]

    answer = send(client, token, ("take 1.mp4", MP4, "video/mp4"))
    assert answer.status_code == 303, answer.text
    name = f"{hashlib.sha256(MP4).hexdigest()}.mp4"
    key = f"uploads/{SLUG}/{name}"
    assert list(bucket.objects) == [key]
    assert bucket.objects[key].body == MP4 and bucket.objects[key].content_type == "video/mp4"
    assert stored_files(settings) == []  # nothing kept on this machine
    (draft,) = drafts(engine)
    assert draft.video_file == name

    # The page may play video from the bucket; its address sends the browser there.
    page = client.get(f"/briefs/{token}")
    assert f"media-src 'self' https: blob: {bucket.url};" in page.headers["content-security-policy"]
    own = client.get(f"/briefs/{token}/videos/{name}", follow_redirects=False)
    assert own.status_code == 302
    link = own.headers["location"]
    assert link.startswith(f"{bucket.url}/{bucket.bucket}/{key}?")
    played = httpx.get(link)
    assert played.status_code == 200 and played.content == MP4
    assert played.headers["content-type"] == "video/mp4"
    part = httpx.get(link, headers={"Range": "bytes=16-31"})
    assert part.status_code == 206 and part.content == MP4[16:32]
    tampered = link.replace(name, f"{'0' * 64}.mp4")
    assert httpx.get(tampered).status_code == 403  # the link is for this object only

    # Approvers get a link too; strangers get nothing.
    staff = signed_in(settings, engine, STAFF)
    seen = staff.get(upload_url(draft) or "", follow_redirects=False)
    assert seen.status_code == 302 and httpx.get(seen.headers["location"]).content == MP4
    assert signed_in(settings, engine, STRANGER).get(upload_url(draft) or "").status_code == 404

    # A link stops working once its hour is over.
    bucket.ahead = timedelta(minutes=61)
    expired = httpx.get(link)
    assert expired.status_code == 403 and "Request has expired" in expired.text
    bucket.ahead = timedelta(0)

    # A caption fix keeps the video (found in the bucket); the same file again is one object.
    fixed = send(client, token, None, caption=CAPTION + " #FirstVotePA",
                 creative=str(draft.creative_id), keep_video="true")  # fmt: skip
    assert fixed.status_code == 303, fixed.text
    assert send(client, token, ("again.mp4", MP4, "video/mp4")).status_code == 303
    assert [d.video_file for d in drafts(engine)] == [name, name, name]
    assert list(bucket.objects) == [key]
    puts = [r for r in bucket.requests if r.method == "PUT"]
    assert len(puts) == 1  # the second upload found the object there and sent nothing


def test_a_bucket_that_fails_or_refuses_loses_the_draft_nothing_and_says_try_again(
    bucket, engine, rally, running, monkeypatch, caplog
):
    settings = get_settings()
    generate(settings, engine, SLUG)
    token = links(rally)["maya.votes.pa"]
    client = TestClient(create_app(settings))

    # Down for a moment: three tries, then the creator is asked to send again, form kept.
    slow_down = "<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"
    bucket.fail_next(3, 503, body=slow_down)
    answer = send(client, token, ("take.mp4", MP4, "video/mp4"))
    assert answer.status_code == 503
    assert "video: the file could not be stored just now" in answer.text
    assert f">{escape(CAPTION)}</textarea>" in answer.text
    assert drafts(engine) == [] and bucket.objects == {}

    # A draft refused after its video was kept leaves no object behind.
    answer = send(client, token, ("take.mp4", MP4, "video/mp4"), duration="-5")
    assert answer.status_code == 409
    assert bucket.objects == {} and drafts(engine) == []

    # Wrong credentials: the creator sees the same plain words, staff's log says what to fix.
    monkeypatch.setenv("RALLY_S3_SECRET_ACCESS_KEY", "not-the-secret")
    get_settings.cache_clear()
    wrong = TestClient(create_app(get_settings()))
    answer = send(wrong, token, ("take.mp4", MP4, "video/mp4"))
    assert answer.status_code == 503 and "could not be stored just now" in answer.text
    assert "refused (403); check RALLY_S3_* settings" in caplog.text  # a HEAD's 403 says no more
    assert "not-the-secret" not in caplog.text

    # Back up: the same draft goes through.
    assert send(client, token, ("take.mp4", MP4, "video/mp4")).status_code == 303
    assert len(drafts(engine)) == 1 and len(bucket.objects) == 1
