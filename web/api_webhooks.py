"""The API's webhook subscriptions, `/campaigns/{slug}/webhooks`: what `rally webhooks` does,
for a token with `webhooks:read` or `webhooks:write`. A token may subscribe only to event types
whose scope it holds (`lead.created` needs `leads:read`), so a subscription never carries more
than its maker could read. A new subscription's secret is in the first answer only; a retry with
the same Idempotency-Key gets that answer without it. A change takes `If-Match` with the ETag
its GET gave: a subscription changed since is 412, and nothing is changed.
"""

from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request
from fastapi.responses import JSONResponse, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlmodel import Session

from config.errors import RallyError
from store.crypto import Sealer
from store.db import transaction
from store.models import Campaign, WebhookSubscription
from tasks.api.idempotency import Answer
from tasks.api.tokens import Granted
from web.api_v1 import (
    IdempotencyKey,
    IfMatch,
    Page,
    Paging,
    Refused,
    idempotently,
    matches,
    needs,
    operation,
    paged,
    reading,
    strong_tag,
)
from web.deps import app_state_of

MAX_TYPES = 20
SubscriptionId = Annotated[
    int, Path(ge=1, le=2**31 - 1, description="A webhook subscription's id (`/webhooks`)")
]
ONE = {"404": "No such campaign, or no such webhook subscription in it"}
UNSET = "Webhooks are not set up on this Rally: its RALLY_SECRET_KEY is not set"
# As `check_url` takes them: https, or http to this machine; printable ASCII, no user name.
RECEIVER = (
    r"^(https://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])|http://(localhost|127\.0\.0\.1))"
    r"(:[0-9]{1,5})?([/?#][!-~]*)?$"
)


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=8,
        max_length=2000,
        pattern=RECEIVER,
        description="https, or http to Rally's machine only",
    )
    event_types: list[str] = Field(
        default_factory=list,
        max_length=MAX_TYPES,
        description="Event types to post; none: every type this token's scopes can read",
    )
    description: str = Field("", max_length=200, description="What it is for")


class SubscriptionChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        None,
        min_length=8,
        max_length=2000,
        pattern=RECEIVER,
    )
    event_types: list[str] | None = Field(None, min_length=1, max_length=MAX_TYPES)
    description: str | None = Field(None, max_length=200)
    enabled: bool | None = Field(None, description="false turns it off; true on again")


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: AwareDatetime | None = Field(
        None, description="Also post again what was delivered since then"
    )


