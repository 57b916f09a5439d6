"""Campaign reports for their staff: each week's report as the flow that made it stored it, on
whichever machine (`tasks.reporting.stored`), for the campaign's approvers once signed in. A
campaign or week that is not there, or not theirs, is "not found" alike."""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from store.db import transaction
from tasks.reporting.stored import report_page, reports_of
from web.deps import Approver, Store
from web.pages import not_found, page_response
from web.staff import local_clock

router = APIRouter()


@router.get("/reports")
def report_list(request: Request, email: Approver, engine: Store) -> Response:
    """The campaigns the signed-in approver is staff of, with their stored reports and when
    each was made, in the campaign's time zone."""
    with transaction(engine, write=False) as session:
        campaigns = [
            {**c, "local": local_clock(c["campaign"])} for c in reports_of(session, reader=email)
        ]
    return page_response(request, "reports.html", {"email": email, "campaigns": campaigns})


@router.get("/reports/{slug}")
def latest_report(request: Request, slug: str, email: Approver, engine: Store) -> Response:
    """The campaign's newest report, at its own address."""
    with transaction(engine, write=False) as session:
        found = reports_of(session, reader=email, slug=slug)
    if not found or not found[0]["weeks"]:
        return not_found(request)
    return RedirectResponse(f"/reports/{slug}/week-{found[0]['weeks'][0]['week']}", 303)


@router.get("/reports/{slug}/week-{week:int}")
def week_report(request: Request, slug: str, week: int, email: Approver, engine: Store) -> Response:
    """The report up to `week`: the same self-contained page as the report.html file."""
    with transaction(engine, write=False) as session:
        html = report_page(session, slug, week, reader=email)
    return not_found(request) if html is None else HTMLResponse(html)
