"""The creator's brief at `/briefs/<token>`: they read it, acknowledge it and submit drafts
there. The token in the link is their only credential: an unknown or expired one gets the same
plain 404 as any other missing page."""

from typing import Any, TypeVar

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from config.errors import RallyError
from store.db import transaction
from tasks.briefs.status import BriefPage, acknowledge, open_brief
from tasks.review.creatives import Submission, submit
from tasks.review.views import creator_drafts
from web.deps import AppSettings, Clock, Store
from web.pages import not_found, page_response

router = APIRouter()


@router.get("/briefs/{token}", response_class=HTMLResponse)
def brief_page(
    request: Request, token: str, engine: Store, clock: Clock, fix: str = ""
) -> Response:
    """The creator's brief with their drafts and what the checks found in each. The draft form
    starts as the next version of the creative being fixed (`fix`, else the newest one that was
    sent back), its caption and details filled in, so a fix is an edit, not a retyping."""
    with transaction(engine, write=False) as session:
        page = open_brief(session, token, now=clock())
        drafts = creator_drafts(session, page.brief.member_id) if page else []
    chosen = [d for d in drafts if d["may_resubmit"] and str(d["id"]) == fix]
    sent_back = [d for d in drafts if d["needs_fixing"]]
    fixing = (chosen or sent_back)[0] if chosen or sent_back else None
    return _brief(request, page, drafts, fixing)


@router.post("/briefs/{token}/drafts")
def submit_draft(
    request: Request,
    token: str,
    engine: Store,
    settings: AppSettings,
    clock: Clock,
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
        seconds = _number("duration", duration, float)
        draft = Submission(caption, script, video_url or None, seconds, paid, ai_generated)
        submit(
            session,
            slug=page.campaign_slug,
            handle=page.handle,
            submission=draft,
            submitted_by=f"creator:@{page.handle}",
            now=clock(),
            creative_id=_number("creative", creative, int),
            public_url=settings.public_url,
        )
    return RedirectResponse(f"/briefs/{token}#drafts", status_code=303)


@router.post("/briefs/{token}/acknowledge")
def acknowledge_brief(
    request: Request, token: str, engine: Store, clock: Clock, version: int = Form(...)
) -> Response:
    """The creator confirms they have read this version of the brief."""
    with transaction(engine) as session:
        page = acknowledge(session, token, version=version, now=clock())
    if page is None:
        return _brief(request, None, [])
    return RedirectResponse(f"/briefs/{token}", status_code=303)


Number = TypeVar("Number", int, float)


def _number(field: str, text: str, kind: type[Number]) -> Number | None:
    """A form's number, or None when left empty; RallyError naming the field otherwise."""
    if not text.strip():
        return None
    try:
        return kind(text)
    except ValueError:
        raise RallyError(f"{field}: a number, please (got {text.strip()[:12]!r})") from None


def _brief(
    request: Request,
    page: BriefPage | None,
    drafts: list[dict[str, Any]],
    fixing: dict[str, Any] | None = None,
) -> Response:
    if page is None:
        return not_found(request)
    context = {
        "page": page,
        "drafts": drafts,
        "fixing": fixing,
        "brief": page.brief,
        "content": Markup(page.brief.content_html),  # rendered by the sandbox, autoescaped
    }
    return page_response(request, "brief.html", context)
