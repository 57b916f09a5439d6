"""The approvers' pages: sign-in by emailed link, the review queue (overdue first), and a task's
page with the creative, its versions, the findings, the checklist and the three decisions. A
decision takes effect at once, as from the CLI."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Engine

from config.settings import Settings
from store.db import transaction
from tasks.review.approvers import (
    is_approver_of_task,
    link_is_valid,
    page_after_sign_in,
    redeem_link,
)
from tasks.review.decisions import decide
from tasks.review.routing import ReviewRefused
from tasks.review.views import history, review_queue, task_view
from web.deps import SESSION_COOKIE, Approver, AppSettings, Clock, RowId, Store
from web.pages import not_found, page_response

router = APIRouter()
DECISIONS = ("approve", "request_changes", "reject")
SESSION_SECONDS = 12 * 3600


def same_origin(request: Request, settings: Settings) -> bool:
    """Forms are only taken from Rally's own pages (with SameSite cookies, against CSRF)."""
    origin = request.headers.get("origin")
    return origin is None or origin in (settings.public_url, str(request.base_url).rstrip("/"))


@router.get("/review/signin/{token}")
def sign_in_page(
    request: Request, token: str, engine: Store, clock: Clock, next: str = "/review"
) -> Response:
    """A button, not an automatic sign-in: mail scanners that fetch links spend nothing."""
    with transaction(engine, write=False) as session:
        valid = link_is_valid(session, token, now=clock())
    if not valid:
        return page_response(request, "signed_out.html", {"expired": True}, status_code=401)
    return page_response(request, "sign_in.html", {"token": token, "next": next})


@router.post("/review/signin/{token}")
async def sign_in(
    request: Request, token: str, engine: Store, settings: AppSettings, clock: Clock
) -> Response:
    """Spend the sign-in link and open a browser session, then go where the link pointed."""
    if not same_origin(request, settings):
        return not_found(request, status_code=403)
    next = str((await request.form()).get("next", "/review"))
    with transaction(engine) as session:
        redeemed = redeem_link(session, token, now=clock())
    if redeemed is None:
        return page_response(request, "signed_out.html", {"expired": True}, status_code=401)
    response = RedirectResponse(page_after_sign_in(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        redeemed[1],
        httponly=True,
        samesite="lax",
        secure=settings.public_url.startswith("https://"),
        max_age=SESSION_SECONDS,
    )
    return response


@router.get("/review")
def queue(request: Request, email: Approver, engine: Store, clock: Clock) -> Response:
    """The approver's open review tasks, overdue first."""
    with transaction(engine, write=False) as session:
        tasks = review_queue(session, approver=email, now=clock())
    return page_response(request, "review_queue.html", {"email": email, "tasks": tasks})


@router.get("/review/tasks/{task_id}")
def task_page(request: Request, task_id: RowId, email: Approver, engine: Store) -> Response:
    """A review task with its creative, findings, checklist and decisions."""
    return _task_page(request, engine, task_id, email, error=None)


@router.post("/review/tasks/{task_id}/decide")
async def decide_page(
    request: Request,
    task_id: RowId,
    email: Approver,
    engine: Store,
    settings: AppSettings,
    clock: Clock,
) -> Response:
    """An approver's decision from the task's page; a refusal shows the page again, saying why."""
    if not same_origin(request, settings):
        return not_found(request, status_code=403)
    form = await request.form()
    decision = str(form.get("decision", ""))
    if decision not in DECISIONS:
        return not_found(request, status_code=400)
    try:
        version = int(str(form.get("version", "")))
        with transaction(engine) as session:
            decide(
                session,
                task_id=task_id,
                decision=decision,
                approver=email,
                now=clock(),
                note=str(form.get("note", ""))[:5000],
                confirmed=[str(k).removeprefix("check_") for k in form if k.startswith("check_")],
                version=version,
                public_url=settings.public_url,
            )
    except (ReviewRefused, ValueError) as exc:
        return _task_page(request, engine, task_id, email, error=str(exc), status_code=409)
    return RedirectResponse(f"/review/tasks/{task_id}?done={decision}", status_code=303)


def _task_page(
    request: Request,
    engine: Engine,
    task_id: int,
    email: str,
    *,
    error: str | None,
    status_code: int = 200,
) -> Response:
    """The task's page, for one of its campaign's approvers; anyone else gets "not found"."""
    with transaction(engine, write=False) as session:
        if not is_approver_of_task(session, task_id, email):
            return not_found(request)
        view: dict[str, Any] = task_view(session, task_id)
        view["history"] = history(session, view["creative"])
    context = {
        "email": email,
        "view": view,
        "error": error,
        "done": request.query_params.get("done"),
    }
    return page_response(request, "review_task.html", context, status_code=status_code)
