"""TikTok API for Business (v1.3) for business accounts: read comments, replies and video
metrics, reply to comments, send direct messages (`TikTokBusiness`); connect an account by
OAuth, refresh its token and register the app's webhooks (`TikTokApp`); and check and read the
webhooks TikTok sends (`verify_signature`, `parse_webhook`).

The client never retries: every failure becomes one of the errors in `integrations.errors`, and
the callers' one retry layer (tenacity, honouring `retry_after`) decides. The Business API answers
most refusals with HTTP 200 and a non-zero `code` in its envelope, so the body's code is checked
as well as the status: 40100, 40016 and 40133 are throttling (no Retry-After), the 401xx token
codes mean it refuses us altogether (40102, an expired token, is refreshed once when the caller
gave a way to refresh), 5xxxx are its own passing failures.

Shapes, from TikTok's docs as public SDKs and integrations quote them (the portal itself was not
reachable to check): `comment/list/` and `comment/reply/list/` answer `data.comments`
(comment_id, video_id, unique_identifier, username, create_time in unix seconds, text, likes,
replies, owner, and `parent_comment_id` for replies only), `data.cursor`, `data.has_more`; the
comment list is in TikTok's own order unless `sort_field=create_time` asks for time order.
Tokens: `/tt_user/oauth2/token/` and `/tt_user/oauth2/refresh_token/` answer access_token
(a day), refresh_token (a year), their `expires_in`, `open_id` (the business id) and `scope`.
Webhooks are registered per app and event type (`/business/webhook/update/`, COMMENT or
DIRECT_MESSAGE). Not confirmed: whether the video list lives at `/business/video/list/` or
`/business/videos/list/` (both are tried), that `full_video_watched_rate` is a fraction (0..1)
and `average_time_watched` is in seconds.
"""

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx

from integrations.errors import PermanentError, TransientError, UnavailableError
from integrations.http import NotJSON, json_body, json_object, request, retry_after

DEFAULT_API_URL = "https://business-api.tiktok.com/open_api/v1.3"
AUTHORIZE_URL = "https://www.tiktok.com/v2/auth/authorize/"
SIGNATURE_HEADER = "TikTok-Signature"
# What Rally asks a business account for: its videos and their numbers, its comments (read and
# answer), its direct messages (read and send).
SCOPES = (
    "user.info.basic",
    "video.list",
    "video.insights",
    "comment.list",
    "comment.list.manage",
    "message.list.read",
    "message.list.send",
    "message.list.manage",
)
WEBHOOK_EVENT_TYPES = ("COMMENT", "DIRECT_MESSAGE")

THROTTLE_CODES = frozenset({40100, 40016, 40133})
TOKEN_EXPIRED = 40102
# The app's id/secret invalid, the token expired, empty, wrong, revoked or otherwise unusable;
# 40001: no permission (a scope the account did not grant): every call of the kind would fail.
REFUSED_CODES = frozenset({40001, 40101, 40102, 40103, 40104, 40105, 40106, 40107})
MAX_COMMENTS_PER_PAGE = 30
MAX_VIDEO_IDS = 20
MAX_REPLY_CHARS = 150
MAX_DM_CHARS = 6000
DM_WINDOW = timedelta(hours=48)  # a business may answer only within 48 h of the person's message
# TikTok offers Business Messaging to no account registered in the EEA, Switzerland or the UK.
EU = {"AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE"}
EU |= {"IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE"}
NO_DM_REGIONS = frozenset(EU | {"IS", "LI", "NO"} | {"CH"} | {"GB"})  # EEA, Switzerland, UK
VIDEO_LIST_PATHS = ("/business/video/list/", "/business/videos/list/")
VIDEO_FIELDS = (
    "item_id",
    "video_views",
    "likes",
    "comments",
    "shares",
    "reach",
    "average_time_watched",
    "total_time_watched",
    "full_video_watched_rate",
)


class TokenExpired(UnavailableError):
    """TikTok says the access token has expired (40102): refresh it and call again."""


