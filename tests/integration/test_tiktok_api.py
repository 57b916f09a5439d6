"""The TikTok Business API adapter over real HTTP against a local fake: comments and replies paged
by cursor, comment replies, DMs and video metrics with TikTok's limits checked before sending;
tokens granted, refreshed and renewed on expiry; webhooks registered; every failure mapped onto
the error tree without ever showing a token or the app's secret; and the webhook signature
check."""

import hashlib
import hmac
import json
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from integrations.errors import PermanentError, TransientError, UnavailableError
from integrations.tiktok import (
    Comment,
    SignatureError,
    TikTokApp,
    TikTokBusiness,
    TokenExpired,
    authorization_url,
    parse_webhook,
    sign,
    verify_signature,
)
from tests.fakes.http_server import ManualClock, serving
from tests.fakes.tiktok_api import FakeTikTok, unique_identifier

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


def adapter(
    api: FakeTikTok, http: httpx.Client, token: str | None = None, **options: Any
) -> TikTokBusiness:
    return TikTokBusiness(
        http,
        access_token=api.access_token if token is None else token,
        business_id=api.business_id,
        base_url=api.api_url,
        **options,
    )


@pytest.fixture
def tiktok(api: FakeTikTok, http: httpx.Client) -> TikTokBusiness:
    return adapter(api, http)


def everything_said(exc: BaseException) -> str:
    """The error as anyone could ever see it: its text, args and printed traceback."""
    return f"{exc} {exc.args!r} " + "".join(traceback.format_exception(exc))


# -- reading and writing -----------------------------------------------------------------------


def test_comments_are_paged_by_cursor_oldest_first_until_has_more_is_false(api, tiktok) -> None:
    texts = [f"comment {i}" for i in range(7)]
    # More likes on later comments: TikTok's own order (most liked first) would page them
    # backwards, and a comment liked between two pages would be seen twice or never.
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
    assert [r.query.get("cursor") for r in sent] == [None, "3", "6"]
    assert {
        (r.query["business_id"], r.query["video_id"], r.query["max_count"], r.query["sort_field"])
        for r in sent
    } == {(api.business_id, VIDEO, "3", "create_time")}
    assert all(r.headers["access-token"] == api.access_token for r in sent)
    raw = api.comments[VIDEO][2]
    third = seen[2]
    assert (third.username, third.author, third.likes) == ("fan2", raw["unique_identifier"], 2)
    assert third.author == unique_identifier("fan2") and len(third.author) == 44
    assert third.created_at == datetime.fromtimestamp(raw["create_time"], tz=UTC)
    assert "parent_comment_id" not in raw and third.parent_comment_id is None
    assert third.video_id == VIDEO and third.raw == raw
    assert seen[0].replies == 1 and not seen[0].owner


def test_the_replies_to_a_comment_come_from_the_reply_list(api, tiktok) -> None:
    first = api.add_comment(VIDEO, "how do I register?", "asker")
    replies = [api.add_comment(VIDEO, f"answer {i}", f"helper{i}", parent_comment_id=first)
               for i in range(4)]  # fmt: skip
    api.add_comment(VIDEO, "another thread", "other")

    page = tiktok.replies(VIDEO, first, max_count=3)
    rest = tiktok.replies(VIDEO, first, cursor=page.cursor, max_count=3)

    assert [c.comment_id for c in page.comments + rest.comments] == replies
    assert (page.has_more, rest.has_more) == (True, False)
    assert {c.parent_comment_id for c in page.comments} == {first}
    (request, _) = api.requests_to("/open_api/v1.3/business/comment/reply/list/", "GET")
    assert (request.query["video_id"], request.query["comment_id"]) == (VIDEO, first)


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
    stored = api.comment(reply_id)
    assert stored["parent_comment_id"] == comment and stored["owner"] is True
    assert stored["unique_identifier"] == api.business_id  # the account's own


@pytest.mark.parametrize(("length", "sent"), [(150, True), (151, False)])
def test_a_reply_longer_than_150_characters_is_refused_before_it_is_sent(
    api, tiktok, length: int, sent: bool
) -> None:
    comment = api.add_comment(VIDEO, "hi", "fan")
    if sent:
        assert tiktok.reply(video_id=VIDEO, comment_id=comment, text="x" * length)
    else:
        with pytest.raises(PermanentError, match=r"1 to 150 characters \(this one has 151\)"):
            tiktok.reply(video_id=VIDEO, comment_id=comment, text="x" * length)
    assert len(api.requests_to("/open_api/v1.3/business/comment/reply/create/")) == int(sent)


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


