"""A fake of TikTok's API for Business (v1.3) for one app and one business account: the
account's videos and their comments and replies, comment replies, Business Messaging, the
account's OAuth tokens, and the app's webhook registrations; plus the webhook bodies TikTok
would send about them (`comment_update`, `message_received`, `message_echo`).

Like the real API it answers refusals with HTTP 200 and a non-zero `code` in the envelope
(`{"code", "message", "request_id", "data"}`): 40104 no token, 40105 a wrong one, 40102 an
expired one (an access token lives `token_lifetime` seconds on the fake's clock, a day by
default), 40002 a bad or missing parameter, 40064 a message TikTok's DM rules block (to someone
who never wrote, or more than 48 hours after they last did, or from an account registered in
the EEA, Switzerland or the UK), and, over the QPS limit, 40100 (`throttle_mode="200-40100"`) or
an HTTP 429 (`throttle_mode="429"`). Top-level comments have no `parent_comment_id`; the
comment list is in TikTok's own order (most liked first) unless `sort_field=create_time`.
The video list answers at one of its two paths (`video_list_path`), HTTP 404 at the other.
"""

import base64
import hashlib
import itertools
import json
import math
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from tests.fakes.http_server import Clock, FakeHttpServer, RecordedRequest, Response

PREFIX = "/open_api/v1.3"
VIDEO_FIELDS = {
    "item_id",
    "create_time",
    "caption",
    "video_views",
    "likes",
    "comments",
    "shares",
    "reach",
    "average_time_watched",
    "total_time_watched",
    "full_video_watched_rate",
}
NO_DM_REGIONS = {"DE", "FR", "IE", "NL", "ES", "IT", "PL", "SE", "NO", "CH", "GB"}  # a sample
ALL_SCOPES = (  # what a business account may grant an app
    "user.info.basic",
    "video.list",
    "video.insights",
    "comment.list",
    "comment.list.manage",
    "message.list.read",
    "message.list.send",
    "message.list.manage",
)
DAY, YEAR, HOUR = 86_400, 31_536_000, 3_600
DM_WINDOW = 48 * HOUR
ThrottleMode = Literal["200-40100", "429"]
VideoListPath = Literal["video", "videos"]


def unique_identifier(username: str) -> str:
    """A person's TikTok-wide id, shaped as TikTok's are (base64, not a handle)."""
    return base64.b64encode(hashlib.sha256(username.encode()).digest()).decode()


@dataclass
class Grant:
    business_id: str
    expires_at: float  # on the fake's clock
    scopes: tuple[str, ...]


