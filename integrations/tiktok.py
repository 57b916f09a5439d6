"""TikTok API for Business (v1.3): read comments and video metrics on the campaign's business
account, reply to comments, send direct messages; and check and read TikTok's webhooks.

The client never retries: every failure becomes one of the errors in `integrations.errors`, and
the callers' one retry layer (tenacity, honouring `retry_after`) decides. The Business API answers
most refusals with HTTP 200 and a non-zero `code` in its envelope, so the body's code is checked
as well as the status: 40100 is its throttling signal (no Retry-After), the 401xx token codes
mean it refuses us altogether, 5xxxx are its own passing failures.

Shapes, from TikTok's docs as public SDKs and integrations quote them (the portal itself was not
reachable to check): `comment/list/` takes business_id, video_id, cursor, max_count (1-30) and
answers `data.comments` (comment_id, video_id, user_id or unique_identifier, username,
create_time in unix seconds, text, likes, parent_comment_id), `data.cursor`, `data.has_more`;
`video/list/` takes `fields` (a JSON array) and `filters` (JSON, `{"video_ids": [...]}`, at most
20) and answers `data.videos` keyed by `item_id`; `comment/reply/create/` answers the new comment
in `data` (`data.comment_id`); `message/send/` answers `data.message.message_id`. Not confirmed:
whether a top-level comment's `parent_comment_id` is absent or the video's id (both read as
None here), that `full_video_watched_rate` is a fraction (0..1) and `average_time_watched` is in
seconds, and the exact list of token codes (40101, 40102, 40104, 40105 are taken as such).
"""

import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from integrations.errors import PermanentError, TransientError, UnavailableError
from integrations.http import json_object, request, retry_after

DEFAULT_API_URL = "https://business-api.tiktok.com/open_api/v1.3"
SIGNATURE_HEADER = "TikTok-Signature"
WEBHOOK_TYPES = {  # TikTok event -> Rally's event type; anything else is kept as "platform"
    "comment.create": "comment",
    "comment.reply": "reply",
    "direct_message.receive": "dm",
    "message.receive": "dm",
    "mention.create": "mention",
}

THROTTLED = 40100
# The app's id/secret invalid, the token expired, empty, or wrong/revoked; 40001: no permission
# (a scope the account did not grant): every call of the kind would fail the same way.
REFUSED_CODES = frozenset({40001, 40101, 40102, 40104, 40105})
MAX_COMMENTS_PER_PAGE = 30
MAX_VIDEO_IDS = 20
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


@dataclass(frozen=True)
class Comment:
    comment_id: str
    video_id: str
    text: str
    username: str  # the commenter's handle
    user_id: str
    created_at: datetime  # UTC, from create_time (unix seconds)
    parent_comment_id: str | None  # set for replies
    likes: int
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
    """One business account on the Business API, through an injected httpx client."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        access_token: str,
        business_id: str,
        base_url: str = DEFAULT_API_URL,
    ) -> None:
        self.client = client
        self.business_id = business_id
        self.base_url = base_url.rstrip("/")
        self._token = access_token

    def comments(self, video_id: str, *, cursor: int = 0, max_count: int = 30) -> CommentPage:
        """One page of a video's top-level comments; pass `cursor` back for the next page."""
        if not 1 <= max_count <= MAX_COMMENTS_PER_PAGE:
            raise ValueError(f"max_count must be 1..{MAX_COMMENTS_PER_PAGE} (got {max_count})")
        params = {
            "business_id": self.business_id,
            "video_id": video_id,
            "cursor": cursor,
            "max_count": max_count,
        }
        data = self._call("GET", "/business/comment/list/", params=params)
        comments = [_comment(raw, video_id) for raw in data.get("comments") or []]
        return CommentPage(comments, int(data.get("cursor") or 0), bool(data.get("has_more")))

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
                data = self._call("GET", "/business/video/list/", params=params)
                found.extend(_metrics(raw) for raw in data.get("videos") or [])
                if not data.get("has_more") or data.get("cursor") in (None, cursor):
                    break
                cursor = int(data["cursor"])
        return found

    def reply(self, *, video_id: str, comment_id: str, text: str) -> str:
        """Reply to a comment on one of the account's videos; the new comment's id."""
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
        """One request, its failures mapped to the error tree; the envelope's `data`."""
        where = f"TikTok {path.strip('/')}"
        response = request(
            self.client,
            method,
            self.base_url + path,
            where=where,
            headers={"Access-Token": self._token},
            **kwargs,
        )
        envelope = json_object(response)
        code, message = envelope.get("code"), self._scrub(str(envelope.get("message") or ""))
        detail = f"{message or response.reason_phrase} (HTTP {response.status_code}"
        detail += f", code {code})" if code is not None else ")"
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(f"{where}: {detail}", retry_after=retry_after(response))
        if response.status_code in (401, 403):
            raise UnavailableError(f"{where} refuses our access token: {detail}")
        if not response.is_success:
            raise PermanentError(f"{where} refused: {detail}")
        if code == 0 and isinstance(envelope.get("data") or {}, dict):
            return envelope.get("data") or {}
        if not isinstance(code, int) or code == 0:
            raise TransientError(f"{where}: unexpected answer (HTTP {response.status_code})")
        if code == THROTTLED:
            raise TransientError(f"{where}: throttled: {detail}")
        if code in REFUSED_CODES:
            raise UnavailableError(f"{where} refuses our access token: {detail}")
        if code >= 50000:
            raise TransientError(f"{where}: {detail}")
        raise PermanentError(f"{where} refused: {detail}")

    def _scrub(self, text: str) -> str:
        """TikTok's own words, never with our token in them."""
        return text.replace(self._token, "[access token]") if self._token else text


