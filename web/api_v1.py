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
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from starlette.exceptions import HTTPException as StarletteHTTPException

from config.errors import RallyError
from store.db import transaction
from store.models import Campaign
from tasks.api.tokens import Granted, TokenRefused, authenticate
from tasks.campaigns.campaign import campaign_overview, list_campaigns
from web.deps import app_state_of

PROBLEM = "application/problem+json"
TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
bearer = HTTPBearer(auto_error=False, description="An API token from `rally tokens create`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def problem(status: int, detail: str, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem details answer."""
    body = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status}
    body |= {"detail": detail, **extra}
    headers = {"WWW-Authenticate": 'Bearer realm="rally"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


class Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def granted(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None,
    scope: str,
    campaign_id: int | None,
    *,
    listing: bool = False,
) -> Granted:
    """What the request's token allows for `scope` on `campaign_id`, or a refusal."""
    state = app_state_of(request)
    secret = credentials.credentials if credentials else None
    try:
        with transaction(state.engine) as session:
            return authenticate(
                session,
                secret,
                scope=scope,
                campaign_id=campaign_id,
                now=state.clock(),
                listing=listing,
            )
    except TokenRefused as refused:
        raise Refused(refused.status, str(refused)) from None


def permitted(grant: Granted, campaign_id: int) -> None:
    """Refuse a campaign's token another campaign (found after the token was checked, so
    that no one learns which campaigns exist without a valid token)."""
    try:
        grant.check_campaign(campaign_id)
    except TokenRefused as refused:
        raise Refused(refused.status, str(refused)) from None


def engine_of(request: Request) -> Engine:
    return app_state_of(request).engine


def campaign_id_of(session: Session, slug: str) -> int:
    found = session.exec(select(col(Campaign.id)).where(col(Campaign.slug) == slug)).first()
    if found is None:
        raise Refused(404, f"no campaign {slug!r}")
    return int(found)


def create_api() -> FastAPI:
    """The API as its own app, mounted at `/api/v1` by `web.app.create_app`."""
    api = FastAPI(
        title="Rally API",
        version="1",
        summary="Campaigns, creators, reviews, events and leads of Rally's creator campaigns.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )

    @api.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> JSONResponse:
        return problem(exc.status, exc.detail)

    @api.exception_handler(RallyError)
    async def rally_error(request: Request, exc: RallyError) -> JSONResponse:
        return problem(404 if str(exc).startswith("no ") else 400, str(exc))

    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"][1:]), "detail": e["msg"]}
            for e in exc.errors()
        ]
        fields = ", ".join(e["field"] for e in errors)
        return problem(400, f"not valid: {fields}", errors=errors)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail))

    @api.get("/campaigns", tags=["campaigns"], summary="List campaigns (scope campaign:read)")
    def campaigns(
        request: Request,
        credentials: Credentials,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> dict[str, Any]:
        """The campaigns this token may read, by slug; `next_cursor` fetches the next page."""
        grant = granted(request, credentials, "campaign:read", None, listing=True)
        after = _decode(cursor)
        with transaction(engine_of(request), write=False) as session:
            rows = list_campaigns(session)
            if grant.campaign_id is not None:  # a campaign's own token: that campaign only
                own = session.get(Campaign, grant.campaign_id)
                rows = [r for r in rows if own is not None and r["slug"] == own.slug]
        rows = [r for r in rows if after is None or r["slug"] > after]
        page = rows[:limit]
        more = len(rows) > limit
        return {"data": page, "next_cursor": _encode(page[-1]["slug"]) if more else None}

    @api.get(
        "/campaigns/{slug}",
        tags=["campaigns"],
        summary="One campaign: terms, KPI targets, budget, plan, roster (scope campaign:read)",
    )
    def campaign(request: Request, credentials: Credentials, slug: str) -> dict[str, Any]:
        """What `rally campaign show SLUG --json` prints."""
        grant = granted(request, credentials, "campaign:read", None, listing=True)
        state = app_state_of(request)
        with transaction(state.engine, write=False) as session:
            permitted(grant, campaign_id_of(session, slug))
            return campaign_overview(session, slug, public_url=state.settings.public_url)

    return api


def _encode(slug: str) -> str:
    return base64.urlsafe_b64encode(slug.encode()).decode().rstrip("=")


def _decode(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise Refused(400, "cursor is not one this API gave") from None
