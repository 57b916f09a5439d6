"""The TikTok Business API adapter over real HTTP against a local fake: comments paged by cursor,
replies, DMs and video metrics; every failure mapped onto the error tree without ever showing the
access token; and the webhook signature check."""

import hashlib
import hmac
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from integrations.errors import PermanentError, TransientError, UnavailableError
from integrations.tiktok import (
    Comment,
    SignatureError,
    TikTokBusiness,
    sign,
    verify_signature,
)
from tests.fakes.http_server import ManualClock, serving
from tests.fakes.tiktok_api import FakeTikTok

VIDEO = "7311111111111111111"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def api(clock: ManualClock) -> Iterator[FakeTikTok]:
    yield from serving(FakeTikTok(clock=clock))


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as client:
        yield client


def adapter(api: FakeTikTok, http: httpx.Client, token: str | None = None) -> TikTokBusiness:
    return TikTokBusiness(
        http,
        access_token=api.access_token if token is None else token,
        business_id=api.business_id,
        base_url=api.api_url,
    )


@pytest.fixture
def tiktok(api: FakeTikTok, http: httpx.Client) -> TikTokBusiness:
    return adapter(api, http)


def everything_said(exc: BaseException) -> str:
    """The error as anyone could ever see it: its text, args and printed traceback."""
    return f"{exc} {exc.args!r} " + "".join(traceback.format_exception(exc))


# -- reading and writing -----------------------------------------------------------------------


def test_comments_are_paged_by_cursor_until_has_more_is_false(api, tiktok) -> None:
    texts = [f"comment {i}" for i in range(7)]
    ids = [api.add_comment(VIDEO, text, f"fan{i}", likes=i) for i, text in enumerate(texts)]
    api.add_comment(VIDEO, "a reply, not a top-level comment", "fan9", parent_comment_id=ids[0])

    seen: list[Comment] = []
    cursor, pages = 0, 0
    while True:
        page = tiktok.comments(VIDEO, cursor=cursor, max_count=3)
        seen.extend(page.comments)
        pages += 1
        if not page.has_more:
            break
        cursor = page.cursor

    assert [c.text for c in seen] == texts
    assert [c.comment_id for c in seen] == ids
    assert pages == 3
    sent = api.requests_to("/open_api/v1.3/business/comment/list/", "GET")
    assert [r.query["cursor"] for r in sent] == ["0", "3", "6"]
    assert {(r.query["business_id"], r.query["video_id"], r.query["max_count"]) for r in sent} == {
        (api.business_id, VIDEO, "3")
    }
    assert all(r.headers["access-token"] == api.access_token for r in sent)
    raw = api.comments[VIDEO][2]
    third = seen[2]
    assert (third.username, third.user_id, third.likes) == ("fan2", raw["user_id"], 2)
    assert third.created_at == datetime.fromtimestamp(raw["create_time"], tz=UTC)
    assert third.parent_comment_id is None  # top level, though TikTok names the video as parent
    assert third.video_id == VIDEO and third.raw == raw


def test_a_page_size_beyond_the_api_bound_is_refused_before_any_request(api, tiktok) -> None:
    api.add_video(VIDEO)
    with pytest.raises(ValueError, match="max_count"):
        tiktok.comments(VIDEO, max_count=31)
    assert api.requests == []


def test_the_fake_checks_max_count_as_the_api_does(api, http) -> None:
    api.add_video(VIDEO)
    answer = http.get(
        f"{api.api_url}/business/comment/list/",
        params={"business_id": api.business_id, "video_id": VIDEO, "max_count": 50},
        headers={"Access-Token": api.access_token},
    ).json()
    assert answer["code"] == 40002 and "max_count" in answer["message"]


def test_a_reply_lands_on_the_fake_with_the_documented_body(api, tiktok) -> None:
    comment = api.add_comment(VIDEO, "how do I register?", "first.voter")

    reply_id = tiktok.reply(video_id=VIDEO, comment_id=comment, text="Link in bio!")

    assert api.replies == [
        {
            "business_id": api.business_id,
            "video_id": VIDEO,
            "comment_id": comment,
            "text": "Link in bio!",
            "reply_id": reply_id,
        }
    ]
    (request,) = api.requests_to("/open_api/v1.3/business/comment/reply/create/", "POST")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["access-token"] == api.access_token
    stored = [c for c in api.comments[VIDEO] if c["comment_id"] == reply_id]
    assert stored and stored[0]["parent_comment_id"] == comment


def test_a_reply_too_long_for_tiktok_is_a_permanent_error(api, tiktok) -> None:
    comment = api.add_comment(VIDEO, "hi", "fan")
    with pytest.raises(PermanentError, match="150 characters"):
        tiktok.reply(video_id=VIDEO, comment_id=comment, text="x" * 151)
    assert api.replies == []


def test_a_dm_lands_on_the_fake_with_the_business_messaging_body(api, tiktok) -> None:
    api.open_conversation("conv+abc==")

    message_id = tiktok.send_dm(recipient="conv+abc==", text="Thanks for writing! Sign up: …")

    assert api.messages == [
        {
            "business_id": api.business_id,
            "recipient_type": "CONVERSATION",
            "recipient": "conv+abc==",
            "message_type": "TEXT",
            "text": {"body": "Thanks for writing! Sign up: …"},
            "message_id": message_id,
        }
    ]


