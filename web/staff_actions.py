"""What staff do from the console (`web.staff`): mark a milestone, send a destination's dead
letters again, record a creative's post, approve a creator's payment, start the sprint or a
piece of work
(`web.staff_runs`). Each form is refused
from another site and for anyone the campaign file does not list under `staff:`; each change is
audited with the staff member's email; the page then says what was done, or why not.
"""

from collections.abc import Callable
from datetime import date, datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from config.errors import RallyError
from config.settings import Settings
from store.audit import Change, record
from store.db import transaction
from store.models import Campaign, Creative, StaffRun
from tasks.leads.status import requeue_dead
from tasks.payments.approvals import approve
from tasks.payments.tax import Address, record_w9, roster_forms
from tasks.review.creatives import posted
from tasks.sprint.state import LIVE, mark_milestone, real_activity, start_sprint
from web import staff_runs
from web.deps import AppSettings, Clock, RowId, StaffMember, Store
from web.pages import not_found
from web.review import form_of, form_too_large, same_origin
from web.staff import W9_FIELDS, theirs, w9_form

router = APIRouter()
NOTE_LIMIT = 2000
URL_LIMIT = 500
ELSEWHERE = "A rehearsal runs in a store of its own: see 'rally sprint start --help'."


@router.post("/staff/campaigns/{slug}/milestones/{key}")
async def milestone_form(
    request: Request,
    slug: str,
    key: str,
    email: StaffMember,
    engine: Store,
    settings: AppSettings,
    clock: Clock,
) -> Response:
    """Mark a milestone people judge met or missed, with a note."""

    def mark(session: Session, campaign: Campaign, form: dict[str, str]) -> str:
        verdict = form.get("status", "")
        note = form.get("note", "")[:NOTE_LIMIT]
        milestone = mark_milestone(session, slug, key, verdict, actor=email, now=clock(), note=note)
        return f"{milestone.name}: marked {verdict}."

    return await _act(request, slug, email, engine, settings, mark)


@router.post("/staff/campaigns/{slug}/leads/retry")
async def retry_form(
    request: Request,
    slug: str,
    email: StaffMember,
    engine: Store,
    settings: AppSettings,
    clock: Clock,
) -> Response:
    """Send a destination's dead letters again (after what the remote refused was fixed)."""

    def retry(session: Session, campaign: Campaign, form: dict[str, str]) -> str:
        name = form.get("destination", "")[:64]
        count = requeue_dead(session, now=clock(), destination=name, campaign_id=campaign.id)
        summary = f"{count} dead lead message(s) to {name} of {slug} queued again by {email}"
        details = {"destination": name, "queued": count}
        record(session, [Change(email, "leads.retried", "campaign", slug, summary, details)])
        return f"{count:,} lead(s) queued again for {name}; the next sync sends them."

    return await _act(request, slug, email, engine, settings, retry)


@router.post("/staff/campaigns/{slug}/creatives/{creative_id}/posted")
async def posted_form(
    request: Request,
    slug: str,
    creative_id: RowId,
    email: StaffMember,
    engine: Store,
    settings: AppSettings,
    clock: Clock,
) -> Response:
    """Record where an approved creative was posted (its creator's own video address)."""

    def record_post(session: Session, campaign: Campaign, form: dict[str, str]) -> str:
        creative = session.get(Creative, creative_id)
        if creative is None or creative.campaign_id != campaign.id:
            raise RallyError(f"creative {creative_id} is not one of {campaign.name}'s")
        url = form.get("url", "")[:URL_LIMIT]
        if not posted(session, creative_id=creative_id, url=url, actor=email, now=clock()):
            return f"Creative {creative_id} recorded as posted BEFORE APPROVAL, and flagged."
        return f"Creative {creative_id} recorded as posted."

    return await _act(request, slug, email, engine, settings, record_post, page="/creatives")


@router.post("/staff/campaigns/{slug}/payments/approve")
async def approve_form(
    request: Request,
    slug: str,
    email: StaffMember,
    engine: Store,
    settings: AppSettings,
    clock: Clock,
) -> Response:
    """Approve what a creator has waiting, as the signed-in staff member (a second, different
    person from the campaign's threshold up)."""

    def approve_waiting(session: Session, campaign: Campaign, form: dict[str, str]) -> str:
        done = approve(session, campaign, form.get("creator", "")[:64], by=email, now=clock())
        amount = f"{done.amount_cents / 100:,.2f} {done.currency}"
        if done.posted:
            return f"{done.creator}: {amount} approved for payment."
        return f"{done.creator}: {amount} approved by you; a second person must approve it too."

    return await _act(request, slug, email, engine, settings, approve_waiting, page="/payments")


@router.post("/staff/campaigns/{slug}/payments/w9/{handle}")
async def w9_form_sent(
    request: Request,
    slug: str,
    handle: str,
    email: StaffMember,
    engine: Store,
    settings: AppSettings,
    clock: Clock,
) -> Response:
    """Record a roster creator's W-9 as the signed-in staff member; a refusal shows the form
    again as it was sent, the field at fault named."""
    if not same_origin(request, settings):
        return not_found(request, status_code=403)
    form = await form_of(request)
    if form is None:
        return form_too_large()
    values = {name: form.get(name, "")[:200] for name in (*W9_FIELDS, "business")}
    return await run_in_threadpool(
        _record_w9, request, slug, handle[:64], email, engine, clock(), values
    )


