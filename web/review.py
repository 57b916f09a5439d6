"""The approvers' pages in `rally serve`: sign-in by emailed link, the review queue (overdue
first), and a task's page with the creative, its versions, the findings, the checklist and the
three decisions. A decision takes effect at once, as from the CLI."""

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Engine

from config.settings import Settings
from store.db import transaction
from store.models import ReviewTask
from tasks.campaigns.campaign import campaign_spec
from tasks.review.approvers import link_is_valid, redeem_link, who
from tasks.review.decisions import campaign_of_task, decide
from tasks.review.routing import ReviewRefused
from tasks.review.views import history, review_queue, task_view

COOKIE = "rally_review"


def add_review_routes(
    app: FastAPI, engine: Engine, settings: Settings, clock: Callable[[], datetime]
) -> None:
    from web.app import page_response

    secure = settings.public_url.startswith("https://")

    def approver(request: Request) -> str | None:
        with transaction(engine, write=False) as session:
            return who(session, request.cookies.get(COOKIE), kinds=("session",), now=clock())

    def signed_out(request: Request) -> Response:
        return page_response(request, "signed_out.html", {}, status_code=401)

    def same_origin(request: Request) -> bool:
        """Forms are only taken from Rally's own pages (with SameSite cookies, against CSRF)."""
        origin = request.headers.get("origin")
        return origin is None or origin in (settings.public_url, str(request.base_url).rstrip("/"))

    @app.get("/review/signin/{token}")
    def sign_in_page(request: Request, token: str, next: str = "/review") -> Response:
        """A button, not an automatic sign-in: mail scanners that fetch links spend nothing."""
        with transaction(engine, write=False) as session:
            valid = link_is_valid(session, token, now=clock())
        if not valid:
            return page_response(request, "signed_out.html", {"expired": True}, status_code=401)
        return page_response(request, "sign_in.html", {"token": token, "next": next})

    @app.post("/review/signin/{token}")
    async def sign_in(request: Request, token: str) -> Response:
        if not same_origin(request):
            return page_response(request, "not_found.html", {}, status_code=403)
        next = str((await request.form()).get("next", "/review"))
        with transaction(engine) as session:
            redeemed = redeem_link(session, token, now=clock())
        if redeemed is None:
            return page_response(request, "signed_out.html", {"expired": True}, status_code=401)
        target = next if next.startswith("/review") and "//" not in next else "/review"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE, redeemed[1], httponly=True, samesite="lax", secure=secure, max_age=12 * 3600
        )
        return response

    @app.get("/review")
    def queue(request: Request) -> Response:
        email = approver(request)
        if email is None:
            return signed_out(request)
        with transaction(engine, write=False) as session:
            tasks = review_queue(session, approver=email, now=clock())
        return page_response(request, "review_queue.html", {"email": email, "tasks": tasks})

    @app.get("/review/tasks/{task_id}")
    def task_page(request: Request, task_id: int) -> Response:
        email = approver(request)
        if email is None:
            return signed_out(request)
        return _task_page(request, task_id, email, error=None)

    @app.post("/review/tasks/{task_id}/decide")
    async def decide_page(request: Request, task_id: int) -> Response:
        email = approver(request)
        if email is None:
            return signed_out(request)
        if not same_origin(request):
            return page_response(request, "not_found.html", {}, status_code=403)
        form = await request.form()
        decision = str(form.get("decision", ""))
        if decision not in ("approve", "request_changes", "reject"):
            return page_response(request, "not_found.html", {}, status_code=400)
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
                    confirmed=[
                        str(k).removeprefix("check_") for k in form if k.startswith("check_")
                    ],
                    version=version,
                    public_url=settings.public_url,
                )
        except (ReviewRefused, ValueError) as exc:
            return _task_page(request, task_id, email, error=str(exc), status_code=409)
        return RedirectResponse(f"/review/tasks/{task_id}?done={decision}", status_code=303)

    def _task_page(
        request: Request, task_id: int, email: str, *, error: str | None, status_code: int = 200
    ) -> Response:
        with transaction(engine, write=False) as session:
            if session.get(ReviewTask, task_id) is None or not _approver_of(
                session, task_id, email
            ):
                return page_response(request, "not_found.html", {}, status_code=404)
            view: dict[str, Any] = task_view(session, task_id)
            view["history"] = history(session, view["creative"])
        context = {
            "email": email,
            "view": view,
            "error": error,
            "done": request.query_params.get("done"),
        }
        return page_response(request, "review_task.html", context, status_code=status_code)


def _approver_of(session: Any, task_id: int, email: str) -> bool:
    """Whether `email` is one of the approvers of the campaign this task belongs to."""
    campaign = campaign_of_task(session, task_id)
    if campaign is None:
        return False
    approvers = campaign_spec(campaign).approvers
    return any(email in members for members in approvers.values())
