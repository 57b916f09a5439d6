"""The staff console: the campaigns that list the signed-in person under `staff:`, and per
campaign the sprint's timeline (with the milestones people judge to mark), the pipeline, the
KPIs of the latest report with its charts, each lead destination's sync health (with a button
that sends the dead letters again), buttons that start work, the follow-up log and the audit
log; its forms are answered by `web.staff_actions`. Anyone else, like a campaign that is not
there, gets "not found".
"""

from collections.abc import Callable
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlmodel import Session, select

from config.campaign import FecFiling
from config.errors import RallyError
from store.db import transaction
from store.models import Campaign
from tasks.campaigns.campaign import campaign_spec
from tasks.campaigns.configs import campaign_followups
from tasks.reporting.page import kpi, label, page_charts, percent
from tasks.review.approvers import (
    STAFF_PAGES,
    is_listed_staff,
    link_is_valid,
    page_after_sign_in,
    staff_campaigns,
)
from tasks.review.views import creatives_of
from tasks.sprint.state import real_activity, sprint_status
from tasks.staff.console import (
    MAX_PAGE,
    PAGE_SIZE,
    SEARCH_LIMIT,
    audit_log,
    chain_check,
    followup_log,
    latest_report,
    lead_health,
    manual_milestones,
    pipeline,
)
from tasks.staff.runs import find_run, recent_runs
from web.deps import Clock, StaffMember, Store
from web.pages import not_found, page_response

if TYPE_CHECKING:  # the payments modules load with the pages that use them
    from tasks.payments.tax import OnRoster

router = APIRouter()
SAID_LIMIT = 300  # characters of a message carried back to the page after a form
CHANNELS = {"reply": "Public reply", "dm": "Direct message", "email": "Email", "sms": "Text"}
CHANNELS |= {"staff": "Staff told", "tag": "Tagged"}
PageNumber = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Search = Annotated[str, Query(max_length=SEARCH_LIMIT)]


