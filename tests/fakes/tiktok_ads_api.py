"""A fake of TikTok's Marketing API (TikTok API for Business v1.3) for one advertiser's Spark
Ads: `/tt_video/authorize/`, `/tt_video/info/`, `/campaign/create/`, `/campaign/get/`,
`/adgroup/create/`, `/adgroup/get/`, `/adgroup/update/` (its end), `/ad/create/`, `/ad/get/`,
`/ad/status/update/` and the daily report
`/report/integrated/get/` (by ad and day, metric values as strings, paged), under
`/open_api/v1.3`.

As the API does, it takes the advertiser's token in the `Access-Token` header and answers every
request HTTP 200 with `{code, message, request_id, data}`: `0` for success; `40104` without a
token and `40105` for a wrong one; `40001` for another advertiser's id; `40002` for a missing
or malformed parameter (naming it) and for an authorization code it does not know or whose
period is over; `40007` for an unknown ad group or ad; and, over the app's limit (by default
the basic tier's 10 requests a second), `40100` "App reaches the QPS limit." with no
Retry-After. `fail_next` answers `50000` without doing anything, as `fail_at` does for one path.

Creators' posts are added with `add_post`, which gives the code a creator would paste; a code
authorizes its post once (again: `40002`, already authorized); `renew` gives the new code a
creator would paste to authorize the same post for longer. `ads` and `adgroups` are what was
made, `status` of an ad is `ENABLE` or `DISABLE`.
"""

import json
import secrets
import threading
import time
from datetime import date
from typing import Any

from tests.fakes.http_server import Clock, FakeHttpServer, RecordedRequest, Response

BASE = "/open_api/v1.3"
QPS = (10, 1.0)


def _id() -> str:
    return str(secrets.randbelow(9 * 10**18) + 10**18)


def answer(code: int, message: str, data: Any = None) -> Response:
    body = {"code": code, "message": message, "request_id": secrets.token_hex(16), "data": data}
    return Response(200, json=body if data is not None else body | {"data": {}})