def _record_w9(
    request: Request,
    slug: str,
    handle: str,
    email: str,
    engine: Engine,
    now: datetime,
    values: dict[str, str],
) -> Response:
    with transaction(engine) as session:
        campaign = theirs(session, slug, email)
        found = roster_forms(session, campaign, handle) if campaign else []
        if campaign is None or not found:
            return not_found(request)
        try:
            day = _w9_recorded(session, found[0].creator.handle, email, now, values)
        except RallyError as exc:
            if str(exc).startswith("tin_last4:"):  # never show back what may be a whole TIN
                values["tin_last4"] = ""
            return w9_form(request, campaign, found[0], email, values, str(exc))
    said = urlencode({"done": f"@{found[0].creator.handle}: W-9 on file, collected {day}."})
    return RedirectResponse(f"/staff/campaigns/{slug}/payments/w9?{said}#said", status_code=303)


def _w9_recorded(
    session: Session, handle: str, email: str, now: datetime, values: dict[str, str]
) -> date:
    """Record the W-9 the form describes (a refusal comes before any change); the day it was
    collected."""
    try:
        day = date.fromisoformat(values["collected_on"])
    except ValueError:
        raise RallyError("collected_on: give the day the form was collected") from None
    address = values["street"], values["city"], values["state"], values["zip"]
    record_w9(
        session,
        handle,
        collected_on=day,
        legal_name=values["name"],
        tin_last4=values["tin_last4"],
        actor=email,
        now=now,
        address=Address.checked(*address, values["street2"]) if any(address) else None,
        business=bool(values["business"]),
    )
    return day


@router.post("/staff/campaigns/{slug}/start")
async def start_form(
    request: Request,
    slug: str,
    email: StaffMember,
    engine: Store,
    settings: AppSettings,
    clock: Clock,
) -> Response:
    """Start the sprint on the calendar, or start a rehearsal, the briefs, a sync or a report
    (`web.staff_runs`), then go to where it can be followed."""
    if not same_origin(request, settings):
        return not_found(request, status_code=403)
    form = await form_of(request)
    if form is None:
        return form_too_large()
    weeks = form.get("weeks", "0")
    work = (form.get("action", ""), int(weeks) if weeks.isdigit() else 0)
    # Prefect's client and the process start block: off the event loop, like any sync route.
    return await run_in_threadpool(
        _start_work, request, slug, email, engine, settings, clock, *work
    )


def _start_work(
    request: Request,
    slug: str,
    email: str,
    engine: Engine,
    settings: Settings,
    clock: Callable[[], datetime],
    what: str,
    weeks: int,
) -> Response:
    """The sprint started at once; other work started as a run, no transaction held meanwhile,
    then audited."""
    with transaction(engine, write=what == "sprint") as session:
        campaign = theirs(session, slug, email)
        if campaign is None:
            return not_found(request)
        action = staff_runs.actions(slug, weeks=min(weeks, campaign.weeks), by=email).get(what)
        try:
            if what == "sprint":
                start_sprint(session, slug, mode=LIVE, seed=None, now=clock(), actor=email)
                return _back(slug, done="The sprint has started on its calendar.")
        except RallyError as exc:
            return _back(slug, error=str(exc))
        if action is None:
            return not_found(request, status_code=400)
        if what == "rehearsal" and (why := real_activity(session, campaign)):
            return _back(slug, error=f"No rehearsal here: {why}. {ELSEWHERE}")
        campaign_id = campaign.id or 0
    run = staff_runs.start(
        engine,
        action,
        campaign_id=campaign_id,
        slug=slug,
        by=email,
        now=clock(),
        settings=settings,
    )
    with transaction(engine) as session:
        record(session, [run_started(email, slug, action, run)])
    return RedirectResponse(f"/staff/campaigns/{slug}/runs/{run.id}", status_code=303)


def run_started(email: str, slug: str, action: staff_runs.Action, run: StaffRun) -> Change:
    where = f"Prefect flow run {run.flow_run_id}" if run.flow_run_id else f"a process on {run.host}"
    summary = f"{action.title} of {slug} started by {email} as {where}"
    details = {"command": action.command, "run": run.flow_run_id or run.id}
    return Change(email, "staff.started", "campaign", slug, summary, details)


async def _act(
    request: Request,
    slug: str,
    email: str,
    engine: Engine,
    settings: Settings,
    act: Callable[[Session, Campaign, dict[str, str]], str],
    *,
    page: str = "",
) -> Response:
    """A form from the console: refused from another site or for anyone not on the campaign's
    staff; else `act` in one transaction (off the event loop; rolled back if `act` refuses),
    and back to the campaign's page (or its `page`) saying what was done, or why not."""
    if not same_origin(request, settings):
        return not_found(request, status_code=403)
    form = await form_of(request)
    if form is None:
        return form_too_large()
    return await run_in_threadpool(_act_in_store, request, slug, email, engine, act, form, page)


def _act_in_store(
    request: Request,
    slug: str,
    email: str,
    engine: Engine,
    act: Callable[[Session, Campaign, dict[str, str]], str],
    form: dict[str, str],
    page: str,
) -> Response:
    try:
        with transaction(engine) as session:
            campaign = theirs(session, slug, email)
            if campaign is None:
                return not_found(request)
            done = act(session, campaign, form)
    except RallyError as exc:
        return _back(slug, page=page, error=str(exc))
    return _back(slug, page=page, done=done)


def _back(slug: str, *, page: str = "", **said: str) -> Response:
    address = f"/staff/campaigns/{slug}{page}?{urlencode(said)}#said"
    return RedirectResponse(address, status_code=303)
