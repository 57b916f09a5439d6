"""The sprint's page for its staff: where it stands, what waits on them (a go-ahead, a milestone
to mark) with the button that settles it, and its calendar of steps. Staff are the campaign's
`staff`, else its internal reviewers (`tasks.campaigns.campaign.runs_sprint`); anyone else,
approvers of other tiers included, gets "not found", as for a campaign that is not there.
"""

from collections.abc import Callable
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from sqlalchemy import Engine
from sqlmodel import Session, select

from config.errors import RallyError
from config.settings import Settings
from store.db import transaction
from store.models import Campaign
from tasks.campaigns.campaign import runs_sprint
from tasks.sprint.calendar import give_go_ahead, open_decisions
from tasks.sprint.state import mark_milestone, sprint_status
from web.deps import Approver, AppSettings, Clock, Store
from web.pages import form_fields, not_found, page_response, request_body
from web.review import same_origin
from web.staff import local_clock

router = APIRouter()
NOTE_LIMIT = 2000
MAX_FORM_BYTES = 32 * 1024  # a note of NOTE_LIMIT characters in any script, encoded
MAX_FORM_FIELDS = 10


def _staff_campaign(session: Session, slug: str, email: str) -> Campaign | None:
    """The campaign, if `email` is on its staff."""
    campaign = session.exec(select(Campaign).where(Campaign.slug == slug)).first()
    return campaign if campaign is not None and runs_sprint(campaign, email) else None


@router.get("/sprint/{slug}")
def sprint_page(
    request: Request, slug: str, email: Approver, engine: Store, clock: Clock
) -> Response:
    """Where the sprint stands and what waits on its staff."""
    with transaction(engine, write=False) as session:
        campaign = _staff_campaign(session, slug, email)
        if campaign is None:
            return not_found(request)
        status = sprint_status(session, slug, today=clock())
        decisions = open_decisions(session, campaign, week=status["week"])
    context = {
        "email": email,
        "name": campaign.name,
        "status": status,
        "decisions": decisions,
        "local": local_clock(campaign),
        "done": request.query_params.get("done"),
        "error": request.query_params.get("error"),
    }
    return page_response(request, "sprint.html", context)


@router.post("/sprint/{slug}/go-ahead")
async def go_ahead_form(
    request: Request, slug: str, email: Approver, engine: Store, settings: AppSettings, clock: Clock
) -> Response:
    """A staff member's go-ahead for a step that waits for one."""

    def give(session: Session, form: dict[str, str], note: str) -> str:
        step = form.get("step", "")
        give_go_ahead(session, slug, step, actor=email, now=clock(), note=note)
        return f"Go-ahead given for {step}: it is done at the next pass."

    return await _settle(request, slug, email, engine, settings, give)


@router.post("/sprint/{slug}/milestones/{key}")
async def milestone_form(
    request: Request,
    slug: str,
    key: str,
    email: Approver,
    engine: Store,
    settings: AppSettings,
    clock: Clock,
) -> Response:
    """A staff member marks a milestone people judge, met or missed."""

    def mark(session: Session, form: dict[str, str], note: str) -> str:
        verdict = form.get("status", "")
        mark_milestone(session, slug, key, verdict, actor=email, now=clock(), note=note)
        return f"Milestone marked {verdict}."

    return await _settle(request, slug, email, engine, settings, mark)


async def _settle(
    request: Request,
    slug: str,
    email: str,
    engine: Engine,
    settings: Settings,
    act: Callable[[Session, dict[str, str], str], str],
) -> Response:
    """A staff form from the sprint's page: refused from another site or for anyone not on the
    campaign's staff; a body too large to be one of its forms, 413 (never read past the limit);
    else `act` (given the form and its note) in one transaction, and back to the page saying
    what was done, or why not."""
    if not same_origin(request, settings):
        return not_found(request, status_code=403)
    body = await request_body(request, MAX_FORM_BYTES)
    if body is None:
        return PlainTextResponse("The form is too large.", status_code=413)
    form = form_fields(body, max_fields=MAX_FORM_FIELDS, max_chars=NOTE_LIMIT)
    with transaction(engine) as session:
        if _staff_campaign(session, slug, email) is None:
            return not_found(request)
        try:
            done = act(session, form, form.get("note", ""))
        except RallyError as exc:
            return _back(slug, error=str(exc))
    return _back(slug, done=done)


def _back(slug: str, **said: str) -> Response:
    return RedirectResponse(f"/sprint/{slug}?{urlencode(said)}#top", status_code=303)