def test_a_dm_48_hours_after_their_message_is_blocked_by_tiktok(http, clock) -> None:
    with FakeTikTok(clock=clock, token_lifetime=7 * 86_400) as api:
        tiktok = adapter(api, http)
        api.open_conversation("conv-1")
        clock.advance(47 * 3600)
        tiktok.send_dm(recipient="conv-1", text="still in time")
        clock.advance(2 * 3600)
        with pytest.raises(PermanentError, match="direct message rules"):
            tiktok.send_dm(recipient="conv-1", text="too late")
        assert len(api.messages) == 1


def test_dms_too_long_or_from_an_account_in_the_eea_are_refused_before_they_are_sent(
    api, http
) -> None:
    api.open_conversation("conv-1")
    with pytest.raises(PermanentError, match=r"6,000 characters \(this one has 6,001\)"):
        adapter(api, http).send_dm(recipient="conv-1", text="x" * 6001)
    for region in ("DE", "CH", "gb"):
        said = rf"EEA, Switzerland or the UK \(this account: {region.upper()}\)"
        with pytest.raises(PermanentError, match=said):
            adapter(api, http, region=region).send_dm(recipient="conv-1", text="hi")
    assert api.requests == []
    assert adapter(api, http, region="US").send_dm(recipient="conv-1", text="x" * 6000)
    api.region = "FR"  # the fake refuses as TikTok would, should Rally not know the region
    with pytest.raises(PermanentError, match="direct message rules"):
        adapter(api, http).send_dm(recipient="conv-1", text="hi")


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


def test_the_video_list_is_found_at_either_of_its_paths_and_remembered(http) -> None:
    with FakeTikTok(video_list_path="videos") as api:
        video = api.add_video(video_views=7)
        tiktok = adapter(api, http)

        assert [m.views for m in tiktok.videos([video])] == [7]
        assert [m.views for m in tiktok.videos([video])] == [7]

        assert [(r.path.split("/")[-3], r.status) for r in api.requests] == [
            ("video", 404),  # the first path tried answers HTTP 404 here
            ("videos", 200),
            ("videos", 200),  # and the one that answered is kept
        ]


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


@pytest.mark.parametrize("code", [40016, 40133])
def test_tiktoks_other_throttling_codes_are_transient(api, tiktok, code: int) -> None:
    api.fail_next(1, status=200, body={"code": code, "message": "Too many requests", "data": {}})
    with pytest.raises(TransientError, match="throttled") as caught:
        tiktok.comments(VIDEO)
    assert not isinstance(caught.value, UnavailableError)


@pytest.mark.parametrize("code", [40103, 40106, 40107])
def test_tiktoks_other_token_codes_make_the_service_unavailable(api, tiktok, code: int) -> None:
    api.fail_next(1, status=200, body={"code": code, "message": "token invalid", "data": {}})
    with pytest.raises(UnavailableError, match="refuses our access token"):
        tiktok.comments(VIDEO)


def test_an_expired_token_is_refreshed_once_and_the_call_made_again(api, http) -> None:
    api.add_video(VIDEO)
    api.add_comment(VIDEO, "hi", "fan")
    api.expire_access_tokens()
    grant = TikTokApp(
        http, client_key=api.client_key, client_secret=api.client_secret, base_url=api.api_url
    ).exchange_code(api.authorize(), redirect_uri="https://rally.example.org/tiktok")
    asked: list[str] = []

    def refresh(stale: str) -> str:
        asked.append(stale)
        return grant.access_token

    assert [c.text for c in adapter(api, http, refresh=refresh).comments(VIDEO).comments] == ["hi"]
    assert asked == [api.access_token]
    codes = [r.status for r in api.requests_to("/open_api/v1.3/business/comment/list/")]
    assert len(codes) == 2
    with pytest.raises(TokenExpired, match="40102"):  # without a way to refresh: unavailable
        adapter(api, http).comments(VIDEO)


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


# -- the app: tokens and webhooks --------------------------------------------------------------

REDIRECT = "https://rally.example.org/tiktok/connected"


@pytest.fixture
def app(api: FakeTikTok, http: httpx.Client) -> TikTokApp:
    return TikTokApp(
        http, client_key=api.client_key, client_secret=api.client_secret, base_url=api.api_url
    )


