"""The staff console: the campaigns that list the signed-in person under `staff:`, and per
campaign the sprint's timeline (with the milestones people judge to mark), the pipeline, the
KPIs of the latest report with its charts, each lead destination's sync health (with a button
that sends the dead letters again), buttons that start work, the follow-up log and the audit
log. Anyone else, like a campaign that is not there, gets "not found"; a form from another
site is refused; every change is audited with the staff member's email.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Engine
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool

from config.errors import RallyError
from config.settings import Settings
from store.audit import Change, record
from store.db import transaction
from store.models import Campaign
from tasks.campaigns.configs import campaign_followups
from tasks.leads.status import requeue_dead
from tasks.reporting.page import kpi, label, page_charts, percent
from tasks.review.approvers import is_listed_staff, link_is_valid, staff_campaigns
from tasks.sprint.state import LIVE, mark_milestone, real_activity, sprint_status, start_sprint
from tasks.staff.console import (
    MAX_PAGE,
    SEARCH_LIMIT,
    audit_log,
    chain_check,
    followup_log,
    latest_report,
    lead_health,
    manual_milestones,
    pipeline,
)
from web import staff_runs
from web.deps import AppSettings, Clock, StaffMember, Store
from web.pages import not_found, page_response
from web.review import same_origin

router = APIRouter()
NOTE_LIMIT = 2000
SAID_LIMIT = 300  # characters of a message carried back to the page after a form
CHANNELS = {"reply": "Public reply", "dm": "Direct message", "email": "Email", "sms": "Text"}
CHANNELS |= {"staff": "Staff told", "tag": "Tagged"}
ELSEWHERE = "A rehearsal runs in a store of its own: see 'rally sprint start --help'."
PageNumber = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Search = Annotated[str, Query(max_length=SEARCH_LIMIT)]


def _theirs(session: Session, slug: str, email: str) -> Campaign | None:
    """The campaign, if its file lists `email` under `staff:`."""
    campaign = session.exec(select(Campaign).where(Campaign.slug == slug)).first()
    return campaign if campaign is not None and is_listed_staff(campaign, email) else None


def local_clock(campaign: Campaign) -> Callable[[datetime | None], str]:
    """How the campaign's pages show a moment: in its time zone, named ("Mon Feb 1, 09:00 EST")."""
    zone = ZoneInfo(campaign.timezone)

    def shown(moment: datetime | None) -> str:
        if moment is None:
            return "-"
        local = moment.astimezone(zone)
        return f"{local:%a %b} {local.day}, {local:%H:%M} {local.tzname()}"

    return shown


@router.get("/staff/signin/{token}")
def sign_in_page(
    request: Request, token: str, engine: Store, clock: Clock, next: str = "/staff"
) -> Response:
    """The staff's door to the one sign-in: a button (mail scanners that fetch links spend
    nothing) that posts to the review pages' sign-in, which opens the session for both."""
    with transaction(engine, write=False) as session:
        valid = link_is_valid(session, token, now=clock())
    if not valid:
        return page_response(request, "staff_signed_out.html", {"expired": True}, status_code=401)
    return page_response(request, "staff_sign_in.html", {"token": token, "next": next[:200]})


@router.get("/staff")
def campaign_list(request: Request, email: StaffMember, engine: Store, clock: Clock) -> Response:
    """The campaigns whose staff the signed-in person is, each with where its sprint stands."""
    with transaction(engine, write=False) as session:
        shown = [
            {"campaign": c, "status": sprint_status(session, c.slug, today=clock())}
            for c in staff_campaigns(session, email)
        ]
    return page_response(request, "staff_list.html", {"email": email, "campaigns": shown})


@router.get("/staff/campaigns/{slug}")
def campaign_page(
    request: Request, slug: str, email: StaffMember, engine: Store, clock: Clock
) -> Response:
    """One campaign's console."""
    now = clock()
    with transaction(engine, write=False) as session:
        campaign = _theirs(session, slug, email)
        if campaign is None:
            return not_found(request)
        status = sprint_status(session, slug, today=now)
        report = latest_report(session, campaign)
        context = {
            "campaign": campaign,
            "status": status,
            "manual": manual_milestones(session, campaign),
            "pipeline": pipeline(session, campaign, now=now),
            "report": report,
            "leads": lead_health(session, campaign),
            "rehearsal_refused": real_activity(session, campaign),
        }
    data = report.data if report is not None else None
    context |= {
        "email": email,
        "local": local_clock(campaign),
        "kpis": _kpis(data) if data else [],
        "charts": page_charts(data) if data else {},
        "runs": [r for r in reversed(staff_runs.RUNS.values()) if r.slug == slug][:5],
        "done": request.query_params.get("done", "")[:SAID_LIMIT],
        "error": request.query_params.get("error", "")[:SAID_LIMIT],
    }
    return page_response(request, "staff_campaign.html", context)


def _kpis(report: dict[str, Any]) -> list[dict[str, str]]:
    """The report's KPIs to date against their targets, as people read them."""
    return [
        {
            "name": label(name),
            "value": kpi(name, p["value"]),
            "target": kpi(name, p["target"]),
            "share": percent(p["share"], 0),
            "state": "not measurable yet"
            if p["value"] is None
            else "met"
            if p["met"]
            else "behind",
        }
        for name, p in report["progress"].items()
    ]