def theirs(session: Session, slug: str, email: str) -> Campaign | None:
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
        context = {"expired": True, "next": page_after_sign_in(next, STAFF_PAGES)}
        return page_response(request, "staff_signed_out.html", context, status_code=401)
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
        campaign = theirs(session, slug, email)
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
            "runs": recent_runs(session, campaign.id or 0),
        }
    data = report.data if report is not None else None
    context |= {
        "email": email,
        "local": local_clock(campaign),
        "kpis": _kpis(data) if data else [],
        "charts": page_charts(data) if data else {},
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
        campaign = theirs(session, slug, email)
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


CREATIVE_STATES = {
    "": "Any state",
    "draft": "Draft",
    "in_review": "In review",
    "changes_requested": "Sent back for changes",
    "approved": "Approved, not posted yet",
    "posted": "Posted",
    "rejected": "Rejected",
    "taken_down": "Taken down",
}


@router.get("/staff/campaigns/{slug}/creatives")
def creatives_page(
    request: Request,
    slug: str,
    email: StaffMember,
    engine: Store,
    state: Search = "",
    page: PageNumber = 1,
) -> Response:
    """The campaign's creatives, newest first, by state; an approved one's post is recorded
    here (as `rally creatives posted` does)."""
    status = state if state in CREATIVE_STATES else ""
    with transaction(engine, write=False) as session:
        campaign = theirs(session, slug, email)
        if campaign is None:
            return not_found(request)
        rows = creatives_of(
            session,
            campaign,
            status=status or None,
            limit=PAGE_SIZE + 1,
            offset=(page - 1) * PAGE_SIZE,
        )
    more = len(rows) > PAGE_SIZE
    context = {
        "email": email,
        "campaign": campaign,
        "rows": rows[:PAGE_SIZE],
        "number": page,
        "state": status,
        "states": CREATIVE_STATES,
        "done": request.query_params.get("done", "")[:SAID_LIMIT],
        "error": request.query_params.get("error", "")[:SAID_LIMIT],
        "pages": _pages(f"/staff/campaigns/{slug}/creatives", {"state": status}, page, more),
    }
    return page_response(request, "staff_creatives.html", context)


@router.get("/staff/campaigns/{slug}/payments")
def payments_page(request: Request, slug: str, email: StaffMember, engine: Store) -> Response:
    """What each creator earned and where it stands, the approvals waiting for a second
    person, and the latest payouts; staff approve a creator's waiting amount here (as `rally
    payments approve` does, the signed-in person the approver) and start a payout run. The
    creators with nothing waiting are folded: after a few weeks they are most of the roster."""
    from tasks.payments.approvals import waiting_approvals
    from tasks.payments.ledger import balances
    from tasks.payments.payouts import payouts

    with transaction(engine, write=False) as session:
        campaign = theirs(session, slug, email)
        if campaign is None:
            return not_found(request)
        rows = balances(session, campaign)
        waiting = {w["creator"]: w for w in waiting_approvals(session, campaign)}
        paid = payouts(session, campaign, limit=PAGE_SIZE)
        threshold = campaign_spec(campaign).payments.second_approval_from
    totals = {k: sum(r[k] for r in rows) for k in ("earned_cents", "paid_cents", "owed_cents")}
    ready = [r for r in rows if r["approved_cents"] > 0]
    context = {
        "email": email,
        "campaign": campaign,
        "rows": rows,
        "to_approve": [r for r in rows if r["awaiting_cents"] > 0],
        "settled": [r for r in rows if r["awaiting_cents"] <= 0],
        "approved": {
            "cents": sum(r["approved_cents"] for r in ready),
            "creators": len(ready),
        },
        "waiting": waiting,
        "payouts": paid,
        "totals": totals,
        "currency": campaign_spec(campaign).budget.currency,
        "threshold": threshold,
        "files_fec": campaign_spec(campaign).payments.fec is not None,
        "done": request.query_params.get("done", "")[:SAID_LIMIT],
        "error": request.query_params.get("error", "")[:SAID_LIMIT],
    }
    return page_response(request, "staff_payments.html", context)


# What each of a report's files is, by how its name begins and ends.
REPORT_FILES = {
    ("disbursements", ".fec.csv"): "Schedule B as CSV, the same fields",
    ("disbursements", ".fec"): "Schedule B, the FEC's import format (.fec)",
    ("disbursements", ".csv"): "Disbursements for state filings (CSV with a header)",
    ("offsets", ".fec.csv"): "Offsets, Schedule A as CSV, the same fields",
    ("offsets", ".fec"): "Offsets, Schedule A in the FEC's import format (.fec)",
    ("offsets", ".csv"): "Offsets for state filings (CSV with a header)",
}
From = Annotated[str, Query(alias="from", max_length=10)]
To = Annotated[str, Query(alias="to", max_length=10)]


def what_file(name: str) -> str:
    return next(
        v
        for (head, tail), v in REPORT_FILES.items()
        if name.startswith(head) and name.endswith(tail)
    )


@router.get("/staff/campaigns/{slug}/payments/reports")
def payment_reports_page(
    request: Request,
    slug: str,
    email: StaffMember,
    engine: Store,
    clock: Clock,
    start: From = "",
    end: To = "",
) -> Response:
    """The treasurer's reports for a period (`tasks.payments.disbursements.report`, what `rally
    payments disbursements` writes): what they hold, the payees left out and why, and each
    file to download. The period is the current quarter to date until one is asked for."""
    from tasks.payments.disbursements import filing_of, report
    from tasks.sprint.state import campaign_today

    context: dict[str, Any] = {"email": email, "error": "", "filed": None}
    with transaction(engine, write=False) as session:
        campaign = theirs(session, slug, email)
        if campaign is None:
            return not_found(request)
        context["campaign"] = campaign
        try:
            filing = filing_of(campaign)
        except RallyError as exc:
            context["not_filing"] = str(exc)
            return page_response(request, "staff_payment_reports.html", context)
        others = _not_theirs(session, filing, email)
        if others:
            context["others"] = others
            return page_response(request, "staff_payment_reports.html", context)
        today = campaign_today(session, campaign, clock())
        quarter = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
        context |= {"start": start or str(quarter), "end": end or str(today), "filing": filing}
        try:
            first, last = _day("from", context["start"]), _day("to", context["end"])
            context["filed"] = filed = report(session, campaign, first, last)
            context["files"] = [(name, what_file(name)) for name in filed.files]
        except RallyError as exc:
            context["error"] = str(exc)
    return page_response(request, "staff_payment_reports.html", context)


@router.get("/staff/campaigns/{slug}/payments/reports/{name}")
def payment_report_file(
    request: Request,
    slug: str,
    name: str,
    email: StaffMember,
    engine: Store,
    start: From = "",
    end: To = "",
) -> Response:
    """One file of the period's report, to download under its name."""
    from tasks.payments.disbursements import filing_of, report

    with transaction(engine, write=False) as session:
        campaign = theirs(session, slug, email)
        if campaign is None:
            return not_found(request)
        try:
            if _not_theirs(session, filing_of(campaign), email):
                return not_found(request)
            filed = report(session, campaign, _day("from", start), _day("to", end))
        except RallyError:
            return not_found(request)
    text = filed.files.get(name)
    if text is None:
        return not_found(request)
    kind = "text/csv" if name.endswith(".csv") else "text/plain"
    return Response(
        text.encode("ascii", errors="replace"),
        media_type=f"{kind}; charset=us-ascii",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


W9_ADDRESS = ("street", "street2", "city", "state", "zip")
W9_FIELDS = ("collected_on", "name", "tin_last4", *W9_ADDRESS)


@router.get("/staff/campaigns/{slug}/payments/w9")
def tax_forms_page(request: Request, slug: str, email: StaffMember, engine: Store) -> Response:
    """Each creator on the roster with their W-9: on file or not, and whether it holds what
    the treasurer's reports itemize; each links to its form. The creators who earned nothing
    yet are folded, as on the payments page."""
    from tasks.payments.ledger import balances
    from tasks.payments.tax import roster_forms

    with transaction(engine, write=False) as session:
        campaign = theirs(session, slug, email)
        if campaign is None:
            return not_found(request)
        roster = roster_forms(session, campaign)
        earned = {row["creator"]: row["earned_cents"] for row in balances(session, campaign)}
    earning = [(e, earned[e.creator.handle]) for e in roster if earned.get(e.creator.handle)]
    context = {
        "email": email,
        "campaign": campaign,
        "earning": earning,
        "others": [e for e in roster if not earned.get(e.creator.handle)],
        "currency": campaign_spec(campaign).budget.currency,
        "ready": sum(1 for e, _ in earning if e.agency or e.ready),
        "done": request.query_params.get("done", "")[:SAID_LIMIT],
    }
    return page_response(request, "staff_tax_forms.html", context)


@router.get("/staff/campaigns/{slug}/payments/w9/{handle}")
def w9_page(
    request: Request, slug: str, handle: str, email: StaffMember, engine: Store, clock: Clock
) -> Response:
    """The form that records a creator's W-9 (as `rally payments w9` does), filled in with
    the one on file."""
    from tasks.payments.tax import roster_forms

    with transaction(engine, write=False) as session:
        campaign = theirs(session, slug, email)
        found = roster_forms(session, campaign, handle[:64]) if campaign else []
        if campaign is None or not found:
            return not_found(request)
    form = found[0].form
    values = {name: "" for name in W9_FIELDS}
    if form is not None:
        values |= {
            "collected_on": form.collected_on.isoformat(),
            "name": form.legal_name or "",
            "tin_last4": form.tin_last4 or "",
            "business": "on" if form.business else "",
        }
        values |= {name: getattr(form, name) or "" for name in W9_ADDRESS}
    else:
        values["collected_on"] = clock().date().isoformat()
    return w9_form(request, campaign, found[0], email, values)


def w9_form(
    request: Request,
    campaign: Campaign,
    entry: "OnRoster",
    email: str,
    values: dict[str, str],
    error: str = "",
) -> Response:
    """The W-9 form with `values`; a refusal names its field (`zip: ...`), which is marked."""
    field = error.split(":", 1)[0] if error else ""
    context = {
        "email": email,
        "campaign": campaign,
        "entry": entry,
        "values": values,
        "error": error,
        "field": field if field in W9_FIELDS else "",
    }
    return page_response(request, "staff_w9.html", context, status_code=400 if error else 200)


def _not_theirs(session: Session, filing: FecFiling, email: str) -> int:
    """How many of the campaigns the committee's report covers do not list `email` as staff:
    the report names their creators and addresses, so it is theirs to prepare."""
    from tasks.payments.disbursements import committee_campaigns

    return sum(1 for c in committee_campaigns(session, filing) if not is_listed_staff(c, email))


def _day(field: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise RallyError(f"{field}: {text!r} is not a day (YYYY-MM-DD)") from None


@router.get("/staff/campaigns/{slug}/boosts")
def boosts_page(
    request: Request, slug: str, email: StaffMember, engine: Store, clock: Clock
) -> Response:
    """The campaign's Spark Ads (`tasks.amplification.overview`): read only, as acting on a
    boost talks to TikTok with the ad account's token, which `rally boost` holds."""
    from tasks.amplification.overview import boosts_overview
    from tasks.sprint.state import campaign_today

    with transaction(engine, write=False) as session:
        campaign = theirs(session, slug, email)
        if campaign is None:
            return not_found(request)
        today = campaign_today(session, campaign, clock())
        overview = boosts_overview(session, campaign, today=today)
    context = {
        "email": email,
        "campaign": campaign,
        "currency": campaign_spec(campaign).budget.currency,
    }
    return page_response(request, "staff_boosts.html", context | overview)


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
        campaign = theirs(session, slug, email)
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
    with transaction(engine, write=False) as session:
        campaign = theirs(session, slug, email)
        run = find_run(session, campaign.id or 0, run_id) if campaign else None
    if campaign is None or run is None:
        return not_found(request)
    context = {"email": email, "campaign": campaign, "run": run, "local": local_clock(campaign)}
    return page_response(request, "staff_run.html", context)