def test_the_authorization_url_asks_the_scopes_rally_needs() -> None:
    url = authorization_url("ck-1", redirect_uri=REDIRECT, state="s-1")
    assert url.startswith("https://www.tiktok.com/v2/auth/authorize/?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["client_key"] == "ck-1" and query["response_type"] == "code"
    assert (query["redirect_uri"], query["state"]) == (REDIRECT, "s-1")
    assert set(query["scope"].split(",")) >= {
        "video.list", "video.insights", "comment.list", "comment.list.manage",
        "message.list.read", "message.list.send",
    }  # fmt: skip


def test_a_code_is_exchanged_for_tokens_once_and_the_refresh_token_renews_them(
    api, app, http, clock
) -> None:
    code = api.authorize()
    grant = app.exchange_code(code, redirect_uri=REDIRECT)

    assert grant.business_id == api.business_id
    assert (grant.expires_in, grant.refresh_expires_in) == (86_400, 31_536_000)
    assert "comment.list.manage" in grant.scopes
    (sent,) = api.requests_to("/open_api/v1.3/tt_user/oauth2/token/")
    assert sent.json == {
        "client_id": api.client_key,
        "client_secret": api.client_secret,
        "grant_type": "authorization_code",
        "auth_code": code,
        "redirect_uri": REDIRECT,
    }
    with pytest.raises(PermanentError, match="auth_code is invalid") as used:
        app.exchange_code(code, redirect_uri=REDIRECT)
    assert code not in everything_said(used.value)

    clock.advance(86_400)  # a day later the access token is refused as expired
    api.add_video(VIDEO)
    with pytest.raises(TokenExpired):
        adapter(api, http, grant.access_token).comments(VIDEO)
    renewed = app.refresh(grant.refresh_token)
    assert renewed.access_token != grant.access_token
    assert adapter(api, http, renewed.access_token).comments(VIDEO).comments == []
    with pytest.raises(UnavailableError, match="40107") as reused:  # replaced: used once
        app.refresh(grant.refresh_token)
    assert grant.refresh_token not in everything_said(reused.value)


def test_webhooks_are_registered_per_event_type_and_read_back(api, app) -> None:
    url = "https://rally.example.org/webhooks/tiktok"
    assert app.subscription("COMMENT").callback_url is None

    done = [app.subscribe(kind, url) for kind in ("COMMENT", "DIRECT_MESSAGE")]

    assert [(s.event_type, s.callback_url) for s in done] == [
        ("COMMENT", url),
        ("DIRECT_MESSAGE", url),
    ]
    assert api.webhooks == {"COMMENT": url, "DIRECT_MESSAGE": url}
    assert app.subscription("DIRECT_MESSAGE").callback_url == url
    (sent, _) = api.requests_to("/open_api/v1.3/business/webhook/update/")
    assert sent.json == {
        "app_id": api.client_key,
        "secret": api.client_secret,
        "event_type": "COMMENT",
        "callback_url": url,
    }


def test_the_apps_secret_never_appears_in_an_error(api, http) -> None:
    wrong = TikTokApp(http, client_key=api.client_key, client_secret="s3cr3t-value",
                      base_url=api.api_url)  # fmt: skip
    echo = {"code": 40002, "message": "bad secret s3cr3t-value", "data": {}}
    api.fail_next(1, status=200, body=echo)
    with pytest.raises(PermanentError) as echoed:
        wrong.subscription("COMMENT")
    with pytest.raises(UnavailableError) as refused:
        wrong.subscribe("COMMENT", "https://rally.example.org/webhooks/tiktok")
    for caught in (echoed, refused):
        assert "s3cr3t-value" not in everything_said(caught.value)
    assert "[client secret]" in str(echoed.value)


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


# -- webhook bodies ----------------------------------------------------------------------------

NOW = datetime(2027, 2, 10, 17, 0, tzinfo=UTC)
FAN = "Vd1cZ3bq8Cw7kd0n5ZpY2gC2c1x8Z3m+Q0Qk1lW4q2E="  # a unique_identifier, shaped as TikTok's


def body(event: str, content: dict[str, Any], **envelope: Any) -> bytes:
    """A webhook body as TikTok sends it: `content` a JSON string inside the JSON."""
    return json.dumps(
        {"client_key": "ck", "event": event, "create_time": 1801587600,
         "user_openid": "biz-open-id-1", "content": json.dumps(content)} | envelope
    ).encode()  # fmt: skip


def comment(action: str = "insert", **fields: Any) -> dict[str, Any]:
    return {
        "comment_id": 7301234567890123456,
        "video_id": 7311111111111111111,
        "comment_type": "comment",
        "comment_action": action,
        "unique_identifier": FAN,
        "timestamp": 1801587590,
    } | fields


def message(**fields: Any) -> dict[str, Any]:
    return {
        "conversation_id": "conv+7Xn2==",
        "message_id": "msg-7Q2x",
        "type": "text",
        "text": {"body": "How can I volunteer?"},
        "from": "hana.helps",
        "from_user": {"id": FAN, "role": "PERSONAL_ACCOUNT"},
        "to": "campaign.account",
        "to_user": {"id": "biz-open-id-1", "role": "BUSINESS_ACCOUNT"},
        "timestamp": 1801587590123,
    } | fields


def test_a_comment_insert_is_a_comment_by_its_author_on_its_video() -> None:
    seen = parse_webhook(body("comment.update", comment()), "ck", now=NOW)

    assert seen.ignored is None
    assert (seen.external_id, seen.type, seen.actor) == (
        "7301234567890123456:insert",
        "comment",
        FAN,
    )
    assert (seen.video_id, seen.text) == ("7311111111111111111", None)  # no text in the webhook
    assert seen.occurred_at == datetime.fromtimestamp(1801587590, UTC)
    assert seen.payload["comment_id"] == "7301234567890123456"
    assert seen.payload["business_id"] == "biz-open-id-1"
    assert seen.payload["content"]["comment_action"] == "insert"


def test_a_reply_is_a_reply_and_other_actions_are_platform_events_of_their_own() -> None:
    reply = comment(comment_type="reply", parent_comment_id=7301234567890000000)
    assert parse_webhook(body("comment.update", reply), "ck", now=NOW).type == "reply"
    for action in ("delete", "set_to_hidden", "set_to_public"):
        seen = parse_webhook(body("comment.update", comment(action)), "ck", now=NOW)
        assert (seen.type, seen.external_id) == ("platform", f"7301234567890123456:{action}")
        assert seen.ignored is None


def test_the_accounts_own_comments_and_messages_and_read_receipts_are_ignored() -> None:
    own = comment(unique_identifier="biz-open-id-1")
    echo = message(from_user={"id": "biz-open-id-1", "role": "BUSINESS_ACCOUNT"})
    said = {
        "own comment": parse_webhook(body("comment.update", own), "ck", now=NOW),
        "sent": parse_webhook(body("im_send_msg", message()), "ck", now=NOW),
        "business sender": parse_webhook(body("im_receive_msg", echo), "ck", now=NOW),
        "read": parse_webhook(body("im_mark_read_msg", {"conversation_id": "c"}), "ck", now=NOW),
    }
    assert {k: v.ignored for k, v in said.items()} == {
        "own comment": "the account's own comment",
        "sent": "the account's own message",
        "business sender": "the account's own message",
        "read": "a read receipt",
    }
    hidden = parse_webhook(
        body("comment.update", comment("set_to_hidden", unique_identifier="biz-open-id-1")),
        "ck",
        now=NOW,
    )
    assert hidden.ignored is None  # the account hiding a comment is still worth keeping


def test_a_received_message_is_a_dm_in_its_conversation_with_its_text_body() -> None:
    seen = parse_webhook(body("im_receive_msg", message()), "ck", now=NOW)

    assert (seen.external_id, seen.type, seen.actor) == ("msg-7Q2x", "dm", FAN)
    assert seen.text == "How can I volunteer?"
    assert seen.occurred_at == datetime.fromtimestamp(1801587590.123, UTC)  # milliseconds
    assert seen.payload["conversation_id"] == "conv+7Xn2=="
    assert (seen.payload["handle"], seen.payload["business_id"]) == ("hana.helps", "biz-open-id-1")
    sticker = parse_webhook(body("im_receive_msg", message(type="sticker", text=None)), "ck",
                            now=NOW)  # fmt: skip
    assert (sticker.type, sticker.text) == ("dm", None)


def test_a_redelivery_has_the_same_id_whatever_its_body() -> None:
    first = body("comment.update", comment())
    again = json.dumps(json.loads(first) | {"create_time": 1801590000}, indent=1).encode()
    dm = body("im_receive_msg", message())
    dm_again = body("im_receive_msg", message(), create_time=1801599999)
    ids = [parse_webhook(b, "ck", now=NOW).external_id for b in (first, again, dm, dm_again)]
    assert ids[0] == ids[1] and ids[2] == ids[3] and ids[0] != ids[2]


@pytest.mark.parametrize(
    ("event", "content", "said"),
    [
        ("comment.update", comment(comment_id={"id": 1}), "content.comment_id: an id expected"),
        ("comment.update", comment(comment_id=None), "content.comment_id: missing"),
        ("comment.update", comment(video_id=[7]), "content.video_id: an id expected"),
        ("comment.update", comment(unique_identifier=5), "content.unique_identifier: text"),
        ("comment.update", comment("DROP TABLE"), "content.comment_action: not an action"),
        ("comment.update", comment(timestamp="noon"), "timestamp: a unix time expected"),
        ("im_receive_msg", message(text={"body": 7}), "content.text.body: text expected"),
        ("im_receive_msg", message(conversation_id=None), "content.conversation_id: missing"),
        ("im_receive_msg", message(message_id="x" * 101), "content.message_id: an id expected"),
        ("im_receive_msg", message(from_user={"id": ["x"]}), "content.from_user.id: text"),
    ],
)
def test_a_field_of_the_wrong_kind_is_named(event: str, content: dict[str, Any], said: str) -> None:
    with pytest.raises(ValueError, match=said):
        parse_webhook(body(event, content), "ck", now=NOW)