class FakeTikTokAds(FakeHttpServer):
    def __init__(
        self,
        *,
        advertiser_id: str = "7000000000000000001",
        token: str = "tt-ads-token",
        rate: tuple[int, float] | None = QPS,
        today: date | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(clock=clock)
        self.advertiser_id, self.token = advertiser_id, token
        self.today = today or date.today()
        self.posts: dict[str, dict[str, Any]] = {}  # code -> the post it authorizes
        self.campaigns: dict[str, dict[str, Any]] = {}
        self.adgroups: dict[str, dict[str, Any]] = {}
        self.ads: dict[str, dict[str, Any]] = {}
        self.delivered: dict[tuple[str, date], dict[str, str]] = {}  # (ad, day) -> metrics
        self._failing: dict[str, int] = {}
        self._lock = threading.Lock()
        routes = {
            ("POST", "/tt_video/authorize/"): self.authorize,
            ("GET", "/tt_video/info/"): self.info,
            ("POST", "/campaign/create/"): self.create_campaign,
            ("GET", "/campaign/get/"): self.get_campaigns,
            ("POST", "/adgroup/create/"): self.create_adgroup,
            ("GET", "/adgroup/get/"): self.get_adgroups,
            ("POST", "/adgroup/update/"): self.update_adgroup,
            ("POST", "/ad/create/"): self.create_ad,
            ("GET", "/ad/get/"): self.get_ads,
            ("POST", "/ad/status/update/"): self.update_status,
            ("GET", "/report/integrated/get/"): self.report,
        }
        for (method, path), handler in routes.items():
            self.route(method, BASE + path, self._checked(path, handler))
        if rate is not None:
            self.rate_limit(rate[0], per=rate[1], sliding=True)

    # -- what a test sets up and reads --------------------------------------------------------

    def add_post(self, *, ends_on: date, starts_on: date | None = None) -> str:
        """A creator's post and the authorization code they would give for it."""
        code = "#" + secrets.token_urlsafe(24)
        with self._lock:
            self.posts[code] = {
                "item_id": _id(),
                "identity_id": secrets.token_hex(16),
                "starts_on": starts_on or self.today,
                "ends_on": ends_on,
                "authorized": False,
            }
        return code

    def renew(self, code: str, *, ends_on: date) -> str:
        """The new code a creator gives to authorize the post of `code` until `ends_on`."""
        renewed = "#" + secrets.token_urlsafe(24)
        with self._lock:
            post = self.posts[code]
            self.posts[renewed] = post | {"ends_on": ends_on, "authorized": False}
        return renewed

    def deliver(self, ad_id: str, day: date, **metrics: float) -> None:
        """What the ad did that day, as the reporting API will give it (values as strings)."""
        with self._lock:
            self.delivered[(ad_id, day)] = {name: str(value) for name, value in metrics.items()}

    def fail_at(self, path: str, count: int = 1) -> None:
        """The next `count` calls to `path` (`/ad/create/`) answer `50000`, doing nothing."""
        with self._lock:
            self._failing[path] = self._failing.get(path, 0) + count

    def heal(self) -> None:
        """Forget the failures not met yet, `fail_at`'s too."""
        super().heal()
        with self._lock:
            self._failing.clear()

    def throttled(self, request: RecordedRequest, retry_after: float) -> Response:
        return answer(40100, "App reaches the QPS limit.")

    def fail_next(self, count: int = 1, status: int = 200, body: Any = None,
                  headers: dict[str, str] | None = None) -> None:  # fmt: skip
        """The next `count` requests answer `50000`, doing nothing."""
        body = body or {"code": 50000, "message": "System error", "request_id": "x", "data": {}}
        super().fail_next(count, status, body, headers)

    # -- the API ------------------------------------------------------------------------------

    def authorize(self, request: RecordedRequest, body: dict[str, Any]) -> Response:
        code = body.get("auth_code")
        if not isinstance(code, str) or not code:
            return answer(40002, "auth_code: Missing data for required field.")
        with self._lock:
            post = self.posts.get(code)
            if post is None or post["ends_on"] < self.today or post["starts_on"] > self.today:
                return answer(40002, "The auth code is invalid or has expired.")
            if post["authorized"]:
                return answer(40002, "The video has been authorized to this advertiser.")
            post["authorized"] = True
        return answer(0, "OK", {})

    def info(self, request: RecordedRequest, body: dict[str, Any]) -> Response:
        with self._lock:
            post = self.posts.get(request.query.get("auth_code", ""))
            if post is None or not post["authorized"]:
                return answer(40002, "The auth code is invalid or has expired.")
            data = {
                "auth_info": {
                    "auth_start_time": f"{post['starts_on']} 00:00:00",
                    "auth_end_time": f"{post['ends_on']} 23:59:59",
                },
                "item_info": {"item_id": post["item_id"], "item_type": "VIDEO", "status": "OK"},
                "user_info": {"identity_id": post["identity_id"], "identity_type": "AUTH_CODE"},
            }
        return answer(0, "OK", data)

    def create_campaign(self, request: RecordedRequest, body: dict[str, Any]) -> Response:
        missing = _missing(body, "campaign_name", "objective_type")
        if missing:
            return missing
        with self._lock:
            campaign_id = _id()
            self.campaigns[campaign_id] = {"campaign_id": campaign_id, **body}
        return answer(0, "OK", {"campaign_id": campaign_id})

    def get_campaigns(self, request: RecordedRequest, body: dict[str, Any]) -> Response:
        return self._listing(self.campaigns, request, "campaign_name", "", "")

    def create_adgroup(self, request: RecordedRequest, body: dict[str, Any]) -> Response:
        missing = _missing(
            body, "campaign_id", "adgroup_name", "budget", "budget_mode", "schedule_type",
            "schedule_start_time", "billing_event", "optimization_goal", "pacing",
        )  # fmt: skip
        if missing:
            return missing
        if not isinstance(body["budget"], (int, float)) or body["budget"] < 20:
            return answer(40002, "budget: The daily budget must be at least 20.")
        with self._lock:
            if body["campaign_id"] not in self.campaigns:
                return answer(40007, "campaign_id: The campaign does not exist.")
            adgroup_id = _id()
            self.adgroups[adgroup_id] = {"adgroup_id": adgroup_id, **body}
        return answer(0, "OK", {"adgroup_id": adgroup_id})

    def update_adgroup(self, request: RecordedRequest, body: dict[str, Any]) -> Response:
        missing = _missing(body, "adgroup_id")
        if missing:
            return missing
        with self._lock:
            group = self.adgroups.get(body["adgroup_id"])
            if group is None:
                return answer(40007, "adgroup_id: The ad group does not exist.")
            if "schedule_end_time" in body:
                group["schedule_end_time"] = body["schedule_end_time"]
        return answer(0, "OK", {"adgroup_id": body["adgroup_id"]})

    def get_adgroups(self, request: RecordedRequest, body: dict[str, Any]) -> Response:
        return self._listing(self.adgroups, request, "adgroup_name", "campaign_id", "campaign_ids")

    def create_ad(self, request: RecordedRequest, body: dict[str, Any]) -> Response:
        missing = _missing(body, "adgroup_id", "creatives")
        if missing:
            return missing
        creatives = body["creatives"]
        if not isinstance(creatives, list) or not 1 <= len(creatives) <= 20:
            return answer(40002, "creatives: Length must be between 1 and 20.")
        made = []
        with self._lock:
            if body["adgroup_id"] not in self.adgroups:
                return answer(40007, "adgroup_id: The ad group does not exist.")
            for creative in creatives:
                posts = [p for p in self.posts.values() if p["authorized"]]
                post = next((p for p in posts if p["item_id"] == creative.get("tiktok_item_id")),
                            None)  # fmt: skip
                if creative.get("identity_type") != "AUTH_CODE" or post is None:
                    return answer(40002, "tiktok_item_id: The post is not authorized.")
                if creative.get("identity_id") != post["identity_id"]:
                    return answer(40002, "identity_id: The identity does not match the post.")
                if not (creative.get("call_to_action") or creative.get("call_to_action_id")):
                    return answer(40002, "call_to_action: Missing data for required field.")
            for creative in creatives:
                ad_id = _id()
                self.ads[ad_id] = {"ad_id": ad_id, "adgroup_id": body["adgroup_id"],
                                   "operation_status": "ENABLE", **creative}  # fmt: skip
                made.append(ad_id)
        return answer(0, "OK", {"ad_ids": made})

    def get_ads(self, request: RecordedRequest, body: dict[str, Any]) -> Response:
        return self._listing(self.ads, request, "ad_name", "adgroup_id", "adgroup_ids")

    def _listing(
        self, made: dict[str, dict[str, Any]], request: RecordedRequest, name_field: str,
        parent_field: str, parents_filter: str,
    ) -> Response:  # fmt: skip
        """What was made, filtered as the API filters a `/get/` listing: the name loosely (it
        holds the filter's), the parent by its ids."""
        filtering = _filtering(request)
        name, parents = filtering.get(name_field), filtering.get(parents_filter)
        with self._lock:
            rows = [
                row for row in made.values()
                if (not name or name in row[name_field])
                and (not parents or row[parent_field] in parents)
            ]  # fmt: skip
        return answer(0, "OK", {"list": rows, "page_info": _page(rows)})

    def update_status(self, request: RecordedRequest, body: dict[str, Any]) -> Response:
        missing = _missing(body, "ad_ids", "operation_status")
        if missing:
            return missing
        status = body["operation_status"]
        if status not in ("ENABLE", "DISABLE", "DELETE"):
            return answer(40002, "operation_status: Must be one of ENABLE, DISABLE, DELETE.")
        with self._lock:
            unknown = [a for a in body["ad_ids"] if a not in self.ads]
            if unknown:
                return answer(40007, f"ad_ids: The ad {unknown[0]} does not exist.")
            for ad_id in body["ad_ids"]:
                self.ads[ad_id]["operation_status"] = status
        return answer(0, "OK", {"ad_ids": body["ad_ids"], "status": status})

    def report(self, request: RecordedRequest, body: dict[str, Any]) -> Response:
        q = request.query
        if (q.get("report_type"), q.get("data_level")) != ("BASIC", "AUCTION_AD"):
            return answer(40002, "report_type, data_level: BASIC and AUCTION_AD are served here.")
        try:
            dimensions = json.loads(q.get("dimensions", "[]"))
            metrics = json.loads(q.get("metrics", '["spend", "impressions"]'))
            start, end = date.fromisoformat(q["start_date"]), date.fromisoformat(q["end_date"])
            page, size = int(q.get("page", "1")), int(q.get("page_size", "10"))
            filters = json.loads(q.get("filtering", "[]"))
        except (ValueError, KeyError) as exc:
            return answer(40002, f"A parameter is malformed or missing: {exc}.")
        if dimensions != ["ad_id", "stat_time_day"]:
            return answer(40002, "dimensions: ad_id and stat_time_day are served here.")
        if end < start or (end - start).days >= 30:
            return answer(40002, "end_date: At most 30 days with stat_time_day.")
        if not 1 <= size <= 1000 or page < 1:
            return answer(40002, "page_size: Must be between 1 and 1000.")
        ads = None
        for f in filters if isinstance(filters, list) else []:
            if isinstance(f, dict) and f.get("field_name") == "ad_ids":
                ads = set(json.loads(f.get("filter_value", "[]")))
        with self._lock:
            rows = [
                {
                    "dimensions": {"ad_id": ad_id, "stat_time_day": f"{day} 00:00:00"},
                    "metrics": {m: values.get(m, "0") for m in metrics},
                }
                for (ad_id, day), values in sorted(self.delivered.items())
                if start <= day <= end and (ads is None or ad_id in ads)
            ]
        pages = max(1, -(-len(rows) // size))
        info = {"page": page, "page_size": size, "total_number": len(rows), "total_page": pages}
        return answer(0, "OK", {"list": rows[(page - 1) * size : page * size], "page_info": info})

    # -- every request ------------------------------------------------------------------------

    def _checked(self, path: str, handler: Any) -> Any:
        """The token, then the advertiser, before the route's own work."""

        def checked(request: RecordedRequest) -> Response:
            with self._lock:
                if self._failing.get(path):
                    self._failing[path] -= 1
                    return answer(50000, "System error")
            token = request.headers.get("access-token", "")
            if not token:
                return answer(40104, "Access token is null.")
            if token != self.token:
                return answer(40105, "Access token is incorrect or has been revoked.")
            body = request.json if request.method == "POST" else dict(request.query)
            if not isinstance(body, dict):
                return answer(40002, "The request body is not JSON.")
            if body.get("advertiser_id") != self.advertiser_id:
                return answer(40001, "Permission error: no access to this advertiser.")
            return handler(request, body)

        return checked


def _missing(body: dict[str, Any], *names: str) -> Response | None:
    for name in names:
        if body.get(name) in (None, "", []):
            return answer(40002, f"{name}: Missing data for required field.")
    return None


def _filtering(request: RecordedRequest) -> dict[str, Any]:
    try:
        found = json.loads(request.query.get("filtering", "{}"))
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _page(rows: list[Any]) -> dict[str, int]:
    return {"page": 1, "page_size": max(len(rows), 10), "total_number": len(rows),
            "total_page": 1}  # fmt: skip