@router.get("/staff/campaigns/{slug}/followups")
def followups_page(
    request: Request,
    slug: str,
    email: StaffMember,
    engine: Store,
    person: Search = "",
    rule: Search = "",
    channel: Search = "",
    page: PageNumber = 1,
) -> Response:
    """The follow-up log: who was sent what, on which channel, by which rule; searchable."""
    with transaction(engine, write=False) as session:
        campaign = _theirs(session, slug, email)
        if campaign is None:
            return not_found(request)
        found = followup_log(
            session, campaign, person=person, rule=rule, channel=channel, page=page
        )
        rules = {r.id: r for r in campaign_followups(session, campaign).spec.rules}
    query = {"person": person, "rule": rule, "channel": channel}
    context = {
        "email": email,
        "campaign": campaign,
        "local": local_clock(campaign),
        "log": found,
        "query": query,
        "rules": {key: _rule_name(r.id, r.description) for key, r in rules.items()},
        "channels": CHANNELS,
        "pages": _pages(f"/staff/campaigns/{slug}/followups", query, found.number, found.more),
    }
    return page_response(request, "staff_followups.html", context)


def _rule_name(rule_id: str, description: str) -> str:
    return description if description.strip("- ") else rule_id.replace("_", " ").capitalize()


def _pages(path: str, query: dict[str, str], number: int, more: bool) -> dict[str, str | None]:
    """Links to the page before and after this one, keeping the search."""
    kept = {k: v for k, v in query.items() if v}

    def link(n: int) -> str:
        return f"{path}?{urlencode({**kept, 'page': n})}"

    return {
        "previous": link(number - 1) if number > 1 else None,
        "next": link(number + 1) if more and number < MAX_PAGE else None,
    }


@router.get("/staff/campaigns/{slug}/audit")
def audit_page(
    request: Request,
    slug: str,
    email: StaffMember,
    engine: Store,
    clock: Clock,
    page: PageNumber = 1,
    check: bool = False,
) -> Response:
    """The campaign's entries of the audit log, newest first, and whether the chain holds
    (checked again on asking)."""
    with transaction(engine, write=False) as session:
        campaign = _theirs(session, slug, email)
        if campaign is None:
            return not_found(request)
        found = audit_log(session, campaign, page=page)
        checked = chain_check(session, now=clock(), again=check)
    context = {
        "email": email,
        "campaign": campaign,
        "local": local_clock(campaign),
        "log": found,
        "checked": checked,
        "pages": _pages(f"/staff/campaigns/{slug}/audit", {}, found.number, found.more),
    }
    return page_response(request, "staff_audit.html", context)


@router.get("/staff/campaigns/{slug}/runs/{run_id}")
def run_page(
    request: Request, slug: str, run_id: str, email: StaffMember, engine: Store
) -> Response:
    """Where a piece of work started from the console stands, and what it printed."""
    run = staff_runs.RUNS.get(run_id[:32])
    with transaction(engine, write=False) as session:
        campaign = _theirs(session, slug, email)
    if campaign is None or run is None or run.slug != slug:
        return not_found(request)
    context = {"email": email, "campaign": campaign, "run": run, "local": local_clock(campaign)}
    return page_response(request, "staff_run.html", context)


# --- what staff do ---------------------------------------------------------------------------


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
    form = {k: str(v) for k, v in (await request.form()).items()}
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
        campaign = _theirs(session, slug, email)
        if campaign is None:
            return not_found(request)
        action = staff_runs.actions(slug, weeks=min(weeks, campaign.weeks)).get(what)
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
    run = staff_runs.start(action, slug=slug, by=email, now=clock(), settings=settings)
    with transaction(engine) as session:
        record(session, [_started(email, slug, action, run)])
    return RedirectResponse(f"/staff/campaigns/{slug}/runs/{run.id}", status_code=303)


def _started(email: str, slug: str, action: staff_runs.Action, run: staff_runs.Run) -> Change:
    where = f"Prefect flow run {run.flow_run}" if run.flow_run else "a process on this server"
    summary = f"{action.title} of {slug} started by {email} as {where}"
    details = {"command": action.command, "run": run.flow_run or run.id}
    return Change(email, "staff.started", "campaign", slug, summary, details)


async def _act(
    request: Request,
    slug: str,
    email: str,
    engine: Engine,
    settings: Settings,
    act: Callable[[Session, Campaign, dict[str, str]], str],
) -> Response:
    """A form from the console: refused from another site or for anyone not on the campaign's
    staff; else `act` in one transaction, and back to the page saying what was done, or why
    not."""
    if not same_origin(request, settings):
        return not_found(request, status_code=403)
    form = {k: str(v) for k, v in (await request.form()).items()}
    with transaction(engine) as session:
        campaign = _theirs(session, slug, email)
        if campaign is None:
            return not_found(request)
        try:
            done = act(session, campaign, form)
        except RallyError as exc:
            return _back(slug, error=str(exc))
    return _back(slug, done=done)


def _back(slug: str, **said: str) -> Response:
    return RedirectResponse(f"/staff/campaigns/{slug}?{urlencode(said)}#said", status_code=303)
