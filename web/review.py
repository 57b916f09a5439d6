"""The approvers' pages: sign-in by emailed link (and a form that emails a new one), the review
queue with its filters, and a task's page: the video, the caption against the previous
version's, comments at moments of the video, the findings, the checklist and the decisions. A
decision takes effect at once, as from the CLI."""

import asyncio
import math
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from sqlalchemy import Engine

from config.settings import Settings
from store.db import transaction
from tasks.review.approvers import (
    STAFF_PAGES,
    is_approver_of_task,
    link_is_valid,
    page_after_sign_in,
    redeem_link,
)
from tasks.review.comments import CommentRefused, add_comment
from tasks.review.decisions import decide
from tasks.review.new_links import count_link_request, email_new_link
from tasks.review.routing import ReviewRefused
from tasks.review.views import STATES, approver_queue, review_page
from web.deps import SESSION_COOKIE, Approver, AppSettings, Clock, RowId, Store
from web.pages import form_fields, not_found, page_response, request_body
from web.public import client_address

router = APIRouter()
DECISIONS = ("approve", "request_changes", "reject")
SESSION_SECONDS = 12 * 3600
MAX_FORM_BYTES = 64 * 1024  # a comment or note of a few thousand characters, encoded
MAX_FORM_FIELDS = 100
EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")


def same_origin(request: Request, settings: Settings) -> bool:
    """Forms are only taken from Rally's own pages (with SameSite cookies, against CSRF)."""
    origin = request.headers.get("origin")
    return origin is None or origin in (settings.public_url, str(request.base_url).rstrip("/"))


def signed_out_page(next_path: str) -> str:
    """The signed-out page for where the person was going: the staff console's, or the review
    pages'. Both offer "email me a new sign-in link"."""
    return "staff_signed_out.html" if next_path.startswith(STAFF_PAGES) else "signed_out.html"


def form_too_large() -> Response:
    return PlainTextResponse("The form is too large.", status_code=413)


async def form_of(request: Request) -> dict[str, str] | None:
    """A form-encoded body's fields (the first of each name), None when too large."""
    body = await request_body(request, MAX_FORM_BYTES)
    return None if body is None else form_fields(body, max_fields=MAX_FORM_FIELDS)


@router.get("/review/signin/{token}")
def sign_in_page(
    request: Request, token: str, engine: Store, clock: Clock, next: str = "/review"
) -> Response:
    """A button, not an automatic sign-in: mail scanners that fetch links spend nothing."""
    with transaction(engine, write=False) as session:
        valid = link_is_valid(session, token, now=clock())
    if not valid:
        back = page_after_sign_in(next)
        context = {"expired": True, "next": back}
        return page_response(request, signed_out_page(back), context, status_code=401)
    return page_response(request, "sign_in.html", {"token": token, "next": next})


@router.post("/review/signin/{token}")
async def sign_in(
    request: Request, token: str, engine: Store, settings: AppSettings, clock: Clock
) -> Response:
    """Spend the sign-in link and open a browser session, then go where the link pointed."""
    if not same_origin(request, settings):
        return not_found(request, status_code=403)
    form = await form_of(request)  # bounded: anyone may post here, a token in hand or not
    if form is None:
        return form_too_large()
    next = page_after_sign_in(form.get("next", "/review"))
    with transaction(engine) as session:
        redeemed = redeem_link(session, token, now=clock())
    if redeemed is None:
        context = {"expired": True, "next": next}
        return page_response(request, signed_out_page(next), context, status_code=401)
    response = RedirectResponse(next, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        redeemed[1],
        httponly=True,
        samesite="lax",
        secure=settings.public_url.startswith("https://"),
        max_age=SESSION_SECONDS,
    )
    return response


@router.post("/review/new-link")
async def new_link(
    request: Request, engine: Store, settings: AppSettings, clock: Clock
) -> Response:
    """ "Email me a new sign-in link": the same answer whether or not the address is an
    approver's (only an approver's gets the email), counted per address and network address."""
    if not same_origin(request, settings):
        return not_found(request, status_code=403)
    form = await form_of(request)
    if form is None:
        return form_too_large()
    email = form.get("email", "").strip()[:254]
    context: dict[str, Any] = {
        "email": email,
        "next": page_after_sign_in(form.get("next", "/review")),
    }
    if not EMAIL.fullmatch(email):
        context["problem"] = "Email: enter your work email address, like name@example.org"
        return page_response(request, signed_out_page(context["next"]), context, status_code=400)
    wait = await asyncio.to_thread(
        _send_new_link, engine, settings, email, client_address(request), context["next"], clock
    )
    if wait:
        minutes = max(1, math.ceil(wait / 60))
        context["too_many"] = (
            f"Too many sign-in links were asked for just now. Try again in {minutes} "
            f"minute{'s' if minutes != 1 else ''}."
        )
        response = page_response(
            request, signed_out_page(context["next"]), context, status_code=429
        )
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    return page_response(request, signed_out_page(context["next"]), context | {"sent": True})


