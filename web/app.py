"""Rally's web pages: the creator's brief at `/briefs/<token>`, where they acknowledge it and
submit drafts, and the approvers' review pages (`web.review`).

The token in the link is the creator's only credential, so pages never leak it: no referrer
leaves the site, nothing is cached or indexed, and an unknown or expired token gets the same
plain 404 as any other missing page.
"""

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.exceptions import HTTPException as StarletteHTTPException

from config.errors import RallyError
from config.settings import Settings, get_settings
from store.db import open_store, transaction
from store.types import utcnow
from tasks.briefs.status import BriefPage, acknowledge, open_brief
from tasks.review.creatives import Submission, submit
from tasks.review.views import creator_drafts
from web.api import add_api_routes
from web.engagement import add_engagement_routes
from web.review import add_review_routes

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
HEADERS = {
    # Links carry tokens: no other site ever sees them. (Same-origin requests keep their
    # Origin header, which the review forms check.)
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src https: data:; form-action 'self'; frame-ancestors 'none'",
}


class PrivateHeaders:
    """Adds `HEADERS` to every response: a plain ASGI middleware, which costs a fraction of
    Starlette's `@app.middleware("http")` on every webhook and page."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.raw = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
        self.names = {name for name, _ in self.raw}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                kept = [(n, v) for n, v in headers if n.lower() not in self.names]
                message = {**message, "headers": kept + self.raw}
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], datetime] = utcnow
) -> FastAPI:
    settings = settings or get_settings()
    engine = open_store(settings)
    app = FastAPI(title="Rally", docs_url=None, redoc_url=None, openapi_url=None)

    app.add_middleware(PrivateHeaders)

    @app.exception_handler(StarletteHTTPException)
    async def plain_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return page_response(request, "not_found.html", {}, status_code=404)
        return PlainTextResponse(str(exc.detail), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def bad_form(request: Request, exc: RequestValidationError) -> Response:
        """A form not as Rally sent it: a plain answer that repeats nothing of what was sent."""
        return PlainTextResponse("This request is not one Rally understands.", status_code=400)

    @app.exception_handler(RallyError)
    async def refused(request: Request, exc: RallyError) -> Response:
        return page_response(request, "error.html", {"message": str(exc)}, status_code=409)

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, exc: ValueError) -> Response:
        return PlainTextResponse("This request is not one Rally understands.", status_code=400)

    @app.get("/healthz")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/briefs/{token}", response_class=HTMLResponse)
    def brief_page(request: Request, token: str) -> Response:
        with transaction(engine, write=False) as session:
            page = open_brief(session, token, now=clock())
            drafts = creator_drafts(session, page.brief.member_id) if page else []
        return _brief(request, page, drafts)

    @app.post("/briefs/{token}/drafts")
    def submit_draft(
        request: Request,
        token: str,
        caption: str = Form(..., min_length=1, max_length=5000),
        script: str = Form("", max_length=20000),
        video_url: str = Form("", max_length=2000),
        duration: str = Form("", max_length=12),
        paid: bool = Form(False),
        ai_generated: bool = Form(False),
        creative: str = Form("", max_length=12),
    ) -> Response:
        """A creator submits a draft from their brief page; the checks run at once."""
        with transaction(engine) as session:
            page = open_brief(session, token, now=clock())
            if page is None:
                return _brief(request, None, [])
            seconds = float(duration) if duration.strip() else None
            draft = Submission(caption, script, video_url or None, seconds, paid, ai_generated)
            submit(
                session,
                slug=page.campaign_slug,
                handle=page.handle,
                submission=draft,
                submitted_by=f"creator:@{page.handle}",
                now=clock(),
                creative_id=int(creative) if creative.strip() else None,
                public_url=settings.public_url,
            )
        return RedirectResponse(f"/briefs/{token}#drafts", status_code=303)

    @app.post("/briefs/{token}/acknowledge")
    def acknowledge_brief(request: Request, token: str, version: int = Form(...)) -> Response:
        with transaction(engine) as session:
            page = acknowledge(session, token, version=version, now=clock())
        if page is None:
            return _brief(request, None, [])
        return RedirectResponse(f"/briefs/{token}", status_code=303)

    add_review_routes(app, engine, settings, clock)
    add_api_routes(app, engine, settings, clock)
    add_engagement_routes(app, engine, settings, clock, page_response)
    return app


def _brief(request: Request, page: BriefPage | None, drafts: list[dict[str, Any]]) -> Response:
    if page is None:
        return page_response(request, "not_found.html", {}, status_code=404)
    context = {
        "page": page,
        "drafts": drafts,
        "brief": page.brief,
        "content": Markup(page.brief.content_html),  # rendered by the sandbox, autoescaped
    }
    return page_response(request, "brief.html", context)


def page_response(
    request: Request, name: str, context: dict[str, Any], *, status_code: int = 200
) -> Response:
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)