class FakeTikTok(FakeHttpServer):
    """`api_url` is the base URL to give the client; seed with `add_video` / `add_comment`;
    `authorize()` is the account's owner granting the app, answering the code TikTok would
    send to the redirect URI. Other business accounts (creators' own) have their videos added
    with `add_video(..., business_id=...)` and authorize with `authorize(business_id=...)`."""

    def __init__(
        self,
        *,
        access_token: str = "tt-access-7c1f9e2b",
        business_id: str = "biz-open-id-1",
        client_key: str = "rally-client-key",
        client_secret: str = "rally-client-secret",
        region: str = "US",
        qps: int | None = None,
        throttle_mode: ThrottleMode = "200-40100",
        video_list_path: VideoListPath = "video",
        token_lifetime: float = DAY,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(clock=clock)
        self.access_token, self.business_id = access_token, business_id
        self.client_key, self.client_secret, self.region = client_key, client_secret, region
        self.throttle_mode = throttle_mode
        self.token_lifetime = token_lifetime
        self.videos: dict[str, dict[str, Any]] = {}
        self.owners: dict[str, str] = {}  # video id -> the business account it is on
        self.comments: dict[str, list[dict[str, Any]]] = {}
        self.replies: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.conversations: dict[str, dict[str, Any]] = {}  # id -> fan, last_inbound
        self.grants: dict[str, Grant] = {}  # access token -> whose, until when
        self.refresh_tokens: dict[str, Grant] = {}
        self.codes: dict[str, tuple[str, tuple[str, ...]]] = {}  # code -> whose, scopes
        self.webhooks: dict[str, str] = {}  # event type -> callback URL
        self._expire_in_requests: int | None = None
        self._ids = itertools.count(7_300_000_000_000_000_001)
        self._time = itertools.count(1_790_000_000, 60)
        self.grants[access_token] = Grant(business_id, self.clock() + token_lifetime, ())
        if qps is not None:
            self.rate_limit(qps, per=1.0)
        self.route("GET", f"{PREFIX}/business/comment/list/", self.comment_list)
        self.route("GET", f"{PREFIX}/business/comment/reply/list/", self.reply_list)
        self.route("GET", f"{PREFIX}/business/{video_list_path}/list/", self.video_list)
        self.route("POST", f"{PREFIX}/business/comment/reply/create/", self.reply_create)
        self.route("POST", f"{PREFIX}/business/message/send/", self.message_send)
        self.route("POST", f"{PREFIX}/tt_user/oauth2/token/", self.token)
        self.route("POST", f"{PREFIX}/tt_user/oauth2/refresh_token/", self.refresh)
        self.route("POST", f"{PREFIX}/business/webhook/update/", self.webhook_update)
        self.route("GET", f"{PREFIX}/business/webhook/list/", self.webhook_list)

    @property
    def api_url(self) -> str:
        return self.url + PREFIX

    # -- seeding -----------------------------------------------------------------------------

    def add_video(
        self, video_id: str | None = None, *, business_id: str | None = None, **metrics: Any
    ) -> str:
        """A video of the account (or of `business_id`'s); `metrics` are video/list fields
        (video_views=1200, ...)."""
        video_id = video_id or str(next(self._ids))
        self.owners[video_id] = business_id or self.owners.get(video_id, self.business_id)
        unknown = set(metrics) - VIDEO_FIELDS
        assert not unknown, f"not video/list fields: {unknown}"
        video = {field: 0 for field in ("video_views", "likes", "comments", "shares", "reach")}
        self.videos[video_id] = {
            **video,
            "create_time": next(self._time),
            **metrics,
            "item_id": video_id,
        }
        self.comments.setdefault(video_id, [])
        return video_id

    def add_comment(
        self,
        video_id: str,
        text: str,
        username: str,
        *,
        likes: int = 0,
        create_time: int | None = None,
        parent_comment_id: str | None = None,
        author: str | None = None,
    ) -> str:
        """A comment (or, with `parent_comment_id`, a reply) on a video; its id."""
        if video_id not in self.videos:
            self.add_video(video_id)
        comment_id = str(next(self._ids))
        uid = author or unique_identifier(username)
        comment = {
            "comment_id": comment_id,
            "video_id": video_id,
            "user_id": hashlib.sha256(f"app:{uid}".encode()).hexdigest(),
            "unique_identifier": uid,
            "create_time": create_time if create_time is not None else next(self._time),
            "text": text,
            "likes": likes,
            "replies": 0,
            "owner": uid == self.owners[video_id],
            "liked": False,
            "pinned": False,
            "status": "PUBLIC",
            "username": username,
            "display_name": username,
            "profile_image": f"https://p16.example/{username}.jpeg",
        }
        if parent_comment_id is not None:
            comment["parent_comment_id"] = parent_comment_id
            self.comment(parent_comment_id)["replies"] += 1
        self.comments[video_id].append(comment)
        return comment_id

    def comment(self, comment_id: str) -> dict[str, Any]:
        return next(c for cs in self.comments.values() for c in cs if c["comment_id"] == comment_id)

    def open_conversation(self, conversation_id: str, fan: str = "fan") -> None:
        """Someone wrote to the business: it may answer in this conversation for 48 hours."""
        self.conversations[conversation_id] = {"fan": fan, "last_inbound": self.clock()}

    def authorize(
        self, scopes: tuple[str, ...] | None = None, *, business_id: str | None = None
    ) -> str:
        """The account's owner grants the app `scopes` (all it asks by default): the code
        TikTok sends to the redirect URI, good for one exchange."""
        code = "auth-" + secrets.token_urlsafe(12)
        self.codes[code] = (business_id or self.business_id, scopes or ALL_SCOPES)
        return code

    def expire_access_tokens(self, after_requests: int = 0) -> None:
        """Every access token issued so far expires after `after_requests` more API calls."""
        if after_requests == 0:
            for grant in self.grants.values():
                grant.expires_at = min(grant.expires_at, self.clock())
            return
        self._expire_in_requests = after_requests

    # -- webhook bodies, as TikTok sends them ------------------------------------------------

    def envelope(
        self, event: str, content: dict[str, Any], at: int, business_id: str | None = None
    ) -> bytes:
        return json.dumps(
            {
                "client_key": self.client_key,
                "event": event,
                "create_time": at,
                "user_openid": business_id or self.business_id,
                "content": json.dumps(content),
            }
        ).encode()

    def comment_update(self, comment_id: str, action: str = "insert") -> bytes:
        """The `comment.update` body about one comment: ids as JSON numbers, no text."""
        c = self.comment(comment_id)
        content: dict[str, Any] = {
            "comment_id": int(comment_id),
            "video_id": int(c["video_id"]),
            "comment_type": "reply" if "parent_comment_id" in c else "comment",
            "comment_action": action,
            "unique_identifier": c["unique_identifier"],
            "timestamp": c["create_time"],
        }
        if "parent_comment_id" in c:
            content["parent_comment_id"] = int(c["parent_comment_id"])
        owner = self.owners[c["video_id"]]
        return self.envelope("comment.update", content, c["create_time"], owner)

    def message_received(
        self, conversation_id: str, text: str, fan: str, *, at: int, message_id: str | None = None
    ) -> bytes:
        """A fan's DM (`im_receive_msg`), which also opens the conversation to answers."""
        self.open_conversation(conversation_id, fan)
        content = {
            "conversation_id": conversation_id,
            "message_id": message_id or f"msg-{next(self._ids)}",
            "type": "text",
            "text": {"body": text},
            "from": fan,
            "from_user": {"id": unique_identifier(fan), "role": "PERSONAL_ACCOUNT"},
            "to": "campaign.account",
            "to_user": {"id": self.business_id, "role": "BUSINESS_ACCOUNT"},
            "timestamp": at * 1000,
        }
        return self.envelope("im_receive_msg", content, at)

    def message_echo(self, message: dict[str, Any], *, at: int) -> bytes:
        """The `im_send_msg` TikTok sends back for a message the business sent."""
        fan = self.conversations[message["recipient"]]["fan"]
        content = {
            "conversation_id": message["recipient"],
            "message_id": message["message_id"],
            "type": "text",
            "text": message["text"],
            "from": "campaign.account",
            "from_user": {"id": self.business_id, "role": "BUSINESS_ACCOUNT"},
            "to": fan,
            "to_user": {"id": unique_identifier(fan), "role": "PERSONAL_ACCOUNT"},
            "timestamp": at * 1000,
        }
        return self.envelope("im_send_msg", content, at)

    # -- endpoints ---------------------------------------------------------------------------

    def comment_list(self, request: RecordedRequest) -> Response:
        q = request.query
        refused = self._refuse(request, q.get("business_id"))
        if refused:
            return refused
        video_id = q.get("video_id", "")
        if video_id not in self.videos or self.owners.get(video_id) != q.get("business_id"):
            return error(40002, f"video_id is invalid: no video {video_id!r} on this account")
        top = [c for c in self.comments[video_id] if "parent_comment_id" not in c]
        if q.get("sort_field") == "create_time":
            top.sort(key=lambda c: c["create_time"], reverse=q.get("sort_type") == "desc")
        else:  # TikTok's own ("smart") order, not a stable one for paging by time
            top.sort(key=lambda c: -c["likes"])
        return self._page(q, top)

    def reply_list(self, request: RecordedRequest) -> Response:
        q = request.query
        refused = self._refuse(request, q.get("business_id"))
        if refused:
            return refused
        video_id, comment_id = q.get("video_id", ""), q.get("comment_id", "")
        if video_id not in self.videos or self.owners.get(video_id) != q.get("business_id"):
            return error(40002, f"video_id is invalid: no video {video_id!r} on this account")
        replies = [c for c in self.comments[video_id] if c.get("parent_comment_id") == comment_id]
        return self._page(q, replies)

    def _page(self, q: dict[str, str], items: list[dict[str, Any]]) -> Response:
        cursor, max_count = _integer(q, "cursor", 0), _integer(q, "max_count", 20)
        if cursor is None or cursor < 0:
            return error(40002, "cursor must be a non-negative integer")
        if max_count is None or not 1 <= max_count <= 30:
            return error(40002, "max_count must be an integer between 1 and 30")
        page = items[cursor : cursor + max_count]
        end = cursor + len(page)
        return ok({"comments": page, "cursor": end, "has_more": end < len(items)})

    def video_list(self, request: RecordedRequest) -> Response:
        q = request.query
        refused = self._refuse(request, q.get("business_id"))
        if refused:
            return refused
        fields, filters = _json_param(q, "fields", ["item_id"]), _json_param(q, "filters", {})
        if not isinstance(fields, list) or not set(fields) <= VIDEO_FIELDS:
            return error(40002, f"fields must be a JSON array of {sorted(VIDEO_FIELDS)}")
        ids = filters.get("video_ids") if isinstance(filters, dict) else None
        if ids is not None and (not isinstance(ids, list) or len(ids) > 20):
            return error(40002, "filters.video_ids must be a JSON array of at most 20 ids")
        cursor, max_count = _integer(q, "cursor", 0), _integer(q, "max_count", 20)
        if cursor is None or cursor < 0 or max_count is None or not 1 <= max_count <= 20:
            return error(40002, "cursor must be >= 0 and max_count between 1 and 20")
        mine = [v for k, v in self.videos.items() if self.owners.get(k) == q.get("business_id")]
        chosen = [v for v in mine if ids is None or v["item_id"] in ids]
        page = chosen[cursor : cursor + max_count]
        videos = [{k: v for k, v in video.items() if k in {*fields, "item_id"}} for video in page]
        end = cursor + len(page)
        return ok({"videos": videos, "cursor": end, "has_more": end < len(chosen)})

    def reply_create(self, request: RecordedRequest) -> Response:
        body = request.json if isinstance(request.json, dict) else {}
        refused = self._refuse(request, body.get("business_id"))
        if refused:
            return refused
        missing = _bad_strings(body, "video_id", "comment_id", "text")
        if missing:
            return error(40002, f"{missing} is required and must be a string")
        video_id, comment_id, text = body["video_id"], body["comment_id"], body["text"]
        parent = next(
            (c for c in self.comments.get(video_id, []) if c["comment_id"] == comment_id), None
        )
        if parent is None or self.owners.get(video_id) != body["business_id"]:
            return error(40002, f"comment_id is invalid: no comment {comment_id} on that video")
        if not 1 <= len(text) <= 150:
            return error(40002, "text must be 1 to 150 characters")
        new_id = self.add_comment(
            video_id,
            text,
            "campaign.account",
            author=body["business_id"],
            parent_comment_id=comment_id,
        )
        self.replies.append({**body, "reply_id": new_id})
        return ok(self.comment(new_id))

    def message_send(self, request: RecordedRequest) -> Response:
        body = request.json if isinstance(request.json, dict) else {}
        refused = self._refuse(request, body.get("business_id"))
        if refused:
            return refused
        if body.get("recipient_type") != "CONVERSATION" or body.get("message_type") != "TEXT":
            return error(40002, "recipient_type must be CONVERSATION and message_type TEXT")
        text = body.get("text")
        if (
            _bad_strings(body, "recipient")
            or not isinstance(text, dict)
            or _bad_strings(text, "body")
        ):
            return error(40002, "recipient (a string) and text.body (a string) are required")
        if len(text["body"]) > 6000:
            return error(40002, "text.body must be at most 6000 characters")
        conversation = self.conversations.get(body["recipient"])
        if (
            self.region in NO_DM_REGIONS
            or conversation is None
            or self.clock() - conversation["last_inbound"] > DM_WINDOW
        ):
            return error(40064, "The message is blocked by direct message rules.")
        message_id = f"msg-{next(self._ids)}"
        self.messages.append({**body, "message_id": message_id})
        return ok({"message": {"message_id": message_id}})

    def token(self, request: RecordedRequest) -> Response:
        body = request.json if isinstance(request.json, dict) else {}
        refused = self._app(body.get("client_id"), body.get("client_secret"))
        if refused:
            return refused
        if body.get("grant_type") != "authorization_code" or _bad_strings(
            body, "auth_code", "redirect_uri"
        ):
            return error(40002, "grant_type authorization_code, auth_code and redirect_uri")
        granted = self.codes.pop(body["auth_code"], None)
        if granted is None:
            return error(40007, "auth_code is invalid or has been used")
        return ok(self._issue(*granted))

    def refresh(self, request: RecordedRequest) -> Response:
        body = request.json if isinstance(request.json, dict) else {}
        refused = self._app(body.get("client_id"), body.get("client_secret"))
        if refused:
            return refused
        if body.get("grant_type") != "refresh_token" or _bad_strings(body, "refresh_token"):
            return error(40002, "grant_type refresh_token and refresh_token are required")
        grant = self.refresh_tokens.pop(body["refresh_token"], None)
        if grant is None or grant.expires_at <= self.clock():
            return error(40107, "refresh_token is invalid or expired")
        return ok(self._issue(grant.business_id, grant.scopes))

    def _issue(self, business_id: str, scopes: tuple[str, ...]) -> dict[str, Any]:
        """New tokens for an account (a refresh token is used once, then replaced)."""
        access, refresh = "act." + secrets.token_urlsafe(24), "rft." + secrets.token_urlsafe(24)
        now = self.clock()
        self.grants[access] = Grant(business_id, now + self.token_lifetime, scopes)
        self.refresh_tokens[refresh] = Grant(business_id, now + YEAR, scopes)
        return {
            "access_token": access,
            "expires_in": int(self.token_lifetime),
            "open_id": business_id,
            "refresh_token": refresh,
            "refresh_token_expires_in": YEAR,
            "scope": ",".join(scopes),
            "token_type": "Bearer",
        }

    def webhook_update(self, request: RecordedRequest) -> Response:
        body = request.json if isinstance(request.json, dict) else {}
        refused = self._app(body.get("app_id"), body.get("secret"))
        if refused:
            return refused
        kind, url = body.get("event_type"), body.get("callback_url")
        if kind not in ("VIDEO", "COMMENT", "DIRECT_MESSAGE"):
            return error(40002, "event_type must be VIDEO, COMMENT or DIRECT_MESSAGE")
        if not isinstance(url, str) or not url.startswith("https://"):
            return error(40002, "callback_url must be an HTTPS URL")
        self.webhooks[kind] = url
        return ok({"app_id": self.client_key, "event_type": kind, "callback_url": url})

    def webhook_list(self, request: RecordedRequest) -> Response:
        q = request.query
        refused = self._app(q.get("app_id"), q.get("secret"))
        if refused:
            return refused
        kind = q.get("event_type", "")
        url = self.webhooks.get(kind)
        data = {"app_id": self.client_key, "event_type": kind}
        return ok(data | {"callback_url": url} if url else data)

    # -- common checks -----------------------------------------------------------------------

    def _refuse(self, request: RecordedRequest, business_id: object) -> Response | None:
        token = request.headers.get("access-token")
        if not token:
            return error(40104, "access_token is empty")
        grant = self.grants.get(token)
        if grant is None:
            return error(40105, "Access token is incorrect or has been revoked.")
        if grant.expires_at <= self.clock():
            return error(40102, "Access token has expired.")
        if not business_id:
            return error(40002, "business_id is required")
        if business_id != grant.business_id:
            return error(40001, f"No permission to operate business_id {business_id}")
        if self._expire_in_requests is not None:  # this one is served, the next may not be
            self._expire_in_requests -= 1
            if self._expire_in_requests == 0:
                self._expire_in_requests = None
                self.expire_access_tokens()
        return None

    def _app(self, app_id: object, secret: object) -> Response | None:
        if app_id != self.client_key or secret != self.client_secret:
            return error(40001, "app_id or secret is invalid")
        return None

    def throttled(self, request: RecordedRequest, retry_after: float) -> Response:
        message = "Too many requests. Please retry in some time."
        if self.throttle_mode == "429":
            body = {"code": 40100, "message": message, "request_id": _request_id()}
            return Response(429, json=body, headers={"Retry-After": str(math.ceil(retry_after))})
        return error(40100, message)


def ok(data: dict[str, Any]) -> Response:
    return Response(
        200, json={"code": 0, "message": "OK", "request_id": _request_id(), "data": data}
    )


def error(code: int, message: str) -> Response:
    return Response(
        200, json={"code": code, "message": message, "request_id": _request_id(), "data": {}}
    )


def _request_id() -> str:
    return time.strftime("%Y%m%d%H%M%S") + uuid.uuid4().hex[:18].upper()


def _integer(query: dict[str, str], name: str, default: int) -> int | None:
    value = query.get(name)
    if value is None:
        return default
    return int(value) if value.isdigit() else None


def _json_param(query: dict[str, str], name: str, default: Any) -> Any:
    try:
        return json.loads(query[name]) if name in query else default
    except ValueError:
        return None


def _bad_strings(body: dict[str, Any], *names: str) -> str:
    """The first of `names` that is missing or not a non-empty string ('' when all are)."""
    return next((n for n in names if not isinstance(body.get(n), str) or not body[n]), "")