class _NoSuchPath(PermanentError):
    """HTTP 404: the API has no such path (the video list answers at one of two)."""


@dataclass(frozen=True)
class Comment:
    comment_id: str
    video_id: str
    text: str
    author: str  # who wrote it: TikTok's unique_identifier, the same across its APIs
    username: str  # their handle
    created_at: datetime  # UTC, from create_time (unix seconds)
    parent_comment_id: str | None  # set for replies only
    likes: int
    replies: int
    owner: bool  # written by the account that posted the video (its own replies)
    raw: dict[str, Any]  # the comment as the API sent it


@dataclass(frozen=True)
class CommentPage:
    comments: list[Comment]
    cursor: int  # pass back to get the next page
    has_more: bool


@dataclass(frozen=True)
class VideoMetrics:
    video_id: str
    views: int
    likes: int
    comments: int
    shares: int
    reach: int
    average_watch_seconds: float | None
    full_watch_rate: float | None  # 0..1
    raw: dict[str, Any]


class TikTokBusiness:
    """One business account on the Business API, through an injected httpx client. With
    `refresh` (given the expired token, it answers a fresh one), a call refused for an expired
    token is made once more with the fresh token. `region` (the account's country, ISO 3166)
    refuses DMs TikTok would never deliver before they are sent."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        access_token: str,
        business_id: str,
        base_url: str = DEFAULT_API_URL,
        refresh: Callable[[str], str] | None = None,
        region: str | None = None,
    ) -> None:
        self.client = client
        self.business_id = business_id
        self.base_url = base_url.rstrip("/")
        self.region = (region or "").upper() or None
        self._token = access_token
        self._refresh = refresh
        self._video_paths = list(VIDEO_LIST_PATHS)

    def comments(self, video_id: str, *, cursor: int = 0, max_count: int = 30) -> CommentPage:
        """One page of a video's top-level comments, oldest first, so that new comments come
        after the cursor; pass `cursor` back for the next page."""
        params = {"video_id": video_id, "sort_field": "create_time", "sort_type": "asc"}
        return self._comment_page("/business/comment/list/", params, video_id, cursor, max_count)

    def replies(
        self, video_id: str, comment_id: str, *, cursor: int = 0, max_count: int = 30
    ) -> CommentPage:
        """One page of the replies to one comment (the comment list never has them)."""
        params = {"video_id": video_id, "comment_id": comment_id}
        path = "/business/comment/reply/list/"
        return self._comment_page(path, params, video_id, cursor, max_count)

    def _comment_page(
        self, path: str, params: dict[str, Any], video_id: str, cursor: int, max_count: int
    ) -> CommentPage:
        if not 1 <= max_count <= MAX_COMMENTS_PER_PAGE:
            raise ValueError(f"max_count must be 1..{MAX_COMMENTS_PER_PAGE} (got {max_count})")
        query = {"business_id": self.business_id, **params, "max_count": max_count}
        if cursor:
            query["cursor"] = cursor
        data = self._call("GET", path, params=query)
        comments = [_comment(raw, video_id, path) for raw in data.get("comments") or []]
        return CommentPage(comments, _cursor(data.get("cursor")), bool(data.get("has_more")))

    def videos(self, video_ids: Sequence[str]) -> list[VideoMetrics]:
        """Metrics of the account's videos with these ids, 20 to a request; a video TikTok does
        not return (deleted, or not this account's) is absent from the list."""
        found: list[VideoMetrics] = []
        for start in range(0, len(video_ids), MAX_VIDEO_IDS):
            batch = list(video_ids[start : start + MAX_VIDEO_IDS])
            cursor: int | None = None
            while True:
                params: dict[str, Any] = {
                    "business_id": self.business_id,
                    "fields": json.dumps(VIDEO_FIELDS),
                    "filters": json.dumps({"video_ids": batch}),
                    "max_count": MAX_VIDEO_IDS,
                }
                if cursor is not None:
                    params["cursor"] = cursor
                data = self._video_list(params)
                found.extend(_metrics(raw) for raw in data.get("videos") or [])
                if not data.get("has_more") or data.get("cursor") in (None, cursor):
                    break
                cursor = _cursor(data["cursor"])
        return found

    def _video_list(self, params: dict[str, Any]) -> dict[str, Any]:
        """The video list, at whichever of its two paths answers (remembered once found)."""
        while True:
            try:
                return self._call("GET", self._video_paths[0], params=params)
            except _NoSuchPath:
                if len(self._video_paths) == 1:
                    raise
                self._video_paths.pop(0)

    def reply(self, *, video_id: str, comment_id: str, text: str) -> str:
        """Reply to a comment on one of the account's videos; the new comment's id."""
        if not 1 <= len(text) <= MAX_REPLY_CHARS:
            raise PermanentError(
                f"not sent: a TikTok reply takes 1 to {MAX_REPLY_CHARS} characters "
                f"(this one has {len(text)})"
            )
        body = {
            "business_id": self.business_id,
            "video_id": video_id,
            "comment_id": comment_id,
            "text": text,
        }
        data = self._call("POST", "/business/comment/reply/create/", json=body)
        return _required_id(data.get("comment_id"), "comment/reply/create/", "comment_id")

    def send_dm(self, *, recipient: str, text: str) -> str:
        """A text message into a conversation (`recipient` is its conversation id): TikTok lets a
        business write only to people who wrote first. Returns the message's id."""
        if self.region in NO_DM_REGIONS:
            raise PermanentError(
                "not sent: TikTok offers no direct messages to business accounts registered in "
                f"the EEA, Switzerland or the UK (this account: {self.region})"
            )
        if not 1 <= len(text) <= MAX_DM_CHARS:
            raise PermanentError(
                f"not sent: a TikTok DM takes 1 to {MAX_DM_CHARS:,} characters "
                f"(this one has {len(text):,})"
            )
        body = {
            "business_id": self.business_id,
            "recipient_type": "CONVERSATION",
            "recipient": recipient,
            "message_type": "TEXT",
            "text": {"body": text},
        }
        data = self._call("POST", "/business/message/send/", json=body)
        message = data.get("message")
        found = message.get("message_id") if isinstance(message, dict) else data.get("message_id")
        return _required_id(found, "message/send/", "message_id")

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One request (and, for an expired token, one more with a refreshed token); the
        envelope's `data`."""
        try:
            return self._once(method, path, **kwargs)
        except TokenExpired:
            if self._refresh is None:
                raise
            self._token = self._refresh(self._token)
            return self._once(method, path, **kwargs)

    def _once(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        headers = {"Access-Token": self._token}
        hidden = {self._token: "access token"}
        return _envelope(self.client, method, self.base_url + path, hidden, headers, kwargs)


def _envelope(
    client: httpx.Client,
    method: str,
    url: str,
    hidden: dict[str, str],
    headers: dict[str, str],
    kwargs: dict[str, Any],
) -> dict[str, Any]:
    """One request to the Business API, its failures mapped to the error tree (TikTok's words
    with each `hidden` value replaced by its label); the envelope's `data`."""
    where = "TikTok " + url.split("/open_api/", 1)[-1].split("/", 1)[-1].strip("/")
    response = request(client, method, url, where=where, headers=headers, **kwargs)
    envelope = json_object(response)
    code = envelope.get("code")
    message = _scrub(str(envelope.get("message") or ""), hidden)
    detail = f"{message or response.reason_phrase} (HTTP {response.status_code}"
    detail += f", code {code})" if code is not None else ")"
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientError(f"{where}: {detail}", retry_after=retry_after(response))
    if response.status_code in (401, 403):
        raise UnavailableError(f"{where} refuses our access token: {detail}")
    if response.status_code == 404:
        raise _NoSuchPath(f"{where}: no such path: {detail}")
    if not response.is_success:
        raise PermanentError(f"{where} refused: {detail}")
    if code == 0 and isinstance(envelope.get("data") or {}, dict):
        return envelope.get("data") or {}
    if not isinstance(code, int) or code == 0:
        raise TransientError(f"{where}: unexpected answer (HTTP {response.status_code})")
    if code in THROTTLE_CODES:
        raise TransientError(f"{where}: throttled: {detail}")
    if code == TOKEN_EXPIRED:
        raise TokenExpired(f"{where} refuses our access token: {detail}")
    if code in REFUSED_CODES:
        raise UnavailableError(f"{where} refuses our access token: {detail}")
    if code >= 50000:
        raise TransientError(f"{where}: {detail}")
    raise PermanentError(f"{where} refused: {detail}")


def _scrub(text: str, hidden: dict[str, str]) -> str:
    """TikTok's own words, never with our tokens or secret in them."""
    for value, label in hidden.items():
        if value:
            text = text.replace(value, f"[{label}]")
    return text


def _required_id(value: object, endpoint: str, name: str) -> str:
    if value in (None, ""):
        raise TransientError(f"TikTok {endpoint}: answered without {name}")
    return str(value)


def _cursor(value: object) -> int:
    """A cursor as TikTok gives it: a whole number, sometimes as text; absent is 0."""
    if value in (None, ""):
        return 0
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise TransientError(f"TikTok answered a cursor Rally cannot use: {value!r}")
    return int(value)


def _comment(raw: dict[str, Any], video_id: str, path: str) -> Comment:
    if raw.get("comment_id") in (None, ""):
        raise PermanentError(f"TikTok {path.strip('/')}: a comment without comment_id")
    parent = str(raw.get("parent_comment_id") or "")
    return Comment(
        comment_id=str(raw["comment_id"]),
        video_id=str(raw.get("video_id") or video_id),
        text=str(raw.get("text") or ""),
        author=str(raw.get("unique_identifier") or raw.get("user_id") or ""),
        username=str(raw.get("username") or ""),
        created_at=datetime.fromtimestamp(int(raw.get("create_time") or 0), tz=UTC),
        parent_comment_id=parent or None,
        likes=int(raw.get("likes") or 0),
        replies=int(raw.get("replies") or 0),
        owner=raw.get("owner") is True,
        raw=raw,
    )


def _metrics(raw: dict[str, Any]) -> VideoMetrics:
    def number(name: str) -> float | None:
        value = raw.get(name)
        return None if value in (None, "") else float(value)

    return VideoMetrics(
        video_id=str(raw.get("item_id") or ""),
        views=int(raw.get("video_views") or 0),
        likes=int(raw.get("likes") or 0),
        comments=int(raw.get("comments") or 0),
        shares=int(raw.get("shares") or 0),
        reach=int(raw.get("reach") or 0),
        average_watch_seconds=number("average_time_watched"),
        full_watch_rate=number("full_video_watched_rate"),
        raw=raw,
    )


# -- the app: connecting accounts, their tokens, its webhooks ---------------------------------


@dataclass(frozen=True)
class TokenGrant:
    """What TikTok grants for one business account: a short-lived access token and the
    long-lived refresh token that renews it."""

    business_id: str  # the account's open_id, the business_id of every call
    access_token: str
    expires_in: int  # seconds
    refresh_token: str
    refresh_expires_in: int  # seconds
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class Subscription:
    """The app's webhook registration for one event type; no callback when none is set."""

    event_type: str
    callback_url: str | None


class TikTokApp:
    """Rally's TikTok app (its client key and secret) on the Business API."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        client_key: str,
        client_secret: str,
        base_url: str = DEFAULT_API_URL,
    ) -> None:
        self.client = client
        self.client_key, self.client_secret = client_key, client_secret
        self.base_url = base_url.rstrip("/")

    def exchange_code(self, code: str, *, redirect_uri: str) -> TokenGrant:
        """The tokens for the authorization code TikTok sent back to `redirect_uri`."""
        body = {
            "client_id": self.client_key,
            "client_secret": self.client_secret,
            "grant_type": "authorization_code",
            "auth_code": code,
            "redirect_uri": redirect_uri,
        }
        data = self._post("/tt_user/oauth2/token/", body, {code: "code"})
        return _grant(data, "tt_user/oauth2/token/")

    def refresh(self, refresh_token: str) -> TokenGrant:
        """A fresh access token (and perhaps a new refresh token) for the account."""
        body = {
            "client_id": self.client_key,
            "client_secret": self.client_secret,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
        }
        data = self._post("/tt_user/oauth2/refresh_token/", body, {refresh_token: "refresh token"})
        return _grant(data, "tt_user/oauth2/refresh_token/")

    def subscribe(self, event_type: str, callback_url: str) -> Subscription:
        """Have TikTok send the app's webhooks of `event_type` to `callback_url`."""
        body = {
            "app_id": self.client_key,
            "secret": self.client_secret,
            "event_type": event_type,
            "callback_url": callback_url,
        }
        data = self._post("/business/webhook/update/", body, {})
        return Subscription(event_type, str(data.get("callback_url") or "") or None)

    def subscription(self, event_type: str) -> Subscription:
        """Where TikTok sends the app's webhooks of `event_type` now."""
        params = {"app_id": self.client_key, "secret": self.client_secret, "event_type": event_type}
        data = _envelope(
            self.client,
            "GET",
            self.base_url + "/business/webhook/list/",
            {self.client_secret: "client secret"},
            {},
            {"params": params},
        )
        return Subscription(event_type, str(data.get("callback_url") or "") or None)

    def _post(self, path: str, body: dict[str, Any], hidden: dict[str, str]) -> dict[str, Any]:
        hidden = {self.client_secret: "client secret", **hidden}
        return _envelope(self.client, "POST", self.base_url + path, hidden, {}, {"json": body})


def authorization_url(
    client_key: str, *, redirect_uri: str, state: str, scopes: Sequence[str] = SCOPES
) -> str:
    """Where the account's owner grants Rally its scopes; TikTok then sends them to
    `redirect_uri` with `code` (and `state`) in the query."""
    query = {
        "client_key": client_key,
        "response_type": "code",
        "scope": ",".join(scopes),
        "redirect_uri": redirect_uri,
        "state": state,
    }
    return f"{AUTHORIZE_URL}?{urlencode(query)}"


def _grant(data: dict[str, Any], endpoint: str) -> TokenGrant:
    missing = [k for k in ("access_token", "refresh_token", "open_id") if not data.get(k)]
    if missing:
        raise TransientError(f"TikTok {endpoint}: answered without {', '.join(missing)}")
    scope = data.get("scope") or ""
    scopes = scope if isinstance(scope, list) else str(scope).split(",")
    return TokenGrant(
        business_id=str(data["open_id"]),
        access_token=str(data["access_token"]),
        expires_in=int(data.get("expires_in") or 0),
        refresh_token=str(data["refresh_token"]),
        refresh_expires_in=int(data.get("refresh_token_expires_in") or 0),
        scopes=tuple(sorted(s.strip() for s in scopes if str(s).strip())),
    )


# -- webhooks ----------------------------------------------------------------------------------


class SignatureError(ValueError):
    """A webhook whose TikTok-Signature does not prove it came from TikTok, just now."""


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The TikTok-Signature header value for `body`: `t=<unix>,s=<hex HMAC-SHA256>`."""
    return f"t={timestamp},s={_digest(body, secret, timestamp)}"


def verify_signature(
    header: str | None, body: bytes, secret: str, *, now: float, tolerance: float = 300
) -> None:
    """Raise SignatureError unless `header` signs this raw body with our client secret within
    `tolerance` seconds of `now`: an old request replayed is refused like a forged one."""
    if not header:
        raise SignatureError("missing TikTok-Signature header")
    parts = dict(part.strip().partition("=")[::2] for part in header.split(","))
    timestamp, signature = parts.get("t", ""), parts.get("s", "")
    if not re.fullmatch(r"\d{1,12}", timestamp) or not re.fullmatch(r"[0-9a-fA-F]{64}", signature):
        raise SignatureError("malformed TikTok-Signature header")
    age = now - int(timestamp)
    if age > tolerance:
        raise SignatureError(f"stale signature: signed {age:.0f} s ago")
    if -age > tolerance:
        raise SignatureError(f"signature from the future: {-age:.0f} s ahead")
    if not hmac.compare_digest(_digest(body, secret, int(timestamp)), signature.lower()):
        raise SignatureError("signature does not match the body")


def _digest(body: bytes, secret: str, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


COMMENT_EVENT = "comment.update"
MESSAGE_RECEIVED, MESSAGE_SENT, MESSAGE_READ = "im_receive_msg", "im_send_msg", "im_mark_read_msg"
BUSINESS_ROLE = "BUSINESS_ACCOUNT"
_ID = re.compile(r"\S{1,100}")  # an id TikTok sends as text: opaque, bounded
_ACTION = re.compile(r"[a-z_]{1,24}")


@dataclass(frozen=True)
class WebhookNotification:
    """What one webhook tells: Rally's type for it (`comment`, `reply`, `dm`, or `platform`
    for anything the rules do not answer), who did it and what, when, and an id that stays the
    same on each redelivery (`<comment_id>:<action>`, a message's id). `ignored` says why it is
    not stored at all: the business's own comments and messages echoed back, read receipts."""

    external_id: str
    type: str
    occurred_at: datetime
    actor: str | None  # the person: their unique_identifier, the same in comments and DMs
    video_id: str | None
    text: str | None
    payload: dict[str, Any]  # the body, its `content` parsed, with what answering needs
    ignored: str | None = None


def parse_webhook(body: bytes, client_key: str, *, now: datetime) -> WebhookNotification:
    """Read a webhook body; ValueError (naming the field) when it is not JSON, names no event,
    is addressed to another app than `client_key`, or has a field of the wrong kind. Without a
    time of its own it happened `now`."""
    try:
        data = json_body(body)
    except ValueError as exc:
        raise ValueError(f"the body: {exc}") from None
    if not isinstance(data, dict) or "event" not in data:
        raise ValueError("the body has no event")
    if client_key and data.get("client_key") not in (None, client_key):
        raise ValueError("the notification is for another app")
    event = _text(data, "event", "")
    business = _text(data, "user_openid", "")
    content = _webhook_content(data.get("content"))
    if event == COMMENT_EVENT:
        return _comment_update(data, content, business, now)
    if event in (MESSAGE_RECEIVED, MESSAGE_SENT, MESSAGE_READ):
        return _message(data, content, business, now)
    canonical = json.dumps({**data, "content": content}, sort_keys=True, separators=(",", ":"))
    return WebhookNotification(
        external_id="webhook:" + hashlib.sha256(canonical.encode()).hexdigest()[:40],
        type="platform",
        occurred_at=_moment(data.get("create_time"), now, "create_time"),
        actor=None,
        video_id=None,
        text=_text(content, "text", "content."),
        payload={**data, "content": content, "business_id": business},
    )


def _comment_update(
    data: dict[str, Any], content: dict[str, Any], business: str | None, now: datetime
) -> WebhookNotification:
    """`comment.update`: a comment or reply added (`insert`), or deleted, hidden, ... (stored as
    a platform event). Its content names the comment, the video, the author and the time;
    `text` only if TikTok ever sends it."""
    comment_id = _required(content, "comment_id")
    action = _text(content, "comment_action", "content.") or ""
    if not _ACTION.fullmatch(action):
        raise ValueError(f"content.comment_action: not an action: {action[:40]!r}")
    author = _text(content, "unique_identifier", "content.")
    parent = _identifier(content, "parent_comment_id")
    if action == "insert":
        kind = "reply" if parent or content.get("comment_type") == "reply" else "comment"
    else:
        kind = "platform"
    payload = {**data, "content": content, "comment_id": comment_id, "business_id": business}
    own = author is not None and author == business
    return WebhookNotification(
        external_id=f"{comment_id}:{action}",
        type=kind,
        occurred_at=_moment(content.get("timestamp", data.get("create_time")), now, "timestamp"),
        actor=author,
        video_id=_identifier(content, "video_id"),
        text=_text(content, "text", "content."),
        payload=payload,
        ignored="the account's own comment" if own and kind != "platform" else None,
    )


def _message(
    data: dict[str, Any], content: dict[str, Any], business: str | None, now: datetime
) -> WebhookNotification:
    """`im_receive_msg`, a direct message to the business (answered in its conversation);
    `im_send_msg`, the business's own message echoed; `im_mark_read_msg`, a read receipt."""
    if data["event"] != MESSAGE_RECEIVED:
        why = "the account's own message" if data["event"] == MESSAGE_SENT else "a read receipt"
        at = _moment(data.get("create_time"), now, "create_time")
        return WebhookNotification("", "platform", at, None, None, None, {}, ignored=why)
    message_id = _required(content, "message_id")
    conversation = _required(content, "conversation_id")
    sender = content.get("from_user")
    sender = sender if isinstance(sender, dict) else {}
    actor = _text(sender, "id", "content.from_user.") or _text(content, "from", "content.")
    body = content.get("text")
    text = _text(body, "body", "content.text.") if isinstance(body, dict) else None
    own = sender.get("role") == BUSINESS_ROLE or (actor is not None and actor == business)
    payload = {
        **data,
        "content": content,
        "conversation_id": conversation,
        "business_id": business,
        "handle": _text(content, "from", "content."),
    }
    return WebhookNotification(
        external_id=message_id,
        type="dm",
        occurred_at=_moment(content.get("timestamp", data.get("create_time")), now, "timestamp"),
        actor=actor,
        video_id=None,
        text=text,
        payload=payload,
        ignored="the account's own message" if own else None,
    )


def _text(fields: dict[str, Any], name: str, where: str) -> str | None:
    """A field that must be text; ValueError naming it (`where` + name) otherwise."""
    value = fields.get(name)
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"{where}{name}: text expected, got {type(value).__name__}")


def _identifier(fields: dict[str, Any], name: str) -> str | None:
    """An id TikTok sends as a JSON number or as text, as text (None when absent); ValueError
    naming it when it is neither."""
    value = fields.get(name)
    if value in (None, ""):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and _ID.fullmatch(value):
        return value
    raise ValueError(f"content.{name}: an id expected, got {type(value).__name__}")


def _required(fields: dict[str, Any], name: str) -> str:
    found = _identifier(fields, name)
    if found is None:
        raise ValueError(f"content.{name}: missing")
    return found


def _moment(created: object, now: datetime, name: str) -> datetime:
    """When the event happened: a unix time in seconds or milliseconds, else now."""
    if created is None:
        return now
    if not isinstance(created, int | float) or isinstance(created, bool):
        raise ValueError(f"{name}: a unix time expected, got {type(created).__name__}")
    if not 0 <= created < 10**13:  # before dividing: a huge integer is no float
        raise ValueError(f"{name}: {created} is no time Rally can read")
    seconds = created / 1000 if created > 10**11 else created  # milliseconds
    if seconds >= 10**10:
        raise ValueError(f"{name}: {created} is no time Rally can read")
    return datetime.fromtimestamp(seconds, now.tzinfo)


def _webhook_content(content: object) -> dict[str, Any]:
    """A notification's `content`: TikTok sends it as a JSON string to parse again; plain text
    is kept as the text, anything else as nothing."""
    if isinstance(content, str):
        try:
            content = json_body(content)
        except NotJSON:
            content = {"text": content}
        except ValueError as exc:
            raise ValueError(f"content: {exc}") from None
    return content if isinstance(content, dict) else {}