def add_webhook_routes(api: FastAPI) -> None:
    """The subscription endpoints, on the API app `api`."""

    @api.get(
        "/campaigns/{slug}/webhooks",
        **operation("webhooks:read", "webhooks", "A campaign's webhook subscriptions"),
    )
    def webhooks(
        request: Request,
        grant: Annotated[Granted, needs("webhooks:read")],
        slug: str,
        paging: Paging,
    ) -> Page:
        """Each subscription by id: URL, event types, state, deliveries waiting and given up
        on (never its secret)."""
        from tasks.webhooks.subscriptions import shown, subscriptions_of

        with reading(request, grant, slug) as (session, found):
            rows = [shown(s, found.slug, c) for s, _, c in subscriptions_of(session, found.id)]
        return paged(rows, lambda r: r["id"], paging)

    @api.get(
        "/campaigns/{slug}/webhooks/{subscription_id}",
        **operation("webhooks:read", "webhooks", "One webhook subscription", problems=ONE),
    )
    def webhook(
        request: Request,
        response: Response,
        grant: Annotated[Granted, needs("webhooks:read")],
        slug: str,
        subscription_id: SubscriptionId,
    ) -> dict[str, Any]:
        """One subscription's settings; its ETag is what a change's If-Match names."""
        with reading(request, grant, slug) as (session, found):
            view = _shown(session, found, subscription_id)
        response.headers["ETag"] = strong_tag(view)
        return view

    @api.post(
        "/campaigns/{slug}/webhooks",
        status_code=201,
        **operation(
            "webhooks:write",
            "webhooks",
            "Subscribe a URL to a campaign's events",
            problems={"503": UNSET},
        ),
    )
    def subscribe(
        request: Request,
        grant: Annotated[Granted, needs("webhooks:write")],
        slug: str,
        body: SubscriptionIn,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        """A new subscription, posted events signed per the Standard Webhooks specification
        with the `secret` in this answer, shown this once."""
        from tasks.webhooks.subscriptions import add_subscription, check_event_types, shown

        with reading(request, grant, slug) as (_, found):
            campaign_id = found.id
        types = check_event_types(body.event_types, grant.scopes)
        state = app_state_of(request)

        def work() -> Answer:
            sealer = _sealer(state.settings.secret_key.get_secret_value())
            with transaction(state.engine) as session:
                campaign = session.get(Campaign, campaign_id)
                assert campaign is not None
                made = add_subscription(
                    session,
                    campaign,
                    url=body.url,
                    event_types=types,
                    description=body.description,
                    sealer=sealer,
                    actor=grant.actor,
                    now=state.clock(),
                )
                return Answer(201, shown(made.subscription, slug, {}) | {"secret": made.secret})

        def without_secret(body: dict[str, Any]) -> dict[str, Any]:
            return body | {"secret": None}  # not kept, even for a day

        payload = body.model_dump()
        return idempotently(request, grant, idempotency_key, payload, work, kept=without_secret)

    @api.patch(
        "/campaigns/{slug}/webhooks/{subscription_id}",
        **operation(
            "webhooks:write",
            "webhooks",
            "Change a subscription, or turn it off and on",
            problems=ONE | {"412": "If-Match is not the subscription's ETag: it changed since"},
        ),
    )
    def change(
        request: Request,
        grant: Annotated[Granted, needs("webhooks:write")],
        slug: str,
        subscription_id: SubscriptionId,
        body: SubscriptionChange,
        if_match: IfMatch = None,
    ) -> JSONResponse:
        """Change the URL, event types or description, or `enabled`; what waited for a
        subscription turned on again goes out, oldest first."""
        from tasks.webhooks.subscriptions import check_event_types, update_subscription

        with reading(request, grant, slug) as (_, found):
            campaign_id = found.id
        types = None
        if body.event_types is not None:
            types = check_event_types(body.event_types, grant.scopes)
        state = app_state_of(request)
        with transaction(state.engine) as session:
            campaign = session.get(Campaign, campaign_id)
            assert campaign is not None
            now_shown = _shown(session, campaign, subscription_id)
            if if_match is not None and not matches(if_match, strong_tag(now_shown)):
                raise Refused(
                    412, "the subscription changed since it was read: read it again (GET)"
                )
            if types is None:
                _readable_by(grant, now_shown["event_types"])
            update_subscription(
                session,
                subscription_id,
                url=body.url,
                event_types=types,
                description=body.description,
                enabled=body.enabled,
                actor=grant.actor,
                now=state.clock(),
            )
            session.flush()
            after = _shown(session, campaign, subscription_id)
        return JSONResponse(after, headers={"ETag": strong_tag(after)})

    @api.delete(
        "/campaigns/{slug}/webhooks/{subscription_id}",
        status_code=204,
        **operation("webhooks:write", "webhooks", "Remove a subscription for good", problems=ONE),
    )
    def remove(
        request: Request,
        grant: Annotated[Granted, needs("webhooks:write")],
        slug: str,
        subscription_id: SubscriptionId,
    ) -> Response:
        """Nothing more is posted to it; deliveries waiting for it are withdrawn."""
        from tasks.webhooks.subscriptions import remove_subscription

        with reading(request, grant, slug) as (session, found):
            _owned(session, found, subscription_id)
        state = app_state_of(request)
        with transaction(state.engine) as session:
            remove_subscription(session, subscription_id, actor=grant.actor, now=state.clock())
        return Response(status_code=204)

    @api.post(
        "/campaigns/{slug}/webhooks/{subscription_id}/replays",
        **operation(
            "webhooks:write", "webhooks", "Post again what a subscription missed", problems=ONE
        ),
    )
    def replay_deliveries(
        request: Request,
        grant: Annotated[Granted, needs("webhooks:write")],
        slug: str,
        subscription_id: SubscriptionId,
        body: ReplayIn,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        """Queue again the deliveries given up on, and those delivered since `since`, each
        with its first webhook-id (`rally webhooks replay`)."""
        from tasks.webhooks.subscriptions import replay

        with reading(request, grant, slug) as (session, found):
            _readable_by(grant, _owned(session, found, subscription_id).event_types)
        state = app_state_of(request)

        def work() -> Answer:
            since: datetime | None = body.since
            with transaction(state.engine) as session:
                queued = replay(
                    session, subscription_id, since=since, actor=grant.actor, now=state.clock()
                )
            return Answer(200, {"queued_again": queued})

        payload = body.model_dump(mode="json")
        return idempotently(request, grant, idempotency_key, payload, work)

    @api.post(
        "/campaigns/{slug}/webhooks/{subscription_id}/tests",
        status_code=202,
        **operation("webhooks:write", "webhooks", "Queue a test delivery", problems=ONE),
    )
    def test_delivery(
        request: Request,
        grant: Annotated[Granted, needs("webhooks:write")],
        slug: str,
        subscription_id: SubscriptionId,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        """A `webhook.test` delivery, posted with the next delivery run (within a minute
        under `rally serve`)."""
        from tasks.webhooks.subscriptions import send_test

        with reading(request, grant, slug) as (session, found):
            _owned(session, found, subscription_id)
        state = app_state_of(request)

        def work() -> Answer:
            with transaction(state.engine) as session:
                payload = send_test(session, subscription_id, actor=grant.actor, now=state.clock())
            return Answer(202, {"webhook_id": payload["id"], "type": payload["type"]})

        return idempotently(request, grant, idempotency_key, {}, work)


def _readable_by(grant: Granted, event_types: list[str]) -> None:
    """403 unless the token may read every event type a subscription carries: otherwise a
    token made for webhooks alone could send people's data somewhere else, or again."""
    from tasks.webhooks.subscriptions import check_event_types

    try:
        check_event_types(event_types, grant.scopes)
    except RallyError as exc:
        raise Refused(
            403, f"the subscription carries events this token may not read: {exc}"
        ) from None


def _owned(session: Session, campaign: Campaign, subscription_id: int) -> WebhookSubscription:
    """The campaign's subscription `subscription_id`, or 404 (another campaign's too)."""
    from tasks.webhooks.subscriptions import subscription

    try:
        found = subscription(session, subscription_id)
    except RallyError:
        found = None
    if found is None or found.campaign_id != campaign.id:
        raise Refused(404, f"no webhook subscription {subscription_id} in this campaign")
    return found


SETTINGS = ("id", "campaign", "url", "event_types", "description", "enabled", "disabled_reason")


def _shown(session: Session, campaign: Campaign, subscription_id: int) -> dict[str, Any]:
    """The subscription's settings: what a change sets, and so what its ETag stands for (not
    its deliveries, which move on by themselves; the list shows those)."""
    from tasks.webhooks.subscriptions import shown

    found = _owned(session, campaign, subscription_id)
    whole = shown(found, campaign.slug, {})
    return {name: whole[name] for name in SETTINGS} | {"created_at": whole["created_at"]}


def _sealer(key: str) -> Sealer:
    try:
        return Sealer(key)
    except RallyError:
        raise Refused(503, UNSET) from None
