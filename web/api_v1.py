"""Rally's REST API, version 1, under `/api/v1`: for the systems campaigns plug into Rally (n8n,
Zapier, a CRM, a data team's scripts). Each request carries an API token (`rally tokens
create`) as `Authorization: Bearer rally_...`; each operation names the scope it needs.
Answers are JSON; errors are RFC 9457 problem details (`application/problem+json`) that name
the field at fault. Lists are paged by an opaque cursor. Its OpenAPI document is served at
`/api/v1/openapi.json`.

Built on the same service functions as the CLI, so `GET /api/v1/campaigns/SLUG` and `rally
campaign show SLUG --json` give the same data.
"""

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from sqlalchemy import Engine, bindparam
from sqlmodel import Session, col, select
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config.errors import RallyError
from store.db import transaction
from store.models import (
    Campaign,
    Creative,
    CreativeDraft,
    CreativeStatus,
    FollowUpStatus,
    ReviewTask,
)
from tasks.api.idempotency import Answer, KeyRefused, abandon, begin, finish, request_hash
from tasks.api.limits import Quota, TokenLimits
from tasks.api.tokens import Granted, TokenRefused, authenticate, record_use
from tasks.campaigns.campaign import campaign_overview, list_campaigns, roster
from web.deps import app_state_of
from web.pages import bounded_body, page_response

API_PREFIX = "/api/v1"
PROBLEM = "application/problem+json"
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    412: "Precondition Failed",
    429: "Too Many Requests",
    413: "Content Too Large",
    422: "Unprocessable Content",
    503: "Service Unavailable",
}
bearer = HTTPBearer(auto_error=False, description="An API token from `rally tokens create`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def problem(
    status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """An RFC 9457 problem details answer."""
    body = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status}
    body |= {"detail": detail, **extra}
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="rally"'
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