def test_a_dm_to_someone_who_never_wrote_is_a_permanent_error(api, tiktok) -> None:
    with pytest.raises(PermanentError, match="direct message rules") as caught:
        tiktok.send_dm(recipient="conv-never-opened", text="hello")
    assert not isinstance(caught.value, TransientError)
    assert api.messages == []


def test_video_metrics_are_parsed_and_asked_for_twenty_ids_at_a_time(api, tiktok) -> None:
    api.add_video(
        VIDEO,
        video_views=12_300,
        likes=810,
        comments=42,
        shares=17,
        reach=9_900,
        average_time_watched=8.25,
        full_video_watched_rate=0.31,
    )
    others = [api.add_video(video_views=i) for i in range(21)]

    metrics = tiktok.videos([VIDEO, *others, "7399999999999999999"])

    by_id = {m.video_id: m for m in metrics}
    assert set(by_id) == {VIDEO, *others}  # the unknown id is simply absent
    first = by_id[VIDEO]
    assert (first.views, first.likes, first.comments, first.shares, first.reach) == (
        12_300,
        810,
        42,
        17,
        9_900,
    )
    assert (first.average_watch_seconds, first.full_watch_rate) == (8.25, 0.31)
    assert by_id[others[5]].views == 5 and by_id[others[5]].full_watch_rate is None
    sent = api.requests_to("/open_api/v1.3/business/video/list/")
    assert len(sent) == 2  # 23 ids: 20, then 3
    assert '"video_ids": ["7311111111111111111"' in sent[0].query["filters"]
    assert "full_video_watched_rate" in sent[0].query["fields"]


def test_no_video_ids_means_no_request(api, tiktok) -> None:
    assert tiktok.videos([]) == []
    assert api.requests == []


# -- failures ----------------------------------------------------------------------------------


def test_http_429_is_transient_with_retry_after(api, tiktok, clock) -> None:
    api.throttle_mode = "429"
    api.rate_limit(2, per=1.0)
    api.add_video(VIDEO)
    tiktok.comments(VIDEO)
    clock.advance(0.4)
    tiktok.comments(VIDEO)

    with pytest.raises(TransientError) as caught:
        tiktok.comments(VIDEO)

    assert not isinstance(caught.value, UnavailableError)
    assert caught.value.retry_after == 1  # 0.6 s left in the window, rounded up as headers are
    assert api.rate_limited == 1
    clock.advance(0.6)
    assert tiktok.comments(VIDEO).comments == []


def test_http_200_with_code_40100_is_transient_without_retry_after(api, tiktok) -> None:
    api.rate_limit(1, per=1.0)
    api.add_video(VIDEO)
    tiktok.comments(VIDEO)

    with pytest.raises(TransientError, match="throttled") as caught:
        tiktok.comments(VIDEO)

    assert not isinstance(caught.value, UnavailableError)
    assert caught.value.retry_after is None
    assert api.requests[-1].status == 200 and api.rate_limited == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_transient(api, tiktok, status: int) -> None:
    api.add_video(VIDEO)
    api.fail_next(1, status=status, body="<html>upstream trouble</html>")
    with pytest.raises(TransientError) as caught:
        tiktok.comments(VIDEO)
    assert not isinstance(caught.value, UnavailableError)
    assert f"HTTP {status}" in str(caught.value)
    assert tiktok.comments(VIDEO).has_more is False  # the fault was one request only


def test_a_503_with_retry_after_passes_it_on(api, tiktok) -> None:
    api.add_video(VIDEO)
    api.fail_next(
        1, status=503, body={"code": 50002, "message": "busy"}, headers={"Retry-After": "7"}
    )
    with pytest.raises(TransientError) as caught:
        tiktok.comments(VIDEO)
    assert caught.value.retry_after == 7


def test_a_system_error_code_in_a_200_is_transient(api, tiktok) -> None:
    api.fail_next(1, status=200, body={"code": 50000, "message": "System error", "data": {}})
    with pytest.raises(TransientError, match="System error") as caught:
        tiktok.comments(VIDEO)
    assert not isinstance(caught.value, UnavailableError)


def test_a_timeout_is_transient(api) -> None:
    api.add_video(VIDEO)
    api.timeout_next(1)
    with httpx.Client(timeout=0.2) as quick:
        tiktok = adapter(api, quick)
        with pytest.raises(TransientError, match="timed out"):
            tiktok.comments(VIDEO)
        assert tiktok.comments(VIDEO).comments == []  # a new connection works
    assert len(api.requests) == 2


def test_a_dropped_connection_is_transient(api, tiktok) -> None:
    api.add_video(VIDEO)
    tiktok.comments(VIDEO)  # a kept-alive connection, which the fake then drops mid-request
    api.drop_next(1)
    with pytest.raises(TransientError, match="connection failed") as caught:
        tiktok.comments(VIDEO)
    assert not isinstance(caught.value, UnavailableError)
    assert api.requests[-1].status is None


