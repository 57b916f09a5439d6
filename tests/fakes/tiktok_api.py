"""A fake of TikTok's API for Business (v1.3) for one business account: its videos and their
comments, comment replies and Business Messaging.

Like the real API it answers refusals with HTTP 200 and a non-zero `code` in the envelope
(`{"code", "message", "request_id", "data"}`): 40104 no token, 40105 a wrong one, 40002 a bad
or missing parameter, 40064 a message to someone who never wrote to the business, and, over the
QPS limit, 40100 (`throttle_mode="200-40100"`) or an HTTP 429 (`throttle_mode="429"`).
"""

import itertools
import json
import math
import time
import uuid
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
ThrottleMode = Literal["200-40100", "429"]


class FakeTikTok(FakeHttpServer):
    """`api_url` is the base URL to give the client; seed with `add_video` / `add_comment`."""

    def __init__(
        self,
        *,
        access_token: str = "tt-access-7c1f9e2b",
        business_id: str = "biz-open-id-1",
        qps: int | None = None,
        throttle_mode: ThrottleMode = "200-40100",
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(clock=clock)
        self.access_token, self.business_id = access_token, business_id
        self.throttle_mode = throttle_mode
        self.videos: dict[str, dict[str, Any]] = {}
        self.comments: dict[str, list[dict[str, Any]]] = {}
        self.replies: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.conversations: set[str] = set()
        self._ids = itertools.count(7_300_000_000_000_000_001)
        self._time = itertools.count(1_790_000_000, 60)
        if qps is not None:
            self.rate_limit(qps, per=1.0)
        self.route("GET", f"{PREFIX}/business/comment/list/", self.comment_list)
        self.route("GET", f"{PREFIX}/business/video/list/", self.video_list)
        self.route("POST", f"{PREFIX}/business/comment/reply/create/", self.reply_create)
        self.route("POST", f"{PREFIX}/business/message/send/", self.message_send)

    @property
    def api_url(self) -> str:
        return self.url + PREFIX

    # -- seeding -----------------------------------------------------------------------------

    def add_video(self, video_id: str | None = None, **metrics: Any) -> str:
        """A video of the account; `metrics` are video/list fields (video_views=1200, ...)."""
        video_id = video_id or str(next(self._ids))
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
        user_id: str | None = None,
        likes: int = 0,
        create_time: int | None = None,
        parent_comment_id: str | None = None,
    ) -> str:
        """A comment (or, with `parent_comment_id`, a reply) on a video; its id."""
        if video_id not in self.videos:
            self.add_video(video_id)
        comment_id = str(next(self._ids))
        self.comments[video_id].append(
            {
                "comment_id": comment_id,
                "video_id": video_id,
                "user_id": user_id or f"user-{username}",
                "unique_identifier": f"uid-{username}",
                "create_time": create_time if create_time is not None else next(self._time),
                "text": text,
                "likes": likes,
                "replies": 0,
                "owner": False,
                "liked": False,
                "pinned": False,
                "status": "PUBLIC",
                "username": username,
                "display_name": username,
                "profile_image": f"https://p16.example/{username}.jpeg",
                "parent_comment_id": parent_comment_id or video_id,  # top level: the video
            }
        )
        return comment_id

    def open_conversation(self, conversation_id: str) -> None:
        """Someone wrote to the business: it may now message this conversation."""
        self.conversations.add(conversation_id)

    # -- endpoints ---------------------------------------------------------------------------

    def comment_list(self, request: RecordedRequest) -> Response:
        q = request.query
        refused = self._refuse(request, q.get("business_id"))
        if refused:
            return refused
        video_id = q.get("video_id", "")
        if video_id not in self.videos:
            return error(40002, f"video_id is invalid: no video {video_id!r} on this account")
        cursor, max_count = _integer(q, "cursor", 0), _integer(q, "max_count", 20)
        if cursor is None or cursor < 0:
            return error(40002, "cursor must be a non-negative integer")
        if max_count is None or not 1 <= max_count <= 30:
            return error(40002, "max_count must be an integer between 1 and 30")
        top = [c for c in self.comments[video_id] if c["parent_comment_id"] == video_id]
        page = top[cursor : cursor + max_count]
        end = cursor + len(page)
        return ok({"comments": page, "cursor": end, "has_more": end < len(top)})

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
        chosen = [v for v in self.videos.values() if ids is None or v["item_id"] in ids]
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
        if parent is None:
            return error(40002, f"comment_id is invalid: no comment {comment_id} on that video")
        if not 1 <= len(text) <= 150:
            return error(40002, "text must be 1 to 150 characters")
        new_id = self.add_comment(
            video_id,
            text,
            "campaign.account",
            user_id=self.business_id,
            parent_comment_id=comment_id,
        )
        parent["replies"] += 1
        reply = next(c for c in self.comments[video_id] if c["comment_id"] == new_id)
        self.replies.append({**body, "reply_id": new_id})
        return ok({**reply, "owner": True})

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
        if body["recipient"] not in self.conversations:
            return error(40064, "The message is blocked by direct message rules.")
        message_id = f"msg-{next(self._ids)}"
        self.messages.append({**body, "message_id": message_id})
        return ok({"message": {"message_id": message_id}})

    # -- common checks -----------------------------------------------------------------------

    def _refuse(self, request: RecordedRequest, business_id: object) -> Response | None:
        token = request.headers.get("access-token")
        if not token:
            return error(40104, "access_token is empty")
        if token != self.access_token:
            return error(40105, "Access token is incorrect or has been revoked.")
        if not business_id:
            return error(40002, "business_id is required")
        if business_id != self.business_id:
            return error(40001, f"No permission to operate business_id {business_id}")
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