class Refused(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers


def granted(
    request: Request, credentials: HTTPAuthorizationCredentials | None, scope: str
) -> Granted:
    """What the request's token allows for `scope` (any campaign yet: `reading` keeps a
    campaign's token to its own), within the token's rate, or a refusal."""
    state = app_state_of(request)
    secret = credentials.credentials if credentials else None
    now = state.clock()
    with transaction(state.engine, write=False) as session:
        grant = authenticate(session, secret, scope=scope, now=now)
    record_use(state.engine, grant, now)
    limits: TokenLimits = request.scope[LIMITS_KEY]
    quota = limits.take(grant.token_id, now.timestamp())
    request.state.quota, request.state.grant = quota, grant
    if not quota.allowed:
        raise over_rate(quota)
    return grant


def over_rate(quota: Quota) -> Refused:
    headers = quota.headers() | {"Retry-After": str(quota.reset_seconds)}
    return Refused(429, f"over {quota.limit} requests a minute for this token", headers)


def keep_answer(request: Request, until: datetime | None = None) -> None:
    """Let this read's answer be kept and given again to the same token for the same URL
    while the store is unchanged (`web.kept_reads`), until `until` if given: for a route
    whose answer depends on the store alone, or also on the time only up to `until`."""
    request.state.kept_until = until or datetime.max.replace(tzinfo=UTC)


class RateAndValidators:
    """Every answer to a token's request says how much of its rate is left; a read's 200
    carries an ETag of its body (or the strong one its route gave it), and one asked with
    `If-None-Match` holding that tag is 304 without a body. Plain ASGI: it holds only the
    read's body, where a `BaseHTTPMiddleware` costs a task and a stream per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        body: list[bytes] = []

        async def answering(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                quota = scope.get("state", {}).get("quota")
                if quota is not None:
                    MutableHeaders(scope=message).update(quota.headers())
                if scope["method"] == "GET" and message["status"] == 200:
                    held = message  # sent once the whole body is here, with its tag
                    return
            elif held is not None:
                body.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                start, message = tagged(scope, held, b"".join(body))
                await send(start)
            await send(message)

        await self.app(scope, receive, answering)


def tagged(scope: Scope, start: Message, body: bytes) -> tuple[Message, Message]:
    """A read's answer (its start and its whole body) with its ETag: 304 and no body, keeping
    only the rate's headers, when the client's `If-None-Match` holds the tag."""
    tag = Headers(scope=start).get("etag") or (f'W/"{hashlib.sha256(body).hexdigest()[:32]}"')
    asked = Headers(scope=scope).get("if-none-match", "")
    held = {t.strip().removeprefix("W/") for t in asked.split(",")}
    if tag.removeprefix("W/") in held or "*" in held:
        kept = [(k, v) for k, v in start["headers"] if k.lower().startswith(b"ratelimit")]
        start, body = {**start, "status": 304, "headers": kept}, b""
    MutableHeaders(scope=start)["etag"] = tag
    return start, {"type": "http.response.body", "body": body}


def _field(error: dict[str, Any]) -> str:
    """The field a validation error is about, as the client named it (`body` for a body that
    is not JSON at all)."""
    if error.get("type") == "json_invalid":
        return "body"
    return ".".join(str(part) for part in error["loc"][1:]) or str(error["loc"][0])


def needs(scope: str) -> Any:
    """The dependency that checks the request's token for `scope` before anything else of the
    request is read (a request without a good token is 401 or 403 whatever else is wrong)."""

    def grant_for(request: Request, credentials: Credentials) -> Granted:
        return granted(request, credentials, scope)

    return Depends(grant_for)


def engine_of(request: Request) -> Engine:
    return app_state_of(request).engine


def public_url(request: Request) -> str:
    return app_state_of(request).settings.public_url


@contextmanager
def reading(request: Request, grant: Granted, slug: str) -> Iterator[tuple[Session, Campaign]]:
    """A read-only session and the campaign `slug`, once the grant covers that campaign (looked
    up after the token was checked, so no one learns which campaigns exist without one)."""
    with transaction(engine_of(request), write=False) as session:
        found = session.exec(_campaign_by_slug(), params={"b_slug": slug}).first()
        if found is None:
            raise Refused(404, f"no campaign {slug!r}")
        grant.check_campaign(found.id)
        yield session, found


@cache
def _campaign_by_slug() -> Any:
    """A campaign by its slug, as a statement built once: most requests ask."""
    return select(Campaign).where(col(Campaign.slug) == bindparam("b_slug"))


LIMITS_KEY = "rally.token_limits"  # where a request carries its app's `TokenLimits`


def create_api() -> FastAPI:
    """The API as its own app, mounted at `/api/v1` by `web.app.create_app`, which gives each
    request the app's state and its tokens' rate limits."""
    api = FastAPI(
        title="Rally API",
        version="1",
        summary="Campaigns, creators, reviews, events and leads of Rally's creator campaigns.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    api.add_middleware(BoundedBody)

    api.add_middleware(RateAndValidators)

    api.openapi = lambda: document(api)  # type: ignore[method-assign]

    @api.get("/docs", include_in_schema=False)
    def docs(request: Request) -> Response:
        """The document as a page to read: each operation, its scope, parameters, body and
        answers, grouped by resource (no script: it is the OpenAPI document, rendered)."""
        return page_response(request, "api_docs.html", docs_of(document(api)))

    @api.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> JSONResponse:
        return problem(exc.status, exc.detail, exc.headers)

    @api.exception_handler(TokenRefused)
    async def token_refused(request: Request, exc: TokenRefused) -> JSONResponse:
        return problem(exc.status, str(exc))

    @api.exception_handler(KeyRefused)
    async def key_refused(request: Request, exc: KeyRefused) -> JSONResponse:
        return problem(exc.status, exc.detail)

    @api.exception_handler(RallyError)
    async def rally_error(request: Request, exc: RallyError) -> JSONResponse:
        return problem(404 if str(exc).startswith("no ") else 400, str(exc))

    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field(e), "detail": e["msg"]} for e in exc.errors()]
        fields = ", ".join(e["field"] for e in errors)
        return problem(400, f"not valid: {fields}", errors=errors)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail))

    @api.get("/campaigns", **operation("campaign:read", "campaigns", "List campaigns"))
    def campaigns(
        request: Request, grant: Annotated[Granted, needs("campaign:read")], paging: Paging
    ) -> Page:
        """The campaigns this token may read, by slug."""
        keep_answer(request)
        with transaction(engine_of(request), write=False) as session:
            rows = list_campaigns(session)
            if grant.campaign_id is not None:  # a campaign's own token: that campaign only
                own = session.get(Campaign, grant.campaign_id)
                rows = [r for r in rows if own is not None and r["slug"] == own.slug]
        return paged(rows, lambda r: r["slug"], paging)

    @api.get(
        "/campaigns/{slug}",
        **operation("campaign:read", "campaigns", "One campaign: terms, KPIs, budget, sprint plan"),
    )
    def campaign(
        request: Request, grant: Annotated[Granted, needs("campaign:read")], slug: str
    ) -> dict[str, Any]:
        """What `rally campaign show SLUG --json` prints but its roster, which
        `/campaigns/{slug}/creators` pages through."""
        keep_answer(request)
        with reading(request, grant, slug) as (session, found):
            return campaign_overview(
                session, found.slug, public_url=public_url(request), with_roster=False
            )

    @api.get(
        "/campaigns/{slug}/sprint",
        **operation("campaign:read", "campaigns", "Where the sprint stands: week, milestones"),
    )
    def sprint(
        request: Request, grant: Annotated[Granted, needs("campaign:read")], slug: str
    ) -> dict[str, Any]:
        """What `rally sprint status SLUG --json` prints: the week and phase, the milestones
        with their status and why, the calendar of steps, who is held out."""
        from tasks.sprint.state import sprint_status

        with reading(request, grant, slug) as (session, found):
            return sprint_status(session, found.slug, today=app_state_of(request).clock())

    @api.get(
        "/campaigns/{slug}/creators",
        **operation("creators:read", "creators", "A campaign's active creators"),
    )
    def creators(
        request: Request,
        grant: Annotated[Granted, needs("creators:read")],
        slug: str,
        paging: Paging,
    ) -> Page:
        """Each creator's terms, codes and tracking link, by handle (`rally creators list`)."""
        after = cursor_of(paging, two_texts)
        keep_answer(request)
        with reading(request, grant, slug) as (session, found):
            rows = roster(
                session,
                found,
                public_url=public_url(request),
                after=(str(after[0]), str(after[1])) if after else None,
                limit=paging.limit + 1,
            )
        return page_of(rows, lambda r: [r["handle"], r["platform"]], paging.limit)

    @api.get(
        "/campaigns/{slug}/briefs",
        **operation("briefs:read", "briefs", "Each creator's newest brief and its delivery"),
    )
    def briefs(
        request: Request,
        grant: Annotated[Granted, needs("briefs:read")],
        slug: str,
        paging: Paging,
    ) -> Page:
        """Per active creator, by handle: the newest brief's version, its email's state, when it
        was sent, acknowledged and reminded (`rally briefs status`). The brief's link is left
        out: it is the creator's own key to their page."""
        from tasks.briefs.status import brief_status

        keep_answer(request)
        with reading(request, grant, slug) as (session, found):
            rows = brief_status(session, found.slug, public_url=public_url(request))
        rows = [{k: v for k, v in row.items() if k != "link"} for row in rows]
        return paged(rows, lambda r: r["handle"], paging)

    @api.get(
        "/campaigns/{slug}/creatives",
        **operation("creatives:read", "creatives", "A campaign's creatives"),
    )
    def creatives(
        request: Request,
        grant: Annotated[Granted, needs("creatives:read")],
        slug: str,
        query: Annotated[CreativesQuery, Query()],
    ) -> Page:
        """Each creative by id: its creator, status, version, the review tier it waits on and
        where it was posted (`rally creatives list`); `status` keeps one status."""
        from tasks.review.views import creatives_of

        keep_answer(request)
        with reading(request, grant, slug) as (session, found):
            rows = creatives_of(session, found, status=query.status)
        return paged(rows, lambda r: r["id"], query)

    @api.get(
        "/campaigns/{slug}/review-tasks",
        **operation("reviews:read", "reviews", "A campaign's open review tasks"),
    )
    def review_tasks(
        request: Request,
        grant: Annotated[Granted, needs("reviews:read")],
        slug: str,
        paging: Paging,
    ) -> Page:
        """Open tasks by id, each with its tier, group, deadline and whether it is overdue."""
        from tasks.review.queue import review_queue

        after, now = cursor_of(paging, an_id), app_state_of(request).clock()
        with reading(request, grant, slug) as (session, found):
            rows = review_queue(
                session,
                now=now,
                campaign_id=found.id,
                after=after,
                limit=paging.limit + 1,
            )
        due = [
            datetime.fromisoformat(r["due_at"]) for r in rows if r["due_at"] and not r["overdue"]
        ]
        keep_answer(request, until=min(due, default=None))  # until the next task falls overdue
        return page_of(rows, lambda r: r["task"], paging.limit)

    @api.get(
        "/campaigns/{slug}/leads",
        **operation("leads:read", "leads", "A campaign's leads with consent and sync state"),
    )
    def leads(
        request: Request, grant: Annotated[Granted, needs("leads:read")], slug: str, paging: Paging
    ) -> Page:
        """Each lead by id: contact details, consent, source, and each destination's state."""
        from tasks.leads.status import list_leads

        after = cursor_of(paging, an_id)
        keep_answer(request)
        with reading(request, grant, slug) as (session, found):
            rows = list_leads(session, found, after=after, limit=paging.limit + 1)
        return page_of(rows, lambda r: r["id"], paging.limit)

    @api.post(
        "/campaigns/{slug}/events",
        **operation("events:write", "events", "Send a campaign's engagement events"),
    )
    def ingest_events(
        request: Request,
        grant: Annotated[Granted, needs("events:write")],
        slug: str,
        body: EventsIn,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        """Store the campaign's events, each once (by `source` and `external_id`, so a
        redelivered event is counted as repeated, not stored again). Bad records are listed by
        their place and field and the rest kept. The rules run on them in their next pass
        (every minute under `rally serve`). Records are those of `rally events ingest`."""
        from tasks.engagement.events import ingest

        with reading(request, grant, slug) as (_, found):
            campaign_id = found.id

        def work() -> Answer:
            records = (
                (f"event {i + 1}", {"campaign": slug, **r}) for i, r in enumerate(body.events)
            )
            state = app_state_of(request)
            report = ingest(state.engine, records, now=state.clock(), campaign_id=campaign_id)
            return Answer(
                200,
                {
                    "received": report.received,
                    "stored": report.stored,
                    "repeated": report.repeated,
                    "errors": [
                        {"record": e.where, "field": e.field, "detail": e.message}
                        for e in report.errors
                    ],
                },
            )

        payload = body.model_dump(mode="json")
        return idempotently(request, grant, idempotency_key, payload, work)

    @api.post(
        "/campaigns/{slug}/forget-requests",
        **operation("leads:write", "leads", "Forget a lead: erase them here and everywhere"),
    )
    def forget_lead(
        request: Request,
        grant: Annotated[Granted, needs("leads:write")],
        slug: str,
        body: ForgetIn,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        """Erase a person's data here (a tombstone stays) and queue their deletion at each
        destination that holds them, as `rally leads forget` does; the audit log names the
        token. Only a lead of this campaign can be forgotten with its token."""
        from tasks.leads.forget import forget
        from tasks.leads.sync_state import destination_name

        with reading(request, grant, slug) as (session, found):
            if not _campaign_lead(session, found, body.who):
                raise Refused(404, "no lead of this campaign with that email or phone")

        def work() -> Answer:
            state = app_state_of(request)
            done = forget(state.engine, body.who, actor=grant.actor, now=state.clock())
            queued = [destination_name(d) for d in done.deletions]
            return Answer(200, {"contact": done.contact_id, "deletions_queued": queued})

        return idempotently(request, grant, idempotency_key, body.model_dump(), work)

    @api.get(
        "/campaigns/{slug}/review-tasks/{task}",
        **operation(
            "reviews:read",
            "reviews",
            "One review task: the draft, its findings, the checklist",
            problems={"404": "No such campaign, or no such review task in it"},
        ),
    )
    def review_task(
        request: Request,
        response: Response,
        grant: Annotated[Granted, needs("reviews:read")],
        slug: str,
        task: TaskId,
    ) -> dict[str, Any]:
        """The task as its approvers see it (`rally review show`). Its `ETag` is the task's
        state: send it back as `If-Match` with a decision, and the decision is refused (412)
        if the task changed meanwhile."""
        from tasks.review.views import task_view

        with reading(request, grant, slug) as (session, found):
            task_in(session, found, task)
            view = task_view(session, task)
        response.headers["ETag"] = strong_tag(view)
        return view

    @api.get(
        "/campaigns/{slug}/review-tasks/{task}/decisions",
        **operation(
            "reviews:read",
            "reviews",
            "The decisions on a review task's version",
            problems={"404": "No such campaign, or no such review task in it"},
        ),
    )
    def decisions(
        request: Request,
        grant: Annotated[Granted, needs("reviews:read")],
        slug: str,
        task: TaskId,
        paging: Paging,
    ) -> Page:
        """Each tier's decision on the version of the creative this task reviews, by task id:
        approved, changes requested or rejected, by whom, when, the note and the checklist."""
        from tasks.review.views import decisions_of

        with reading(request, grant, slug) as (session, found):
            rows = decisions_of(session, task_in(session, found, task))
        return paged(rows, lambda r: r["task"], paging)

    @api.post(
        "/campaigns/{slug}/review-tasks/{task}/decisions",
        response_model=DecisionOut,
        **operation(
            "reviews:write",
            "reviews",
            "Record an approver's decision on a review task",
            problems={
                "404": "No such campaign, or no such review task in it",
                "409": "The review refused the decision (`detail` says why: not in the "
                "task's group, an outdated version, decided already), or a request with this "
                "Idempotency-Key is still being answered",
                "412": "If-Match is not the task's ETag: the task changed since it was read",
            },
        ),
    )
    def decide_task(
        request: Request,
        grant: Annotated[Granted, needs("reviews:write")],
        slug: str,
        task: TaskId,
        body: DecisionIn,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        """Approve, request changes or reject, for `approver` (who must be in the task's
        approver group, as on the review pages: not the creative's author, not the approver of
        another tier of this version). Approval needs the checklist confirmed or a note; the
        other decisions need a note. As the review pages do, an approval opens the next tier or
        clears the creative, and the creator hears the outcome. The audit log names the token
        and the approver. `If-Match` with the task's `ETag` makes it conditional (412 when
        the task changed); without it the decision is recorded on the task as it stands (the
        same decision again changes nothing; another one on a decided task is refused)."""
        from tasks.review.decisions import decide
        from tasks.review.routing import ReviewRefused
        from tasks.review.views import task_view

        with reading(request, grant, slug) as (session, found):
            task_in(session, found, task)

        def work() -> Answer:
            state = app_state_of(request)
            try:
                with transaction(state.engine) as session:
                    tag = strong_tag(task_view(session, task))
                    if if_match is not None and not matches(if_match, tag):
                        raise Refused(412, f"task {task} changed since it was read: ETag {tag}")
                    result = decide(
                        session,
                        task_id=task,
                        decision=body.decision,
                        approver=body.approver,
                        now=state.clock(),
                        note=body.note,
                        confirmed=[item for item, done in body.checklist.items() if done],
                        version=body.version,
                        public_url=state.settings.public_url,
                        actor=grant.actor,
                    )
                    done = {
                        "task": task,
                        "status": result.task.status,
                        "applied": result.applied,
                        "next_tier": result.next_tier,
                        "creative": result.creative.id or 0,
                        "creative_status": result.creative.status,
                    }
            except ReviewRefused as exc:
                raise Refused(409, str(exc)) from exc
            with transaction(state.engine, write=False) as session:
                etag = strong_tag(task_view(session, task))
            return Answer(200, DecisionOut(**done, etag=etag).model_dump(mode="json"))

        return idempotently(request, grant, idempotency_key, body.model_dump(), work)

    @api.get(
        "/campaigns/{slug}/leads/{lead}/consent",
        **operation(
            "leads:read",
            "leads",
            "A lead's consent per channel and its whole record",
            problems={"404": "No such campaign, or no such lead of it"},
        ),
    )
    def consent(
        request: Request, grant: Annotated[Granted, needs("leads:read")], slug: str, lead: LeadId
    ) -> dict[str, Any]:
        """Who the lead is, their consent on each channel now (granted, pending, revoked; no
        channel: none given), and each consent given, confirmed or withdrawn, in order, with
        its source and wording (`rally leads show`)."""
        from store.models import Contact
        from tasks.leads.consent_records import contact_view

        with reading(request, grant, slug) as (session, found):
            lead_in(session, found, lead)
            contact = session.get(Contact, lead)
            assert contact is not None
            return contact_view(session, contact)

    @api.post(
        "/campaigns/{slug}/leads/{lead}/opt-outs",
        response_model=OptOutOut,
        **operation(
            "leads:write",
            "leads",
            "Opt a lead out of a channel",
            problems={"404": "No such campaign, or no such lead of it"},
        ),
    )
    def opt_out_lead(
        request: Request,
        grant: Annotated[Granted, needs("leads:write")],
        slug: str,
        lead: LeadId,
        body: OptOutIn,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        """The person asked elsewhere (a CRM's unsubscribe, a call) not to be contacted on
        `channel`: their consent there is revoked, with a consent record naming the token;
        follow-ups still waiting to go to them there are withdrawn; the campaign's destinations
        are told; the audit log names the token. Consent can only be withdrawn this way: it is
        given by the person (the signup page, START, YES)."""
        from tasks.leads.opt_out import opt_out

        with reading(request, grant, slug) as (session, found):
            lead_in(session, found, lead)
            campaign_id = found.id

        def work() -> Answer:
            state = app_state_of(request)
            with transaction(state.engine) as session:
                campaign = session.get(Campaign, campaign_id)
                assert campaign is not None
                done = opt_out(
                    session,
                    campaign,
                    lead,
                    body.channel,
                    actor=grant.actor,
                    now=state.clock(),
                    wording=body.wording,
                )
            out = OptOutOut(
                lead=lead,
                channel=done.channel,
                consent="revoked",
                changed=done.changed,
                withdrawn=done.withdrawn,
            )
            return Answer(200, out.model_dump())

        return idempotently(request, grant, idempotency_key, body.model_dump(), work)

    @api.get(
        "/campaigns/{slug}/followups",
        **operation("followups:read", "followups", "A campaign's follow-ups, newest first"),
    )
    def followups(
        request: Request,
        grant: Annotated[Granted, needs("followups:read")],
        slug: str,
        query: Annotated[FollowupsQuery, Query()],
    ) -> Page:
        """Each follow-up a rule decided on, newest first: its rule, channel, status (and why
        one was withheld or cancelled), when it was due and sent, who it went to and what it
        said (the staff console's follow-up log). `status`, `channel` and `rule` keep those
        alone."""
        from tasks.staff.console import followup_log

        before = cursor_of(query, an_id)
        keep_answer(request)
        with reading(request, grant, slug) as (session, found):
            log = followup_log(
                session,
                found,
                rule=query.rule or "",
                channel=query.channel or "",
                status=query.status or "",
                before=before,
                limit=query.limit,
            )
        more = log.more and bool(log.rows)
        return Page(data=log.rows, next_cursor=_encode(log.rows[-1]["id"]) if more else None)

    @api.get(
        "/campaigns/{slug}/report",
        **operation("reports:read", "reports", "The campaign's report: KPIs, targets, milestones"),
    )
    def report(
        request: Request,
        grant: Annotated[Granted, needs("reports:read")],
        slug: str,
        query: Annotated[ReportQuery, Query()],
    ) -> dict[str, Any]:
        """What `rally report SLUG` writes as report.json: totals and KPIs against their
        targets, the weeks, segments, creators' scorecards, the funnel, attribution, lift, the
        budget advice and the sprint's milestones, up to the end of `week` (by default the
        last week done)."""
        from tasks.reporting.report import build_report

        with reading(request, grant, slug) as (session, found):
            return build_report(session, found.slug, week=query.week)

    @api.get(
        "/campaigns/{slug}/payments",
        **operation("payments:read", "payments", "What the campaign owes each creator"),
    )
    def payments(
        request: Request,
        grant: Annotated[Granted, needs("payments:read")],
        slug: str,
        paging: Paging,
    ) -> Page:
        """Each creator with a posting, by handle, in cents: earned for deliverables and as
        bonus, where it stands (awaiting approval, approved, in a payout, paid) and what is
        still owed (`rally payments balances`)."""
        from tasks.payments.ledger import balances

        keep_answer(request)
        with reading(request, grant, slug) as (session, found):
            rows = balances(session, found)
        return paged(rows, lambda r: r["creator"], paging)

    @api.get(
        "/campaigns/{slug}/ledger",
        **operation("payments:read", "payments", "The payments ledger, line by line"),
    )
    def ledger_lines(
        request: Request,
        grant: Annotated[Granted, needs("payments:read")],
        slug: str,
        paging: Paging,
    ) -> Page:
        """Every line of every posting in the order they were made: debits positive, credits
        negative, in cents, with what earned each (`rally payments ledger --json`)."""
        from tasks.payments.ledger import ledger

        after = cursor_of(paging, an_id)
        keep_answer(request)
        with reading(request, grant, slug) as (session, found):
            rows = ledger(session, found, after=after, limit=paging.limit + 1)
        return page_of(rows, lambda r: r["id"], paging.limit)

    @api.get(
        "/campaigns/{slug}/payouts",
        **operation("payments:read", "payments", "A campaign's payouts, newest first"),
    )
    def payouts(
        request: Request,
        grant: Annotated[Granted, needs("payments:read")],
        slug: str,
        paging: Paging,
    ) -> Page:
        """Each payout: to whom, how much, through which provider and account, and what became
        of it (`sending`, `paid` with its transfer, `failed` with the provider's words)
        (`rally payments payouts --json`)."""
        from tasks.payments.payouts import payouts

        after = cursor_of(paging, lambda k: an_id(k) and k < 0)  # newest first: -id
        before = -after if after is not None else None
        keep_answer(request)
        with reading(request, grant, slug) as (session, found):
            rows = payouts(session, found, before=before, limit=paging.limit + 1)
        return page_of(rows, lambda r: -r["id"], paging.limit)

    @api.get(
        "/campaigns/{slug}/runs",
        **operation("runs:read", "runs", "A campaign's runs, newest first"),
    )
    def runs(
        request: Request, grant: Annotated[Granted, needs("runs:read")], slug: str, paging: Paging
    ) -> Page:
        """The work started for the campaign from the staff console or this API, newest
        first: what it is, who started it, its state and its link in the Prefect UI."""
        from tasks.staff.runs import recent_runs

        after = cursor_of(paging, two_texts)
        after_key = None
        if after:
            try:
                after_key = (datetime.fromisoformat(after[0]), after[1])
            except ValueError:
                raise Refused(400, "cursor is not one this list gave") from None
            if after_key[0].tzinfo is None:  # every time this list gives is UTC
                raise Refused(400, "cursor is not one this list gave")
        with reading(request, grant, slug) as (session, found):
            rows = recent_runs(session, found.id or 0, limit=paging.limit + 1, after=after_key)
        data = [run_json(r) for r in rows]
        return page_of(data, lambda r: [r["started_at"], r["id"]], paging.limit)

    @api.get(
        "/campaigns/{slug}/runs/{run}",
        **operation(
            "runs:read",
            "runs",
            "One run and how it stands",
            problems={"404": "No such campaign, or no such run of it"},
        ),
    )
    def one_run(
        request: Request,
        grant: Annotated[Granted, needs("runs:read")],
        slug: str,
        run: Annotated[str, Path(max_length=32)],
    ) -> RunOut:
        """A run: what it is, who started it, its state (`started` for a deployment run:
        follow it at `link`), and the end of its output when it ran as a process here."""
        from tasks.staff.runs import find_run

        with reading(request, grant, slug) as (session, found):
            found_run = find_run(session, found.id or 0, run)
        if found_run is None:
            raise Refused(404, f"no run {run!r} of this campaign")
        return RunOut.model_validate(run_json(found_run))

    @api.post(
        "/campaigns/{slug}/runs",
        status_code=202,
        response_model=RunOut,
        **operation(
            "runs:write",
            "runs",
            "Start a run: a rehearsal, the briefs, a lead sync, the report",
            problems={
                "409": "A rehearsal was refused (the campaign runs for real), or a request "
                "with this Idempotency-Key is still being answered",
                "503": "Runs cannot start: no Prefect API is configured, it does not "
                "answer, or Rally's deployment is not registered there (`detail` says which)",
            },
        ),
    )
    def start_run(
        request: Request,
        grant: Annotated[Granted, needs("runs:write")],
        slug: str,
        body: RunIn,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        """Start what the staff console's buttons start, as a deployment run on the Prefect
        server where `rally deploy` registered Rally's deployments (never as a process of the
        web server: 503 says what is missing). Answered at once (202) with the run, whose
        state and link `GET /campaigns/{slug}/runs/{run}` gives; the audit log names the
        token."""
        from store.audit import record
        from tasks.sprint.state import real_activity
        from tasks.staff.runs import view
        from web import staff_runs
        from web.staff_actions import run_started

        with reading(request, grant, slug) as (session, found):
            action = staff_runs.actions(found.slug, weeks=min(body.weeks, found.weeks)).get(
                body.action
            )
            assert action is not None
            if body.action == "rehearsal" and (why := real_activity(session, found)):
                raise Refused(409, f"no rehearsal here: {why}")
            campaign_id = found.id or 0

        def work() -> Answer:
            state = app_state_of(request)
            try:
                started = staff_runs.start(
                    state.engine,
                    action,
                    campaign_id=campaign_id,
                    slug=slug,
                    by=grant.actor,
                    now=state.clock(),
                    settings=state.settings,
                    here=False,
                )
            except staff_runs.NotDeployed as exc:
                raise Refused(503, str(exc)) from exc
            with transaction(state.engine) as session:
                record(session, [run_started(grant.actor, slug, action, started)])

            return Answer(
                202, RunOut.model_validate(run_json(view(started))).model_dump(mode="json")
            )

        return idempotently(request, grant, idempotency_key, body.model_dump(), work)

    return api


TaskId = Annotated[int, Path(ge=1, le=2**31 - 1, description="A review task's id")]
LeadId = Annotated[int, Path(ge=1, le=2**31 - 1, description="A lead's id (`/leads`)")]
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=1000,
        description="The ETag as last read: the change is refused (412) if it changed since",
    ),
]


def strong_tag(view: dict[str, Any]) -> str:
    """The strong ETag of a resource that takes changes under If-Match (a review task, a webhook
    subscription): the digest of it as its GET answers it, so any change to it changes it."""
    text = json.dumps(view, sort_keys=True, separators=(",", ":"), default=str)
    return f'"{hashlib.sha256(text.encode()).hexdigest()[:32]}"'


def matches(if_match: str, tag: str) -> bool:
    """Whether an If-Match header holds `tag` (strong comparison: a weak tag never matches)."""
    held = {t.strip() for t in if_match.split(",")}
    return "*" in held or tag in held


def task_in(session: Session, campaign: Campaign, task_id: int) -> ReviewTask:
    """The review task `task_id` of `campaign`, or 404 (another campaign's task included)."""
    task = session.get(ReviewTask, task_id)
    draft = session.get(CreativeDraft, task.draft_id) if task else None
    creative = session.get(Creative, draft.creative_id) if draft else None
    if task is None or creative is None or creative.campaign_id != campaign.id:
        raise Refused(404, f"no review task {task_id} in this campaign")
    return task


def lead_in(session: Session, campaign: Campaign, lead: int) -> None:
    """404 unless `lead` is a lead of `campaign` (as `/leads` lists them)."""
    from tasks.leads.status import campaign_contacts

    assert campaign.id is not None
    if campaign_contacts(session, campaign.id, after=lead - 1, limit=1) != [lead]:
        raise Refused(404, f"no lead {lead} of this campaign")


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "request_changes", "reject"]
    approver: str = Field(
        min_length=3,
        max_length=254,
        pattern=r"^[^@\s]+@[^@\s]+$",
        description="The email of the approver deciding: one of the task's approver group",
    )
    version: int | None = Field(
        None, ge=1, le=2**31 - 1, description="The version decided on; refused if not the task's"
    )
    note: str = Field(
        "",
        max_length=5000,
        validate_default=True,
        description="Why; needed unless approving with the checklist done",
    )
    checklist: dict[Annotated[str, Field(max_length=64)], bool] = Field(
        default_factory=dict,
        max_length=100,
        description="Each checklist item confirmed (true) or not",
    )

    @field_validator("note")
    @classmethod
    def note_when_not_approving(cls, note: str, info: ValidationInfo) -> str:
        if info.data.get("decision", "approve") != "approve" and not note.strip():
            raise ValueError("say what must change (or why it is rejected) in a note")
        return note


class DecisionOut(BaseModel):
    task: int
    status: str = Field(description="The task's status now")
    applied: bool = Field(description="False when the same decision was recorded before")
    next_tier: str | None = Field(description="The tier whose review opened, if one did")
    creative: int
    creative_status: str
    etag: str = Field(description="The task's ETag now")


class OptOutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Literal["email", "sms", "dm", "reply"] = Field(
        description="The channel they are not to be contacted on"
    )
    wording: str | None = Field(
        None, max_length=1000, description="What they said, for the consent record"
    )


class OptOutOut(BaseModel):
    lead: int
    channel: str
    consent: Literal["revoked"]
    changed: bool = Field(description="False when they were opted out of it already")
    withdrawn: int = Field(description="Follow-ups withdrawn that had not gone yet")


class ReportQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    week: int | None = Field(
        None, ge=1, le=52, description="Up to the end of this week (by default the last done)"
    )


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["rehearsal", "briefs", "sync", "report"] = Field(
        description="What to run, as the staff console's buttons: a rehearsal of the sprint, "
        "the briefs, a lead sync, the report"
    )
    weeks: int = Field(0, ge=0, le=52, description="A rehearsal's weeks (0: the whole sprint)")


class RunOut(BaseModel):
    id: str
    title: str
    by: str = Field(description="Who started it (a token: `token:ID:NAME`)")
    started_at: datetime
    state: str = Field(
        description="started (a deployment run: see `link`), running, finished, failed, vanished"
    )
    command: list[str] = Field(description="The `rally` command that does the same")
    link: str | None = Field(description="The run in the Prefect UI")
    output: str = Field(description="The end of its output, when it ran as a process here")


def run_json(run: Any) -> dict[str, Any]:
    """A run as this API shows it (not where its output file is, nor on which machine)."""
    return {
        "id": run.id,
        "title": run.title,
        "by": run.by,
        "started_at": run.started_at.isoformat(),
        "state": run.state,
        "command": run.command,
        "link": run.link,
        "output": run.output,
    }


class ForgetIn(BaseModel):
    who: str = Field(min_length=3, max_length=254, description="The person's email or phone")


def docs_of(schema: dict[str, Any]) -> dict[str, Any]:
    """What the docs page shows of the OpenAPI document `schema`."""
    tags: dict[str, list[dict[str, Any]]] = {}
    for path, operations in schema["paths"].items():
        for method, spec in operations.items():
            body = spec.get("requestBody", {}).get("content", {}).get("application/json", {})
            fields = _fields(schema, body.get("schema", {}))
            tags.setdefault(spec["tags"][0], []).append(
                {
                    "id": spec["operationId"],
                    "method": method.upper(),
                    "path": path,
                    "summary": spec["summary"].split(" (scope")[0],
                    "scope": spec["x-rally-scope"],
                    "description": _marked(spec.get("description", "")),
                    "parameters": [
                        {
                            "name": p["name"],
                            "where": p["in"],
                            "required": p.get("required", False),
                            "description": _marked(
                                p.get("description")
                                or p.get("schema", {}).get("description", "")
                                or PARAMETERS.get(p["name"], "")
                            ),
                        }
                        for p in spec.get("parameters", [])
                    ],
                    "body": fields,
                    "responses": [
                        (status, _marked(answer.get("description", "")))
                        for status, answer in sorted(spec["responses"].items())
                    ],
                }
            )
    return {
        "summary": schema["info"].get("summary", ""),
        "base": API_PREFIX,
        "tags": [{"name": name, "operations": ops} for name, ops in tags.items()],
    }


PARAMETERS = {"slug": "The campaign's slug (`/campaigns` lists them)"}


def _marked(text: str) -> list[tuple[bool, str]]:
    """Text as (is code, words) runs: what the document puts in `backticks` is code."""
    runs = " ".join(text.split()).split("`")
    return [(i % 2 == 1, run) for i, run in enumerate(runs) if run]


def _fields(schema: dict[str, Any], body: dict[str, Any]) -> list[str]:
    """The top-level fields of a request body's schema (following its `$ref`)."""
    ref = body.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        body = schema["components"]["schemas"].get(ref.rsplit("/", 1)[1], {})
    return list(body.get("properties", {}))


def operation(
    scope: str, tag: str, summary: str, problems: dict[str, str] | None = None
) -> dict[str, Any]:
    """An operation's tag, summary and the scope it needs (`x-rally-scope` in the document),
    and the problems it may answer beyond every operation's (or said otherwise for it)."""
    extra: dict[str, Any] = {"x-rally-scope": scope}
    if problems:
        extra["x-rally-problems"] = problems
    return {"tags": [tag], "summary": f"{summary} (scope {scope})", "openapi_extra": extra}


PROBLEMS = {
    "400": "Not valid: `errors` names each field at fault",
    "401": "No valid API token (missing, unknown, expired or revoked)",
    "403": "The token lacks the scope, or is for another campaign",
    "404": "No such campaign",
    "429": "Over the token's requests a minute: `Retry-After` says when to try again",
}
POST_PROBLEMS = {
    "409": "A request with this Idempotency-Key is still being answered",
    "413": "The body is over 1 MB",
    "422": "This Idempotency-Key was used for a different request",
}


def document(api: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, with the errors as this API answers them: problem details (RFC
    9457), 400 for a request not valid (FastAPI would say 422)."""
    if api.openapi_schema:
        return api.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(
        title=api.title,
        version=api.version,
        summary=api.summary,
        routes=api.routes,
        servers=[{"url": API_PREFIX}],
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    components["Problem"] = {
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"field": {"type": "string"}, "detail": {"type": "string"}},
                },
            },
        },
    }
    problem_content = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for operations in schema.get("paths", {}).values():
        for method, spec in operations.items():
            responses = spec.setdefault("responses", {})
            responses.pop("422", None)
            wanted = PROBLEMS | (POST_PROBLEMS if method == "post" else {})
            wanted |= spec.pop("x-rally-problems", {})
            for status, description in wanted.items():
                responses[status] = {"description": description, "content": problem_content}
    _link_campaign_list(schema["paths"])
    for listing, name, key in (
        ("/campaigns/{slug}/review-tasks", "task", "task"),
        ("/campaigns/{slug}/leads", "lead", "id"),
        ("/campaigns/{slug}/runs", "run", "id"),
    ):
        _link_items(schema["paths"], listing, name, key)
    api.openapi_schema = schema
    return schema


def _link_campaign_list(paths: dict[str, Any]) -> None:
    """Links from the campaign list to what each listed campaign has (OpenAPI links): how a
    client, or a test that follows them, goes from one answer to the next request."""
    listed = paths["/campaigns"]["get"]["responses"]["200"]
    links = listed.setdefault("links", {})
    for path, operations in paths.items():
        if path.startswith("/campaigns/{slug}"):
            for spec in operations.values():
                links[spec["operationId"]] = {
                    "operationId": spec["operationId"],
                    "parameters": {"slug": "$response.body#/data/0/slug"},
                }


def _link_items(paths: dict[str, Any], listing: str, name: str, key: str) -> None:
    """Links from a list to the operations on its first item (`{name}` its `key`)."""
    listed = paths[listing]["get"]["responses"]["200"]
    links = listed.setdefault("links", {})
    for path, operations in paths.items():
        if path.startswith(f"{listing}/{{{name}}}"):
            for spec in operations.values():
                links[spec["operationId"]] = {
                    "operationId": spec["operationId"],
                    "parameters": {
                        "slug": "$request.path.slug",
                        name: f"$response.body#/data/0/{key}",
                    },
                }


MAX_EVENTS = 500
MAX_BODY_BYTES = 1_000_000


class EventsIn(BaseModel):
    events: list[dict[str, Any]] = Field(
        min_length=1, max_length=MAX_EVENTS, description="Event records, at most 500"
    )


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Makes a retry of this POST safe: the same key gets the same answer",
    ),
]


def idempotently(
    request: Request,
    grant: Granted,
    key: str | None,
    payload: Any,
    work: Callable[[], Answer],
    *,
    kept: Callable[[dict[str, Any]], dict[str, Any]] = lambda body: body,
) -> JSONResponse:
    """Do `work` once per Idempotency-Key; a retry gets the first answer again, as `kept`
    keeps it (without what is shown only once, such as a secret)."""
    if key is None:
        answer = work()
        return JSONResponse(answer.body, status_code=answer.status)
    state = app_state_of(request)
    digest = request_hash(request.method, request.url.path, payload)
    before = begin(state.engine, grant.token_id, key, digest, now=state.clock())
    if before is not None:
        return JSONResponse(
            before.body, status_code=before.status, headers={"Idempotent-Replayed": "true"}
        )
    try:
        answer = work()
    except BaseException:
        abandon(state.engine, grant.token_id, key)
        raise
    finish(state.engine, grant.token_id, key, Answer(answer.status, kept(answer.body)))
    return JSONResponse(answer.body, status_code=answer.status)


class BoundedBody:
    """Refuses a request body over `MAX_BODY_BYTES` with 413 (`too_large`'s answer, a problem
    detail by default), never reading past it; of the paths under `under` only, if given."""

    def __init__(
        self,
        app: Any,
        *,
        under: tuple[str, ...] = ("",),
        too_large: Callable[[str], Response] = lambda detail: problem(413, detail),
    ) -> None:
        self.app, self.under, self.too_large = app, under, too_large

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in ("POST", "PUT", "PATCH")
            or not scope["path"].startswith(self.under)
        ):
            await self.app(scope, receive, send)
            return
        body = await bounded_body(dict(scope["headers"]), receive, MAX_BODY_BYTES)
        if body is None:
            answer = self.too_large(f"the body is over {MAX_BODY_BYTES:,} bytes")
            await answer(scope, receive, send)
            return
        given = False

        async def replay() -> dict[str, Any]:
            nonlocal given
            if given:
                return await receive()
            given = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


class PageQuery(BaseModel):
    """A list's page: at most `limit` items after the one `cursor` names. Other query
    parameters are refused, so a misspelt one is not silently ignored."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(50, ge=1, le=200, description="How many items at most")
    cursor: str | None = Field(
        None, max_length=400, description="The `next_cursor` of the page before"
    )


Paging = Annotated[PageQuery, Query()]


class CreativesQuery(PageQuery):
    status: CreativeStatus | None = Field(None, description="Only creatives with this status")


class Page(BaseModel):
    data: list[dict[str, Any]]
    next_cursor: str | None = Field(description="Fetches the next page; null on the last")


def paged(
    rows: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any], paging: PageQuery
) -> Page:
    """One page of `rows` in `key` order; the cursor carries the last key given."""
    after = _decode(paging.cursor)
    ordered = sorted(rows, key=key)
    if after is not None:
        try:
            ordered = [r for r in ordered if key(r) > after]
        except TypeError:
            raise Refused(400, "cursor is not one this list gave") from None
    return page_of(ordered, key, paging.limit)


def cursor_of(paging: PageQuery, fits: Callable[[Any], bool]) -> Any:
    """The key a cursor carries, for a list that pages in its query; a refusal if it is not
    one of this list's keys."""
    after = _decode(paging.cursor)
    if after is not None and not fits(after):
        raise Refused(400, "cursor is not one this list gave")
    return after


def _campaign_lead(session: Session, campaign: Campaign, who: str) -> bool:
    """Whether `who` (an email or phone) is a lead of `campaign`. Someone only another campaign
    has is answered as nobody is: whether they are there is that campaign's to say."""
    from tasks.leads.forget import NoSuchLead, find_contact
    from tasks.leads.status import campaign_contacts

    try:
        contact = find_contact(session, who)  # not an email or phone: says why
    except NoSuchLead:
        return False
    assert contact.id is not None and campaign.id is not None
    return campaign_contacts(session, campaign.id, after=contact.id - 1, limit=1) == [contact.id]


def an_id(key: Any) -> bool:
    """Whether a cursor's key is a row id as this API gives them (not a bool, within range)."""
    return type(key) is int and abs(key) < 2**62


def two_texts(key: Any) -> bool:
    """Whether a cursor's key is a pair of texts (a handle and platform, a time and id)."""
    return isinstance(key, list) and len(key) == 2 and all(isinstance(p, str) for p in key)


def page_of(rows: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any], limit: int) -> Page:
    """A page from rows read in key order after the cursor, one more than `limit` if more
    follow."""
    page = rows[:limit]
    more = len(rows) > limit
    return Page(data=page, next_cursor=_encode(key(page[-1])) if more else None)


def _encode(key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def _decode(cursor: str | None) -> Any:
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return json.loads(base64.b64decode(padded, altchars=b"-_", validate=True))
    except (binascii.Error, ValueError):
        raise Refused(400, "cursor is not one this API gave") from None


class FollowupsQuery(PageQuery):
    status: FollowUpStatus | None = Field(None, description="Only follow-ups with this status")
    channel: Literal["reply", "dm", "email", "sms", "tag", "staff"] | None = Field(
        None, description="Only those on this channel (`tag` and `staff`: no message to them)"
    )
    rule: str | None = Field(None, max_length=64, description="Only those of this rule")