def test_nothing_listening_is_transient(http) -> None:
    with FakeTikTok() as gone:
        url = gone.api_url
    tiktok = TikTokBusiness(http, access_token="t", business_id="b", base_url=url)
    with pytest.raises(TransientError, match="connection failed"):
        tiktok.comments(VIDEO)


@pytest.mark.parametrize("token", ["not-the-token", ""])
def test_a_bad_or_missing_token_makes_the_service_unavailable(api, http, token: str) -> None:
    api.add_video(VIDEO)
    with pytest.raises(UnavailableError, match="access token") as caught:
        adapter(api, http, token).comments(VIDEO)
    assert "4010" in str(caught.value)  # 40104 empty, 40105 wrong or revoked


@pytest.mark.parametrize("status", [401, 403])
def test_an_http_auth_refusal_makes_the_service_unavailable(api, tiktok, status: int) -> None:
    api.fail_next(1, status=status, body={"message": "Unauthorized"})
    with pytest.raises(UnavailableError):
        tiktok.send_dm(recipient="c", text="hi")


def test_another_accounts_business_id_makes_the_service_unavailable(api, http) -> None:
    api.add_video(VIDEO)
    tiktok = TikTokBusiness(
        http, access_token=api.access_token, business_id="someone-else", base_url=api.api_url
    )
    with pytest.raises(UnavailableError, match="No permission"):
        tiktok.comments(VIDEO)


def test_a_bad_video_id_is_permanent_with_tiktoks_message(api, tiktok) -> None:
    with pytest.raises(PermanentError) as caught:
        tiktok.comments("7300000000000000404")
    text = str(caught.value)
    assert "video_id is invalid: no video '7300000000000000404'" in text
    assert "code 40002" in text


def test_another_client_error_is_permanent(api, tiktok) -> None:
    api.fail_next(1, status=404, body={"message": "Not Found"})
    with pytest.raises(PermanentError, match="Not Found"):
        tiktok.reply(video_id=VIDEO, comment_id="1", text="hi")


def test_the_access_token_never_appears_in_any_error(api, http) -> None:
    token = api.access_token
    tiktok = adapter(api, http)
    api.add_video(VIDEO)
    echo = {"code": 40002, "message": f"param error near Access-Token {token}", "data": {}}
    failures = [
        lambda: api.fail_next(1, status=200, body=echo),
        lambda: api.fail_next(1, status=400, body={"code": 40002, "message": f"bad {token}"}),
        lambda: api.fail_next(1, status=429, body={"message": token}),
        lambda: api.fail_next(1, status=500, body=f"trace: {token}"),
        lambda: api.drop_next(1),
    ]
    said = []
    for inject in failures:
        inject()
        with pytest.raises(Exception) as caught:
            tiktok.comments(VIDEO)
        assert isinstance(caught.value, (TransientError, PermanentError))
        said.append(everything_said(caught.value))
    with pytest.raises(UnavailableError) as refused:
        adapter(api, http, token + "-wrong").comments(VIDEO)
    said.append(everything_said(refused.value).replace(token + "-wrong", ""))

    assert len(said) == 6
    assert all(token not in text for text in said), said
    assert "[access token]" in said[0]  # TikTok's own words kept, the token blanked out


# -- webhook signatures ------------------------------------------------------------------------

SECRET = "client-secret-0f9e8d"
BODY = b'{"client_key":"ck","event":"video.publish.completed","create_time":1790000000}'
T = 1_790_000_000


def test_a_signature_made_as_tiktok_documents_it_is_accepted() -> None:
    expected = hmac.new(SECRET.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, SECRET, T) == f"t={T},s={expected}"
    verify_signature(f"t={T},s={expected}", BODY, SECRET, now=T + 5)
    verify_signature(f"t={T}, s={expected.upper()}", BODY, SECRET, now=T + 299)


@pytest.mark.parametrize(
    ("header", "body", "now", "reason"),
    [
        (sign(BODY, "another-secret", T), BODY, T, "does not match"),
        (sign(BODY, SECRET, T), BODY.replace(b"completed", b"failed"), T, "does not match"),
        (f"t={T},s={sign(BODY, SECRET, T + 1)[-64:]}", BODY, T, "does not match"),  # moved t
        (sign(BODY, SECRET, T), BODY, T + 301, "stale"),
        (sign(BODY, SECRET, T), BODY, T - 301, "future"),
        ("t=1790000000", BODY, T, "malformed"),
        (f"s={'a' * 64}", BODY, T, "malformed"),
        (f"t=yesterday,s={'a' * 64}", BODY, T, "malformed"),
        (f"t={T},s=not-hex", BODY, T, "malformed"),
        ("sha256=abcdef", BODY, T, "malformed"),
        (None, BODY, T, "missing"),
        ("", BODY, T, "missing"),
    ],
)
def test_a_signature_that_does_not_prove_tiktok_sent_it_now_is_refused(
    header: str | None, body: bytes, now: float, reason: str
) -> None:
    with pytest.raises(SignatureError, match=reason):
        verify_signature(header, body, SECRET, now=now)