def _required_id(value: object, endpoint: str, name: str) -> str:
    if value in (None, ""):
        raise TransientError(f"TikTok {endpoint}: answered without {name}")
    return str(value)


def _comment(raw: dict[str, Any], video_id: str) -> Comment:
    if raw.get("comment_id") in (None, ""):
        raise PermanentError("TikTok comment/list: a comment without comment_id")
    vid = str(raw.get("video_id") or video_id)
    parent = str(raw.get("parent_comment_id") or "")
    return Comment(
        comment_id=str(raw["comment_id"]),
        video_id=vid,
        text=str(raw.get("text") or ""),
        username=str(raw.get("username") or ""),
        user_id=str(raw.get("user_id") or raw.get("unique_identifier") or ""),
        created_at=datetime.fromtimestamp(int(raw.get("create_time") or 0), tz=UTC),
        parent_comment_id=parent if parent not in ("", "0", vid) else None,
        likes=int(raw.get("likes") or 0),
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


@dataclass(frozen=True)
class WebhookNotification:
    """What one webhook tells: Rally's type for TikTok's event, who and what it is about, when
    it happened, and an id from the body's hash, so a redelivered notification is recognised."""

    external_id: str
    type: str
    occurred_at: datetime
    actor: str | None
    video_id: str | None
    text: str | None
    payload: dict[str, Any]  # the body, its `content` parsed


def parse_webhook(body: bytes, client_key: str, *, now: datetime) -> WebhookNotification:
    """Read a webhook body; ValueError when it is not JSON, names no event, or is addressed to
    another app than `client_key`. Without a `create_time` it happened `now`."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError("the body is not JSON") from None
    except RecursionError:
        raise ValueError("the body is nested too deeply") from None
    if not isinstance(data, dict) or "event" not in data:
        raise ValueError("the body has no event")
    if client_key and data.get("client_key") not in (None, client_key):
        raise ValueError("the notification is for another app")
    content = _webhook_content(data.get("content"))
    return WebhookNotification(
        external_id="webhook:" + hashlib.sha256(body).hexdigest()[:40],
        type=WEBHOOK_TYPES.get(str(data["event"]), "platform"),
        occurred_at=_moment(data.get("create_time"), now),
        actor=_text(content, "username") or _text(data, "user_openid"),
        video_id=_text(content, "video_id", numbers=True),
        text=_text(content, "text"),
        payload={**data, "content": content},
    )


def _text(fields: dict[str, Any], name: str, *, numbers: bool = False) -> str | None:
    """A field that must be text (or, with `numbers`, a whole number TikTok sends as JSON);
    ValueError naming it otherwise."""
    value = fields.get(name)
    if value is None or isinstance(value, str):
        return value
    if numbers and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"{name}: text expected, got {type(value).__name__}")


def _moment(created: object, now: datetime) -> datetime:
    """When the event happened: `create_time` in unix seconds (or milliseconds), else now."""
    if created is None:
        return now
    if not isinstance(created, int | float) or isinstance(created, bool):
        raise ValueError(f"create_time: a unix time expected, got {type(created).__name__}")
    seconds = created / 1000 if created > 10**11 else created  # milliseconds
    if not 0 <= seconds < 10**10:
        raise ValueError(f"create_time: {created} is no time Rally can read")
    return datetime.fromtimestamp(seconds, now.tzinfo)


def _webhook_content(content: object) -> dict[str, Any]:
    """A notification's `content`: TikTok sends it as a JSON string; plain text is kept as
    the text, anything else as nothing."""
    if isinstance(content, str):
        try:
            content = json.loads(content)
        except json.JSONDecodeError:
            content = {"text": content}
    return content if isinstance(content, dict) else {}
