"""Spark Ads through TikTok's Marketing API (TikTok API for Business, `{api_url}/open_api/v1.3`,
the advertiser's long-lived token in the `Access-Token` header).

A creator's authorization code authorizes their post on the ad account (`POST
/tt_video/authorize/`, which answers nothing), then `GET /tt_video/info/` gives the post's
`item_id` and the identity that posted it. A boost is an ad group with a daily budget under
the campaign's TikTok campaign (`/campaign/create/`, `/adgroup/create/`) and one ad of the post
(`/ad/create/`, identity type `AUTH_CODE`, the post as `tiktok_item_id`); `/ad/status/update/`
pauses and resumes it. Rally names what it makes (`rally-<slug>`, `rally-boost-<id>`) and looks
it up by name (`/campaign/get/`, `/adgroup/get/`, `/ad/get/` with `filtering`) before making it
again.

Every answer is HTTP 200 with `{code, message, request_id, data}`: `code` 0 is success. Rate
limits (10 requests a second per app on the basic tier) answer `40100` with no Retry-After,
which is transient, like `50000`-`51000`; `40102`, `40104` and `40105` mean the token is
expired, missing or revoked (nothing can go until it is replaced); any other code is this
request's own, with TikTok's message.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from pydantic import Field, SecretStr

from config.settings import RallySettings
from integrations.crm import RateLimit, send
from integrations.errors import PermanentError, TransientError, UnavailableError

API_URL = "https://business-api.tiktok.com"
VERSION = "/open_api/v1.3"
RATE = (10, 1.0)  # the basic tier: 10 requests a second per app
PASSING = {40100, 40132, 50000, 50002, 51000, 61000}  # too frequent; TikTok's own failures
TOKEN = {40102, 40104, 40105}  # expired, missing, revoked
ALREADY_AUTHORIZED = "has been authorized to this advertiser"


# The reporting API's metric names -> what Rally keeps them as (`store.models.PaidMetrics`).
METRICS = {
    "impressions": "impressions",
    "reach": "reach",
    "clicks": "clicks",
    "spend": "spend_cents",
    "conversion": "conversions",
    "video_play_actions": "video_plays",
    "video_watched_2s": "watched_2s",
    "video_watched_6s": "watched_6s",
    "average_video_play": "average_play_seconds",
    "video_views_p25": "watched_25",
    "video_views_p50": "watched_50",
    "video_views_p75": "watched_75",
    "video_views_p100": "watched_100",
}
REPORT_DAYS = 30  # the most days one daily report may span


@dataclass(frozen=True)
class AuthorizedPost:
    """A post authorized on the ad account: the identity that posted it, and the post."""

    identity_id: str
    identity_type: str
    item_id: str


class TikTokAdsSettings(RallySettings):
    """`RALLY_TIKTOK_ADS_*`: the Marketing API, and the advertiser's long-lived access token."""

    env_prefix = "RALLY_TIKTOK_ADS_"

    api_url: str = Field(API_URL, description="TikTok Marketing API")
    access_token: SecretStr = Field(
        SecretStr(""), description="TikTok Marketing API access token (the advertiser's)"
    )


