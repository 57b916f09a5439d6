"""Rally's web app, assembled: the creator's brief pages (`web.briefs`), the approvers' review
pages (`web.review`), the campaign reports for staff (`web.reports`), the staff console
(`web.staff`, `web.staff_actions`), the JSON API (`web.api`) and the public's ways in
(`web.public`, TikTok's webhooks in `web.webhooks`, the payout providers' in
`web.payout_webhooks`), with the private headers on every response and the answers to errors.

A request Rally does not understand gets a plain answer that repeats nothing of what was sent,
and a missing page the same 404 whatever was asked for.
"""

import asyncio
import weakref
from collections.abc import Callable
from datetime import datetime
from functools import cache
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config.errors import RallyError
from config.settings import Settings, get_settings
from store.db import open_store
from store.types import utcnow
from tasks.api.limits import TokenLimits
from tasks.engagement.writer import EventWriter
from tasks.review.uploads import video_shelf
from web import (
    api,
    briefs,
    payout_webhooks,
    public,
    reports,
    review,
    sprint,
    staff,
    staff_actions,
    uploads,
)
from web.api_v1 import API_PREFIX, LIMITS_KEY, BoundedBody, create_api, problem
from web.api_webhooks import add_webhook_routes
from web.deps import STATE_KEY, AppState, SignedOut
from web.kept_reads import KeptReads
from web.pages import PrivateHeaders, RetryDroppedConnection, not_found, page_response
from web.webhooks import TikTokWebhooks

STATIC = Path(__file__).parent / "static"  # the stylesheet and the copy buttons' script
NOT_UNDERSTOOD = "This request is not one Rally understands."


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], datetime] = utcnow
) -> FastAPI:
    """Rally's web app on the store that `settings` name, telling time by `clock` (tests
    freeze it); one event writer serves all its requests."""
    settings = settings or get_settings()
    engine = open_store(settings)
    app = FastAPI(title="Rally", docs_url=None, redoc_url=None, openapi_url=None)
    shelf = video_shelf(settings)
    app.state.rally = AppState(engine, settings, clock, EventWriter(engine), shelf)
    app.add_middleware(RetryDroppedConnection)
    app.add_middleware(BoundedBody, under=api.PATHS, too_large=api.too_large)
    app.add_middleware(PrivateHeaders, media=shelf.bucket.origin if shelf.bucket else "")
    app.add_middleware(TikTokWebhooks, state=app.state.rally)  # outermost: the busiest route
    _answer_errors(app)
    # The API is its own app: its own OpenAPI document and problem-details errors. It comes
    # first: its prefix decides at once, where behind the pages it was tried after each of
    # their fifty-odd routes (a fifth of a small read's time).
    limits = TokenLimits(settings.api_requests_per_minute)
    reads = settings.api_reads_at_once
    api_app: ASGIApp = WithState(rest_api(), app.state.rally, limits)
    api_app = ReadTurns(api_app, reads) if reads else api_app
    if settings.api_kept_reads:  # before the turns: giving a kept answer needs no turn
        api_app = KeptReads(api_app, app.state.rally, limits, settings.api_kept_reads)
    app.mount(API_PREFIX, api_app)
    # Then the public: clicks and signups are the busiest pages.
    routers = (public, briefs, review, reports, sprint, staff, staff_actions, uploads, api)
    for module in (*routers, payout_webhooks):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    return app


@cache
def rest_api() -> FastAPI:
    """The REST API's app, built once a process: making its hundred routes costs about 0.1 s,
    and every web app of the process (a test's, a worker's) mounts the same one, giving it
    its own state per request (`WithState`)."""
    rest = create_api()
    add_webhook_routes(rest)
    return rest


class WithState:
    """The REST API as one web app mounts it: each request carries that app's state and its
    tokens' rate limits (`web.deps.app_state_of`, `web.api_v1.needs`)."""

    def __init__(self, api: ASGIApp, state: AppState, limits: TokenLimits) -> None:
        self.api, self.state, self.limits = api, state, limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[STATE_KEY], scope[LIMITS_KEY] = self.state, self.limits
        await self.api(scope, receive, send)


class ReadTurns:
    """Reads (GET and HEAD) take turns, `at_once` being worked on at a time until their
    answer starts: a read is the store's and Python's work, which threads cannot share, and
    every thread more that wants the interpreter leaves less of it to the event loop that
    takes requests in and sends answers out. Waiting reads wait on the loop, which costs
    nothing; a request with a body (an upload from a slow phone) never holds a turn.

    Measured with `benchmarks/api.py` (32 clients at once), p99: on SQLite 530-636 ms with
    no limit, 193-226 ms with 2 to 4, 235 ms with 6; on PostgreSQL 417-471 ms with none,
    261-302 ms with 4."""

    def __init__(self, app: ASGIApp, at_once: int) -> None:
        self.app, self.at_once = app, at_once
        self._turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]
        self._turns = weakref.WeakKeyDictionary()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        turns = self._turns.get(loop)
        if turns is None:
            turns = self._turns[loop] = asyncio.Semaphore(self.at_once)
        await turns.acquire()
        held = True

        async def answering(message: Message) -> None:
            nonlocal held
            if held and message["type"] == "http.response.start":
                held = False
                turns.release()
            await send(message)

        try:
            await self.app(scope, receive, answering)
        finally:
            if held:
                turns.release()


def _answer_errors(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def plain_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith(API_PREFIX):  # a path the API's mount cannot route
            return problem(exc.status_code, "no such resource" if exc.status_code == 404 else "")
        if exc.status_code == 404:
            return not_found(request)
        return PlainTextResponse(str(exc.detail), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def bad_form(request: Request, exc: RequestValidationError) -> Response:
        """A form not as Rally sent it: a plain answer that repeats nothing of what was sent
        (the JSON API's names the field)."""
        if request.url.path.startswith(api.PATHS):
            return api.refusal(exc)
        return PlainTextResponse(NOT_UNDERSTOOD, status_code=400)

    @app.exception_handler(RallyError)
    async def refused(request: Request, exc: RallyError) -> Response:
        return page_response(request, "error.html", {"message": str(exc)}, status_code=409)

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, exc: ValueError) -> Response:
        return PlainTextResponse(NOT_UNDERSTOOD, status_code=400)

    @app.exception_handler(SignedOut)
    async def signed_out(request: Request, exc: SignedOut) -> Response:
        """A signed-in page without a valid session: the page that says to sign in again."""
        page = "staff_signed_out.html" if exc.staff else "signed_out.html"
        context = {"next": request.url.path} if exc.staff else {}
        return page_response(request, page, context, status_code=401)