def _send_new_link(
    engine: Engine, settings: Settings, email: str, client: str, next_path: str, clock: Any
) -> float:
    """Count the request in a short transaction of its own; within the limits, email the link
    if the address is an approver's. The seconds to wait when over them, else 0.0."""
    with transaction(engine, take_turns=False) as session:
        wait = count_link_request(session, email=email, client=client)
    if wait:
        return wait
    with transaction(engine) as session:
        email_new_link(
            session, email, public_url=settings.public_url, now=clock(), next_path=next_path
        )
    return 0.0


@router.get("/review")
def queue(
    request: Request,
    email: Approver,
    engine: Store,
    clock: Clock,
    state: str = "open",
    campaign: str = "",
    tier: str = "",
) -> Response:
    """The approver's review tasks, soonest deadline first, by state, campaign and tier."""
    state = state if state in STATES else ""
    with transaction(engine, write=False) as session:
        found = approver_queue(
            session,
            approver=email,
            now=clock(),
            state=state,
            campaign=campaign[:64],
            tier=tier[:64],
        )
    return page_response(request, "review_queue.html", {"email": email, "queue": found})


@router.get("/review/tasks/{task_id}")
def task_page(request: Request, task_id: RowId, email: Approver, engine: Store) -> Response:
    """A review task with its creative, comments, findings, checklist and decisions."""
    return _task_page(request, engine, task_id, email)


@router.post("/review/tasks/{task_id}/decide")
async def decide_page(
    request: Request,
    task_id: RowId,
    email: Approver,
    engine: Store,
    settings: AppSettings,
    clock: Clock,
) -> Response:
    """An approver's decision from the task's page; a refusal shows the page again, saying why,
    with what they had written and checked."""
    if not same_origin(request, settings):
        return not_found(request, status_code=403)
    form = await form_of(request)
    if form is None:
        return form_too_large()
    decision = form.get("decision", "")
    if decision not in DECISIONS:
        return not_found(request, status_code=400)
    note = form.get("note", "")[:5000]
    confirmed = [k.removeprefix("check_") for k in form if k.startswith("check_")]
    kept = {"note": note, "checked": confirmed, "decision": decision}
    version = form.get("version", "")
    if not (version.isascii() and version.isdigit() and len(version) <= 9):
        error = "version: the form does not say which version you read; decide on this one"
        return _task_page(request, engine, task_id, email, error=error, kept=kept, status_code=400)
    try:
        with transaction(engine) as session:
            decide(
                session,
                task_id=task_id,
                decision=decision,
                approver=email,
                now=clock(),
                note=note,
                confirmed=confirmed,
                version=int(version),
                public_url=settings.public_url,
            )
    except (ReviewRefused, ValueError) as exc:
        return _task_page(
            request, engine, task_id, email, error=str(exc), kept=kept, status_code=409
        )
    return RedirectResponse(f"/review/tasks/{task_id}?done={decision}", status_code=303)


@router.post("/review/tasks/{task_id}/comments")
async def comment(
    request: Request,
    task_id: RowId,
    email: Approver,
    engine: Store,
    settings: AppSettings,
    clock: Clock,
) -> Response:
    """A comment on the version under review, at a moment of its video if a time is given."""
    if not same_origin(request, settings):
        return not_found(request, status_code=403)
    form = await form_of(request)
    if form is None:
        return form_too_large()
    body, at = form.get("comment", ""), form.get("at", "")[:32]
    try:
        with transaction(engine) as session:
            if not is_approver_of_task(session, task_id, email):
                return not_found(request)
            add_comment(session, task_id=task_id, author=email, body=body, at=at, now=clock())
    except CommentRefused as exc:
        problem = {"field": exc.field, "message": str(exc), "comment": body[:20_000], "at": at}
        return _task_page(request, engine, task_id, email, comment=problem, status_code=400)
    return RedirectResponse(f"/review/tasks/{task_id}?commented=1#comments", status_code=303)


def _task_page(
    request: Request,
    engine: Engine,
    task_id: int,
    email: str,
    *,
    error: str | None = None,
    kept: dict[str, Any] | None = None,
    comment: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    """The task's page, for one of its campaign's approvers; anyone else gets "not found"."""
    with transaction(engine, write=False) as session:
        if not is_approver_of_task(session, task_id, email):
            return not_found(request)
        view = review_page(session, task_id)
    done = request.query_params.get("done")
    context = {
        "email": email,
        "view": view,
        "error": error,
        "kept": kept or {"note": "", "checked": [], "decision": ""},
        "comment": comment,
        "done": done.replace("_", " ") if done in DECISIONS else None,
        "commented": request.query_params.get("commented") == "1",
    }
    return page_response(request, "review_task.html", context, status_code=status_code)