class TikTokAds:
    """One advertiser's Spark Ads calls (`tasks.amplification.boosts.AdAccount`)."""

    where = "TikTok Marketing API"

    def __init__(
        self,
        client: httpx.Client,
        *,
        api_url: str,
        access_token: str,
        advertiser_id: str,
        limit: RateLimit | None = None,
    ) -> None:
        if not access_token:
            raise UnavailableError(f"{self.where}: set RALLY_TIKTOK_ADS_ACCESS_TOKEN")
        self.client, self.limit = client, limit
        self.advertiser_id = advertiser_id
        self._base = api_url.rstrip("/") + VERSION
        self._token = access_token

    def authorize(self, code: str) -> AuthorizedPost:
        """Authorize the creator's post with their code; the post as the ad account sees it."""
        try:
            self._call("POST", "/tt_video/authorize/", json={"auth_code": code})
        except PermanentError as exc:
            if ALREADY_AUTHORIZED not in str(exc):
                raise  # authorized by a try whose answer was lost, or before: go on to the post
        data = self._call("GET", "/tt_video/info/", params={"auth_code": code})
        item, user = data.get("item_info") or {}, data.get("user_info") or {}
        if not item.get("item_id") or not user.get("identity_id"):
            raise PermanentError(f"{self.where}: the authorized post has no item or identity")
        return AuthorizedPost(
            str(user["identity_id"]), str(user.get("identity_type") or "AUTH_CODE"),
            str(item["item_id"]),
        )  # fmt: skip

    def campaign_named(self, name: str) -> str | None:
        found = self._listed("/campaign/get/", {"campaign_name": name}, "campaign_name", name)
        return str(found["campaign_id"]) if found else None

    def create_campaign(self, name: str) -> str:
        body = {"campaign_name": name, "objective_type": "REACH"}
        data = self._call(
            "POST", "/campaign/create/", json=body | {"budget_mode": "BUDGET_MODE_INFINITE"}
        )
        return str(data["campaign_id"])

    def create_adgroup(
        self, campaign_id: str, name: str, daily_budget_cents: int, start: date, end: date
    ) -> str:
        data = self._call(
            "POST",
            "/adgroup/create/",
            json={
                "campaign_id": campaign_id,
                "adgroup_name": name,
                "budget_mode": "BUDGET_MODE_DAY",
                "budget": round(daily_budget_cents / 100, 2),
                "schedule_type": "SCHEDULE_START_END",
                "schedule_start_time": f"{start} 00:00:00",
                "schedule_end_time": f"{end} 23:59:59",
                "billing_event": "CPM",
                "optimization_goal": "REACH",
                "pacing": "PACING_MODE_SMOOTH",
                "placement_type": "PLACEMENT_TYPE_NORMAL",
                "placements": ["PLACEMENT_TIKTOK"],
            },
        )
        return str(data["adgroup_id"])

    def extend_adgroup(self, adgroup_id: str, end: date) -> None:
        """Move the ad group's last day to `end` (a creator's renewed authorization)."""
        self._call(
            "POST", "/adgroup/update/",
            json={"adgroup_id": adgroup_id, "schedule_end_time": f"{end} 23:59:59"},
        )  # fmt: skip

    def adgroup_named(self, campaign_id: str, name: str) -> str | None:
        found = self._listed(
            "/adgroup/get/", {"campaign_ids": [campaign_id], "adgroup_name": name},
            "adgroup_name", name,
        )  # fmt: skip
        return str(found["adgroup_id"]) if found else None

    def ad_named(self, adgroup_id: str, name: str) -> str | None:
        found = self._listed(
            "/ad/get/", {"adgroup_ids": [adgroup_id], "ad_name": name}, "ad_name", name
        )
        return str(found["ad_id"]) if found else None

    def create_ad(self, adgroup_id: str, name: str, post: AuthorizedPost) -> str:
        creative = {
            "ad_name": name,
            "identity_type": post.identity_type,
            "identity_id": post.identity_id,
            "tiktok_item_id": post.item_id,
            "ad_format": "SINGLE_VIDEO",
            "call_to_action": "LEARN_MORE",
        }
        data = self._call(
            "POST", "/ad/create/", json={"adgroup_id": adgroup_id, "creatives": [creative]}
        )
        ads = data.get("ad_ids") or []
        if not ads:
            raise TransientError(f"{self.where}: the ad was made without an id")
        return str(ads[0])

    def set_status(self, ad_id: str, *, running: bool) -> None:
        status = "ENABLE" if running else "DISABLE"
        self._call(
            "POST", "/ad/status/update/", json={"ad_ids": [ad_id], "operation_status": status}
        )

    def report(self, ad_ids: Sequence[str], start: date, end: date) -> list[dict[str, Any]]:
        """Each ad's figures for each day from `start` to `end` (at most `REPORT_DAYS`), as
        Rally keeps them: `ad_id`, `day`, and `METRICS`' values (money in cents)."""
        params = {
            "report_type": "BASIC",
            "data_level": "AUCTION_AD",
            "dimensions": json.dumps(["ad_id", "stat_time_day"]),
            "metrics": json.dumps(list(METRICS)),
            "start_date": str(start),
            "end_date": str(end),
            "filtering": json.dumps(
                [
                    {
                        "field_name": "ad_ids",
                        "filter_type": "IN",
                        "filter_value": json.dumps(list(ad_ids)),
                    }
                ]
            ),
            "page_size": 1000,
        }
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            data = self._call("GET", "/report/integrated/get/", params=params | {"page": page})
            for row in data.get("list") or []:
                try:
                    found.append(_daily(row))
                except (ValueError, AttributeError):
                    said = f"{self.where}: a report row without its day: {str(row)[:200]}"
                    raise PermanentError(said) from None
            pages = (data.get("page_info") or {}).get("total_page") or 1
            if page >= int(pages):
                return found
            page += 1

    def _listed(
        self, path: str, filtering: Mapping[str, Any], field: str, name: str
    ) -> dict[str, Any] | None:
        """The first of a listing whose `field` is `name` exactly (TikTok's filter matches
        names loosely)."""
        data = self._call(
            "GET", path, params={"filtering": json.dumps(filtering), "page_size": 1000}
        )
        rows = data.get("list") or []
        return next((r for r in rows if isinstance(r, dict) and r.get(field) == name), None)

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One call for the advertiser; its `data`, or the error its `code` means."""
        if method == "GET":
            kwargs["params"] = {"advertiser_id": self.advertiser_id, **kwargs.get("params", {})}
        else:
            kwargs["json"] = {"advertiser_id": self.advertiser_id, **kwargs.get("json", {})}
        response = send(
            self.client, self.limit, method, self._base + path, where=self.where,
            headers={"Access-Token": self._token}, **kwargs,
        )  # fmt: skip
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(f"{self.where}: HTTP {response.status_code}")
        if not isinstance(answer, dict) or not isinstance(answer.get("code"), int):
            raise TransientError(f"{self.where}: an answer that is not the API's (HTTP "
                                 f"{response.status_code})")  # fmt: skip
        code, message = answer["code"], str(answer.get("message") or "")
        if code == 0:
            data = answer.get("data")
            return data if isinstance(data, dict) else {}
        said = f"{self.where}: {message} (code {code}, request {answer.get('request_id', '')})"
        if code in PASSING:
            if code in (40100, 40132) and self.limit is not None:
                self.limit.pause(1.0)  # QPS: the next second is another
            raise TransientError(said)
        if code in TOKEN:
            raise UnavailableError(f"{said}; replace RALLY_TIKTOK_ADS_ACCESS_TOKEN")
        raise PermanentError(said)


def _daily(row: Mapping[str, Any]) -> dict[str, Any]:
    """One report row as Rally keeps it; a value TikTok leaves empty ("-") counts as none."""
    dimensions, metrics = row.get("dimensions") or {}, row.get("metrics") or {}
    day = datetime.strptime(str(dimensions.get("stat_time_day", ""))[:10], "%Y-%m-%d").date()
    kept: dict[str, Any] = {"ad_id": str(dimensions.get("ad_id", "")), "day": day}
    for name, field in METRICS.items():
        try:
            value = Decimal(str(metrics.get(name) or 0))
        except InvalidOperation:
            value = Decimal(0)
        if field == "spend_cents":
            kept[field] = int((value * 100).to_integral_value())
        elif field == "average_play_seconds":
            kept[field] = float(value)
        else:
            kept[field] = int(value)
    return kept
